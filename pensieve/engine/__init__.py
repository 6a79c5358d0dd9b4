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
    ToolSpec,
    Usage,
)

__all__ = [
    "ChatMessage",
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
