"""Forced tool calls on the bundled model: schema validity and constraint overhead.

Runs 30+ varied tool schemas (nested objects, arrays, enums, required and
optional fields, bounded integers, booleans, patterned strings) with a forced
`tool_choice` through the engine's own decode path, checks every call's input
with `jsonschema`, and compares decode speed with and without the grammar.

    python benchmarks/tool_eval.py [--max-tokens 96]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

S = {"type": "string"}
I = {"type": "integer"}  # noqa: E741
B = {"type": "boolean"}


def obj(props: dict[str, Any], required: list[str] | None = None, **extra: Any) -> dict:
    schema = {"type": "object", "properties": props, **extra}
    if required is not None:
        schema["required"] = required
    return schema


CASES: list[tuple[str, str, dict[str, Any]]] = [
    (
        "get_weather",
        "Weather in Paris for 3 days?",
        obj({"city": S, "days": {**I, "minimum": 1, "maximum": 7}}, ["city", "days"]),
    ),
    ("read_file", "Show me the file src/main.py", obj({"path": S}, ["path"])),
    (
        "bash",
        "List the files in the current directory.",
        obj(
            {"command": S, "timeout": {**I, "minimum": 1, "maximum": 600}}, ["command"]
        ),
    ),
    (
        "edit_file",
        "Replace foo with bar in a.txt",
        obj({"path": S, "old": S, "new": S}, ["path", "old", "new"]),
    ),
    (
        "set_alarm",
        "Wake me at 7:30.",
        obj(
            {
                "hour": {**I, "minimum": 0, "maximum": 23},
                "minute": {**I, "minimum": 0, "maximum": 59},
            },
            ["hour", "minute"],
        ),
    ),
    (
        "convert",
        "Convert 10 miles to km.",
        obj(
            {
                "value": {"type": "number"},
                "from_unit": {"enum": ["miles", "km", "m"]},
                "to_unit": {"enum": ["miles", "km", "m"]},
            },
            ["value", "from_unit", "to_unit"],
        ),
    ),
    (
        "search",
        "Search the web for MLX.",
        obj({"query": S, "max_results": {**I, "minimum": 1, "maximum": 20}}, ["query"]),
    ),
    (
        "send_email",
        "Email bob@example.com saying hi.",
        obj(
            {"to": {**S, "pattern": "^[^@ ]+@[^@ ]+$"}, "subject": S, "body": S},
            ["to", "body"],
        ),
    ),
    (
        "toggle_light",
        "Turn off the kitchen light.",
        obj({"room": S, "on": B}, ["room", "on"]),
    ),
    (
        "add_todo",
        "Add buy milk to my list, high priority.",
        obj(
            {"title": S, "priority": {"enum": ["low", "medium", "high"]}, "done": B},
            ["title", "priority"],
        ),
    ),
    (
        "create_event",
        "Meeting with Ann on 2026-12-01.",
        obj(
            {
                "title": S,
                "date": {**S, "pattern": "^[0-9]{4}-[0-9]{2}-[0-9]{2}$"},
                "attendees": {"type": "array", "items": S},
            },
            ["title", "date"],
        ),
    ),
    (
        "tag_photos",
        "Tag photos 1, 2 and 3 as beach.",
        obj(
            {"ids": {"type": "array", "items": I, "minItems": 1}, "tag": S},
            ["ids", "tag"],
        ),
    ),
    (
        "order_pizza",
        "Large pizza with mushrooms and olives.",
        obj(
            {
                "size": {"enum": ["small", "medium", "large"]},
                "toppings": {"type": "array", "items": S, "maxItems": 5},
            },
            ["size", "toppings"],
        ),
    ),
    (
        "book_flight",
        "Fly from Paris to Rome on May 3.",
        obj(
            {
                "origin": S,
                "destination": S,
                "date": S,
                "passengers": {**I, "minimum": 1, "maximum": 9},
            },
            ["origin", "destination", "date"],
        ),
    ),
    (
        "create_user",
        "Create user alice, age 30, admin.",
        obj(
            {"name": S, "age": {**I, "minimum": 0, "maximum": 150}, "admin": B},
            ["name", "age", "admin"],
        ),
    ),
    (
        "set_volume",
        "Volume to 40 percent.",
        obj({"level": {**I, "minimum": 0, "maximum": 100}}, ["level"]),
    ),
    (
        "translate",
        "Translate hello to French.",
        obj(
            {"text": S, "target": {"enum": ["fr", "de", "es", "it"]}},
            ["text", "target"],
        ),
    ),
    (
        "git_commit",
        "Commit with message fix typo.",
        obj({"message": S, "all": B}, ["message"]),
    ),
    (
        "resize_image",
        "Resize the image to 800 by 600.",
        obj(
            {
                "width": {**I, "minimum": 1, "maximum": 10000},
                "height": {**I, "minimum": 1, "maximum": 10000},
                "keep_ratio": B,
            },
            ["width", "height"],
        ),
    ),
    (
        "query_db",
        "Get users older than 30 from the db.",
        obj(
            {
                "table": S,
                "filters": {
                    "type": "array",
                    "items": obj(
                        {"field": S, "op": {"enum": ["=", ">", "<"]}, "value": S},
                        ["field", "op", "value"],
                    ),
                },
            },
            ["table"],
        ),
    ),
    (
        "ship_package",
        "Ship to 1 Main St, Springfield.",
        obj(
            {
                "address": obj(
                    {"street": S, "city": S, "zip": {**S, "pattern": "^[0-9]{5}$"}},
                    ["street", "city"],
                ),
                "express": B,
            },
            ["address"],
        ),
    ),
    (
        "rate_movie",
        "Give Inception 5 stars.",
        obj(
            {"title": S, "stars": {**I, "minimum": 1, "maximum": 5}}, ["title", "stars"]
        ),
    ),
    ("play_music", "Play some jazz.", obj({"genre": S, "shuffle": B}, ["genre"])),
    (
        "calc",
        "What is 12 times 7?",
        obj(
            {
                "a": {"type": "number"},
                "b": {"type": "number"},
                "op": {"enum": ["+", "-", "*", "/"]},
            },
            ["a", "b", "op"],
        ),
    ),
    (
        "schedule_job",
        "Run backup every day at 2am.",
        obj({"name": S, "cron": S, "enabled": B}, ["name", "cron"]),
    ),
    (
        "get_stock",
        "Price of AAPL?",
        obj({"ticker": {**S, "pattern": "^[A-Z]{1,5}$"}}, ["ticker"]),
    ),
    (
        "create_playlist",
        "Playlist Road Trip with 3 songs.",
        obj(
            {
                "name": S,
                "songs": {
                    "type": "array",
                    "items": obj({"title": S, "artist": S}, ["title"]),
                },
            },
            ["name", "songs"],
        ),
    ),
    (
        "update_settings",
        "Enable dark mode, font size 14.",
        obj(
            {
                "dark_mode": B,
                "font_size": {**I, "minimum": 8, "maximum": 32},
                "language": {"enum": ["en", "fr"]},
            },
            ["dark_mode"],
        ),
    ),
    (
        "log_workout",
        "I ran 5 km in 30 minutes.",
        obj(
            {
                "activity": {"enum": ["run", "swim", "bike"]},
                "distance_km": {"type": "number", "minimum": 0},
                "minutes": {**I, "minimum": 1},
            },
            ["activity", "minutes"],
        ),
    ),
    (
        "reserve_table",
        "Table for 4 at 8pm tonight.",
        obj(
            {
                "people": {**I, "minimum": 1, "maximum": 20},
                "time": {**S, "pattern": "^[0-2][0-9]:[0-5][0-9]$"},
                "outdoor": B,
            },
            ["people", "time"],
        ),
    ),
    (
        "lookup_word",
        "Define serendipity.",
        obj({"word": S}, ["word"], additionalProperties=False),
    ),
    (
        "matrix",
        "Make a 2 by 2 identity matrix.",
        obj(
            {
                "rows": {
                    "type": "array",
                    "items": {"type": "array", "items": {"type": "number"}},
                }
            },
            ["rows"],
        ),
    ),
]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--max-tokens", type=int, default=96)
    args = parser.parse_args()

    from pensieve.engine import ChatMessage, SamplingParams, ToolPolicy, ToolSpec
    from pensieve.engine.cache import PromptCache
    from pensieve.engine.decoding import Cancellation, decode
    from pensieve.engine.loading import CPUProfile, load_model
    from pensieve.engine.prompt import render_prompt
    from pensieve.engine.tools import Constraint, parse_tool_calls
    from pensieve.models.resolve import resolve_model

    load = os.getloadavg()[0]
    print(f"tool eval: {platform.platform()}, {os.cpu_count()} CPUs, load {load:.2f}")
    cache_dir = Path(tempfile.mkdtemp(prefix="pensieve-tool-eval-"))
    path = resolve_model("bundled", cache_dir=cache_dir, fallback=False).path
    loaded = load_model(path, CPUProfile())
    import jsonschema

    sampling = SamplingParams(max_tokens=args.max_tokens, temperature=0.0)
    no_cache = PromptCache(max_entries=0, max_bytes=0)

    def run(tool: ToolSpec, question: str, constrained: bool) -> tuple[str, int, float]:
        policy = ToolPolicy(tools=(tool,), choice="any", parallel=False)
        ids = render_prompt(loaded.tokenizer, [ChatMessage("user", question)], [tool])
        constraint = Constraint(policy) if constrained else None
        steps = decode(
            loaded,
            ids,
            sampling,
            prefill_step_size=512,
            prompt_cache=no_cache,
            cancellation=Cancellation(),
            constraint=constraint,
        )
        next(steps)  # the cache step
        text, count, first = "", 0, None
        for step in steps:
            first = first or time.monotonic()
            text += step.text
            count += 1
        return (
            text,
            count,
            (count - 1) / (time.monotonic() - first) if count > 1 else 0.0,
        )

    valid, speeds, free_speeds = 0, [], []
    for name, question, schema in CASES:
        tool = ToolSpec(name, f"Tool {name}", schema)
        text, tokens, speed = run(tool, question, constrained=True)
        _, calls = parse_tool_calls(text)
        ok = len(calls) == 1 and calls[0].name == name
        if ok:
            try:
                jsonschema.validate(calls[0].input, schema)
            except jsonschema.ValidationError:
                ok = False
        valid += ok
        speeds.append(speed)
        _, free_tokens, free_speed = run(tool, question, constrained=False)
        free_speeds.append(free_speed)
        call = json.dumps(calls[0].input) if calls else text[:60]
        print(
            f"{'ok ' if ok else 'BAD'} {name:16} {tokens:3d} tok {speed:5.1f} tok/s"
            f" | free {free_tokens:3d} tok {free_speed:5.1f} tok/s | {call[:70]}"
        )
    constrained, free = statistics.median(speeds), statistics.median(free_speeds)
    overhead = (free - constrained) / free * 100
    print(f"\nschema-valid inputs: {valid}/{len(CASES)} ({valid / len(CASES):.0%})")
    print(
        f"decode tok/s, median: constrained {constrained:.1f}, "
        f"unconstrained {free:.1f}, overhead {overhead:.1f}%"
    )
    print(
        "JSON:",
        json.dumps(
            {
                "cases": len(CASES),
                "valid": valid,
                "constrained_tps": round(constrained, 2),
                "free_tps": round(free, 2),
                "overhead_pct": round(overhead, 1),
                "load_end": os.getloadavg()[0],
            }
        ),
    )


if __name__ == "__main__":
    main()
