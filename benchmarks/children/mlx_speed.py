"""Prefill and decode speed of the bundled model on MLX, with or without the profile.

cpu_profile.py runs this in a fresh interpreter per setting: the CPU profile
routes BLAS before mlx is imported, process-wide, so each setting needs a
process of its own. argv[1] is a JSON object: model_dir, profile ("on" or
"off"), lengths, decode_tokens, prefill_step_size, repeats, filler,
decode_prompt. Prints PROGRESS lines and one RESULT line (_speed).
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from _speed import Decoder, PrefillTimer, measure, progress, read_args, repeated, result
from pensieve.engine import ChatMessage
from pensieve.engine.loading import CPUProfile, load_model
from pensieve.engine.prompt import render_prompt


def timers(loaded: Any, step: int, filler: list[int]) -> tuple[PrefillTimer, Decoder]:
    """Greedy prefill and decode with mlx_lm.generate_step on `loaded`.

    The prefill is `generate_step(..., max_tokens=0)`: it processes the prompt
    and samples the first token, in chunks of `step` (the engine's
    PREFILL_STEP_SIZE).
    """
    import mlx.core as mx  # only now: load_model routes BLAS before mlx loads
    from mlx_lm.generate import generate_step
    from mlx_lm.sample_utils import make_sampler

    greedy = make_sampler(temp=0.0)

    def prefill_s(n: int) -> float:
        tokens = mx.array(repeated(filler, n))
        mx.synchronize()
        t0 = time.perf_counter()
        for _ in generate_step(
            tokens, loaded.model, max_tokens=0, sampler=greedy, prefill_step_size=step
        ):
            pass
        mx.synchronize()
        return time.perf_counter() - t0

    def decode(ids: list[int], n: int) -> tuple[float, list[int]]:
        stamps, out = [], []
        for token, _ in generate_step(
            mx.array(ids),
            loaded.model,
            max_tokens=n,
            sampler=greedy,
            prefill_step_size=step,
        ):
            stamps.append(time.perf_counter())
            out.append(token)
        mx.synchronize()
        return (len(out) - 1) / (stamps[-1] - stamps[0]), out

    return prefill_s, decode


def main() -> None:
    """Load, warm up, measure; print the RESULT line."""
    args = read_args()
    t0 = time.perf_counter()
    profile = CPUProfile(enabled=args["profile"] == "on")
    loaded = load_model(Path(args["model_dir"]), profile)
    load_s = time.perf_counter() - t0
    import mlx.core as mx  # only now: load_model routes BLAS before mlx loads

    filler = loaded.tokenizer.encode(args["filler"], add_special_tokens=False)
    prefill_s, decode = timers(loaded, args["prefill_step_size"], filler)
    progress(f"loaded in {load_s:.1f} s, profile: {list(loaded.profile) or 'none'}")
    messages = [ChatMessage("user", args["decode_prompt"])]
    ids = render_prompt(loaded.tokenizer, messages, [])
    prefill, rates, out = measure(prefill_s, decode, filler, args, ids)
    result(
        {
            "load_s": load_s,
            "device": str(mx.default_device()),
            "profile": list(loaded.profile),
            "prefill": prefill,
            "decode_runs_tps": rates,
            "decode_tps": max(rates),
            "decode_prompt_ids": ids,
            "decode_text": loaded.tokenizer.decode(out),
        }
    )


if __name__ == "__main__":
    main()
