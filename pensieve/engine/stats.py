"""A generation's figures: when its first token came, how many it made, usage.

The engine hands each finished generation's `GenerationStats` to its
observers (the app's metrics); nothing here knows about Flask or Prometheus.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from typing import Protocol

from .events import Usage

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class GenerationStats:
    """One finished generation. Durations start when it got the model."""

    ttft_seconds: float
    total_seconds: float
    usage: Usage

    @property
    def decode_rate(self) -> float:
        """Tokens per second after the first token (0 when unknown)."""
        seconds = self.total_seconds - self.ttft_seconds
        tokens = self.usage.output_tokens - 1
        return tokens / seconds if tokens > 0 and seconds > 0 else 0.0


class EngineObserver(Protocol):
    """What wants to hear of the engine's work (see `pensieve.metrics`)."""

    def queue_waited(self, seconds: float) -> None: ...

    def generation_finished(self, stats: GenerationStats) -> None: ...


@dataclass
class Tally:
    """Counts one generation's tokens and times them, as its steps arrive."""

    started: float = field(default_factory=time.monotonic)
    first_token_at: float | None = None
    output_tokens: int = 0
    cached: int = 0  # prompt tokens read from the prompt cache

    def token(self, *, end_of_turn: bool) -> None:
        """One step arrived; the end-of-turn token is not output."""
        if self.first_token_at is None:
            self.first_token_at = time.monotonic()
        if not end_of_turn:
            self.output_tokens += 1

    def usage(self, prompt_tokens: int, *, cache_enabled: bool) -> Usage:
        return Usage.of_prompt(
            prompt_tokens, self.output_tokens, read=self.cached, caching=cache_enabled
        )

    def finish(self, usage: Usage, reason: str) -> GenerationStats:
        """The generation's stats, logged."""
        now = time.monotonic()
        first = self.first_token_at if self.first_token_at is not None else now
        stats = GenerationStats(first - self.started, now - self.started, usage)
        log.info(
            "generated %d tokens; prompt %d tokens (%d from cache); first token "
            "after %.2f s; %.1f tokens/s; stop: %s",
            usage.output_tokens,
            usage.prompt_tokens,
            usage.cache_read_input_tokens,
            stats.ttft_seconds,
            stats.decode_rate,
            reason,
        )
        return stats
