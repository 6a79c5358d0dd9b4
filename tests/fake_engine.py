"""A scripted stand-in for the engine, for fast tests of the HTTP layer only."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

from flask import Flask

from pensieve import create_app
from pensieve.engine import (
    ChatMessage,
    Event,
    Finished,
    KeepAlive,
    Prompt,
    PromptTooLong,
    SamplingParams,
    TextDelta,
    ToolSpec,
    Usage,
)
from pensieve.engine.cache import PromptCache
from pensieve.models.resolve import ResolvedModel

KEY = "test-key"  # the API key of a scripted app


class FakeEngine:
    """Answers every prompt with `pieces`; counts characters as tokens."""

    status = "ready"
    waiting = 0
    running = None
    error = None
    prompt_cache = PromptCache(max_entries=0, max_bytes=0)
    context_length = 64

    def __init__(self, pieces: list[str], keepalives: int = 0) -> None:
        self.pieces = pieces
        self.keepalives = keepalives
        self.started_at = time.time()
        self.resolved = ResolvedModel("fake-model", Path("/nowhere"), "local")
        self.seen: list[ChatMessage] = []

    def resolve(self) -> ResolvedModel:
        return self.resolved

    def loaded_now(self) -> None:
        return None

    def prepare(
        self, messages: list[ChatMessage], tools: list[ToolSpec] | None = None
    ) -> Prompt:
        self.seen = messages
        self.seen_tools = tools or []
        size = sum(len(m.content) for m in messages)
        if size > self.context_length - 1:
            raise PromptTooLong(size, self.context_length - 1)
        return Prompt(list(range(size)), self.context_length - size)

    def prepare_text(self, text: str) -> Prompt:
        """A raw prompt (no chat template), one token per character."""
        self.seen_text = text
        return self.prepare([ChatMessage("user", text)])

    def admit(self) -> None:
        pass

    def generate(
        self, prompt: Prompt, sampling: SamplingParams, **options: object
    ) -> Iterator[Event]:
        self.options = options
        for _ in range(self.keepalives):
            yield KeepAlive()
        pieces = self.pieces[: min(sampling.max_tokens, prompt.max_new_tokens)]
        yield from (TextDelta(piece) for piece in pieces)
        reason = "end_turn" if len(pieces) == len(self.pieces) else "max_tokens"
        yield Finished(reason, None, Usage(prompt.input_tokens, len(pieces)))


def scripted_app(engine: FakeEngine) -> Flask:
    """The real app (test config, key KEY) with `engine` in place of the real one."""
    app = create_app({"API_KEY": KEY, "TESTING": True})
    app.extensions["pensieve"] = engine
    return app
