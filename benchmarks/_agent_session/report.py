"""The table and the goals of agent_session.py.

Goals: warm turns at most 5% of the cold turn's first-token time (each
Pensieve session), Pensieve's warm turns at most half of mlx_lm.server's
(when it ran), every concurrent client answered or refused with 529 (none
hung), and the first-token time after a disconnect within 10%.
"""

from __future__ import annotations

from typing import Any

from _report import fmt

Figures = dict[str, Any]


def fmt_spread(values: dict[str, float | None]) -> str:
    """min / median / max seconds as one cell."""
    return " / ".join(fmt(values[k]) for k in ("min", "median", "max")) + " s"


def session_rows(name: str, session: Figures | None) -> list[tuple[str, str]]:
    """A session's prompt, cold and warm TTFT, and a row per turn."""
    if session is None:
        return [(name, "skipped")]
    rows = [
        (f"{name}: prompt at turn 1", f"{session['prefix_tokens']} tokens"),
        (f"{name}: cold TTFT (turn 1)", fmt(session["cold_ttft_s"], " s")),
        (f"{name}: warm TTFT (2-5, median)", fmt(session["warm_ttft_median_s"], " s")),
        (f"{name}: warm / cold", fmt(session["warm_over_cold"])),
    ]
    for turn in session["turns"]:
        logged = (
            f"; log {turn['log_prompt']} ({turn['log_cached']} cached)"
            if turn["log_prompt"] is not None
            else ""
        )
        rows.append(
            (
                f"{name}:   turn {turn['turn']}",
                f"TTFT {fmt(turn['ttft_s'], ' s')}, in {turn['input_tokens']} + "
                f"cache_read {turn['cache_read']}, out {turn['output_tokens']}{logged}",
            )
        )
    return rows


def queue_rows(figures: Figures) -> list[tuple[str, str]]:
    """The concurrency and disconnect rows."""
    conc, disc = figures["concurrency"], figures["disconnects"]
    return [
        (
            "concurrency: completed / 529 / failed",
            f"{conc['completed']} / {conc['overloaded_529']} / {conc['failed']} "
            f"(hangs {conc['hangs']}; retry-after {conc['retry_after']})",
        ),
        ("concurrency: max queue seen", fmt(conc["max_waiting_seen"])),
        ("concurrency: TTFT min/med/max", fmt_spread(conc["ttft_s"])),
        ("concurrency: total min/med/max", fmt_spread(conc["total_s"])),
        ("concurrency: time to 529 min/med/max", fmt_spread(conc["time_to_529_s"])),
        (
            "disconnect: TTFT undisturbed (median of 20)",
            fmt(disc["undisturbed_median_s"], " s"),
        ),
        (
            "disconnect: TTFT after a disconnect (median of 20)",
            fmt(disc["after_median_s"], " s"),
        ),
        ("disconnect: after / undisturbed", fmt(disc["after_over_undisturbed"])),
        (
            "disconnect: cancel log lines (max tokens)",
            f"{disc['cancel_log_lines']} "
            f"({fmt(disc['tokens_generated_before_cancel_max'])})",
        ),
    ]


def table_rows(figures: Figures, info: dict[str, Any]) -> list[tuple[str, str]]:
    """Every row of the table, sessions first."""
    rows = session_rows("pensieve (profile auto)", figures["pensieve_auto"])
    rows += session_rows("pensieve (profile off)", figures["pensieve_profile_off"])
    rows += session_rows("mlx_lm.server", figures["mlx_lm_server"])
    rows += [
        ("warm TTFT: pensieve auto / mlx_lm", fmt(figures["auto_warm_over_mlx_warm"])),
        ("warm TTFT: pensieve off / mlx_lm", fmt(figures["off_warm_over_mlx_warm"])),
    ]
    rows += queue_rows(figures)
    rows += [
        ("load avg start / end", f"{info['loadavg_start']} / {info['loadavg_end']}"),
        ("runtime", fmt(figures["runtime_s"], " s")),
    ]
    return rows


def goals_of(figures: Figures) -> dict[str, bool]:
    """Each goal that this run measured, and whether it was met."""
    auto, off = figures["pensieve_auto"], figures["pensieve_profile_off"]
    conc, disc = figures["concurrency"], figures["disconnects"]
    goals = {
        "warm <= 5% of cold (profile auto)": auto["warm_over_cold"] <= 0.05,
        "every client completed or got 529, none hung": conc["failed"] == 0,
        "TTFT after disconnects within 10%": (disc["after_over_undisturbed"] or 99)
        <= 1.10,
    }
    if off is not None:
        goals["warm <= 5% of cold (profile off)"] = off["warm_over_cold"] <= 0.05
    if figures["auto_warm_over_mlx_warm"] is not None:
        goals["warm <= half of mlx_lm.server's (auto)"] = (
            figures["auto_warm_over_mlx_warm"] <= 0.5
        )
    if figures["off_warm_over_mlx_warm"] is not None:
        goals["warm <= half of mlx_lm.server's (off)"] = (
            figures["off_warm_over_mlx_warm"] <= 0.5
        )
    return goals
