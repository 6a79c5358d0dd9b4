"""Continuous batching: every running request is a sequence of one batch.

Everything here runs on the engine's one inference thread. The batch is
mlx-lm's `BatchGenerator`, which already keeps a sampler, logits processors
(the request's constraint), a token limit and a KV cache per sequence, and
prefills newcomers in chunks between decode steps. The `Scheduler` adds what
a server needs around it:

- Requests pull their steps. A pull that finds none waiting runs one step of
  the whole batch (a decode step of the sequences past their prompt and one
  chunk of the prompts being prefilled), which leaves a Step for every
  decoding sequence; so the batch goes as fast as its readers ask.
- While sequences decode, a newcomer's prompt is prefilled in chunks sized to
  take `PREFILL_SHARE` of a decode step (both timed as they run), so the
  running streams slow down by about that share, not by a whole prefill.
- The prompt cache: a sequence starts from its longest cached prefix, and its
  KV goes back when it ends, finished, stopped or cancelled, even in the
  middle of its prefill (a resent request continues where the first stopped).
"""

from __future__ import annotations

import logging
import secrets
import time
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from .cache import PromptCache
from .decoding import FINISH_OF, Step, keep_held
from .loading import LoadedModel
from .request import SamplingParams
from .tools import Constraint

log = logging.getLogger(__name__)

PREFILL_SHARE = 0.5  # a prefill chunk's time while others decode, per decode step
MIN_CHUNK = 32  # prompt tokens: smaller chunks cost more than they save
SMOOTHING = 0.3  # the weight of the newest timing in the running averages


# MAX_BATCH=auto: a GPU's decode step costs about the same for 16 sequences
# as for one; on a CPU or a Mac's shared memory the KV of more weighs more.
AUTO_BATCH = {"cuda": 16}
DEFAULT_BATCH = 8


def max_batch(loaded: LoadedModel, wanted: int | None, kv_bits: int | None) -> int:
    """How many requests may run at once: `wanted` (None: by the backend), or
    1 where the model cannot batch. Runs on the inference thread."""
    if not batchable(loaded, kv_bits):
        if wanted != 1:
            log.info("this model's KV cache cannot be batched: one request at a time")
        return 1
    if wanted is not None:
        return wanted
    return AUTO_BATCH.get(loaded.backend, DEFAULT_BATCH)


def batchable(loaded: LoadedModel, kv_bits: int | None) -> bool:
    """Whether the model's KV caches can be batched: every layer's cache can
    merge with others' (not a quantized KV cache, nor Llama 4's chunked one)."""
    from mlx_lm.models.cache import make_prompt_cache

    layers = make_prompt_cache(loaded.model)
    return kv_bits is None and all(hasattr(layer, "merge") for layer in layers)


def sampler_for(sampling: SamplingParams) -> Any:
    """The sequence's sampler; None for greedy (the batch's shared argmax).

    A seeded sampler draws from its own key, so its output does not depend
    on what else the batch draws: mlx-lm's top-p and top-k, then a draw.
    """
    if sampling.temperature == 0:
        return None
    import mlx.core as mx
    from mlx_lm.sample_utils import apply_top_k, apply_top_p, make_sampler

    top_p, top_k, temperature = (
        sampling.top_p or 0.0,
        sampling.top_k or 0,
        sampling.temperature,
    )
    if sampling.seed is None:
        return make_sampler(temp=temperature, top_p=top_p, top_k=top_k)
    key = mx.random.key(sampling.seed)

    def seeded(logprobs: Any) -> Any:
        nonlocal key
        if 0 < top_p < 1:
            logprobs = apply_top_p(logprobs, top_p)
        if top_k > 0:
            logprobs = apply_top_k(logprobs, top_k)
        key, draw = mx.random.split(key)
        return mx.random.categorical(logprobs * (1 / temperature), key=draw)

    return seeded


def smoothed(average: float | None, value: float) -> float:
    return value if average is None else average + SMOOTHING * (value - average)


@dataclass
class Sequence:
    """One request in the batch, as the scheduler sees it."""

    detokenizer: Any
    steps: deque[Step] = field(default_factory=deque)
    decoding: bool = False  # past its prompt
    ended: bool = False  # out of the batch: finished, or the batch failed
    error: BaseException | None = None


class Scheduler:
    """The batch and its sequences, by the generator's uid."""

    def __init__(
        self,
        loaded: LoadedModel,
        cache: PromptCache,
        *,
        max_batch: int,
        prefill_step_size: int,
        make_batch: Callable[[], Any] | None = None,
    ) -> None:
        """`make_batch`: a new BatchGenerator (tests script one)."""
        self.loaded = loaded
        self.cache = cache
        self.max_batch = max_batch
        self.prefill_step_size = prefill_step_size
        self._make_batch = make_batch or self._batch_generator
        self._generator: Any = None
        self._sequences: dict[int, Sequence] = {}
        self._step_seconds: float | None = None  # a decode step alone
        self._token_seconds: float | None = None  # a prompt token's prefill

    @property
    def running(self) -> int:
        """Sequences in the batch (prefilling or decoding)."""
        return sum(not sequence.ended for sequence in self._sequences.values())

    def join(
        self, token_ids: list[int], sampling: SamplingParams, processors: list[Any]
    ) -> tuple[int, int]:
        """Add a sequence; its uid, and how many prompt tokens the cache gave."""
        from mlx_lm.models.cache import make_prompt_cache

        assert sampling.max_tokens is not None, "effective_sampling sets it"
        hit = self.cache.take(token_ids)
        kv = hit.kv if hit.kv is not None else make_prompt_cache(self.loaded.model)
        (uid,) = self._batch().insert(
            [token_ids[hit.reused :]],
            max_tokens=[sampling.max_tokens],
            caches=[kv],
            all_tokens=[list(token_ids[: hit.reused])],
            samplers=[sampler_for(sampling)],
            logits_processors=[processors],
        )
        self._sequences[uid] = Sequence(self.loaded.tokenizer.detokenizer)
        return uid, hit.reused

    def next_step(self, uid: int) -> Step | None:
        """The sequence's next step, running a batch step if none is waiting;
        None while it is still being prefilled."""
        sequence = self._sequences[uid]
        if not sequence.steps and not sequence.ended:
            self._step()
        if sequence.error is not None:
            raise sequence.error
        return sequence.steps.popleft() if sequence.steps else None

    def leave(self, uid: int) -> None:
        """The request is done with its sequence: out of the batch, its KV kept."""
        sequence = self._sequences.pop(uid, None)
        if sequence is None or sequence.ended or self._generator is None:
            return
        caches = self._generator.remove([uid], return_prompt_caches=True)
        if uid in caches:
            kv, tokens = caches[uid]
            keep_held(self.cache, tokens, kv)

    def _batch(self) -> Any:
        if self._generator is None:
            self._generator = self._make_batch()
        return self._generator

    def _batch_generator(self) -> Any:
        from mlx_lm.generate import BatchGenerator

        eos = sorted(self.loaded.tokenizer.eos_token_ids)
        return BatchGenerator(
            self.loaded.model,
            stop_tokens=[[token] for token in eos],
            completion_batch_size=self.max_batch,
            prefill_batch_size=self.max_batch,
            prefill_step_size=self.prefill_step_size,
        )

    def _step(self) -> None:
        """One step of the batch; its tokens to their sequences."""
        generator = self._generator
        decoding = sum(s.decoding and not s.ended for s in self._sequences.values())
        generator.prefill_step_size = self._chunk(decoding)
        started = time.perf_counter()
        try:
            with generator.stats() as stats:
                _, responses = generator.next()
        except Exception as error:
            self._fail(error)
            return
        self._time(time.perf_counter() - started, stats.prompt_tokens, decoding)
        for response in responses:
            sequence = self._sequences.get(response.uid)
            if sequence is None:
                continue
            sequence.decoding = True
            sequence.steps.append(self._text(sequence.detokenizer, response))
            if response.finish_reason is not None:
                sequence.ended = True
                keep_held(self.cache, response.all_tokens, response.prompt_cache)

    def _chunk(self, decoding: int) -> int:
        """Prompt tokens per prefill chunk: the full step size while nothing
        decodes, else what takes PREFILL_SHARE of a decode step."""
        if not decoding:
            return self.prefill_step_size
        if self._step_seconds is None or self._token_seconds is None:
            return MIN_CHUNK
        prefilling = sum(not s.decoding for s in self._sequences.values()) or 1
        tokens = PREFILL_SHARE * self._step_seconds / self._token_seconds / prefilling
        return int(min(self.prefill_step_size, max(MIN_CHUNK, tokens)))

    def _time(self, seconds: float, prompt_tokens: int, decoding: int) -> None:
        """Learn a decode step's time and a prompt token's from this step."""
        if not prompt_tokens:
            if decoding:
                self._step_seconds = smoothed(self._step_seconds, seconds)
            return
        if decoding:
            if self._step_seconds is None:
                return
            seconds -= self._step_seconds
        if seconds > 0:
            self._token_seconds = smoothed(self._token_seconds, seconds / prompt_tokens)

    @staticmethod
    def _text(detokenizer: Any, response: Any) -> Step:
        """A generated token as a Step; the end-of-turn token writes no text."""
        if response.finish_reason != "stop":
            detokenizer.add_token(response.token)
        if response.finish_reason is not None:
            detokenizer.finalize()
        finish = FINISH_OF.get(response.finish_reason or "")
        return Step(detokenizer.last_segment, finish)  # type: ignore[arg-type]

    def _fail(self, error: Exception) -> None:
        """A batch step failed: every sequence in it fails, and the next
        request starts a new batch. Their KV may be half-built: not kept."""
        import mlx.core as mx

        log.error("a batch step failed: %s", error)
        for sequence in self._sequences.values():
            sequence.error, sequence.ended = error, True
        self._generator.close()
        self._generator = None
        # A failed compiled step leaves mlx's random state without a value.
        mx.random.seed(secrets.randbits(64))


class SequenceSteps(Iterator[Step | None]):
    """One request's steps from the batch, pulled on the inference thread.

    The first step joins the batch and carries only `cached`; then each is a
    token's Step, or None while the prompt is still being prefilled.
    Closing it takes the sequence out of the batch.
    """

    def __init__(
        self,
        scheduler: Scheduler,
        token_ids: list[int],
        sampling: SamplingParams,
        constraint: Constraint | None,
    ) -> None:
        self._scheduler = scheduler
        self._token_ids = token_ids
        self._sampling = sampling
        self._constraint = constraint
        self._uid: int | None = None

    def __next__(self) -> Step | None:
        if self._uid is None:
            loaded = self._scheduler.loaded
            constraint = self._constraint
            processors = [constraint.build(loaded)] if constraint is not None else []
            self._uid, cached = self._scheduler.join(
                self._token_ids, self._sampling, processors
            )
            return Step("", cached=cached)
        return self._scheduler.next_step(self._uid)

    def close(self) -> None:
        if self._uid is not None:
            self._scheduler.leave(self._uid)
            self._uid = None
