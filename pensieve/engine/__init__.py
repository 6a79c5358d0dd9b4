"""The model owner: inference thread, lock, generation events, sampling.

Nothing in this package imports Flask: the app reaches the engine through
`pensieve.extension`, and hears of its work as an `EngineObserver`.
"""

from .admission import EngineBusy
from .engine import (
    Engine,
    EngineUnavailable,
    Generation,
)
from .events import (
    Event,
    Finished,
    KeepAlive,
    Prompt,
    TextDelta,
    ThinkingDelta,
    ToolCallDelta,
    ToolCallEnd,
    ToolCallStart,
    Usage,
)
from .generation import ClientGone
from .prompt import PromptTooLong, fit_prompt
from .request import (
    ChatMessage,
    GenerationRequest,
    SamplingOutOfRange,
    SamplingParams,
    Thinking,
    ToolCall,
    effective_sampling,
)
from .settings import EngineSettings
from .stats import EngineObserver, GenerationStats
from .tools import Constraint, ToolPolicy, ToolSpec

__all__ = [
    "ChatMessage",
    "ClientGone",
    "Constraint",
    "Engine",
    "EngineBusy",
    "EngineObserver",
    "EngineSettings",
    "EngineUnavailable",
    "Event",
    "Finished",
    "Generation",
    "GenerationRequest",
    "GenerationStats",
    "KeepAlive",
    "Prompt",
    "PromptTooLong",
    "SamplingOutOfRange",
    "SamplingParams",
    "TextDelta",
    "Thinking",
    "ThinkingDelta",
    "ToolCall",
    "ToolCallDelta",
    "ToolCallEnd",
    "ToolCallStart",
    "ToolPolicy",
    "ToolSpec",
    "Usage",
    "effective_sampling",
    "fit_prompt",
]
