"""Greedy tokens of a chat prompt alone, with each step's top-2 logit margin.

`python tests/greedy_margins.py MODEL_DIR STEPS PROMPT` loads the model the
way the server does (CPU profile on) and prints, as JSON, one `[text, margin]`
per greedy token: the token's text and how far its logit is ahead of the
runner-up's. A batched output may leave the solo one only where that margin
is within rounding (tests/test_batching_e2e.py).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from pensieve.engine import ChatMessage
from pensieve.engine.loading import CPUProfile, load_model
from pensieve.engine.prompt import render_prompt


def main(model_dir: str, steps: str, text: str) -> None:
    loaded = load_model(Path(model_dir), CPUProfile())
    import mlx.core as mx  # only now: the profile routes BLAS before mlx loads
    from mlx_lm.generate import generate_step

    tokenizer = loaded.tokenizer
    prompt = render_prompt(tokenizer, [ChatMessage("user", text)], [])
    tokens = []
    for token, logprobs in generate_step(
        mx.array(prompt), loaded.model, max_tokens=int(steps)
    ):
        if token in tokenizer.eos_token_ids:
            break
        top = mx.sort(logprobs)[-2:].tolist()
        tokens.append([tokenizer.decode([token]), top[1] - top[0]])
    print(json.dumps(tokens))


if __name__ == "__main__":
    main(*sys.argv[1:4])
