"""Teacher-forced logits for a few chat prompts, for comparing CPU profiles.

`python tests/greedy_tokens.py MODEL_DIR on|off OUT.npz [SEQUENCES.npz]` loads
the model the way the engine does, with the CPU profile on or off (the BLAS
routing is process-wide, so each setting needs a process of its own). Without
SEQUENCES it first generates 24 greedy tokens per prompt; with SEQUENCES it
scores those same sequences. Either way it saves each sequence and the logits
that predicted its generated tokens.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np

from pensieve.engine import ChatMessage
from pensieve.engine.loading import CPUProfile, load_model
from pensieve.engine.prompt import render_prompt

PROMPTS = [
    "What is the capital of France?",
    "Write a haiku about the sea.",
    "List three prime numbers.",
]
STEPS = 24


def main(model_dir: str, profile: str, out: str, sequences: str | None = None) -> None:
    loaded = load_model(Path(model_dir), CPUProfile(enabled=profile == "on"))
    import mlx.core as mx  # only now: the profile routes BLAS before mlx loads
    from mlx_lm.generate import generate_step

    given = np.load(sequences) if sequences else None
    saved: dict[str, np.ndarray] = {}
    for index, text in enumerate(PROMPTS):
        prompt = render_prompt(loaded.tokenizer, [ChatMessage("user", text)], [])
        if given is not None:
            sequence = given[f"sequence{index}"].tolist()
        else:
            steps = generate_step(mx.array(prompt), loaded.model, max_tokens=STEPS)
            sequence = prompt + [token for token, _ in steps]
        logits = loaded.model(mx.array(sequence)[None])[0, len(prompt) - 1 : -1]
        saved[f"sequence{index}"] = np.array(sequence)
        saved[f"logits{index}"] = np.array(logits.astype(mx.float32))
    np.savez(out, **saved)
    print(json.dumps({"profile": list(loaded.profile)}))


if __name__ == "__main__":
    main(*sys.argv[1:5])
