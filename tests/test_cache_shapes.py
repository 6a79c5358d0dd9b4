"""Every cache shape the models use, through Pensieve's prompt cache.

Tiny random-weight models of mlx-lm's own architectures: plain KV (with the
sliding-window layers of Gemma 3, rotating once the window is full), a hybrid
of attention and gated-delta layers (Qwen3-Next, as Qwen3.5/3.6), and Mamba's
recurrent state alone. A cache hit must give the greedy tokens an uncached run
gives, or be refused.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import mlx.core as mx
import pytest
from mlx_lm.models import gemma3_text, mamba, qwen3_next
from mlx_lm.tokenizer_utils import load as load_tokenizer

from pensieve.engine.cache import PromptCache
from pensieve.engine.decoding import decode
from pensieve.engine.generation import Cancellation
from pensieve.engine.loading import LoadedModel
from pensieve.engine.request import SamplingParams

VOCAB = 49152 + 64  # the bundled tokenizer's, and room for its added tokens


def gemma(window: int) -> Any:
    return gemma3_text.Model(
        gemma3_text.ModelArgs(
            model_type="gemma3_text",
            hidden_size=64,
            num_hidden_layers=4,
            intermediate_size=128,
            num_attention_heads=2,
            head_dim=32,
            vocab_size=VOCAB,
            num_key_value_heads=1,
            query_pre_attn_scalar=32,
            sliding_window=window,
            sliding_window_pattern=2,
        )
    )


def hybrid() -> Any:
    return qwen3_next.Model(
        qwen3_next.ModelArgs(
            model_type="qwen3_next",
            hidden_size=64,
            num_hidden_layers=4,
            intermediate_size=128,
            num_attention_heads=2,
            linear_num_value_heads=2,
            linear_num_key_heads=2,
            linear_key_head_dim=16,
            linear_value_head_dim=16,
            linear_conv_kernel_dim=4,
            num_experts=0,
            num_experts_per_tok=1,
            decoder_sparse_step=1,
            shared_expert_intermediate_size=64,
            mlp_only_layers=[0, 1, 2, 3],
            moe_intermediate_size=64,
            rms_norm_eps=1e-6,
            vocab_size=VOCAB,
            num_key_value_heads=1,
            rope_theta=10000.0,
            partial_rotary_factor=0.5,
            max_position_embeddings=4096,
            head_dim=32,
            full_attention_interval=2,
        )
    )


def recurrent() -> Any:
    return mamba.Model(
        mamba.ModelArgs(
            model_type="mamba",
            vocab_size=VOCAB,
            hidden_size=64,
            intermediate_size=128,
            state_size=8,
            num_hidden_layers=2,
            conv_kernel=4,
            use_bias=False,
            use_conv_bias=True,
            time_step_rank=8,
        )
    )


MODELS: dict[str, Callable[[], Any]] = {
    "sliding-window-rotated": lambda: gemma(16),  # the prompt outgrows the window
    "sliding-window-within": lambda: gemma(256),
    "hybrid-gated-delta": hybrid,
    "recurrent-only": recurrent,
}


@pytest.fixture(scope="module")
def tokenizer(bundled_model_dir: Path) -> Any:
    return load_tokenizer(bundled_model_dir)


def loaded_model(make: Callable[[], Any], tokenizer: Any) -> LoadedModel:
    mx.random.seed(0)
    model = make()
    mx.eval(model.parameters())
    return LoadedModel(model, tokenizer, 4096, "cpu", 0.0)


def greedy(
    loaded: LoadedModel,
    tokens: list[int],
    cache: PromptCache,
    *,
    max_tokens: int = 12,
    kv_bits: int | None = None,
) -> tuple[int, list[str]]:
    """(tokens reused from `cache`, the greedy pieces of text)."""
    sampling = SamplingParams(max_tokens=max_tokens, temperature=0.0)
    steps = decoded(loaded, tokens, cache, sampling, kv_bits=kv_bits)
    return steps[0].cached or 0, [step.text for step in steps[1:]]


def decoded(
    loaded: LoadedModel,
    tokens: list[int],
    cache: PromptCache,
    sampling: SamplingParams,
    *,
    kv_bits: int | None = None,
) -> list[Any]:
    """Every step of one decode (the first says what the cache gave)."""
    steps = decode(
        loaded,
        tokens,
        sampling,
        prefill_step_size=512,
        prompt_cache=cache,
        cancellation=Cancellation(),
        kv_bits=kv_bits,
    )
    return list(steps)


def uncached() -> PromptCache:
    return PromptCache(max_entries=0, max_bytes=0)


@pytest.mark.parametrize("shape", sorted(MODELS))
def test_a_hit_on_the_whole_previous_turn_answers_as_an_uncached_run(
    shape: str, tokenizer: Any
) -> None:
    loaded = loaded_model(MODELS[shape], tokenizer)
    cache = PromptCache(max_entries=4, max_bytes=1 << 30)
    first = list(range(100, 140))
    greedy(loaded, first, cache)
    held = [entry.tokens for entry in cache._entries]
    second = (held[0] if held else first) + list(range(300, 310))
    reused, warm = greedy(loaded, second, cache)
    assert warm == greedy(loaded, second, uncached())[1]
    if shape == "recurrent-only":
        assert reused == 0  # a state of unknown extent is never reused
    else:
        assert reused == len(held[0]) > len(first)  # the answer's tokens too


@pytest.mark.parametrize("shape", sorted(MODELS))
def test_a_hit_on_part_of_an_entry_is_cut_right_or_refused(
    shape: str, tokenizer: Any
) -> None:
    """A prompt that leaves the cached one halfway: trimmable caches start
    from the shared half; rotated windows and recurrent states refuse."""
    loaded = loaded_model(MODELS[shape], tokenizer)
    cache = PromptCache(max_entries=4, max_bytes=1 << 30)
    greedy(loaded, list(range(100, 140)), cache)
    other = list(range(100, 120)) + list(range(500, 520))
    reused, warm = greedy(loaded, other, cache)
    assert warm == greedy(loaded, other, uncached())[1]
    assert reused == (20 if shape == "sliding-window-within" else 0)


def test_quantized_kv_is_cached_and_reused(bundled_model_dir: Path) -> None:
    """PENSIEVE_KV_BITS=8 on the bundled model: entries hold quantized KV and
    are reused. Not asserted: equality with an uncached run. An uncached
    prefill attends to its own chunk at full precision, a hit to quantized KV,
    so the two differ by quantization noise (measured: greedy text parts after
    a few tokens here), which is why KV_BITS is off by default."""
    from mlx_lm import load
    from mlx_lm.models.cache import QuantizedKVCache

    model, tokenizer = load(str(bundled_model_dir))
    loaded = LoadedModel(model, tokenizer, 8192, "cpu", 0.0)

    def run(tokens: list[int], cache: PromptCache) -> tuple[int, list[str]]:
        return greedy(loaded, tokens, cache, max_tokens=8, kv_bits=8)

    cache = PromptCache(max_entries=4, max_bytes=1 << 30)
    first = tokenizer.encode("The capital of France is")
    run(first, cache)
    [entry] = cache._entries
    assert all(isinstance(layer, QuantizedKVCache) for layer in entry.kv)
    second = entry.tokens + tokenizer.encode(" and of Italy", add_special_tokens=False)
    reused, warm = run(second, cache)
    assert reused == len(entry.tokens) and warm  # it answers (maybe briefly)


def test_a_failed_sampler_spoils_neither_later_requests_nor_the_cache(
    tokenizer: Any,
) -> None:
    """mlx-lm's compiled top-k fails past the vocabulary, leaving mlx's random
    state without a value (every later sampled request then failed). The
    engine refuses such a top_k first; behind that, decode reseeds and keeps
    no KV of the failed run."""
    loaded = loaded_model(MODELS["sliding-window-within"], tokenizer)
    cache = PromptCache(max_entries=4, max_bytes=1 << 30)
    tokens = list(range(100, 140))

    def sample(top_k: int) -> list[Any]:
        sampling = SamplingParams(max_tokens=3, temperature=1.0, top_k=top_k)
        return decoded(loaded, tokens, cache, sampling)

    with pytest.raises(ValueError, match="top_k"):
        sample(top_k=10**6)
    assert len(cache) == 0  # nothing kept of the failed run
    assert len(sample(top_k=0)) == 4  # the first step, then 3 tokens
    assert len(cache) == 1
