"""What a client asks of the engine: one GenerationRequest, whichever API it spoke.

Each face's schema (`pensieve.schemas`) builds one in its `@post_load`;
`Engine.start_generation` takes it from there. `effective_sampling` is the one
place where a request's sampling settings meet the server's limits.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any, Literal

from .tools import Constraint, ToolPolicy, ToolSpec


@dataclass(frozen=True)
class ToolCall:
    """A tool call the assistant made in an earlier turn."""

    id: str
    name: str
    input: dict[str, Any]


@dataclass(frozen=True)
class ChatMessage:
    """One turn of a conversation in API-neutral form.

    `tool` turns carry a tool's result for the call `tool_call_id`.
    """

    role: Literal["system", "user", "assistant", "tool"]
    content: str
    tool_calls: tuple[ToolCall, ...] = ()
    tool_call_id: str | None = None
    is_error: bool = False
    reasoning: str = ""  # an assistant turn's earlier thinking


@dataclass(frozen=True)
class SamplingParams:
    """How to pick tokens. Temperature 0 is greedy and deterministic.

    `max_tokens` None means as many as the context window leaves room for.
    """

    max_tokens: int | None = None
    temperature: float = 1.0
    top_p: float | None = None
    top_k: int | None = None
    stop_sequences: tuple[str, ...] = ()
    seed: int | None = None


@dataclass(frozen=True)
class Thinking:
    """The request's reasoning settings (Anthropic's `thinking`)."""

    type: Literal["enabled", "disabled", "adaptive"]
    budget_tokens: int | None = None


@dataclass(frozen=True)
class GenerationRequest:
    """Everything the engine needs to answer one request.

    A chat request has `messages` (rendered through the model's chat
    template with `tool_policy.tools`); a raw completion has `text` instead.
    """

    messages: tuple[ChatMessage, ...] = ()
    text: str | None = None
    tool_policy: ToolPolicy = field(default_factory=ToolPolicy)
    sampling: SamplingParams = field(default_factory=SamplingParams)
    response_schema: dict[str, Any] | None = None  # structured output's JSON schema
    thinking: Thinking | None = None

    @property
    def tools(self) -> tuple[ToolSpec, ...]:
        return self.tool_policy.tools

    @property
    def reasoning(self) -> bool:
        """Whether the model may reason (thinking not switched off)."""
        return self.thinking is None or self.thinking.type != "disabled"

    @property
    def quiet(self) -> bool:
        """A forced call reasons first only when asked to (as Anthropic's API,
        which refuses thinking with a forced tool_choice, implies)."""
        return self.tool_policy.forced and self.thinking is None

    def constraint(self, *, in_reasoning: bool = False, lead: str = "") -> Constraint:
        """What decoding must enforce; `in_reasoning`: the prompt opened it;
        `lead`: what the output writes first if it does not reason."""
        enabled = self.thinking is not None and self.thinking.type == "enabled"
        reasoning = self.reasoning and not self.quiet
        budget = self.thinking.budget_tokens if enabled and self.thinking else None
        if not reasoning and in_reasoning:
            budget = 0  # the prompt opened reasoning nobody asked for: close it
        return Constraint(
            self.tool_policy,
            self.response_schema,
            reasoning=reasoning,
            in_reasoning=in_reasoning,
            budget=budget,
            force_reasoning=enabled,
            lead="" if reasoning else lead,
        )


def effective_sampling(
    sampling: SamplingParams, *, room: int, max_temperature: float
) -> SamplingParams:
    """The settings a generation runs with: `max_tokens` within the `room` the
    context window leaves (all of it when none was asked for), and the
    temperature capped by the server's MAX_TEMPERATURE."""
    wanted = sampling.max_tokens if sampling.max_tokens is not None else room
    return replace(
        sampling,
        max_tokens=min(wanted, room),
        temperature=min(sampling.temperature, max_temperature),
    )


class SamplingOutOfRange(ValueError):
    """A sampling setting the model cannot take (e.g. top_k past its vocabulary)."""

    def __init__(self, param: str, message: str) -> None:
        super().__init__(f"{param}: {message}")
        self.param = param


def check_sampling(sampling: SamplingParams, vocabulary: int) -> None:
    """SamplingOutOfRange where mlx-lm's sampler would fail (and a failed
    compiled sampler leaves mlx's random state broken for later requests)."""
    if sampling.top_k is not None and sampling.top_k >= vocabulary:
        raise SamplingOutOfRange(
            "top_k", f"must be less than {vocabulary}, the model's vocabulary size"
        )
