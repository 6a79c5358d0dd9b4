"""Decoding on the inference thread: one Step per token, from the prompt cache.

Everything here touches mlx and must run on the engine's one inference
thread (mlx streams are thread-local). The token loop is mlx-lm's own
`stream_generate`; this module adds what a server needs around it: the prompt
cache (start from the longest cached prefix, store the KV back, even of a
cancelled generation), cancellation between prefill chunks, the constraint
as a logits processor, and a seed.
"""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, Literal

from .cache import PromptCache
from .loading import LoadedModel
from .request import SamplingParams
from .tools import Constraint

# How a decode ended: the model's end of turn, or the token limit.
DecodeFinish = Literal["end_turn", "max_tokens"]
FINISH_OF = {"stop": "end_turn", "length": "max_tokens"}  # mlx-lm's names


@dataclass(frozen=True)
class Step:
    """One decoded token's text; `finish` is set on the last step.

    The first step of every generation carries no text, only `cached`: how
    many prompt tokens came from the prompt cache.
    """

    text: str
    finish: DecodeFinish | None = None
    cached: int | None = None


class Cancelled(Exception):
    """The request went away; raised between prefill chunks."""


@dataclass
class Cancellation:
    """Set from the request's greenlet, read on the inference thread."""

    requested: bool = False

    def check(self, *_: Any) -> None:
        if self.requested:
            raise Cancelled


def decode(
    loaded: LoadedModel,
    token_ids: list[int],
    sampling: SamplingParams,
    *,
    prefill_step_size: int,
    prompt_cache: PromptCache,
    cancellation: Cancellation,
    constraint: Constraint | None = None,
    kv_bits: int | None = None,
) -> Iterator[Step]:
    """Generate from `token_ids`, one Step per token. Runs on the inference thread.

    `sampling.max_tokens` must be set (see `effective_sampling`). Starts from
    the longest cached prefix, and stores the KV it built (even of a
    cancelled or stopped generation) back into the prompt cache.
    """
    import mlx.core as mx
    from mlx_lm.models.cache import make_prompt_cache

    assert sampling.max_tokens is not None, "effective_sampling sets it"
    if sampling.seed is not None:
        mx.random.seed(sampling.seed)  # global, and safe: one generation at a time
    hit = prompt_cache.take(token_ids)
    kv = hit.kv if hit.kv is not None else make_prompt_cache(loaded.model)
    reserve(kv, len(token_ids) - hit.reused)
    yield Step("", cached=hit.reused)
    generated: list[int] = []
    failed = False
    try:
        responses = stream_generate(
            loaded,
            token_ids[hit.reused :],
            sampling,
            kv,
            prefill_step_size=prefill_step_size,
            processors=[constraint.build(loaded)] if constraint is not None else None,
            kv_bits=kv_bits,
            progress=cancellation.check,
        )
        for response in responses:
            if not generated:  # the prompt is in: grow by mlx-lm's steps again
                reserve(kv, 0)
            generated.append(response.token)
            finish = FINISH_OF.get(response.finish_reason or "")
            yield Step(response.text, finish)  # type: ignore[arg-type]
    except Cancelled:
        raise
    except Exception:
        # A failed compiled step (a sampler's, say) leaves mlx's random state
        # without a value: every later sampled request would fail. Its KV may
        # be half-built: it is not kept.
        mx.random.seed(secrets.randbits(64))
        failed = True
        raise
    finally:
        if not failed:
            keep_held(prompt_cache, token_ids + generated, kv)


def stream_generate(
    loaded: LoadedModel,
    tokens: list[int],
    sampling: SamplingParams,
    kv: list[Any],
    *,
    prefill_step_size: int,
    processors: list[Any] | None,
    kv_bits: int | None,
    progress: Any,
) -> Iterator[Any]:
    """mlx-lm's `stream_generate` from `kv`, with the request's sampler."""
    import mlx.core as mx
    from mlx_lm.generate import stream_generate as generate
    from mlx_lm.sample_utils import make_sampler

    return generate(
        loaded.model,
        loaded.tokenizer,
        mx.array(tokens),
        max_tokens=sampling.max_tokens,
        sampler=make_sampler(
            temp=sampling.temperature,
            top_p=sampling.top_p or 0.0,
            top_k=sampling.top_k or 0,
        ),
        prompt_cache=kv,
        logits_processors=processors,
        prefill_step_size=prefill_step_size,
        # Quantized from the first token (mlx-lm's default waits for 5,000).
        **({"kv_bits": kv_bits, "quantized_kv_start": 0} if kv_bits else {}),
        prompt_progress_callback=progress,
    )


def reserve(kv: list[Any], tokens: int) -> None:
    """Make the plain KV layers' next growth room for `tokens` more at once
    (0: back to mlx-lm's 256-token steps).

    mlx-lm grows a KV buffer by the chunk it is given, copying all it holds
    each time: a 20k-token prompt in 512-token chunks copies ~20x its KV
    (~160 GB for Phi-3-mini) and churns the allocator. Reserved, the prompt
    is written in place, and the buffer is the size it would end up anyway.
    """
    from mlx_lm.models.cache import KVCache

    for layer in kv:
        if type(layer) is not KVCache:
            continue
        if tokens > KVCache.step:
            layer.step = -(-tokens // KVCache.step) * KVCache.step
        else:
            layer.__dict__.pop("step", None)


def held_tokens(kv: list[Any]) -> int | None:
    """How many tokens the caches hold: the offset of the attention layers.
    Recurrent layers (Qwen3.5's gated delta, Mamba) keep a state without one;
    a hybrid model's attention layers say how far that state got. A model of
    recurrent layers only is not cached (None): its state's extent is unknown."""
    offsets = [layer.offset for layer in kv if hasattr(layer, "offset")]
    return offsets[0] if offsets else None


def keep_held(cache: PromptCache, known: list[int], kv: list[Any]) -> None:
    """Store `kv` in `cache` under the tokens it holds, the first of `known`;
    nothing where it holds more than `known` or its extent is unknown."""
    held = held_tokens(kv)
    if held is not None and held <= len(known):
        cache.store(known[:held], kv)
