"""agent_session.py's run: the five parts in order, then the table and goals.

Nothing overlaps: each part has the CPU to itself, and the load average is
recorded after each (the figures are only as good as the machine was idle).
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path
from typing import Any

from _report import (
    banner,
    exit_status,
    goal_line,
    load_warning,
    loadavg,
    machine_info,
    print_table,
    rounded,
)
from pensieve.models.resolve import resolve_model

from .concurrency import concurrent_clients, disconnects
from .fixtures import QUEUE_DEPTH
from .report import goals_of, table_rows
from .servers import Server, mlx_lm_server, with_pensieve
from .session import run_session, session_anomalies


def section(title: str) -> None:
    """A part's heading, with the load average as it starts."""
    print(f"{title} (load avg {loadavg()})", flush=True)


def pensieve_session(server: Server) -> dict[str, Any]:
    """The agent session through /v1/messages."""
    return run_session(server, openai=False)


def queue_and_disconnects(server: Server) -> dict[str, Any]:
    """Parts 2 and 3, on the one server with queue depth 4."""
    concurrency = concurrent_clients(server)
    print(
        f"      completed {concurrency['completed']}, 529 "
        f"{concurrency['overloaded_529']}, failed {concurrency['failed']} "
        f"(hangs {concurrency['hangs']})",
        flush=True,
    )
    section("[3/5] Pensieve: 20 disconnects mid-stream ...")
    return {"concurrency": concurrency, "disconnects": disconnects(server)}


def measure(
    args: argparse.Namespace, model_dir: Path, work: Path, figures: dict[str, Any]
) -> dict[str, float]:
    """The five parts (or those not skipped) into `figures`; the loads between."""
    loads: dict[str, float] = {}
    section("[1/5] Pensieve session, CPU profile auto ...")
    figures["pensieve_auto"] = with_pensieve(
        "pensieve-auto", args.cache_dir, work, pensieve_session
    )
    loads["after_pensieve_auto"] = loadavg()

    section("[2/5] Pensieve, queue depth 4: 20 concurrent clients ...")
    queue = with_pensieve(
        "pensieve-queue",
        args.cache_dir,
        work,
        queue_and_disconnects,
        QUEUE_DEPTH=str(QUEUE_DEPTH),
    )
    figures.update(queue)
    loads["after_queue_and_disconnects"] = loadavg()

    figures["pensieve_profile_off"] = None
    if not args.skip_profile_off:
        section("[4/5] Pensieve session, PENSIEVE_CPU_PROFILE=off ...")
        figures["pensieve_profile_off"] = with_pensieve(
            "pensieve-off", args.cache_dir, work, pensieve_session, CPU_PROFILE="off"
        )
        loads["after_pensieve_off"] = loadavg()
    else:
        section("[4/5] PENSIEVE_CPU_PROFILE=off session skipped")

    figures["mlx_lm_server"] = None
    if not args.skip_mlx_lm_server:
        section("[5/5] mlx_lm.server session (slow: ~10 tok/s prefill) ...")
        with mlx_lm_server(model_dir, work) as server:
            figures["mlx_lm_server"] = run_session(server, openai=True)
        loads["after_mlx_lm_server"] = loadavg()
    else:
        section("[5/5] mlx_lm.server session skipped")
    return loads


def compare(figures: dict[str, Any]) -> None:
    """Add Pensieve's warm TTFT over mlx_lm.server's, and the sessions' anomalies."""
    auto, off = figures["pensieve_auto"], figures["pensieve_profile_off"]
    mlx = figures["mlx_lm_server"]

    def over_mlx(session: dict[str, Any] | None) -> float | None:
        if session is None or mlx is None or not mlx["warm_ttft_median_s"]:
            return None
        return session["warm_ttft_median_s"] / mlx["warm_ttft_median_s"]

    figures["auto_warm_over_mlx_warm"] = over_mlx(auto)
    figures["off_warm_over_mlx_warm"] = over_mlx(off)
    anomalies = session_anomalies("pensieve auto", auto)
    if off is not None:
        anomalies += session_anomalies("pensieve off", off)
    figures["anomalies"] = anomalies


def run(args: argparse.Namespace) -> int:
    """Measure, print the table, goals and JSON line; 1 when a goal was missed."""
    info = machine_info(with_machine=False)
    started = time.perf_counter()
    print(banner("Pensieve agent-session benchmark", info), flush=True)
    model_dir = resolve_model("bundled", cache_dir=args.cache_dir, fallback=False).path
    print(f"model directory: {model_dir}")
    work = Path(tempfile.mkdtemp(prefix="pensieve-agent-bench-"))
    print(f"server logs: {work}\n", flush=True)

    figures: dict[str, Any] = {"machine": info, "model_dir": str(model_dir)}
    loads = measure(args, model_dir, work, figures)
    info["loadavg_end"] = loadavg()
    info["loadavg_between"] = loads
    figures["runtime_s"] = time.perf_counter() - started
    compare(figures)
    print_table(table_rows(figures, info), 40)

    goals = goals_of(figures)
    figures["goals"] = goals
    print("\ngoals:")
    for goal, met in goals.items():
        print(goal_line(met, goal))
    for note in figures["anomalies"] + figures["concurrency"]["failures"]:
        print(f"  note: {note}")
    warning = load_warning(info, *loads.values())
    if warning:
        print(f"\n{warning}")
    print("\nJSON: " + json.dumps(rounded(figures, 4, {"text"}), separators=(",", ":")))
    return exit_status(goals)
