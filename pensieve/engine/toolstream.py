"""Split streamed model text into reasoning, text and tool calls, by family.

Reasoning (the family's markers, at the start of the output, or from the
first token when the prompt already opened it) becomes ThinkingDelta events.
Text that might be the start of a call is held back until it is known not to
be. A call with JSON arguments streams them as they are generated (the pieces
concatenate to exactly the arguments' JSON); a call written parameter by
parameter is parsed when it closes and sent as one piece.
"""

from __future__ import annotations

import json
import re
from typing import Any

from .events import (
    Event,
    TextDelta,
    ThinkingDelta,
    ToolCallDelta,
    ToolCallEnd,
    ToolCallStart,
)
from .families import GENERIC, CallSyntax, Family
from .tools import ToolSpec, new_tool_use_id


def partial_suffix(text: str, marker: str) -> int:
    """Length of the longest end of `text` that could start `marker`."""
    for size in range(min(len(marker) - 1, len(text)), 0, -1):
        if text.endswith(marker[:size]):
            return size
    return 0


def head_pattern(syntax: CallSyntax) -> re.Pattern[str]:
    """A regex for a call's head, capturing the tool's name and the call id."""
    pattern = re.escape(syntax.head_text.lstrip())  # the \s* below takes it
    pattern = pattern.replace(r"\{name\}", r"(?P<name>[\w.\-]+?)")
    pattern = pattern.replace(r"\{id\}", r"(?P<id>[^\s<>\[\]]+?)")
    if syntax.head_text.endswith("}"):  # ends with a name: wait for what follows
        pattern += r"(?=[^\w.\-])"
    return re.compile(r"\s*" + pattern)


class RepeatGuard:
    """Keeps a call identical to one made earlier in the turn from the client.

    A small model loops over whole calls: the same `get_weather` again, until
    max_tokens. Parallel calls to one tool with other arguments are fine (two
    files read at once), so a call is held back only while it is, so far, an
    earlier call's name and a prefix of its arguments; once it differs, what
    was held goes out and it streams on. A call that closes identical is
    dropped and `repeated` turns true: the generation ends there (tool_use);
    so is one cut off by max_tokens while it was still the same.
    """

    def __init__(self) -> None:
        self.repeated = False
        self._made: list[tuple[str, str, Any]] = []  # name, arguments text, input
        self._held: list[Event] | None = None  # the current call, held back
        self._call: tuple[str, str] = ("", "")  # its name, its arguments so far

    def filter(self, events: list[Event]) -> list[Event]:
        out: list[Event] = []
        for event in events:
            out.extend(self._event(event))
        return out

    def _event(self, event: Event) -> list[Event]:
        if isinstance(event, ToolCallStart):
            self._call = (event.name, "")
            same_tool = any(name == event.name for name, _, _ in self._made)
            self._held = [event] if same_tool else None
            return [] if same_tool else [event]
        if isinstance(event, ToolCallDelta):
            self._call = (self._call[0], self._call[1] + event.partial_json)
            return self._hold_or_flush(event)
        if isinstance(event, ToolCallEnd):
            name, text = self._call
            same = any((name, event.input) == (n, i) for n, _, i in self._made)
            if self._held is not None and (event.input is None or same):
                # Identical, or cut off (max_tokens) while still identical so
                # far: a repeat either way, never shown.
                self._held, self.repeated = None, True
                return []
            self._made.append((name, text, event.input))
            return self._flush(event)
        return [event]

    def _hold_or_flush(self, event: Event) -> list[Event]:
        if self._held is None:
            return [event]
        name, text = self._call
        if any(n == name and made.startswith(text) for n, made, _ in self._made):
            self._held.append(event)
            return []
        return self._flush(event)

    def _flush(self, event: Event) -> list[Event]:
        held, self._held = self._held or [], None
        return [*held, event]


class JSONEnd:
    """Finds where a streamed JSON value ends (depth back to zero)."""

    def __init__(self) -> None:
        self.depth = 0
        self.in_string = False
        self.escaped = False
        self.started = False

    def feed(self, text: str) -> int | None:
        """The index in `text` just past the value's end, or None."""
        for index, char in enumerate(text):
            if self.escaped:
                self.escaped = False
            elif self.in_string:
                self.escaped = char == "\\"
                self.in_string = char != '"'
            elif char == '"':
                self.in_string = True
            elif char in "{[":
                self.depth, self.started = self.depth + 1, True
            elif char in "}]":
                self.depth -= 1
                if self.started and self.depth == 0:
                    return index + 1
        return None


class ToolCallSplitter:
    """Feed text in; get text, thinking and tool-call events out."""

    def __init__(
        self,
        enabled: bool,
        family: Family = GENERIC,
        tools: tuple[ToolSpec, ...] = (),
        *,
        reasoning: bool = False,
        in_reasoning: bool = False,
    ) -> None:
        self.enabled = enabled
        self.family = family
        self.syntax = family.calls
        self.schemas = {tool.name: tool.input_schema for tool in tools}
        self.calls = 0
        self._head = head_pattern(self.syntax)
        self._reasoning = family.reasoning if reasoning or in_reasoning else None
        self._state = "reasoning" if in_reasoning else "start"
        self._buffer = ""
        self._space = ""  # the space before a call's trigger: the template's own
        self._call: dict[str, Any] = {}
        self._repeats = RepeatGuard()

    @property
    def repeated(self) -> bool:
        """The output repeated a call it made already: the turn is over."""
        return self._repeats.repeated

    def feed(self, text: str) -> list[Event]:
        self._buffer += text
        events: list[Event] = []
        while True:
            state = self._state
            events.extend(getattr(self, f"_in_{state}")())
            if self._state == state:
                return self._repeats.filter(events)

    def finish(self) -> list[Event]:
        """Flush at the end: held-back text, or an unfinished call's last piece."""
        return self._repeats.filter(self._finish())

    def _finish(self) -> list[Event]:
        rest, self._buffer = self._buffer, ""
        if self._state == "reasoning":
            return [ThinkingDelta(rest)] if rest else []
        if self._state == "arguments":  # cut short (max_tokens)
            return [*self._delta(rest), ToolCallEnd(None)]
        if self._state == "params":
            return [ToolCallEnd(None)]
        if self._state in ("head", "tail"):  # the calls' own markers, cut short
            return []
        return self._as_text(rest)

    # --- reasoning ----------------------------------------------------------

    def _in_start(self) -> list[Event]:
        """At the start of the output: does it open its reasoning?"""
        marker = self._reasoning.open if self._reasoning else ""
        stripped = self._buffer.lstrip()
        if marker and marker.startswith(stripped):
            return []  # may still become the opening: wait
        if marker and stripped.startswith(marker):
            self._buffer = stripped[len(marker) :]
            self._state = "reasoning"
        else:
            self._state = "answer"
        return []

    def _in_reasoning(self) -> list[Event]:
        assert self._reasoning is not None
        close = self._reasoning.close
        at = self._buffer.find(close)
        if at >= 0:
            thought, self._buffer = self._buffer[:at], self._buffer[at + len(close) :]
            self._state = "after"
            return [ThinkingDelta(thought)] if thought else []
        cut = len(self._buffer) - partial_suffix(self._buffer, close)
        thought, self._buffer = self._buffer[:cut], self._buffer[cut:]
        return [ThinkingDelta(thought)] if thought else []

    def _in_after(self) -> list[Event]:
        """Between the reasoning and the answer: the template's own separator."""
        after = self._reasoning.after if self._reasoning else ""
        if after and after.startswith(self._buffer):
            return []
        self._buffer = self._buffer.removeprefix(after).lstrip("\n")
        self._state = "answer"
        return []

    # --- text and calls -----------------------------------------------------

    def _in_answer(self) -> list[Event]:
        """The start of the answer: the family's answer opening is not text."""
        opening = self.family.answer_open
        if opening and opening.startswith(self._buffer) and self._buffer != opening:
            return []
        self._buffer = self._buffer.removeprefix(opening)
        self._state = "text"
        return []

    def _in_text(self) -> list[Event]:
        trigger = self.syntax.trigger
        if not self.enabled or not trigger:
            text, self._buffer = self._buffer, ""
            return self._as_text(text)
        at = self._buffer.find(trigger)
        if at >= 0:  # the template writes its own space before a call
            before, self._buffer = self._buffer[:at], self._buffer[at:]
            text = before.rstrip()
            self._state, self._space = "head", before[len(text) :]
            return self._as_text(text)
        cut = len(self._buffer) - partial_suffix(self._buffer, trigger)
        cut = len(self._buffer[:cut].rstrip())  # trailing space waits for what follows
        safe, self._buffer = self._buffer[:cut], self._buffer[cut:]
        return self._as_text(safe)

    def _in_head(self) -> list[Event]:
        opening, closing = (mark.strip() for mark in self.syntax.section)
        stripped = self._buffer.lstrip()
        if opening and stripped.startswith(opening):
            self._buffer = stripped[len(opening) :]
        elif closing and stripped.startswith(closing):
            self._buffer = stripped[len(closing) :]
            self._state = "text"
            return []
        match = self._head.match(self._buffer)
        if match is None:
            if self._may_open(stripped):
                return []  # wait for the rest of the head
            text, self._buffer = self._space + self._buffer, ""  # not a call
            self._state, self._space = "text", ""
            return self._as_text(text)
        self._buffer = self._buffer[match.end() :]
        return self._start_call(match.groupdict())

    def _may_open(self, text: str) -> bool:
        """Whether `text` is, or may still become, the opening of a call."""
        fixed = self.syntax.head_text.split("{", 1)[0] or self.syntax.trigger
        marks = [m.lstrip() for m in (fixed, *self.syntax.section) if m.strip()]
        return any(m.startswith(text) or text.startswith(m) for m in marks)

    def _start_call(self, found: dict[str, str | None]) -> list[Event]:
        name, call_id = found.get("name"), found.get("id")
        if self.syntax.call_id == "kimi" and call_id:  # functions.NAME:N
            name = call_id.removeprefix("functions.").rsplit(":", 1)[0]
        self.calls, self._space = self.calls + 1, ""
        json_args = self.syntax.arguments.style == "json"
        self._state = "arguments" if json_args else "params"
        self._call = {"name": name or "", "arguments": "", "end": JSONEnd()}
        return [ToolCallStart(call_id or new_tool_use_id(), name or "")]

    def _in_arguments(self) -> list[Event]:
        """Stream JSON arguments until the value closes; then the call's tail."""
        end = self._call["end"].feed(self._buffer)
        if end is None:
            piece, self._buffer = self._buffer, ""
            self._call["arguments"] += piece
            return self._delta(piece)
        piece, self._buffer = self._buffer[:end], self._buffer[end:]
        self._call["arguments"] += piece
        self._state = "tail"
        return [*self._delta(piece), ToolCallEnd(self._input())]

    def _in_tail(self) -> list[Event]:
        tail = self.syntax.tail
        if tail and not self._buffer.startswith(tail) and tail.startswith(self._buffer):
            return []  # the tail, still arriving
        self._buffer = self._buffer.removeprefix(tail)
        self._state = "head"
        return []

    def _in_params(self) -> list[Event]:
        tail = self.syntax.tail
        at = self._buffer.find(tail)
        if at < 0:
            return []
        body, self._buffer = self._buffer[:at], self._buffer[at + len(tail) :]
        arguments = parse_params(
            self.syntax, body, self.schemas.get(self._call["name"])
        )
        self._state = "head"
        return [ToolCallDelta(json.dumps(arguments)), ToolCallEnd(arguments)]

    @staticmethod
    def _delta(piece: str) -> list[Event]:
        return [ToolCallDelta(piece)] if piece else []

    def _as_text(self, text: str) -> list[Event]:
        if not text or (self.calls and not text.strip()):
            return []  # nothing, or the line breaks between calls
        return [TextDelta(text)]

    def _input(self) -> dict[str, Any] | None:
        try:
            value = json.loads(self._call["arguments"])
        except json.JSONDecodeError:
            return None
        return value if isinstance(value, dict) else None


def parse_params(
    syntax: CallSyntax, body: str, schema: dict[str, Any] | None
) -> dict[str, Any]:
    """Arguments written one by one (`key_open` KEY `key_close` VALUE ...).

    String values are taken raw; the others are JSON, as the grammar wrote them.
    """
    form = syntax.arguments
    properties = (schema or {}).get("properties") or {}
    text = body.lstrip().removeprefix(form.open)
    if form.close:
        text = text.rstrip().removesuffix(form.close)
    arguments: dict[str, Any] = {}
    decoder = json.JSONDecoder()
    at = 0
    while True:
        start = text.find(form.key_open, at) if form.key_open else at
        key_end = text.find(form.key_close, start) if start >= 0 else -1
        if start < 0 or key_end < 0:
            return arguments
        key = text[start + len(form.key_open) : key_end].strip()
        at = key_end + len(form.key_close)
        if (properties.get(key) or {}).get("type") == "string" or form.quote:
            if form.quote and text.startswith(form.quote, at):
                end = text.find(form.quote, at + len(form.quote))
                arguments[key] = text[at + len(form.quote) : end]
                at = end + len(form.quote) + len(form.separator)
                continue
            if form.quote:  # a JSON value between separators
                value, at = decoder.raw_decode(text, at)
                arguments[key], at = value, at + len(form.separator)
                continue
        end = text.find(form.value_close, at) if form.value_close else len(text)
        raw = text[at : end if end >= 0 else len(text)]
        at = (end if end >= 0 else len(text)) + len(form.value_close)
        arguments[key] = (
            raw if properties.get(key, {}).get("type") == "string" else _json(raw)
        )


def _json(raw: str) -> Any:
    try:
        return json.loads(raw)
    except json.JSONDecodeError:
        return raw
