"""The model owner: inference thread, lock, generation events, sampling."""

from .engine import Engine, EngineBusy, EngineUnavailable, PromptTooLong
from .events import (
    ChatMessage,
    Event,
    Finished,
    KeepAlive,
    Prompt,
    SamplingParams,
    TextDelta,
    ToolCall,
    ToolCallDelta,
    ToolCallEnd,
    ToolCallStart,
    ToolSpec,
    Usage,
)
from .generation import ClientGone
from .tools import Constraint, ToolPolicy

__all__ = [
    "ChatMessage",
    "ClientGone",
    "Constraint",
    "ToolPolicy",
    "ToolCallDelta",
    "ToolCallEnd",
    "ToolCallStart",
    "Engine",
    "EngineBusy",
    "EngineUnavailable",
    "Event",
    "Finished",
    "KeepAlive",
    "Prompt",
    "PromptTooLong",
    "SamplingParams",
    "TextDelta",
    "ToolCall",
    "ToolSpec",
    "Usage",
]
