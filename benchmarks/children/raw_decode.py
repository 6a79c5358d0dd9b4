"""Load and decode with plain mlx-lm, as skeleton.py's baseline for the server.

Runs in a fresh interpreter (skeleton.py measures its start-up and its import
of mlx): argv = [model_dir, prompt, max_tokens]. Renders the prompt with the
chat template as pensieve.engine.prompt.render_prompt does, decodes greedily
with mlx_lm.stream_generate and prints one RESULT line.
"""

from __future__ import annotations

import json
import sys
import time


def main() -> None:
    """Time the import, the load and the decode; print the RESULT line."""
    started = time.time()
    t0 = time.perf_counter()
    import mlx.core as mx
    from mlx_lm import load, stream_generate
    from mlx_lm.sample_utils import make_sampler

    import_s = time.perf_counter() - t0

    model_dir, prompt, max_tokens = sys.argv[1], sys.argv[2], int(sys.argv[3])
    t0 = time.perf_counter()
    model, tokenizer = load(model_dir)
    load_s = time.perf_counter() - t0

    text = tokenizer.apply_chat_template(
        [{"role": "user", "content": prompt}],
        tokenize=False,
        add_generation_prompt=True,
    )
    ids = tokenizer.encode(text, add_special_tokens=False)
    pieces, stamps, last = [], [], None
    t0 = time.perf_counter()
    for response in stream_generate(
        model, tokenizer, ids, max_tokens=max_tokens, sampler=make_sampler(temp=0.0)
    ):
        stamps.append(time.perf_counter())
        pieces.append(response.text)
        last = response
    total_s = time.perf_counter() - t0
    stop = last.finish_reason == "stop"
    figures = {
        "started_at": started,
        "import_s": import_s,
        "load_s": load_s,
        "device": str(mx.default_device()),
        "prompt_tokens": last.prompt_tokens,
        "prompt_tps": last.prompt_tps,
        # generation_tokens counts the end-of-turn token when there is one.
        "output_tokens": last.generation_tokens - (1 if stop else 0),
        "finish_reason": last.finish_reason,
        "generation_tps": last.generation_tps,
        "first_to_last_s": stamps[-1] - stamps[0],
        "total_s": total_s,
        "text": "".join(pieces),
    }
    print("RESULT " + json.dumps(figures))


if __name__ == "__main__":
    main()
