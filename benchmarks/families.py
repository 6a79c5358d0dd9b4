"""Every model family's own tool-call and reasoning format, served end to end.

For each template in TEMPLATES_DIR (default ../shared/chat-templates from the
repository root) that tests/tiny_models.py's FAMILY_MARKERS knows, a tiny
random-weight model wearing it is served by a real Pensieve server (127.0.0.1,
one at a time) and measured with the requests of data/families/cases.json:

a. count_tokens of system + tools + a tool call, its result and a question ==
   the template's own render (apply_chat_template; for reasoning families the
   enable_thinking=False render counts too). A template that rejects it
   (Mistral: roles alternate) gets the assistant's answer inserted; a
   mismatch is "n/a" where the template renders no tools (Phi).
b. thinking on (budget 1024) starts with a thinking block, "disabled" has none.
c. forced get_weather calls (one: random weights would add calls until
   max_tokens), temperature 0, 3 questions, JSON and SSE: a tool_use whose
   input fits the schema, stop_reason "tool_use".
d. turn 2 = turn 1 (the first valid forced call) + its answer + the tool's
   result, as agents send it: (cache read - turn 1 prompt) / (turn 1 output
   - 1), the share of the model's own call the cache holds (goal: 1; the
   last token, turn 1's end, is never run through the model).
e. budget 1024 (Anthropic's least), max_tokens 1088: a thinking block of at
   most 1024 tokens (its text re-encoded: +2 allowed), then an answer block.

b and e are "n/a" without a reasoning format. A request times out after 120 s
and fails its cell only (and skips the family's remaining requests). Prints a
markdown table and a `JSON:` line; exits 1 when any applicable cell fails.

    python benchmarks/families.py [TEMPLATES_DIR] [--only STEM ...]
"""

from __future__ import annotations

import argparse
import functools
import json
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import jsonschema
import requests

import _server
from _files import ROOT, data_json
from _report import banner, loadavg, machine_info
from _stream import Stop, reassemble, sse_data
from pensieve.config import resolve_cache_dir
from pensieve.models.resolve import resolve_model

sys.path.insert(0, str(ROOT / "tests"))
from tiny_models import FAMILY_MARKERS, FamilySpec, build_family_model  # noqa: E402

API_KEY = "pensieve-families-key"
HEADERS = _server.anthropic_headers(API_KEY)
MESSAGES = "/v1/messages"
REQUEST_TIMEOUT = 120.0
READINESS = _server.Readiness(timeout_s=180.0, log_tail=1500)
CASES: dict[str, Any] = data_json("families/cases.json")
TOOL: dict[str, Any] = CASES["tool"]
HF_TOOL = {"type": "function", "function": {"name": TOOL["name"]}}
HF_TOOL["function"].update(
    description=TOOL["description"], parameters=TOOL["input_schema"]
)
COLUMNS = {
    "count": "count_tokens == render",
    "thinking": "thinking on/off",
    "forced": "forced calls valid",
    "cache": "cache share of own call",
    "budget": "thinking closed within budget",
}
REASONING_ONLY = ("thinking", "budget")
Message = dict[str, Any]


@dataclass
class Cell:
    """One table cell: passed (None: not applicable), its text, its figures."""

    ok: bool | None
    text: str
    figures: dict[str, Any] = field(default_factory=dict)


def error_cell(error: BaseException, prefix: str = "") -> Cell:
    first = (str(error).strip().splitlines() or [type(error).__name__])[0]
    return Cell(False, f"{prefix}error: {first[:70]}", {"error": str(error)[:600]})


@dataclass
class Client:
    """Anthropic-API requests to one server; each times out after 120 s."""

    url: str
    model: str
    hung: bool = False  # a request timed out: the rest are skipped

    def post(self, body: Message, path: str = MESSAGES, stop: Stop = None) -> Message:
        """The answer; streamed (body["stream"]): reassembled, up to `stop`."""
        if self.hung:
            raise RuntimeError("skipped: an earlier request timed out")
        stream = bool(body.get("stream"))
        deadline = time.perf_counter() + REQUEST_TIMEOUT
        url, body = f"{self.url}{path}", {"model": self.model, **body}
        options = {"stream": stream, "timeout": REQUEST_TIMEOUT}
        try:
            with requests.post(url, json=body, headers=HEADERS, **options) as response:
                if response.status_code != 200:
                    text = response.text.split('"message":"', 1)[-1][:300]
                    raise RuntimeError(f"HTTP {response.status_code}: {text}")
                if not stream:
                    return response.json()
                chunks = response.iter_content(chunk_size=None)
                events = (event for _, event in sse_data(chunks, deadline))
                return reassemble(events, stop)
        except (requests.Timeout, TimeoutError):
            self.hung = True
            raise


def block_types(message: Message) -> list[str]:
    return [block.get("type", "?") for block in message.get("content", [])]


def conversation(answered: bool, string_arguments: bool) -> tuple[list, list]:
    """Anthropic messages and Hugging Face turns (JSON-text arguments: DeepSeek)."""
    variant = CASES["conversation"]["answered" if answered else "plain"]
    turns = json.loads(json.dumps(variant["turns"]))
    for turn in turns if string_arguments else ():
        for call in turn.get("tool_calls", ()):
            call["function"]["arguments"] = json.dumps(call["function"]["arguments"])
    return variant["messages"], turns


def rendered_tokens(
    tokenizer: Any, turns: list, tools: bool = True, **more: Any
) -> int:
    listed = [HF_TOOL] if tools else None
    text = tokenizer.apply_chat_template(
        turns, tools=listed, add_generation_prompt=True, tokenize=False, **more
    )
    return len(tokenizer.encode(text, add_special_tokens=False))


def measure_count(client: Client, tokenizer: Any, spec: FamilySpec) -> Cell:
    figures: dict[str, Any] = {"answered": False}
    try:
        messages, turns = conversation(False, spec.string_arguments)
        reference = rendered_tokens(tokenizer, turns)
    except Exception as error:  # the template rejects it: insert the answer
        figures.update(answered=True, render_error=str(error)[:200])
        messages, turns = conversation(True, spec.string_arguments)
        reference = rendered_tokens(tokenizer, turns)
    off = None
    if spec.reasoning:
        off = rendered_tokens(tokenizer, turns, enable_thinking=False)
    body = {"system": CASES["system"], "tools": [TOOL], "messages": messages}
    counted = client.post(body, "/v1/messages/count_tokens")["input_tokens"]
    figures.update(count_tokens=counted, render=reference, render_thinking_off=off)
    ok: bool | None = counted in (reference, off)
    text = f"{'yes' if ok else 'no'}: {counted} vs {reference}"
    if not ok and rendered_tokens(tokenizer, turns, tools=False) == reference:
        ok, text = None, f"n/a, template drops tools: {counted} vs {reference}"
    if off is not None and off != reference:
        text += f" (off {off})"
    return Cell(ok, text + (" answered" if figures["answered"] else ""), figures)


def thinking_body(mode: str, max_tokens: int, **more: Any) -> dict[str, Any]:
    body = {**CASES["thinking_request"], "thinking": CASES[f"thinking_{mode}"]}
    return {**body, "max_tokens": max_tokens, **more}


def measure_thinking(client: Client) -> Cell:
    """On: streamed, closed at its first block, which decides; off: 256 tokens."""
    on = {**thinking_body("on", 2048), "stream": True}
    notes: dict[str, str] = {}
    for mode, body in (("on", on), ("off", thinking_body("off", 256))):
        try:
            kinds = block_types(client.post(body, stop=lambda index, block: True))
            wanted = ("thinking" in kinds) == (mode == "on")
            notes[mode] = "ok" if wanted else f"NO {'+'.join(kinds) or 'empty'}"
        except Exception as error:
            notes[mode] = f"error: {str(error)[:60]}"
    ok = notes["on"] == notes["off"] == "ok"
    return Cell(ok, f"on {notes['on']}, off {notes['off']}", dict(notes))


def measure_budget(client: Client, tokenizer: Any) -> Cell:
    """Streamed until the block after the thinking block starts."""
    budget = CASES["budget_tokens"]
    thinking = {"type": "enabled", "budget_tokens": budget}
    body = thinking_body("on", budget + 64, system=CASES["system"], tools=[TOOL])
    message = client.post(
        {**body, "thinking": thinking, "stream": True},
        stop=lambda index, block: index > 0 or block["type"] != "thinking",
    )
    kinds, blocks = block_types(message), message.get("content", [])
    thought = blocks[0].get("thinking", "") if kinds[:1] == ["thinking"] else None
    used = len(tokenizer.encode(thought, add_special_tokens=False)) if thought else 0
    answered = len(kinds) > 1 or not message.get("partial")
    # Re-encoding the text may spell it in a token more than was generated.
    ok = thought is not None and used <= budget + 2 and answered
    text = f"{'yes' if ok else 'no'}: {'+'.join(kinds) or 'empty'}"
    text += f", thinking {used} of {budget} tok" if thought is not None else ""
    return Cell(ok, text, {"blocks": kinds, "thinking_tokens": used})


def call_problem(message: Message) -> str | None:
    """Why `message` is no valid forced get_weather call; None when it is."""
    calls = [b for b in message.get("content", []) if b.get("type") == "tool_use"]
    call = next((c for c in calls if c.get("name") == TOOL["name"]), None)
    if call is None:
        return f"no {TOOL['name']} tool_use: {block_types(message)}"
    try:
        jsonschema.validate(call.get("input"), TOOL["input_schema"])
    except jsonschema.ValidationError as error:
        return f"input {json.dumps(call.get('input'))[:60]}: {error.message[:60]}"
    if message.get("stop_reason") != "tool_use":
        return f"stop_reason {message.get('stop_reason')}"
    return None


def measure_forced(client: Client) -> tuple[Cell, tuple[dict, Message] | None]:
    """The forced calls' cell, and turn 1 (body, answer) for the cache share."""
    valid = {"json": 0, "sse": 0}
    problems: list[str] = []
    first: tuple[dict, Message] | None = None
    for question in CASES["forced_questions"]:
        body = {"system": CASES["system"], "tools": [TOOL], **CASES["forced"]}
        body["messages"] = [{"role": "user", "content": question}]
        for mode in valid:
            try:
                message = client.post({**body, "stream": mode == "sse"})
                problem = call_problem(message)
                if mode == "json" and first is None and problem is None:
                    first = (body, message)
            except Exception as error:
                problem = f"error: {str(error)[:100]}"
            valid[mode] += problem is None
            if problem is not None:
                problems.append(f"{mode}: {problem}")
    total = len(CASES["forced_questions"])
    text = f"json {valid['json']}/{total}, sse {valid['sse']}/{total}"
    text += f" ({problems[0][:60]})" if problems else ""
    ok = valid["json"] == valid["sse"] == total
    return Cell(ok, text, {**valid, "problems": problems}), first


def prompt_tokens(usage: dict[str, Any]) -> int:
    """input + cache read + cache creation: Anthropic's three are disjoint."""
    keys = ("input_tokens", "cache_read_input_tokens", "cache_creation_input_tokens")
    return sum(usage.get(key) or 0 for key in keys)


def measure_cache(client: Client, turn1: tuple[dict, Message] | None) -> Cell:
    if turn1 is None:
        return Cell(False, "no turn 1 (its forced call failed)")
    body, answer = turn1
    uses = [b for b in answer.get("content", []) if b.get("type") == "tool_use"]
    result = {"type": "tool_result", "content": CASES["turn2_result"]}
    reply = [{**result, "tool_use_id": use["id"]} for use in uses]
    turn2 = {**body, "max_tokens": 16, "tool_choice": {"type": "auto"}}
    said = [{"role": "assistant", "content": answer["content"]}]
    turn2["messages"] = [*body["messages"], *said, {"role": "user", "content": reply}]
    usage1, usage2 = answer["usage"], client.post(turn2)["usage"]
    prompt1, output1 = prompt_tokens(usage1), usage1.get("output_tokens", 0)
    read2 = usage2.get("cache_read_input_tokens") or 0
    own = output1 - 1  # the end of turn is never run through the model
    share = min(1.0, max(0.0, (read2 - prompt1) / own)) if own > 0 else None
    figures = {"share": share, "turn1_usage": usage1, "turn2_usage": usage2}
    text = "n/a" if share is None else f"{share:.2f}"
    text += f" (read {read2}; t1 in {prompt1} out {output1})"
    return Cell(share is not None and share >= 1.0, text, figures)


def guarded(step: Callable[[], Cell]) -> Cell:  # a cell's error fails it alone
    try:
        return step()
    except Exception as error:
        return error_cell(error)


def measure_family(client: Client, model_dir: Path, spec: FamilySpec) -> dict:
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    cells = {"count": guarded(lambda: measure_count(client, tokenizer, spec))}
    steps = {
        "thinking": functools.partial(measure_thinking, client),
        "budget": functools.partial(measure_budget, client, tokenizer),
    }
    for key, step in steps.items():
        cells[key] = guarded(step) if spec.reasoning else Cell(None, "n/a")
    cells["forced"], turn1 = measure_forced(client)
    cells["cache"] = guarded(lambda: measure_cache(client, turn1))
    return cells


def run_family(stem: str, template: Path, work: Path, bundled: Path) -> dict:
    """Build the family's tiny model, serve it, measure every column."""
    spec = FAMILY_MARKERS[stem]
    started = time.perf_counter()
    try:
        text = template.read_text(encoding="utf-8")
        model_dir = build_family_model(stem, text, work / stem, bundled)
        port, log_path = _server.free_port(), work / f"{stem}.log"
        options = {"model": str(model_dir), "inherit_pensieve": False}
        env = _server.pensieve_env(port, resolve_cache_dir(), API_KEY, **options)
        serve = functools.partial(_server.running_server, _server.gunicorn_command())
        with serve(env, port, log_path, READINESS, new_session=True) as server:
            cells = measure_family(Client(server.url, stem), model_dir, spec)
    except Exception as error:  # no model, or the server did not start
        failure = error_cell(error, "server ")
        cells = {key: failure for key in COLUMNS}
        for key in REASONING_ONLY if not spec.reasoning else ():
            cells[key] = Cell(None, "n/a")
    cells = {key: cells[key] for key in COLUMNS}
    return {"cells": cells, "seconds": time.perf_counter() - started}


def print_results(results: dict[str, dict]) -> tuple[int, int]:
    """The markdown table; (failed, applicable) cells."""
    print("\n| template | " + " | ".join(COLUMNS.values()) + " |")
    print("|---" * (len(COLUMNS) + 1) + "|")
    failed = applicable = 0
    for stem, result in results.items():
        cells = result["cells"].values()
        texts = [cell.text.replace("|", "\\|") for cell in cells]
        print(f"| {stem} | " + " | ".join(texts) + " |")
        applicable += sum(cell.ok is not None for cell in cells)
        failed += sum(cell.ok is False for cell in cells)
    return failed, applicable


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    default = ROOT.parent / "shared" / "chat-templates"
    parser.add_argument("templates", nargs="?", type=Path, default=default)
    parser.add_argument("--only", action="append", help="a template stem (repeatable)")
    args = parser.parse_args()
    info = machine_info()
    print(banner("families", info), flush=True)
    stems = [s for s in FAMILY_MARKERS if (args.templates / f"{s}.jinja").is_file()]
    stems = [s for s in stems if not args.only or s in args.only]
    absent = sorted(set(FAMILY_MARKERS) - set(stems))
    print(f"templates in {args.templates}: {len(stems)} run; not run: {absent}")
    bundled = resolve_model("bundled", cache_dir=resolve_cache_dir(), fallback=False)
    results: dict[str, dict] = {}
    began = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="pensieve-families-") as tmp:
        for stem in stems:
            print(f"  {stem} ...", end=" ", flush=True)
            template = args.templates / f"{stem}.jinja"
            results[stem] = run_family(stem, template, Path(tmp), bundled.path)
            passed = sum(c.ok is True for c in results[stem]["cells"].values())
            print(f"{results[stem]['seconds']:.0f} s, {passed} cell(s) passed")
    failed, applicable = print_results(results)
    print(f"\nfailed cells: {failed} of {applicable} applicable")
    summary = {**info, "loadavg_end": loadavg(), "templates_dir": str(args.templates)}
    summary.update(elapsed_s=round(time.perf_counter() - began, 1), failed=failed)
    summary["applicable"] = applicable
    summary["families"] = {stem: result["cells"] for stem, result in results.items()}
    print("JSON:", json.dumps(summary, ensure_ascii=False, default=asdict))
    return 1 if failed or not results else 0


if __name__ == "__main__":
    sys.exit(main())
