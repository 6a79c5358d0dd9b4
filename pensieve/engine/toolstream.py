"""Split streamed model text into text deltas and tool-call events.

Text that might be the start of `<tool_call>` is held back until it is known
not to be. Inside a call, the arguments are streamed as they are generated:
the pieces concatenate to exactly the arguments' JSON text.
"""

from __future__ import annotations

import json
import re

from .events import Event, TextDelta, ToolCallDelta, ToolCallEnd, ToolCallStart
from .tools import CLOSE, OPEN, new_tool_use_id

HEAD = re.compile(r'\s*\{"name": "((?:[^"\\]|\\.)*)", "arguments": ')
TAIL = "}\n" + CLOSE  # what follows the arguments of a constrained call


class ToolCallSplitter:
    """Feed text in; get text deltas and ToolCallStart / Delta / End events out."""

    def __init__(self, enabled: bool) -> None:
        self.enabled = enabled
        self.calls = 0
        self._state = "text"  # "text", "head" or "arguments"
        self._buffer = ""
        self._arguments = ""

    def feed(self, text: str) -> list[Event]:
        if not self.enabled:
            return [TextDelta(text)] if text else []
        self._buffer += text
        events: list[Event] = []
        while True:
            state = self._state
            events.extend(getattr(self, f"_in_{state}")())
            if self._state == state:
                return events

    def finish(self) -> list[Event]:
        """Flush at the end: held-back text, or an unfinished call's last piece."""
        if not self.enabled:
            return []
        rest, self._buffer = self._buffer, ""
        if self._state == "arguments":  # cut short (max_tokens): close what we have
            self._arguments += rest
            self._state = "text"
            return [ToolCallDelta(rest), ToolCallEnd(self._input())]
        return self._as_text(rest) if self._state == "text" else []

    def _in_text(self) -> list[Event]:
        at = self._buffer.find(OPEN)
        if at >= 0:
            before, self._buffer = self._buffer[:at], self._buffer[at + len(OPEN) :]
            self._state = "head"
            return self._as_text(before)
        keep = partial_suffix(self._buffer, OPEN)
        cut = len(self._buffer) - keep
        safe, self._buffer = self._buffer[:cut], self._buffer[cut:]
        return self._as_text(safe)

    def _in_head(self) -> list[Event]:
        match = HEAD.match(self._buffer)
        if match is None:
            return []
        self._buffer = self._buffer[match.end() :]
        self._state, self._arguments = "arguments", ""
        self.calls += 1
        return [ToolCallStart(new_tool_use_id(), json.loads(f'"{match.group(1)}"'))]

    def _in_arguments(self) -> list[Event]:
        """Stream the arguments, holding back what may be the call's closing tail."""
        end = self._buffer.find(TAIL)
        if end >= 0:
            piece, self._buffer = self._buffer[:end], self._buffer[end + len(TAIL) :]
            self._arguments += piece
            self._state = "text"
            return [*self._delta(piece), ToolCallEnd(self._input())]
        cut = len(self._buffer) - partial_suffix(self._buffer, TAIL)
        piece, self._buffer = self._buffer[:cut], self._buffer[cut:]
        self._arguments += piece
        return self._delta(piece)

    @staticmethod
    def _delta(piece: str) -> list[Event]:
        return [ToolCallDelta(piece)] if piece else []

    def _as_text(self, text: str) -> list[Event]:
        if not text or (self.calls and not text.strip()):
            return []  # nothing, or the line breaks between calls
        return [TextDelta(text)]

    def _input(self) -> dict:
        try:
            value = json.loads(self._arguments)
        except json.JSONDecodeError:
            return {}
        return value if isinstance(value, dict) else {}


def partial_suffix(text: str, marker: str) -> int:
    """Length of the longest end of `text` that could start `marker`."""
    for size in range(min(len(marker) - 1, len(text)), 0, -1):
        if text.endswith(marker[:size]):
            return size
    return 0
