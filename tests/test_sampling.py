"""The engine's own limits, on the real functions: what fits the window, and
the one place sampling settings are made effective."""

from __future__ import annotations

import pytest

from pensieve.engine import (
    PromptTooLong,
    SamplingParams,
    effective_sampling,
    fit_prompt,
)


def test_a_prompt_fits_when_one_new_token_does() -> None:
    prompt = fit_prompt(list(range(63)), context_length=64, cached=5)
    assert (prompt.input_tokens, prompt.max_new_tokens) == (63, 1)
    assert prompt.cached_estimate == 5
    with pytest.raises(PromptTooLong) as raised:
        fit_prompt(list(range(100)), context_length=64)
    assert str(raised.value) == "prompt is too long: 100 tokens > 63 maximum"


@pytest.mark.parametrize(
    ("asked", "room", "runs"),
    [(10, 4, 4), (3, 4, 3), (None, 4, 4), (None, 1, 1)],
)
def test_max_tokens_is_reduced_to_what_fits(
    asked: int | None, room: int, runs: int
) -> None:
    sampling = effective_sampling(
        SamplingParams(max_tokens=asked), room=room, max_temperature=2.0
    )
    assert sampling.max_tokens == runs


def test_the_temperature_is_capped_and_the_rest_kept() -> None:
    asked = SamplingParams(
        max_tokens=5, temperature=1.0, top_p=0.9, top_k=40, stop_sequences=("X",)
    )
    capped = effective_sampling(asked, room=100, max_temperature=0.3)
    assert capped.temperature == 0.3
    assert (capped.top_p, capped.top_k, capped.stop_sequences) == (0.9, 40, ("X",))
    cooler = SamplingParams(max_tokens=5, temperature=0.1)
    assert effective_sampling(cooler, room=100, max_temperature=0.3).temperature == 0.1


def test_a_seeded_sampler_draws_the_same_whatever_else_draws() -> None:
    import mlx.core as mx

    from pensieve.engine.batching import sampler_for

    logprobs = mx.log(mx.softmax(mx.arange(64, dtype=mx.float32)[None] / 16))

    def draws(seed: int, interleaved: bool) -> list[int]:
        sample, tokens = sampler_for(SamplingParams(temperature=1.0, seed=seed)), []
        for _ in range(12):
            if interleaved:  # another sequence of the batch draws meanwhile
                mx.eval(mx.random.categorical(logprobs))
            tokens.append(sample(logprobs).item())
        return tokens

    assert draws(7, interleaved=False) == draws(7, interleaved=True)
    assert draws(7, interleaved=False) != draws(8, interleaved=False)
    assert sampler_for(SamplingParams(temperature=0)) is None  # the batch's argmax
