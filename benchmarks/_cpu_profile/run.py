"""cpu_profile.py's run: the plan, the five steps, then the report.

The steps run one after the other in a temporary cache folder (nothing
overlaps, so each figure has the CPU to itself): import the bundled GGUF,
(a) plain MLX, (b) the CPU profile, (c) the server, (d) llama.cpp.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from _report import banner, exit_status, load_warning, loadavg, machine_info, rounded
from pensieve.config import load_settings
from pensieve.models.bundled import bundled_gguf_path
from pensieve.models.resolve import resolve_model

from .children import (
    bench_llama,
    bench_mlx,
    build_llama,
    llama_build_command,
    llama_installed,
)
from .fixtures import PREFILL_LENGTHS
from .report import (
    Check,
    estimate_s,
    goal_checks,
    print_goals,
    print_table,
    without_ids,
)
from .server import bench_server

TOTAL_STEPS = 5


@dataclass
class Plan:
    """What this run measures, from the command line and the installed llama.cpp."""

    quick: bool
    repeats: int
    decode_tokens: int
    lengths: list[int]
    before_lengths: list[int]  # --quick: without 2048
    step_size: int  # the engine's PREFILL_STEP_SIZE
    llama_venv: Path
    llama_plan: str  # "run", "build" or "skip"
    llama_version: str | None

    @classmethod
    def of(cls, args: argparse.Namespace) -> Plan:
        """The plan of the parsed command line `args`."""
        lengths = list(PREFILL_LENGTHS)
        version = llama_installed(args.llama_venv)
        return cls(
            quick=args.quick,
            repeats=max(1, args.repeats),
            decode_tokens=args.decode_tokens,
            lengths=lengths,
            before_lengths=[n for n in lengths if not (args.quick and n == 2048)],
            step_size=int(load_settings()["PREFILL_STEP_SIZE"]),
            llama_venv=args.llama_venv,
            llama_plan="run" if version else "build" if args.build_llama else "skip",
            llama_version=version,
        )

    def estimate_s(self) -> float:
        """The rough runtime of this plan."""
        return estimate_s(
            self.before_lengths, self.repeats, self.decode_tokens, self.llama_plan
        )


def step(number: int, text: str) -> None:
    """The progress line of one of the five steps."""
    print(f"[{number}/{TOTAL_STEPS}] {text} ...", flush=True)


def llama_step(plan: Plan, gguf: Path, ids: list[int]) -> dict[str, Any] | None:
    """(d), building llama.cpp first if planned; None when it is skipped or fails."""
    version = plan.llama_version
    if plan.llama_plan == "build":
        print(f"      building: {llama_build_command(plan.llama_venv)}", flush=True)
        try:
            build_llama(plan.llama_venv)
        except (OSError, subprocess.SubprocessError) as error:
            print(f"      build failed: {error}")
        version = llama_installed(plan.llama_venv)
    if not version:
        print(
            f"      skipped: no llama_cpp in {plan.llama_venv}. Build it with "
            f"--build-llama, or:\n      {llama_build_command(plan.llama_venv)}"
        )
        return None
    try:
        return bench_llama(
            plan.llama_venv, gguf, plan.lengths, plan.decode_tokens, plan.repeats, ids
        )
    except RuntimeError as error:  # keep the other columns
        print(f"      skipped: {error}")
        return None


def measure(plan: Plan) -> dict[str, dict[str, Any] | None]:
    """The five steps in a temporary cache folder; the four columns' results."""
    with tempfile.TemporaryDirectory(prefix="pensieve-bench-") as tmp:
        cache_dir = Path(tmp) / "cache"
        step(1, "importing the bundled GGUF")
        gguf = bundled_gguf_path()
        model_dir = resolve_model("bundled", cache_dir=cache_dir, fallback=False).path
        print(f"      {gguf.name} -> {model_dir}", flush=True)

        step(2, "(a) before: plain MLX, profile off, in a subprocess")
        tokens, size = plan.decode_tokens, plan.step_size
        before = bench_mlx(model_dir, "off", plan.before_lengths, tokens, size, 1)
        step(3, "(b) after: CPU profile on, in a subprocess")
        after = bench_mlx(model_dir, "on", plan.lengths, tokens, size, plan.repeats)
        step(4, "(c) server: gunicorn, streaming /v1/messages")
        log_path = Path(tmp) / "gunicorn.log"
        server = bench_server(cache_dir, log_path, tokens, plan.repeats)

        step(5, "(d) llama.cpp on the same GGUF")
        llama = llama_step(plan, gguf, after["decode_prompt_ids"])
    return {"before": before, "after": after, "server": server, "llama": llama}


def print_plan(plan: Plan, info: dict[str, Any]) -> float:
    """The banner, what is measured and the estimated runtime (returned, in s)."""
    print(banner("Pensieve CPU-profile benchmark", info))
    print(
        f"prefill lengths {plan.lengths} (before: {plan.before_lengths}), "
        f"prefill_step_size {plan.step_size}, decode {plan.decode_tokens} tokens, "
        f"best of {plan.repeats} (before: 1 run), llama.cpp: {plan.llama_plan}"
        + (f" ({plan.llama_version})" if plan.llama_version else "")
    )
    estimate = plan.estimate_s()
    print(f"estimated runtime: about {estimate / 60:.0f} min\n", flush=True)
    return estimate


def print_notes(
    plan: Plan,
    info: dict[str, Any],
    parts: dict[str, Any],
    checks: list[Check],
    times: tuple[float, float],
) -> None:
    """What the server row is, the goals, and what makes the run less comparable."""
    elapsed, estimate = times
    server = parts["server"]
    print(
        f"\nserver prefill row: a {server['prefill_prompt_tokens']}-token prompt, "
        f"{server['prefill_input_tokens']} input_tokens not from the prompt cache "
        f"(input_tokens / time to first delta); server decode: "
        f"{server['decode_output_tokens']} tokens ({server['decode_stop_reason']})."
    )
    if plan.quick:
        print("--quick: before@2048 not measured.")
    print_goals(checks)
    print(
        f"\nload avg start / end: {info['loadavg_start']} / {info['loadavg_end']}; "
        f"elapsed {elapsed / 60:.1f} min (estimated {estimate / 60:.0f} min)"
    )
    warning = load_warning(info)
    if warning:
        print(warning)
    if parts["after"]["decode_text"] != parts["before"]["decode_text"]:
        print("note: before and after decoded different greedy text.")


def run(args: argparse.Namespace) -> int:
    """Plan, measure, report; 1 when a (non-stretch) goal was missed."""
    plan = Plan.of(args)
    info = machine_info()
    estimate = print_plan(plan, info)
    started = time.perf_counter()
    parts = measure(plan)
    info["loadavg_end"] = loadavg()
    elapsed = time.perf_counter() - started

    rows = print_table(plan.lengths, parts)
    checks, required = goal_checks(parts["server"], parts["llama"])
    print_notes(plan, info, parts, checks, (elapsed, estimate))
    figures = {
        "machine": info,
        "quick": plan.quick,
        "repeats": plan.repeats,
        "decode_tokens": plan.decode_tokens,
        "prefill_step_size": plan.step_size,
        "elapsed_s": elapsed,
        "estimated_s": estimate,
        "table": rows,
        "goals": {text: {"value": value, "met": met} for text, value, met in checks},
        "before": without_ids(parts["before"]),
        "after": without_ids(parts["after"]),
        "server": parts["server"],
        "llama_cpp": without_ids(parts["llama"]),
    }
    print("\nJSON: " + json.dumps(rounded(figures, 3), separators=(",", ":")))
    return exit_status({text: met for text, _, met in checks[:required]})
