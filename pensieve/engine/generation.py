"""One generation, seen from the request's greenlet: typed events out.

The decode generator lives on the inference thread. `run_generation` chains
three small stages over it, each a generator:

1. `pull_steps`: one decode step at a time from the inference thread, waited
   for cooperatively, with keep-alives meanwhile and the client checked;
2. `split_tool_calls`: step text into text deltas and tool-call events;
3. `filter_stop_sequences`: text held back while it may start a stop sequence.

An `Ended` marker travels behind the last event. Closing the chain (a stop
sequence matched, the client left) closes `pull_steps`, which cancels a
running prefill and closes the decoder on the inference thread.
"""

from __future__ import annotations

import concurrent.futures
import logging
from collections.abc import Callable, Generator, Iterable, Iterator
from dataclasses import dataclass

from .batching import Scheduler, SequenceSteps
from .cache import PromptCache
from .decoding import Cancellation, Step, decode
from .events import Event, Finished, KeepAlive, Prompt, StopReason, TextDelta
from .loading import LoadedModel
from .request import SamplingParams
from .runner import InferenceThread
from .stats import GenerationStats, Tally
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
    kv_bits: int | None = None


@dataclass(frozen=True)
class Ended:
    """Behind a generation's last event: why it ended."""

    reason: StopReason
    stop_sequence: str | None = None


Item = Event | Ended


def run_generation(
    thread: InferenceThread,
    loaded: LoadedModel,
    prompt: Prompt,
    sampling: SamplingParams,
    *,
    cache: PromptCache,
    settings: GenerationSettings,
    constraint: Constraint,
    scheduler: Scheduler | None = None,
    client_gone: Callable[[], bool] = never,
    report: Callable[[GenerationStats], None] = lambda stats: None,
) -> Iterator[Event]:
    """Events for one generation; the caller holds a slot of the model. With a
    `scheduler` it is a sequence of its batch, else it has the model alone.

    `sampling` is effective (see `effective_sampling`). Closing the iterator,
    or `client_gone()` turning true (checked after every token and every
    keep-alive), cancels a running prefill at its next chunk and stops
    decoding after the current token; the latter raises ClientGone.
    """
    tally = Tally()
    cancellation = Cancellation()
    needed = constraint if constraint.needed else None
    steps: Iterator[Step | None]
    if scheduler is not None:
        steps = SequenceSteps(scheduler, prompt.token_ids, sampling, needed)
    else:
        steps = decode(
            loaded,
            prompt.token_ids,
            sampling,
            prefill_step_size=settings.prefill_step_size,
            kv_bits=settings.kv_bits,
            prompt_cache=cache,
            cancellation=cancellation,
            constraint=needed,
        )
    pulled = pull_steps(thread, steps, cancellation, tally, settings, client_gone)
    splitter = ToolCallSplitter(
        constraint.policy.active,
        loaded.family,
        constraint.policy.tools,
        reasoning=loaded.family.reasoning is not None,
        in_reasoning=prompt.in_reasoning,
    )
    split = split_tool_calls(pulled, splitter)
    items = filter_stop_sequences(split, sampling.stop_sequences)
    try:
        ended = yield from until_ended(items)
    except (GeneratorExit, ClientGone):
        log.info("cancelled after %d generated tokens", tally.output_tokens)
        raise
    finally:
        for stage in (items, split, pulled):  # outermost first: each is closed now,
            stage.close()  # not when garbage-collected (pulled cancels the decode)
    usage = tally.usage(prompt.input_tokens, cache_enabled=cache.enabled)
    report(tally.finish(usage, ended.reason))
    yield Finished(ended.reason, ended.stop_sequence, usage)


def until_ended(items: Iterator[Item]) -> Generator[Event, None, Ended]:
    """Pass events on until the Ended marker, and return it."""
    for item in items:
        if isinstance(item, Ended):
            return item
        yield item
    raise RuntimeError("generation ended without a reason")


def pull_steps(
    thread: InferenceThread,
    steps: Iterator[Step | None],
    cancellation: Cancellation,
    tally: Tally,
    settings: GenerationSettings,
    client_gone: Callable[[], bool],
) -> Iterator[Step | KeepAlive]:
    """Decode steps from the inference thread, with keep-alives while waiting.

    The first step (no text) tells `tally` how much of the prompt was cached;
    a None step is a batch step that left this sequence none (its prompt is
    still being prefilled). However the consumer stops, the decoder is
    cancelled and closed on the inference thread, where every mlx call runs.
    """
    keepalive = settings.keepalive_seconds
    try:
        first = yield from wait(thread.submit(next, steps), keepalive, client_gone)
        assert first is not None
        tally.cached = first.cached or 0
        while True:
            step = yield from wait(thread.submit(next, steps), keepalive, client_gone)
            if step is None:
                if client_gone():
                    raise ClientGone
                continue
            tally.token(end_of_turn=step.finish == "end_turn")
            if step.finish is None and client_gone():
                raise ClientGone
            yield step
            if step.finish is not None:
                return
    finally:
        cancellation.requested = True  # stops a prefill still running
        # Waited for: closing stores the KV in the prompt cache, which the
        # next request (an agent's next turn, sent at once) must find there.
        thread.submit(steps.close).result()  # type: ignore[attr-defined]


def split_tool_calls(
    steps: Iterable[Step | KeepAlive], calls: ToolCallSplitter
) -> Iterator[Item]:
    """Step text as text, thinking and tool-call events; Ended after the last.

    A generation that made tool calls and ended its turn ends with `tool_use`,
    as one that repeats a call it made (a loop: the repeat is left out).
    """
    for step in steps:
        if isinstance(step, KeepAlive):
            yield step
            continue
        yield from calls.feed(step.text)
        if calls.repeated:
            yield Ended("tool_use")
            return
        if step.finish is not None:
            yield from calls.finish()
            tool_use = calls.calls and (step.finish == "end_turn" or calls.repeated)
            yield Ended("tool_use" if tool_use else step.finish)
            return


def filter_stop_sequences(
    items: Iterable[Item], stop_sequences: tuple[str, ...]
) -> Iterator[Item]:
    """Text held back while it may be the start of a stop sequence; at a match,
    the text before it and Ended(`stop_sequence`)."""
    stops = StopSequenceFilter(stop_sequences)
    for item in items:
        if isinstance(item, Ended):
            if rest := stops.flush():
                yield TextDelta(rest)
            yield item
            return
        if not isinstance(item, TextDelta):
            yield item
            continue
        if text := stops.feed(item.text):
            yield TextDelta(text)
        if stops.matched is not None:
            yield Ended("stop_sequence", stops.matched)
            return


def wait(
    future: concurrent.futures.Future[Step | None],
    keepalive: float,
    client_gone: Callable[[], bool],
) -> Generator[KeepAlive, None, Step | None]:
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
