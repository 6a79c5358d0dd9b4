"""Prefill and decode speed of llama.cpp (llama-cpp-python) on the bundled GGUF.

cpu_profile.py runs this in the interpreter of a virtualenv of its own
(llama.cpp is no Pensieve dependency), so it imports nothing of Pensieve's.
argv[1] is a JSON object: gguf, lengths, decode_tokens, repeats, threads,
n_ctx, filler, decode_prompt_ids (the MLX child's rendering: the vocabulary
is the GGUF's). Prints PROGRESS lines and one RESULT line (_speed).
"""

from __future__ import annotations

import time
from typing import Any

import llama_cpp
import numpy as np

from _speed import Decoder, PrefillTimer, measure, progress, read_args, repeated, result


def timers(llm: Any, filler: list[int]) -> tuple[PrefillTimer, Decoder]:
    """Greedy prefill (`Llama.eval`, n_batch 512) and decode on `llm`."""
    n_vocab = llm.n_vocab()

    def greedy() -> int:  # the last evaluated token's logits, argmax
        logits = llama_cpp.llama_get_logits_ith(llm.ctx, -1)
        return int(np.argmax(np.ctypeslib.as_array(logits, shape=(n_vocab,))))

    def prefill_s(n: int) -> float:
        tokens = repeated(filler, n)
        llm.reset()
        t0 = time.perf_counter()
        llm.eval(tokens)
        greedy()
        return time.perf_counter() - t0

    def decode(ids: list[int], n: int) -> tuple[float, list[int]]:
        llm.reset()
        llm.eval(ids)
        out = [greedy()]
        stamps = [time.perf_counter()]
        while len(out) < n:
            llm.eval([out[-1]])
            out.append(greedy())
            stamps.append(time.perf_counter())
        return (len(out) - 1) / (stamps[-1] - stamps[0]), out

    return prefill_s, decode


def main() -> None:
    """Load, warm up, measure; print the RESULT line."""
    args = read_args()
    t0 = time.perf_counter()
    llm = llama_cpp.Llama(
        model_path=args["gguf"],
        n_ctx=args["n_ctx"],
        n_batch=512,
        n_threads=args["threads"],
        n_threads_batch=args["threads"],
        verbose=False,
    )
    load_s = time.perf_counter() - t0
    filler = llm.tokenize(args["filler"].encode(), add_bos=False, special=False)
    prefill_s, decode = timers(llm, filler)
    progress(f"llama.cpp {llama_cpp.__version__} loaded in {load_s:.1f} s")
    ids = args["decode_prompt_ids"]
    prefill, rates, out = measure(prefill_s, decode, filler, args, ids)
    result(
        {
            "version": llama_cpp.__version__,
            "load_s": load_s,
            "system_info": llama_cpp.llama_print_system_info().decode(errors="replace"),
            "prefill": prefill,
            "decode_runs_tps": rates,
            "decode_tps": max(rates),
            "decode_text": llm.detokenize(out).decode(errors="replace"),
        }
    )


if __name__ == "__main__":
    main()
