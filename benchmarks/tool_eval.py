"""Forced tool calls on the bundled model: schema validity and constraint overhead.

Runs 30+ varied tool schemas (nested objects, arrays, enums, required and
optional fields, bounded integers, booleans, patterned strings; the table is
data/tool_eval_cases.json) with a forced `tool_choice` through the engine's
own decode path, checks every call's input with `jsonschema`, and compares
decode speed with and without the grammar. Goals: every call schema-valid,
and the grammar costing at most 10% of the median decode speed; the script
exits 1 when it misses one.

    python benchmarks/tool_eval.py [--max-tokens 96]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jsonschema

from _files import data_json
from _report import exit_status, goal_line
from pensieve.engine import ChatMessage, SamplingParams, ToolPolicy, ToolSpec
from pensieve.engine.cache import PromptCache
from pensieve.engine.decoding import Cancellation, decode
from pensieve.engine.loading import CPUProfile, load_model
from pensieve.engine.prompt import render_prompt
from pensieve.engine.tools import Constraint, parse_tool_calls
from pensieve.models.resolve import resolve_model

CASES: list[dict[str, Any]] = data_json("tool_eval_cases.json")
GOAL_OVERHEAD_PCT = 10.0  # constrained decode at most this much slower


@dataclass
class Decoder:
    """The loaded bundled model and the settings every case decodes with."""

    loaded: Any
    sampling: SamplingParams
    no_cache: PromptCache  # no prompt reuse: each case prefills afresh

    def run(
        self, tool: ToolSpec, question: str, constrained: bool
    ) -> tuple[str, int, float]:
        """Text, token count and decode tok/s of one forced call of `tool`."""
        policy = ToolPolicy(tools=(tool,), choice="any", parallel=False)
        messages = [ChatMessage("user", question)]
        ids = render_prompt(self.loaded.tokenizer, messages, [tool])
        constraint = Constraint(policy) if constrained else None
        steps = decode(
            self.loaded,
            ids,
            self.sampling,
            prefill_step_size=512,
            prompt_cache=self.no_cache,
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


def schema_valid(text: str, name: str, schema: dict[str, Any]) -> tuple[bool, Any]:
    """Whether `text` is exactly one call of `name` whose input fits `schema`."""
    _, calls = parse_tool_calls(text)
    ok = len(calls) == 1 and calls[0].name == name
    if ok:
        try:
            jsonschema.validate(calls[0].input, schema)
        except jsonschema.ValidationError:
            ok = False
    return ok, calls


def evaluate(decoder: Decoder) -> tuple[int, list[float], list[float]]:
    """Every case, constrained then free: valid count and both speed lists."""
    valid, speeds, free_speeds = 0, [], []
    for case in CASES:
        name, question, schema = case["name"], case["question"], case["input_schema"]
        tool = ToolSpec(name, f"Tool {name}", schema)
        text, tokens, speed = decoder.run(tool, question, constrained=True)
        ok, calls = schema_valid(text, name, schema)
        valid += ok
        speeds.append(speed)
        _, free_tokens, free_speed = decoder.run(tool, question, constrained=False)
        free_speeds.append(free_speed)
        call = json.dumps(calls[0].input) if calls else text[:60]
        print(
            f"{'ok ' if ok else 'BAD'} {name:16} {tokens:3d} tok {speed:5.1f} tok/s"
            f" | free {free_tokens:3d} tok {free_speed:5.1f} tok/s | {call[:70]}"
        )
    return valid, speeds, free_speeds


def main() -> int:
    """Load, evaluate, print the summary, goals and JSON line; 1 on a missed goal."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--max-tokens", type=int, default=96)
    args = parser.parse_args()

    load = os.getloadavg()[0]
    print(f"tool eval: {platform.platform()}, {os.cpu_count()} CPUs, load {load:.2f}")
    cache_dir = Path(tempfile.mkdtemp(prefix="pensieve-tool-eval-"))
    path = resolve_model("bundled", cache_dir=cache_dir, fallback=False).path
    decoder = Decoder(
        loaded=load_model(path, CPUProfile()),
        sampling=SamplingParams(max_tokens=args.max_tokens, temperature=0.0),
        no_cache=PromptCache(max_entries=0, max_bytes=0),
    )
    valid, speeds, free_speeds = evaluate(decoder)
    constrained, free = statistics.median(speeds), statistics.median(free_speeds)
    overhead = (free - constrained) / free * 100
    print(f"\nschema-valid inputs: {valid}/{len(CASES)} ({valid / len(CASES):.0%})")
    print(
        f"decode tok/s, median: constrained {constrained:.1f}, "
        f"unconstrained {free:.1f}, overhead {overhead:.1f}%"
    )
    goals = {
        f"every forced call schema-valid: {valid}/{len(CASES)}": valid == len(CASES),
        f"constraint overhead <= {GOAL_OVERHEAD_PCT:.0f}%: {overhead:.1f}%": (
            overhead <= GOAL_OVERHEAD_PCT
        ),
    }
    print("\ngoals:")
    for text, met in goals.items():
        print(goal_line(met, text))
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
    return exit_status(goals)


if __name__ == "__main__":
    sys.exit(main())
