"""The batch scheduler's admission and eviction, on a scripted BatchGenerator.

The generator here keeps BatchGenerator's interface (insert, next, remove,
stats, close, prefill_step_size) with no model: a prompt takes its chunks,
then every step gives each decoding sequence one token, its uid times 100
plus its count. No mlx is needed.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from types import SimpleNamespace
from typing import Any

import pytest

from pensieve.engine.batching import MIN_CHUNK, Scheduler, SequenceSteps
from pensieve.engine.cache import PromptCache
from pensieve.engine.request import SamplingParams

EOS = 0


@dataclass
class Layer:
    """A KV layer as the prompt cache sees one."""

    offset: int = 0
    nbytes: int = 100

    def is_trimmable(self) -> bool:
        return True


@dataclass
class Scripted:
    uid: int
    prompt: list[int]
    max_tokens: int
    kv: list[Layer]
    tokens: list[int]
    made: int = 0


@dataclass
class ScriptedBatch:
    prefill_step_size: int = 4
    fail_next: bool = False
    closed: bool = False
    steps: int = 0
    chunks: list[int] = field(default_factory=list)
    live: dict[int, Scripted] = field(default_factory=dict)
    uid: int = 0
    ends_turn: set[int] = field(default_factory=set)  # uids whose last token is EOS

    def insert(self, prompts: list[list[int]], **options: Any) -> list[int]:
        (prompt,) = prompts
        (kv,) = options["caches"]
        (tokens,) = options["all_tokens"]
        self.live[self.uid] = Scripted(
            self.uid, list(prompt), options["max_tokens"][0], kv, tokens
        )
        self.uid += 1
        return [self.uid - 1]

    @contextlib.contextmanager
    def stats(self) -> Iterator[SimpleNamespace]:
        stats = SimpleNamespace(prompt_tokens=0)
        before = sum(self.chunks)
        yield stats
        stats.prompt_tokens = sum(self.chunks) - before

    def next(self) -> tuple[list[Any], list[Any]]:
        self.steps += 1
        if self.fail_next:
            raise RuntimeError("the step failed")
        responses, chunk = [], 0
        for seq in list(self.live.values()):
            if len(seq.prompt) > 1:  # prefill: all but the last prompt token
                taken = seq.prompt[: min(self.prefill_step_size, len(seq.prompt) - 1)]
                seq.prompt = seq.prompt[len(taken) :]
                seq.tokens = seq.tokens + taken
                self._grow(seq, len(taken))
                chunk += len(taken)
                continue
            seq.tokens = seq.tokens + seq.prompt
            self._grow(seq, len(seq.prompt))
            seq.made += 1
            last = seq.made == seq.max_tokens
            token = (
                EOS if last and seq.uid in self.ends_turn else seq.uid * 100 + seq.made
            )
            seq.prompt = [token]
            reason = ("stop" if token == EOS else "length") if last else None
            if last:
                seq.tokens = seq.tokens + [token]
                self._grow(seq, 1)
                del self.live[seq.uid]
            responses.append(
                SimpleNamespace(
                    uid=seq.uid,
                    token=token,
                    finish_reason=reason,
                    prompt_cache=seq.kv if last else None,
                    all_tokens=seq.tokens if last else None,
                )
            )
        self.chunks.append(chunk)
        return [], responses

    @staticmethod
    def _grow(seq: Scripted, tokens: int) -> None:
        for layer in seq.kv:
            layer.offset += tokens

    def remove(
        self, uids: list[int], return_prompt_caches: bool = False
    ) -> dict[int, Any]:
        removed = {uid: self.live.pop(uid) for uid in uids if uid in self.live}
        return {uid: (s.kv, s.tokens) for uid, s in removed.items()}

    def close(self) -> None:
        self.closed = True


class Detokenizer:
    def __init__(self) -> None:
        self.text = ""

    def add_token(self, token: int) -> None:
        self.text += f"<{token}>"

    def finalize(self) -> None:
        pass

    @property
    def last_segment(self) -> str:
        text, self.text = self.text, ""
        return text


class Model:
    def make_cache(self) -> list[Layer]:
        return [Layer()]


class Tokenizer:
    eos_token_ids = {EOS}

    @property
    def detokenizer(self) -> Detokenizer:
        return Detokenizer()


LOADED: Any = SimpleNamespace(model=Model(), tokenizer=Tokenizer())
GREEDY = SamplingParams(max_tokens=3, temperature=0)


@pytest.fixture
def batches() -> list[ScriptedBatch]:
    return []


@pytest.fixture
def scheduler(batches: list[ScriptedBatch]) -> Scheduler:
    def make() -> ScriptedBatch:
        batches.append(ScriptedBatch())
        return batches[-1]

    cache = PromptCache(max_entries=8, max_bytes=10**9)
    return Scheduler(LOADED, cache, max_batch=4, prefill_step_size=4, make_batch=make)


def texts(steps: list[Any]) -> list[str]:
    return [step.text for step in steps if step is not None]


def first_token(scheduler: Scheduler, uid: int) -> Any:
    """Pull past the prompt (None steps) to the sequence's first token."""
    while (step := scheduler.next_step(uid)) is None:
        pass
    return step


def drain(scheduler: Scheduler, uid: int) -> list[Any]:
    """A sequence's steps until its last."""
    steps = []
    while not steps or steps[-1] is None or steps[-1].finish is None:
        steps.append(scheduler.next_step(uid))
    return steps


def test_each_sequence_gets_its_own_tokens_and_one_step_serves_all(
    scheduler: Scheduler, batches: list[ScriptedBatch]
) -> None:
    a, _ = scheduler.join([1, 2], GREEDY, [])
    b, _ = scheduler.join([3, 4], GREEDY, [])
    assert scheduler.running == 2
    assert first_token(scheduler, a).text == f"<{a * 100 + 1}>"
    steps_run = batches[0].steps
    assert scheduler.next_step(b).text == f"<{b * 100 + 1}>"  # type: ignore[union-attr]
    assert batches[0].steps == steps_run  # b's token was waiting: no new step
    rest_a, rest_b = drain(scheduler, a), drain(scheduler, b)
    assert texts(rest_a) == [f"<{a * 100 + n}>" for n in (2, 3)]
    assert texts(rest_b) == [f"<{b * 100 + n}>" for n in (2, 3)]
    assert rest_a[-1].finish == "max_tokens"
    assert scheduler.running == 0


def test_the_end_of_turn_token_writes_no_text(
    scheduler: Scheduler, batches: list[ScriptedBatch]
) -> None:
    uid, _ = scheduler.join([1, 2], GREEDY, [])
    batches[0].ends_turn.add(uid)
    steps = drain(scheduler, uid)
    assert steps[-1].text == "" and steps[-1].finish == "end_turn"


def test_a_prompt_is_prefilled_in_full_chunks_while_nothing_decodes(
    scheduler: Scheduler, batches: list[ScriptedBatch]
) -> None:
    uid, cached = scheduler.join(list(range(1, 12)), GREEDY, [])
    assert cached == 0
    assert scheduler.next_step(uid) is None  # still in its prompt
    assert batches[0].chunks == [4]
    drain(scheduler, uid)
    assert batches[0].chunks[:3] == [4, 4, 2]


def test_a_newcomer_is_prefilled_in_small_chunks_while_others_decode(
    scheduler: Scheduler, batches: list[ScriptedBatch]
) -> None:
    scheduler.prefill_step_size = 1024
    running, _ = scheduler.join([1, 2], SamplingParams(max_tokens=50), [])
    first_token(scheduler, running)
    newcomer, _ = scheduler.join(list(range(1, 2000)), GREEDY, [])
    scheduler.next_step(running)  # nothing timed yet: the smallest chunk
    assert batches[0].prefill_step_size == MIN_CHUNK
    # Once timed: a chunk takes half a decode step.
    scheduler._step_seconds, scheduler._token_seconds = 0.1, 0.001
    scheduler.next_step(running)
    scheduler.next_step(running)
    assert batches[0].prefill_step_size == 50
    scheduler._token_seconds = 1e-6  # a fast prefill: capped at the step size
    scheduler.next_step(running)
    scheduler.next_step(running)
    assert batches[0].prefill_step_size == 1024
    scheduler.leave(newcomer)
    scheduler.leave(running)


def test_a_finished_sequence_stores_its_kv_and_leaves_without_a_removal(
    scheduler: Scheduler, batches: list[ScriptedBatch]
) -> None:
    uid, _ = scheduler.join([1, 2, 3], GREEDY, [])
    drain(scheduler, uid)
    [entry] = scheduler.cache.entries()
    assert entry.tokens == [1, 2, 3, 1, 2, 3]  # prompt and every generated token
    scheduler.leave(uid)
    assert uid not in batches[0].live


def test_a_cancelled_sequence_leaves_at_once_and_keeps_its_kv(
    scheduler: Scheduler, batches: list[ScriptedBatch]
) -> None:
    kept, _ = scheduler.join([5, 6], SamplingParams(max_tokens=5), [])
    gone, _ = scheduler.join([7, 8], SamplingParams(max_tokens=50), [])
    first_token(scheduler, kept), first_token(scheduler, gone)
    scheduler.leave(gone)  # the client went away
    assert list(batches[0].live) == [kept] and scheduler.running == 1
    [entry] = scheduler.cache.entries()
    assert entry.tokens == [7, 8]  # what its KV holds (the scripted KV lags a token)
    assert texts(drain(scheduler, kept))[-1] == f"<{kept * 100 + 5}>"


def test_a_sequence_cancelled_in_its_prefill_keeps_the_chunks_it_ran(
    scheduler: Scheduler,
) -> None:
    prompt = list(range(1, 14))
    uid, _ = scheduler.join(prompt, GREEDY, [])
    assert scheduler.next_step(uid) is None
    assert scheduler.next_step(uid) is None
    scheduler.leave(uid)
    [entry] = scheduler.cache.entries()
    assert entry.tokens == prompt[:8]
    # The same request again starts from those 8 tokens.
    again, cached = scheduler.join(prompt, GREEDY, [])
    assert cached == 8
    scheduler.leave(again)


def test_a_failed_step_fails_every_sequence_and_the_next_request_starts_afresh(
    scheduler: Scheduler, batches: list[ScriptedBatch]
) -> None:
    a, _ = scheduler.join([1, 2], GREEDY, [])
    b, _ = scheduler.join([3, 4], GREEDY, [])
    batches[0].fail_next = True
    with pytest.raises(RuntimeError, match="the step failed"):
        scheduler.next_step(a)
    with pytest.raises(RuntimeError, match="the step failed"):
        scheduler.next_step(b)
    assert batches[0].closed and scheduler.running == 0
    scheduler.leave(a), scheduler.leave(b)
    assert scheduler.cache.entries() == []  # half-built KV is not kept
    c, _ = scheduler.join([1, 2], GREEDY, [])
    assert len(batches) == 2
    assert texts(drain(scheduler, c))


def test_sequence_steps_join_on_the_first_pull_and_leave_on_close(
    scheduler: Scheduler, batches: list[ScriptedBatch]
) -> None:
    steps = SequenceSteps(scheduler, [1, 2], GREEDY, None)
    assert batches == []  # nothing joined before the first pull
    first = next(steps)
    assert first is not None and first.text == "" and first.cached == 0
    assert next(steps) is None  # its prompt is being prefilled
    assert next(steps) is not None
    steps.close()
    assert batches[0].live == {} and scheduler.running == 0
