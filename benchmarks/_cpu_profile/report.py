"""The runtime estimate, the table, the goals and the figures of cpu_profile.py.

The goals are the server's (through /v1/messages, as a client sees it):
prefill and decode rates, and, with llama.cpp measured, two stretch goals
relative to it. Only the two main goals decide the exit status: the stretch
goals are printed as goals but are aims, not gates.
"""

from __future__ import annotations

from typing import Any

from _report import goal_line

from .fixtures import (
    EST_AFTER_DECODE_TPS,
    EST_AFTER_PREFILL_TPS,
    EST_BEFORE_DECODE_TPS,
    EST_BEFORE_PREFILL_TPS,
    EST_BUILD_S,
    EST_LLAMA_DECODE_TPS,
    EST_LLAMA_PREFILL_TPS,
    GOAL_DECODE_TPS,
    GOAL_PREFILL_TPS,
    PREFILL_LENGTHS,
    SERVER_PREFILL_TOKENS,
    STRETCH_FRACTION,
)

Result = dict[str, Any]
Check = tuple[str, float, bool]  # goal text, measured value, met
PARTS = ("before", "after", "server", "llama")  # the columns, by key


def estimate_s(
    before_lengths: list[int], repeats: int, decode_tokens: int, llama: str
) -> float:
    """Rough total runtime, from typical speeds on a 2-core VM."""
    total = 20.0  # GGUF import, interpreter start-ups
    total += 10 + sum(before_lengths) / EST_BEFORE_PREFILL_TPS
    total += decode_tokens / EST_BEFORE_DECODE_TPS
    total += 15 + repeats * (
        sum(PREFILL_LENGTHS) / EST_AFTER_PREFILL_TPS
        + decode_tokens / EST_AFTER_DECODE_TPS
    )
    total += 25 + repeats * (
        SERVER_PREFILL_TOKENS / EST_AFTER_PREFILL_TPS
        + decode_tokens / EST_AFTER_DECODE_TPS
    )
    if llama != "skip":
        total += 5 + repeats * (
            sum(PREFILL_LENGTHS) / EST_LLAMA_PREFILL_TPS
            + decode_tokens / EST_LLAMA_DECODE_TPS
        )
    if llama == "build":
        total += EST_BUILD_S
    return total


def rate(value: float | None, digits: int = 1, unit: str = "") -> str:
    """A table cell: "n/a" or `value` with `digits` decimals."""
    return "n/a" if value is None else f"{value:.{digits}f}{unit}"


def ratio(top: float | None, bottom: float | None) -> float | None:
    """top / bottom, None when either is missing (or zero)."""
    return top / bottom if top and bottom else None


def prefill_tps(result: Result | None, n: int) -> float | None:
    """A child's best prefill tok/s at `n` tokens, None when not measured."""
    if result is None or str(n) not in result["prefill"]:
        return None
    return result["prefill"][str(n)]["tps"]


def without_ids(result: Result | None) -> Result | None:
    """A child's result without the prompt token ids (long, not a figure)."""
    if result is None:
        return None
    return {key: value for key, value in result.items() if key != "decode_prompt_ids"}


def cells(
    lengths: list[int], parts: dict[str, Result | None]
) -> list[tuple[str, float | None, float | None, float | None, float | None]]:
    """Per row (prefill@N, decode): before, after, server and llama.cpp tok/s."""
    before, after, server, llama = (parts[key] for key in PARTS)
    assert before is not None and after is not None and server is not None
    rows = [
        (
            f"prefill@{n}",
            prefill_tps(before, n),
            prefill_tps(after, n),
            server["prefill_tps"] if n == SERVER_PREFILL_TOKENS else None,
            prefill_tps(llama, n),
        )
        for n in lengths
    ]
    rows.append(
        (
            "decode",
            before["decode_tps"],
            after["decode_tps"],
            server["decode_tps"],
            llama["decode_tps"] if llama else None,
        )
    )
    return rows


def print_table(
    lengths: list[int], parts: dict[str, Result | None]
) -> dict[str, dict[str, float | None]]:
    """The tok/s table with its ratios and goal column; its rows, by name."""
    goals = {
        f"prefill@{SERVER_PREFILL_TOKENS}": f"server >= {GOAL_PREFILL_TPS:.0f}",
        "decode": f"server >= {GOAL_DECODE_TPS:.0f}",
    }
    header = (
        f"{'tok/s':<13}{'before':>9}{'after':>9}{'server':>9}{'llama.cpp':>11}"
        f"{'after/before':>14}{'after/llama':>13}{'server/llama':>14}  goal"
    )
    print("\n" + header)
    print("-" * (len(header) + 14))
    rows: dict[str, dict[str, float | None]] = {}
    for name, b, a, s, ll in cells(lengths, parts):
        rows[name] = {
            "before": b,
            "after": a,
            "server": s,
            "llama_cpp": ll,
            "after_over_before": ratio(a, b),
            "after_over_llama": ratio(a, ll),
            "server_over_llama": ratio(s, ll),
        }
        print(
            f"{name:<13}{rate(b):>9}{rate(a):>9}{rate(s):>9}{rate(ll):>11}"
            f"{rate(ratio(a, b), 2, 'x'):>14}{rate(ratio(a, ll), 2):>13}"
            f"{rate(ratio(s, ll), 2):>14}  {goals.get(name, '')}"
        )
    return rows


def goal_checks(server: Result, llama: Result | None) -> tuple[list[Check], int]:
    """The goals, measured value and met; and how many lead (the rest: stretch)."""
    server_prefill = server["prefill_tps"]
    server_decode = server["decode_tps"] or 0.0
    checks = [
        (
            f"prefill >= {GOAL_PREFILL_TPS:.0f} tok/s at ~{SERVER_PREFILL_TOKENS} "
            "tokens via /v1/messages",
            server_prefill,
            server_prefill >= GOAL_PREFILL_TPS,
        ),
        (
            f"decode >= {GOAL_DECODE_TPS:.0f} tok/s via /v1/messages",
            server_decode,
            server_decode >= GOAL_DECODE_TPS,
        ),
    ]
    required = len(checks)
    if llama:
        llama_prefill = prefill_tps(llama, SERVER_PREFILL_TOKENS) or 0.0
        llama_decode = llama["decode_tps"] or 0.0
        checks += [
            (
                f"stretch: prefill >= {STRETCH_FRACTION} x llama.cpp "
                f"({STRETCH_FRACTION * llama_prefill:.1f} tok/s) via /v1/messages",
                server_prefill,
                server_prefill >= STRETCH_FRACTION * llama_prefill,
            ),
            (
                f"stretch: decode >= {STRETCH_FRACTION} x llama.cpp "
                f"({STRETCH_FRACTION * llama_decode:.1f} tok/s) via "
                "/v1/messages",
                server_decode,
                server_decode >= STRETCH_FRACTION * llama_decode,
            ),
        ]
    return checks, required


def print_goals(checks: list[Check]) -> None:
    """The "goals:" list, each with its measured value."""
    print("\ngoals:")
    for text, value, met in checks:
        print(goal_line(met, f"{text}: {value:.1f}"))
