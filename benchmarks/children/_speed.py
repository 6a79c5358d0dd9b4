"""The measuring loop that the speed children share, with their stdout protocol.

mlx_speed.py and llama_speed.py warm up alike, time each prefill length
`repeats` times (the best run counts) and decode the same prompt ids
`repeats` times: one loop keeps their figures comparable. Standard library
only, as llama_speed.py runs in the llama.cpp virtualenv's interpreter.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from typing import Any

PrefillTimer = Callable[[int], float]  # seconds to prefill n tokens
Decoder = Callable[[list[int], int], tuple[float, list[int]]]  # tok/s, tokens


def read_args() -> dict[str, Any]:
    """The child's arguments: one JSON object, argv[1]."""
    return json.loads(sys.argv[1])


def progress(text: str) -> None:
    """A line the parent echoes as it comes."""
    print("PROGRESS " + text, flush=True)


def result(figures: dict[str, Any]) -> None:
    """The one line the parent returns, parsed."""
    print("RESULT " + json.dumps(figures), flush=True)


def repeated(tokens: list[int], n: int) -> list[int]:
    """A synthetic prompt of exactly `n` tokens: `tokens` repeated, capped."""
    return (tokens * (n // len(tokens) + 1))[:n]


def warm_up(prefill_s: PrefillTimer, decode: Decoder, filler: list[int]) -> None:
    """A short prefill and a few decode steps, so no first call is measured."""
    prefill_s(32)
    decode(repeated(filler, 16), 4)


def prefill_runs(
    prefill_s: PrefillTimer, lengths: list[int], repeats: int
) -> dict[str, Any]:
    """Per length: the seconds of each run and tok/s of the best one."""
    prefill = {}
    for n in lengths:
        runs = []
        for _ in range(repeats):
            runs.append(prefill_s(n))
            progress(f"prefill {n} tokens: {runs[-1]:.2f} s, {n / runs[-1]:.1f} tok/s")
        prefill[str(n)] = {"seconds": runs, "tps": n / min(runs)}
    return prefill


def decode_runs(
    decode: Decoder, ids: list[int], tokens: int, repeats: int
) -> tuple[list[float], list[int]]:
    """The tok/s of each of `repeats` decodes of `tokens` tokens; the last output."""
    rates, out = [], []
    for _ in range(repeats):
        rate, out = decode(ids, tokens)
        rates.append(rate)
        progress(f"decode {len(out)} tokens: {rate:.1f} tok/s")
    return rates, out


def measure(
    prefill_s: PrefillTimer,
    decode: Decoder,
    filler: list[int],
    args: dict[str, Any],
    ids: list[int],
) -> tuple[dict[str, Any], list[float], list[int]]:
    """Warm up, then the prefill runs and the decode runs that `args` ask for.

    Returns prefill_runs's figures, the decode rates and the last output.
    """
    warm_up(prefill_s, decode, filler)
    prefill = prefill_runs(prefill_s, args["lengths"], args["repeats"])
    rates, out = decode_runs(decode, ids, args["decode_tokens"], args["repeats"])
    return prefill, rates, out
