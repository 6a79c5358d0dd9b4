"""llguidance grammars for tool calls in a family's own syntax, and for JSON.

A call's fixed text (markers, the tool's name, argument keys) is spelled so
that the model's own added tokens are used for its markers (`<[id]>`: a
string literal never matches an added token in llguidance), and arguments
are constrained by the tool's `input_schema`: as one JSON object, or per
argument (raw strings, JSON for everything else) for families that write
parameters one by one.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from typing import Any

from .families import Arguments, CallSyntax, Family
from .tools import ToolPolicy, ToolSpec

# Compact, predictable JSON as the templates render it (`json.dumps` style).
JSON_OPTIONS = {
    "whitespace_flexible": False,
    "item_separator": ", ",
    "key_separator": ": ",
}
RUST_REGEX_META = set("\\.+*?()|[]{}^$#&-~/")
Tokens = Mapping[str, int]  # added tokens by their text


def closed(schema: Any) -> Any:
    """`schema` with objects closed to keys they do not list, where it is silent.

    Every output of the closed schema is valid for the original one, and a
    small model can no longer wander off adding keys until max_tokens.
    """
    if isinstance(schema, list):
        return [closed(item) for item in schema]
    if not isinstance(schema, dict):
        return schema
    result = {key: closed(value) for key, value in schema.items()}
    if "properties" in schema and "additionalProperties" not in schema:
        result["additionalProperties"] = False
    return result


def json_value(schema: dict[str, Any]) -> str:
    """Lark for one JSON value matching `schema`."""
    options = {**JSON_OPTIONS, "lenient": True}
    return "%json " + json.dumps({**closed(schema), "x-guidance": options})


def json_grammar(schema: dict[str, Any]) -> str:
    """Grammar for a structured answer: JSON matching `schema`."""
    return f"start: answer\nanswer: {json_value(schema)}"


def literal(text: str, tokens: Tokens) -> str:
    """Lark for fixed `text`: its added tokens as `<[id]>`, the rest as strings."""
    if not text:
        return ""
    names = sorted((t for t in tokens if t and t in text), key=len, reverse=True)
    if not names:
        return json.dumps(text)
    pattern = re.compile("|".join(re.escape(name) for name in names))
    parts, at = [], 0
    for match in pattern.finditer(text):
        if match.start() > at:
            parts.append(json.dumps(text[at : match.start()]))
        parts.append(f"<[{tokens[match.group()]}]>")
        at = match.end()
    if at < len(text):
        parts.append(json.dumps(text[at:]))
    return " ".join(parts)


def rust_escape(text: str) -> str:
    """`text` as a literal inside a /regex/ of llguidance (Rust syntax)."""
    out = "".join(f"\\{c}" if c in RUST_REGEX_META else c for c in text)
    return out.replace("\n", "\\n")


class CallGrammar:
    """The grammar of one request's tool calls, in one family's syntax."""

    def __init__(self, family: Family, policy: ToolPolicy, tokens: Tokens) -> None:
        self.syntax: CallSyntax = family.calls
        self.id_length = family.call_id_length or 9
        self.policy = policy
        self.tokens = tokens
        self.rules: list[str] = []

    def lit(self, text: str) -> str:
        return literal(text, self.tokens)

    def build(self, opened: str = "") -> str:
        """The grammar; `opened` is what the model already wrote of the calls."""
        syntax = self.syntax
        opening, close = syntax.section
        full = opening + syntax.head_text
        if not full.startswith(opened) and full.lstrip().startswith(opened):
            # The trigger leaves out the calls' leading space (harmony's
            # " to=functions.", MiniMax's "\n<minimax:tool_call>"): written or not.
            opened = full[: len(full) - len(full.lstrip())] + opened
        if not full.startswith(opened):
            raise ValueError(f"unexpected tool-call opening {opened!r}")
        tools = self.policy.allowed
        calls = " | ".join(f"call_{i}" for i in range(len(tools)))
        first_calls = " | ".join(f"first_{i}" for i in range(len(tools)))
        more = f" ({self.lit(syntax.between)} call)*" if self.policy.parallel else ""
        head = self.lit(opening[len(opened) :]) if opening else ""
        start = " ".join(p for p in (head, "first", more, self.lit(close)) if p)
        self.rules = [f"start: {start}", f"call: {calls}", f"first: {first_calls}"]
        skip = 0 if opening else len(opened)
        for index, tool in enumerate(tools):
            self.call_rules(index, tool, skip)
        return "\n".join(self.rules)

    def call_rules(self, index: int, tool: ToolSpec, skip: int) -> None:
        """call_i, first_i (its head less what was opened) and args_i."""
        head, rest = self.head(tool)
        tail = self.lit(self.syntax.tail)
        self.rules.append(f"call_{index}: {self.lit(head)} {rest} args_{index} {tail}")
        first = self.lit(head[skip:])
        self.rules.append(f"first_{index}: {first} {rest} args_{index} {tail}")
        self.rules.append(f"args_{index}: {self.arguments(index, tool.input_schema)}")

    def head(self, tool: ToolSpec) -> tuple[str, str]:
        """The call's fixed head text, and lark for what follows it before the
        arguments (a call id the model writes)."""
        head = self.syntax.head
        if self.syntax.call_id == "kimi":  # the id names the tool: functions.NAME:N
            before, after = head.split("{id}")
            return before + f"functions.{tool.name}:", f"/[0-9]/ {self.lit(after)}"
        head = head.replace("{name}", tool.name).replace("{{", "{").replace("}}", "}")
        if self.syntax.call_id == "mistral":
            before, after = head.split("{id}")
            return before, f"/[a-zA-Z0-9]{{{self.id_length}}}/ {self.lit(after)}"
        return head, ""

    def arguments(self, index: int, schema: dict[str, Any]) -> str:
        form = self.syntax.arguments
        if form.style == "json":
            return json_value(schema)
        properties: dict[str, Any] = schema.get("properties") or {}
        required = [k for k in properties if k in set(schema.get("required", ()))]
        optional = [k for k in properties if k not in required]
        if form.separator and not required and optional:
            required, optional = optional[:1], optional[1:]
        sep = self.lit(form.separator)
        needed = [self.param(index, key, properties[key], form) for key in required]
        extra = [self.param(index, key, properties[key], form) for key in optional]
        if sep:
            body = " ".join(
                [f" {sep} ".join(needed), *(f"({sep} {e})?" for e in extra)]
            )
        else:
            body = " ".join([*needed, *(f"({e})?" for e in extra)])
        parts = (self.lit(form.open), body, self.lit(form.close))
        return " ".join(p for p in parts if p) or '""'

    def param(self, index: int, key: str, schema: Any, form: Arguments) -> str:
        """One `key: value` entry; the value gets a rule of its own."""
        name = f"v_{index}_{len(self.rules)}"
        self.rules.append(f"{name}: {self.value(schema, form)}")
        key_text = self.lit(form.key_open + key + form.key_close)
        return f"{key_text} {name}"

    def value(self, schema: Any, form: Arguments) -> str:
        """A raw string (between quotes, up to the value's close), or JSON."""
        if not isinstance(schema, dict) or schema.get("type") != "string":
            value = json_value(schema if isinstance(schema, dict) else {})
            return f"{value} {self.lit(form.value_close)}"
        close = form.quote or form.value_close
        quote = self.lit(form.quote)
        if "enum" in schema or "const" in schema:
            options = schema.get("enum", [schema.get("const")])
            text = " | ".join(json.dumps(str(o)) for o in options)
            return f"{quote} ({text}) {self.lit(close)}"
        if "pattern" in schema:
            pattern = schema["pattern"].removeprefix("^").removesuffix("$")
            return f"{quote} /{pattern}/ {self.lit(close)}"
        return f"{quote} {self.free_text(close, schema)}"

    def free_text(self, close: str, schema: dict[str, Any]) -> str:
        """Any text up to `close` (within the string's length bounds)."""
        low, high = schema.get("minLength", 0), schema.get("maxLength")
        if high is not None or low:
            bounds = f"{{{low},{high if high is not None else ''}}}"
            return f"/(.|\\n){bounds}/ {self.lit(close)}"
        if any(close.startswith(t) for t in self.tokens if t):
            return f"/(.|\\n)*/ {self.lit(close)}"  # text cannot contain the token
        rule = f"text_{len(self.rules)}"
        self.rules.append(f"{rule}[lazy]: /(.|\\n)*{rust_escape(close)}/")
        return rule


def calls_grammar(
    family: Family, policy: ToolPolicy, tokens: Tokens, *, opened: str = ""
) -> str:
    """Grammar for the calls of `policy` in `family`'s syntax, after `opened`."""
    return CallGrammar(family, policy, tokens).build(opened)
