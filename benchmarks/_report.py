"""The machine, statistics, formatting and goals: what every benchmark prints.

Each script prints the machine and the load average at its start (other
processes sharing the CPU make every figure noisy), a table, its goals and
one `JSON:` line; this module holds one copy of those pieces. A script that
misses a goal it prints exits 1 (exit_status), so a run can gate a change.
"""

from __future__ import annotations

import os
import platform
import statistics
import sys
from collections.abc import Collection, Mapping
from importlib.metadata import PackageNotFoundError, version
from typing import Any

# --- the machine -------------------------------------------------------------


def package_version(name: str) -> str:
    """The installed version of distribution `name`, or "absent"."""
    try:
        return version(name)
    except PackageNotFoundError:
        return "absent"


def loadavg() -> float:
    """The 1-minute load average, rounded to 2 decimals."""
    return round(os.getloadavg()[0], 2)


def machine_info(*, with_machine: bool = True) -> dict[str, Any]:
    """Platform, CPUs, Python, mlx and mlx-lm versions, load average now.

    `with_machine` adds `platform.machine()` under "machine" (after
    "platform"); the key order is the order of the scripts' JSON output.
    """
    info: dict[str, Any] = {"platform": platform.platform()}
    if with_machine:
        info["machine"] = platform.machine()
    info.update(
        cpu_count=os.cpu_count(),
        python=platform.python_version(),
        mlx=package_version("mlx"),
        mlx_lm=package_version("mlx-lm"),
        loadavg_start=loadavg(),
    )
    return info


def banner(title: str, info: Mapping[str, Any]) -> str:
    """The first line a script prints: `title` and the machine of `info`."""
    where = info["platform"]
    if "machine" in info:
        where += f" ({info['machine']})"
    return (
        f"{title} - {where}, "
        f"{info['cpu_count']} CPUs, Python {info['python']}, mlx {info['mlx']}, "
        f"mlx-lm {info['mlx_lm']}, load avg {info['loadavg_start']}"
    )


def load_warning(info: Mapping[str, Any], *more: float) -> str | None:
    """A warning when the load average (start, end, `more`) exceeded half the CPUs."""
    busiest = max(info["loadavg_start"], info["loadavg_end"], *more)
    if busiest <= 0.5 * (info["cpu_count"] or 1):
        return None
    return (
        f"WARNING: load average reached {busiest} on {info['cpu_count']} CPUs: "
        "other processes competed for the CPU, figures are noisy."
    )


# --- statistics and formatting -----------------------------------------------


def median(values: list[float]) -> float | None:
    """The median of `values`, None when empty."""
    return statistics.median(values) if values else None


def spread(values: list[float]) -> dict[str, float | None]:
    """min / median / max of `values` (None when empty)."""
    return {
        "min": min(values) if values else None,
        "median": median(values),
        "max": max(values) if values else None,
    }


def fmt(value: Any, unit: str = "") -> str:
    """A table cell: "n/a", 3 decimals below 10, 1 decimal from 10 on."""
    if value is None:
        return "n/a"
    if isinstance(value, float):
        return f"{value:.3f}{unit}" if value < 10 else f"{value:.1f}{unit}"
    return f"{value}{unit}"


def print_table(rows: list[tuple[str, str]], rule: int) -> None:
    """A two-column "measure / value" table; `rule` dashes over the values."""
    width = max(len(name) for name, _ in rows)
    print(f"\n{'measure':<{width}}  value")
    print(f"{'-' * width}  {'-' * rule}")
    for name, value in rows:
        print(f"{name:<{width}}  {value}")


def rounded(value: Any, digits: int, drop: Collection[str] = ()) -> Any:
    """`value` with every float rounded, nested, and the dict keys `drop` left out.

    The JSON line stays short: figures need no more than a few decimals, and
    generated text (a `drop` key) is in the table already.
    """
    if isinstance(value, float):
        return round(value, digits)
    if isinstance(value, dict):
        return {
            key: rounded(item, digits, drop)
            for key, item in value.items()
            if key not in drop
        }
    if isinstance(value, list):
        return [rounded(item, digits, drop) for item in value]
    return value


# --- goals -------------------------------------------------------------------


def goal_line(met: bool, text: str) -> str:
    """One line of a script's "goals:" list."""
    return f"  [{'met' if met else 'MISSED'}] {text}"


def exit_status(goals: Mapping[str, bool]) -> int:
    """1 when a goal of `goals` (text: met) was missed, naming it on stderr; else 0."""
    missed = [text for text, met in goals.items() if not met]
    if not missed:
        return 0
    print(f"missed {len(missed)} goal(s): " + "; ".join(missed), file=sys.stderr)
    return 1
