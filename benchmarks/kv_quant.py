"""Quantized KV (PENSIEVE_KV_BITS) against full-precision KV on the bundled model.

In-process, on the inference path the server uses (`decoding.decode`, mlx-lm's
quantized KV cache from the first token), greedy, for prompts of about 100,
1,000 and 4,000 tokens: for 8-bit and 4-bit KV, the share of the 64 new tokens
that equal the full-precision run's before the first difference (greedy
agreement), the decode and prefill speeds, and the KV bytes per token. It
states no goal (it measures whether KV_BITS may become a default: it is off),
so it exits 0 when it runs to the end.

    python benchmarks/kv_quant.py [--new-tokens 64]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from typing import Any

from _files import data_text
from _report import banner, loadavg, machine_info
from pensieve.config import resolve_cache_dir
from pensieve.engine.cache import PromptCache
from pensieve.engine.decoding import decode
from pensieve.engine.generation import Cancellation
from pensieve.engine.loading import CPUProfile, load_model
from pensieve.engine.request import SamplingParams
from pensieve.models.resolve import resolve_model

LENGTHS = (100, 1000, 4000)
MODES: dict[str, int | None] = {"fp": None, "8-bit": 8, "4-bit": 4}


def prompts(tokenizer: Any) -> list[list[int]]:
    """A chat-rendered question after a long document, cut to each length."""
    text = data_text("agent_session_system.txt")
    document = tokenizer.encode(text, add_special_tokens=False)
    document = document * (1 + max(LENGTHS) // len(document))
    question = "\n\nSummarise the text above in three sentences."
    rendered = []
    for length in LENGTHS:
        body = tokenizer.decode(document[: max(0, length - 40)])
        turns = [{"role": "user", "content": body + question}]
        text = tokenizer.apply_chat_template(
            turns, tokenize=False, add_generation_prompt=True
        )
        rendered.append(tokenizer.encode(text, add_special_tokens=False))
    return rendered


def run(loaded: Any, tokens: list[int], bits: int | None, new: int) -> dict[str, Any]:
    """One greedy generation: its tokens, speeds and KV size per token."""
    cache = PromptCache(max_entries=1, max_bytes=1 << 40)
    sampling = SamplingParams(max_tokens=new, temperature=0.0)
    started, texts, first = time.perf_counter(), [], None
    steps = decode(
        loaded,
        tokens,
        sampling,
        prefill_step_size=512,
        prompt_cache=cache,
        cancellation=Cancellation(),
        kv_bits=bits,
    )
    next(steps)  # the step that says what the prompt cache gave: nothing here
    for step in steps:
        first = first or time.perf_counter()
        texts.append(step.text)
    ended = time.perf_counter()
    entry = cache._entries[-1] if len(cache) else None
    return {
        "texts": texts,
        "prefill_tps": len(tokens) / ((first or ended) - started),
        "decode_tps": (len(texts) - 1) / max(1e-9, ended - (first or ended)),
        # mlx-lm allocates KV in steps of 256 tokens: short prompts look dearer.
        "kv_bytes_per_token": entry.nbytes / len(entry.tokens) if entry else None,
    }


def agreement(reference: list[str], other: list[str]) -> float:
    same = 0
    for left, right in zip(reference, other, strict=False):
        if left != right:
            break
        same += 1
    return same / max(1, len(reference))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--new-tokens", type=int, default=64)
    args = parser.parse_args()
    bundled = resolve_model("bundled", cache_dir=resolve_cache_dir(), fallback=False)
    loaded = load_model(bundled.path, CPUProfile())  # before anything imports mlx
    info = machine_info()
    print(banner("kv_quant", info), flush=True)
    rows = []
    for tokens in prompts(loaded.tokenizer):
        runs = {
            mode: run(loaded, tokens, bits, args.new_tokens)
            for mode, bits in MODES.items()
        }
        for mode, figures in runs.items():
            figures["agreement"] = agreement(runs["fp"]["texts"], figures["texts"])
            rows.append({"prompt_tokens": len(tokens), "kv": mode, **figures})
            print(
                f"  {len(tokens):>5} tokens, {mode:>5} KV: greedy agreement "
                f"{figures['agreement']:.0%}, prefill {figures['prefill_tps']:.0f} "
                f"tok/s, decode {figures['decode_tps']:.1f} tok/s, KV "
                f"{(figures['kv_bytes_per_token'] or 0) / 1024:.1f} KiB/token",
                flush=True,
            )
    summary = {**info, "loadavg_end": loadavg(), "rows": rows}
    for row in rows:
        row.pop("texts")
    print("JSON:", json.dumps(summary))
    return 0


if __name__ == "__main__":
    sys.exit(main())
