"""One generation, seen from the request's greenlet: typed events out.

The decode generator lives on the inference thread; this side pulls one step
at a time from it, waiting cooperatively, turns steps into text deltas (with
stop sequences held back) and keep-alives, and ends with one Finished event.
"""

from __future__ import annotations

import concurrent.futures
import logging
import time
from collections.abc import Callable, Generator, Iterator
from dataclasses import dataclass, replace

from .. import metrics
from .cache import PromptCache
from .decoding import Cancellation, Step, decode
from .events import Event, Finished, KeepAlive, Prompt, SamplingParams, TextDelta, Usage
from .loading import LoadedModel
from .runner import InferenceThread
from .stops import StopSequenceFilter
from .tools import Constraint
from .toolstream import ToolCallSplitter

log = logging.getLogger(__name__)


class ClientGone(Exception):
    """The client closed its connection; the generation was cancelled."""


def never() -> bool:
    return False


@dataclass(frozen=True)
class GenerationSettings:
    prefill_step_size: int
    keepalive_seconds: float


def run_generation(
    thread: InferenceThread,
    loaded: LoadedModel,
    prompt: Prompt,
    sampling: SamplingParams,
    *,
    cache: PromptCache,
    settings: GenerationSettings,
    constraint: Constraint,
    client_gone: Callable[[], bool] = never,
) -> Iterator[Event]:
    """Events for one generation; the caller holds the model lock throughout.

    Closing the iterator, or `client_gone()` turning true (checked after every
    token and every keep-alive), cancels a running prefill at its next chunk
    and stops decoding after the current token; the latter raises ClientGone.
    """
    sampling = replace(
        sampling, max_tokens=min(sampling.max_tokens, prompt.max_new_tokens)
    )
    cancellation = Cancellation()
    steps = decode(
        loaded,
        prompt.token_ids,
        sampling,
        prefill_step_size=settings.prefill_step_size,
        prompt_cache=cache,
        cancellation=cancellation,
        constraint=constraint if constraint.needed else None,
    )
    stops = StopSequenceFilter(sampling.stop_sequences)
    calls = ToolCallSplitter(enabled=constraint.policy.active)
    started = time.monotonic()
    output_tokens = 0
    keepalive = settings.keepalive_seconds
    try:
        first = yield from wait(thread.submit(next, steps), keepalive, client_gone)
        cached = first.cached or 0
        while True:
            step = yield from wait(thread.submit(next, steps), keepalive, client_gone)
            if output_tokens == 0:
                first_token_at = time.monotonic()
            if step.finish != "end_turn":
                output_tokens += 1
            if step.finish is None and client_gone():
                raise ClientGone
            yield from filter_text(calls.feed(step.text), stops)
            if stops.matched is not None:
                reason, matched = "stop_sequence", stops.matched
                break
            if step.finish is not None:
                yield from filter_text(calls.finish(), stops)
                if rest := stops.flush():
                    yield TextDelta(rest)
                reason, matched = step.finish, None
                if calls.calls and reason == "end_turn":
                    reason = "tool_use"
                break
    except (GeneratorExit, ClientGone):
        log.info("cancelled after %d generated tokens", output_tokens)
        raise
    finally:
        cancellation.requested = True  # stops a prefill still running
        thread.submit(steps.close)  # on the inference thread, like every mlx call
    fresh = prompt.input_tokens - cached
    usage = Usage(
        input_tokens=fresh,
        output_tokens=output_tokens,
        cache_read_input_tokens=cached,
        cache_creation_input_tokens=fresh if cache.enabled else 0,
    )
    log_generation(usage, reason, started, first_token_at)
    yield Finished(reason, matched, usage)  # type: ignore[arg-type]


def filter_text(events: list[Event], stops: StopSequenceFilter) -> Iterator[Event]:
    """Pass events on; text goes through the stop-sequence filter first."""
    for event in events:
        if not isinstance(event, TextDelta):
            yield event
        elif stops.matched is None and (text := stops.feed(event.text)):
            yield TextDelta(text)


def wait(
    future: concurrent.futures.Future[Step],
    keepalive: float,
    client_gone: Callable[[], bool],
) -> Generator[KeepAlive, None, Step]:
    """Wait for `future`, yielding a KeepAlive every `keepalive` seconds.

    A client gone meanwhile raises ClientGone (a prefill is cancelled by the
    caller's `finally`).
    """
    while True:
        try:
            return future.result(timeout=keepalive)
        except TimeoutError:
            if client_gone():
                raise ClientGone from None
            yield KeepAlive()


def log_generation(usage: Usage, reason: str, started: float, first: float) -> None:
    """Log one finished generation and record it in the metrics."""
    decode_seconds = time.monotonic() - first
    metrics.observe_generation(
        ttft_seconds=first - started,
        total_seconds=time.monotonic() - started,
        input_tokens=usage.input_tokens,
        output_tokens=usage.output_tokens,
        cache_read_tokens=usage.cache_read_input_tokens,
    )
    log.info(
        "generated %d tokens; prompt %d tokens (%d from cache); first token after "
        "%.2f s; %.1f tokens/s; stop: %s",
        usage.output_tokens,
        usage.input_tokens + usage.cache_read_input_tokens,
        usage.cache_read_input_tokens,
        first - started,
        (usage.output_tokens - 1) / decode_seconds if decode_seconds > 0 else 0.0,
        reason,
    )
