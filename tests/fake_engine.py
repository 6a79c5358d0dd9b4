"""A scripted stand-in for the engine, for fast tests of the HTTP layer only.

It replays a list of engine events for every request and records the
requests it got; it computes nothing (no limits, no tokens): what the
engine itself does is tested on the real engine.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from flask import Flask

from pensieve import create_app
from pensieve.engine import (
    Event,
    Finished,
    Generation,
    GenerationRequest,
    KeepAlive,
    Prompt,
    TextDelta,
    Usage,
)
from pensieve.engine.cache import PromptCache
from pensieve.models.resolve import ResolvedModel

KEY = "test-key"  # the API key of a scripted app
Script = list[Event | Exception]  # an Exception in a script is raised there


def script(
    pieces: list[str],
    reason: str = "end_turn",
    *,
    keepalives: int = 0,
    usage: Usage | None = None,
) -> Script:
    """Keep-alives, one text delta per piece, then Finished (one token a piece)."""
    return [
        *(KeepAlive() for _ in range(keepalives)),
        *(TextDelta(piece) for piece in pieces),
        Finished(reason, None, usage or Usage(2, len(pieces))),  # type: ignore[arg-type]
    ]


class FakeEngine:
    """Answers every request by replaying `events`; `fails` is raised at start."""

    status = "ready"
    waiting = 0
    running: list[Any] = []
    max_batch = 1
    error = None

    def __init__(self, events: Script, *, input_tokens: int = 2) -> None:
        self.events = events
        self.input_tokens = input_tokens
        self.fails: Exception | None = None
        self.started_at = time.time()
        self.resolved = ResolvedModel("fake-model", Path("/nowhere"), "local")
        self.prompt_cache = PromptCache(max_entries=0, max_bytes=0)
        self.observers: list[Any] = []
        self.requests: list[GenerationRequest] = []
        self.options: dict[str, Any] = {}

    @property
    def request(self) -> GenerationRequest:
        """The last request the engine got."""
        return self.requests[-1]

    def resolve(self) -> ResolvedModel:
        return self.resolved

    def loaded_now(self) -> None:
        return None

    def count_tokens(self, request: GenerationRequest) -> int:
        self.requests.append(request)
        if self.fails is not None:
            raise self.fails
        return self.input_tokens

    def start_generation(
        self, request: GenerationRequest, **options: Any
    ) -> Generation:
        self.count_tokens(request)
        self.options = options
        prompt = Prompt(list(range(self.input_tokens)), 64 - self.input_tokens)
        return Generation("fake-model", prompt, self.replay())

    def replay(self) -> Iterator[Event]:
        for event in self.events:
            if isinstance(event, Exception):
                raise event
            yield event


def scripted_app(engine: FakeEngine) -> Flask:
    """The real app (test config, key KEY) with `engine` in place of the real one."""
    return create_app({"API_KEY": KEY, "TESTING": True}, engine=engine)  # type: ignore[arg-type]
