"""The GGUF importer checked against an independent reference: transformers.

transformers reads the bundled GGUF with its own loader (gguf-py dequantises
every block to float32 and undoes llama.cpp's RoPE permutation in numpy) and
rebuilds the tokenizer from the same metadata. Our import keeps the blocks
quantised in MLX. Both must give the same token ids, the same greedy
continuations, and next-token logits equal up to rounding (see the tolerances).
"""

from __future__ import annotations

import importlib.util
import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from pensieve.models.bundled import bundled_gguf_path

GREEDY_STEPS = 24
MIN_AGREEING_STEPS = 20

# Both sides dequantise the very same Q4_1 / Q8_0 blocks exactly. What differs is
# precision: mlx-lm's quantised embedding returns the dtype of its block scales,
# float16, so the residual stream starts rounded to fp16 (relative 2**-11); the
# reference stays in float32 (with the embedding scales cast to float32 the gap
# falls to ~1e-4). Measured: at most ~0.013 on the first step, and up to ~0.044
# later on, on logits of magnitude 20-40 (largest after the end-of-turn token,
# where the context is unusual). A real importer error is far outside both: a
# wrong rope_theta moves the first-step logits by ~5.0, one layer's k_proj left
# RoPE-permuted by ~5.6.
FIRST_STEP_TOLERANCE = 0.05
ALL_STEPS_TOLERANCE = 0.1
# A reference top-2 gap this small is a near-tie that rounding noise may flip.
NEAR_TIE_MARGIN = 2 * FIRST_STEP_TOLERANCE

TOKENIZER_SAMPLES = [
    "Hello, world!",
    "1234567890 and 3.14159, on 2024-05-17 at 09:30",
    "naïve café – Ünïcödé 東京 日本語 Привет мир",
    "emoji 🤖🚀👍🏽 and a family 👨\u200d👩\u200d👧",
    "  leading and   multiple spaces\n\nnew\tlines\r\n  ",
    "don't I'll we've THEY'RE",
    "def f(x):\n    return x**2  # square",
    "<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n",
    "a<|im_start|>b<|endoftext|>c<|im_end|>",
    "<|im_start|",
    "\u200b\u00a0zero width and no-break space",
    "",
    # Not sampled: numerics outside 0-9 such as "½ ²". SmolLM's pre-tokenizer (and
    # llama.cpp's "smollm" one) isolates every numeric character; transformers'
    # GGUF conversion omits that step and merges " ²" into one token.
]

CHATS: dict[str, list[dict[str, str]]] = {
    "capital": [{"role": "user", "content": "What is the capital of France?"}],
    "haiku": [{"role": "user", "content": "Write a haiku about autumn."}],
    "primes": [
        {"role": "system", "content": "You are terse."},
        {"role": "user", "content": "List three prime numbers."},
    ],
}

TEMPLATE_CHATS = [
    *CHATS.values(),
    [
        {"role": "user", "content": "Hi! 👋"},
        {"role": "assistant", "content": "Hello. How can I help?"},
        {"role": "user", "content": "Count: 1, 2, 3…"},
    ],
]


@dataclass(frozen=True)
class Reference:
    """The transformers model and tokenizer read from the GGUF file itself."""

    model: Any
    tokenizer: Any


@dataclass(frozen=True)
class Imported:
    """Our imported directory loaded by mlx-lm, as the server loads it."""

    model: Any
    tokenizer: Any  # mlx_lm's TokenizerWrapper


def _load_reference_model(gguf: Path) -> Any:
    """transformers' GGUF loader on CPU, in float32."""
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM

    if importlib.util.find_spec("accelerate") is not None:
        return AutoModelForCausalLM.from_pretrained(
            gguf.parent, gguf_file=gguf.name, dtype=torch.float32
        )
    # from_pretrained insists on accelerate for GGUF files; the loader it calls
    # does not need it, so without accelerate it is called directly.
    from transformers.modeling_gguf_pytorch_utils import load_gguf_checkpoint

    config = AutoConfig.from_pretrained(gguf.parent, gguf_file=gguf.name)
    model = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    parsed = load_gguf_checkpoint(
        str(gguf), return_tensors=True, model_to_load=model, torch_dtype=torch.float32
    )
    result = model.load_state_dict(parsed["tensors"], strict=False)
    assert not result.unexpected_keys, result.unexpected_keys
    assert set(result.missing_keys) <= {"lm_head.weight"}, result.missing_keys
    model.tie_weights()
    assert model.lm_head.weight is model.model.embed_tokens.weight
    return model


@pytest.fixture(scope="module")
def reference() -> Reference:
    """The reference, loaded once for this module (about 20 s on two cores)."""
    pytest.importorskip("torch")
    from transformers import AutoTokenizer

    gguf = bundled_gguf_path()
    started = time.monotonic()
    model = _load_reference_model(gguf).eval()
    tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    print(f"\n[reference] transformers GGUF load: {time.monotonic() - started:.1f} s")
    return Reference(model=model, tokenizer=tokenizer)


@pytest.fixture(scope="module")
def imported(bundled_model_dir: Path) -> Imported:
    """The imported directory through `mlx_lm.load`."""
    from mlx_lm import load

    model, tokenizer = load(str(bundled_model_dir))
    return Imported(model=model, tokenizer=tokenizer)


def test_config_matches_reference(
    bundled_model_dir: Path, reference: Reference
) -> None:
    """Settings too subtle for the logits to reveal (rms_norm_eps 1e-5 against
    1e-6 moves them by ~0.015 only) are compared directly."""
    ours = json.loads((bundled_model_dir / "config.json").read_text())
    ref = reference.model.config
    rope = getattr(ref, "rope_parameters", None) or {}
    ref_theta = rope.get("rope_theta", getattr(ref, "rope_theta", None))
    for key in (
        "hidden_size",
        "num_hidden_layers",
        "intermediate_size",
        "num_attention_heads",
        "num_key_value_heads",
        "head_dim",
        "max_position_embeddings",
        "vocab_size",
        "tie_word_embeddings",
        "bos_token_id",
        "eos_token_id",
    ):
        assert ours[key] == getattr(ref, key), key
    assert ours["rms_norm_eps"] == pytest.approx(ref.rms_norm_eps, rel=1e-6), (
        ours["rms_norm_eps"],
        ref.rms_norm_eps,
    )
    assert ours["rope_theta"] == pytest.approx(ref_theta, rel=1e-6), (
        ours["rope_theta"],
        ref_theta,
    )


def _reference_chat_ids(
    tokenizer: Any, chat: list[dict[str, str]], gen: bool
) -> list[int]:
    ids = tokenizer.apply_chat_template(
        chat, add_generation_prompt=gen, tokenize=True, return_dict=False
    )
    return list(ids)


def _our_chat_ids(tokenizer: Any, chat: list[dict[str, str]], gen: bool) -> list[int]:
    """Rendered the way the server's `render_prompt` renders a prompt."""
    text = tokenizer.apply_chat_template(
        chat, tokenize=False, add_generation_prompt=gen
    )
    return tokenizer.encode(text, add_special_tokens=False)


def test_tokenizer_matches_reference(imported: Imported, reference: Reference) -> None:
    ours, ref = imported.tokenizer, reference.tokenizer
    assert ours.get_vocab() == ref.get_vocab()
    for name in ("bos_token", "eos_token", "unk_token", "pad_token"):
        assert getattr(ours, name) == getattr(ref, name), name
    assert sorted(ours.all_special_tokens) == sorted(ref.all_special_tokens)
    assert ours.chat_template == ref.chat_template

    for text in TOKENIZER_SAMPLES:
        expected = ref.encode(text, add_special_tokens=False)
        assert ours.encode(text, add_special_tokens=False) == expected, repr(text)
        assert ours.encode(text) == ref.encode(text), repr(text)
        assert ours.decode(expected) == text, repr(text)
    assert ours.encode("<|im_start|>", add_special_tokens=False) == [
        ref.convert_tokens_to_ids("<|im_start|>")
    ]

    for chat in TEMPLATE_CHATS:
        for gen in (True, False):
            expected_text = ref.apply_chat_template(
                chat, add_generation_prompt=gen, tokenize=False
            )
            assert (
                ours.apply_chat_template(
                    chat, add_generation_prompt=gen, tokenize=False
                )
                == expected_text
            )
            assert _our_chat_ids(ours, chat, gen) == _reference_chat_ids(ref, chat, gen)
    print(
        f"\n[tokenizer] {len(TOKENIZER_SAMPLES)} strings and "
        f"{2 * len(TEMPLATE_CHATS)} chat renderings agree"
    )


def _mlx_greedy(imported: Imported, prompt: list[int]) -> tuple[list[int], np.ndarray]:
    """Greedy tokens from mlx-lm's `generate_step` and the raw logits of each step."""
    import mlx.core as mx
    from mlx_lm.generate import generate_step

    captured: list[mx.array] = []

    def record(tokens: mx.array, logits: mx.array) -> mx.array:
        captured.append(logits)
        return logits

    tokens = [
        token
        for token, _ in generate_step(
            mx.array(prompt),
            imported.model,
            max_tokens=GREEDY_STEPS,
            logits_processors=[record],
        )
    ]
    # generate_step runs one forward pass ahead of what it yields, so one more
    # logits row than tokens is captured.
    logits = np.stack([np.array(row[0].astype(mx.float32)) for row in captured])
    return tokens, logits[: len(tokens)]


def _torch_greedy(reference: Reference, prompt: list[int]) -> list[int]:
    """The reference's own greedy continuation (not stopping at end of turn)."""
    import torch

    with torch.no_grad():
        out = reference.model(torch.tensor([prompt]), use_cache=True)
        tokens: list[int] = []
        for _ in range(GREEDY_STEPS):
            token = int(out.logits[0, -1].argmax())
            tokens.append(token)
            out = reference.model(
                torch.tensor([[token]]),
                past_key_values=out.past_key_values,
                use_cache=True,
            )
    return tokens


def _common_prefix(a: list[int], b: list[int]) -> int:
    return next(
        (i for i, (x, y) in enumerate(zip(a, b, strict=False)) if x != y),
        min(len(a), len(b)),
    )


@pytest.mark.parametrize("chat_name", list(CHATS))
def test_greedy_decoding_matches_reference(
    chat_name: str, imported: Imported, reference: Reference
) -> None:
    import torch

    chat = CHATS[chat_name]
    prompt = _reference_chat_ids(reference.tokenizer, chat, gen=True)
    assert _our_chat_ids(imported.tokenizer, chat, gen=True) == prompt

    started = time.monotonic()
    mlx_tokens, mlx_logits = _mlx_greedy(imported, prompt)
    mlx_seconds = time.monotonic() - started
    assert len(mlx_tokens) == GREEDY_STEPS

    # The reference teacher-forced on MLX's sequence: the logits row of each step
    # sees exactly the history MLX saw, so one early flip cannot cascade.
    with torch.no_grad():
        sequence = torch.tensor([prompt + mlx_tokens[:-1]])
        ref_logits = reference.model(sequence).logits[0, len(prompt) - 1 :].numpy()
    assert ref_logits.shape == mlx_logits.shape

    diff = np.abs(ref_logits - mlx_logits).max(axis=-1)
    ref_top2 = np.sort(ref_logits, axis=-1)[:, -2:]
    margins = ref_top2[:, 1] - ref_top2[:, 0]
    ref_choice = ref_logits.argmax(axis=-1)
    disagreements = [
        f"step {i}: mlx {mlx_tokens[i]} vs reference {int(ref_choice[i])} "
        f"(reference top-2 margin {margins[i]:.4f}, "
        f"{'near-tie' if margins[i] < NEAR_TIE_MARGIN else 'NOT a near-tie'}; "
        f"logit diff {diff[i]:.4f})"
        for i in range(GREEDY_STEPS)
        if mlx_tokens[i] != ref_choice[i]
    ]
    agreeing = GREEDY_STEPS - len(disagreements)

    torch_tokens = _torch_greedy(reference, prompt)
    prefix = _common_prefix(mlx_tokens, torch_tokens)

    print(
        f"\n[greedy:{chat_name}] prompt {len(prompt)} tokens; "
        f"top-1 agreement (teacher-forced) {agreeing}/{GREEDY_STEPS}; "
        f"free-running sequences agree for {prefix}/{GREEDY_STEPS} tokens; "
        f"first-step max |logit diff| {diff[0]:.4f}, over all steps {diff.max():.4f}; "
        f"smallest reference top-2 margin {margins.min():.4f}; "
        f"mlx {mlx_seconds:.1f} s"
    )
    for line in disagreements:
        print(f"  divergence {line}")

    assert diff[0] < FIRST_STEP_TOLERANCE, (
        f"first-step logits differ by {diff[0]:.4f} (tolerance {FIRST_STEP_TOLERANCE})"
    )
    assert agreeing >= MIN_AGREEING_STEPS, (
        f"{chat_name}: top-1 agrees on {agreeing}/{GREEDY_STEPS} steps only; "
        + "; ".join(disagreements)
    )
    assert diff.max() < ALL_STEPS_TOLERANCE, (
        f"{chat_name}: logits differ by up to {diff.max():.4f} at step "
        f"{int(diff.argmax())} (tolerance {ALL_STEPS_TOLERANCE})"
    )
