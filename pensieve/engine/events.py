"""What the engine gives back: the fitted prompt, usage, and generation events."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

StopReason = Literal["end_turn", "max_tokens", "stop_sequence", "tool_use"]


@dataclass(frozen=True)
class Prompt:
    """A rendered, tokenised prompt that fits the model's context window."""

    token_ids: list[int] = field(repr=False)
    max_new_tokens: int  # what fits in the context window after the prompt
    cached_estimate: int = 0  # prompt-cache tokens a generation would reuse now
    in_reasoning: bool = False  # the prompt opens the model's reasoning block
    lead: str = ""  # what an output that does not reason writes first

    @property
    def input_tokens(self) -> int:
        return len(self.token_ids)


@dataclass(frozen=True)
class Usage:
    """Token counts, the prompt's three disjoint as in Anthropic's API: read
    from the prompt cache, processed and written to it, processed only."""

    input_tokens: int
    output_tokens: int
    cache_read_input_tokens: int = 0
    cache_creation_input_tokens: int = 0

    @classmethod
    def of_prompt(
        cls, prompt_tokens: int, output_tokens: int, *, read: int, caching: bool
    ) -> Usage:
        """A prompt of which `read` tokens came from the cache; the rest were
        processed, and written to the cache while it is on."""
        processed = prompt_tokens - read
        return cls(
            input_tokens=0 if caching else processed,
            output_tokens=output_tokens,
            cache_read_input_tokens=read,
            cache_creation_input_tokens=processed if caching else 0,
        )

    @property
    def processed_tokens(self) -> int:
        """Prompt tokens run through the model (not read from the cache)."""
        return self.input_tokens + self.cache_creation_input_tokens

    @property
    def prompt_tokens(self) -> int:
        return self.processed_tokens + self.cache_read_input_tokens


@dataclass(frozen=True)
class TextDelta:
    """New text for the client (never part of a possible stop sequence)."""

    text: str


@dataclass(frozen=True)
class ThinkingDelta:
    """New reasoning text (the model's thinking, never part of the answer)."""

    text: str


@dataclass(frozen=True)
class ToolCallStart:
    """The model began a tool call."""

    id: str
    name: str


@dataclass(frozen=True)
class ToolCallDelta:
    """A piece of the call's arguments JSON; the pieces concatenate to all of it."""

    partial_json: str


@dataclass(frozen=True)
class ToolCallEnd:
    """The call is over; `input` is its parsed arguments (None: cut short)."""

    input: dict[str, Any] | None


@dataclass(frozen=True)
class KeepAlive:
    """Nothing new yet (waiting for the model or a long prefill)."""


@dataclass(frozen=True)
class Finished:
    """The last event of every generation."""

    stop_reason: StopReason
    stop_sequence: str | None
    usage: Usage


Event = (
    TextDelta
    | ThinkingDelta
    | ToolCallStart
    | ToolCallDelta
    | ToolCallEnd
    | KeepAlive
    | Finished
)
