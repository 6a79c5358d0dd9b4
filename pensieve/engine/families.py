"""Model families as data: how each writes tool calls and reasoning.

A family is recognised from the loaded tokenizer's chat template (the markers
it writes) and described declaratively: the text around a call, how its
arguments are written, the reasoning markers, and what its template needs
from a conversation. The grammar (`grammars.py`), the stream splitter
(`toolstream.py`) and the renderer (`prompt.py`) all read these descriptions;
adding a family means adding one entry to FAMILIES (and its tests).

The texts below are what each template renders for one call, so that a call
the model writes under the grammar renders back, in the next turn, to the
very tokens it generated.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal


@dataclass(frozen=True)
class Reasoning:
    """How a family's reasoning is delimited in its output."""

    open: str
    close: str
    after: str = ""  # what the template writes between the close and the answer
    # What the template writes for an assistant turn that did not reason (GLM,
    # Kimi): an output that will not reason writes it first, so that the turn
    # renders back, in the next request, to the tokens generated.
    skipped: str = ""


@dataclass(frozen=True)
class Arguments:
    """How a call's arguments are written.

    `json`: one JSON object. `params`: one entry per argument, `key_open` KEY
    `key_close` VALUE `value_close`, joined by `separator`, inside `open` and
    `close`; string values are written raw between `quote`s, other values as
    JSON.
    """

    style: Literal["json", "params"] = "json"
    open: str = ""
    close: str = ""
    key_open: str = ""
    key_close: str = ""
    value_close: str = ""
    separator: str = ""
    quote: str = ""


@dataclass(frozen=True)
class CallSyntax:
    """The text of a family's tool calls: `head` holds `{name}` (and `{id}`)."""

    trigger: str  # the text that opens the calls: `auto` hands over to the grammar
    head: str
    tail: str
    arguments: Arguments = Arguments()
    between: str = ""  # between two calls
    section: tuple[str, str] = ("", "")  # around all of a turn's calls
    call_id: Literal["", "kimi", "mistral"] = ""  # ids the model writes itself

    @property
    def head_text(self) -> str:
        """`head` with its `{{`/`}}` escapes undone (placeholders kept)."""
        return self.head.replace("{{", "{").replace("}}", "}")


@dataclass(frozen=True)
class Family:
    """One family of models: how its template and its outputs look."""

    name: str
    markers: tuple[str, ...]  # template text that identifies the family
    calls: CallSyntax
    reasoning: Reasoning | None = None
    native_tools: bool = True  # the template renders tools and calls itself
    string_arguments: bool = False  # the template wants arguments as JSON text
    call_id_length: int | None = None  # the template's required id length
    answer_open: str = ""  # what the model writes before its answer (hidden)


HERMES_CALLS = CallSyntax(
    trigger="<tool_call>",
    head='<tool_call>\n{{"name": "{name}", "arguments": ',
    tail="}\n</tool_call>",
    between="\n",
)
XML_PARAMS = Arguments(
    style="params",
    key_open="<parameter=",
    key_close=">\n",
    value_close="\n</parameter>\n",
)
THINK = Reasoning("<think>", "</think>")

FAMILIES: tuple[Family, ...] = (
    Family(
        "qwen3_coder",
        ("<tool_call>\\n<function=", "<tool_call>\n<function="),
        CallSyntax(
            trigger="<tool_call>",
            head="<tool_call>\n<function={name}>\n",
            tail="</function>\n</tool_call>",
            arguments=XML_PARAMS,
            between="\n",
        ),
        reasoning=Reasoning("<think>", "</think>", "\n\n"),
    ),
    Family(
        "glm",
        ("<arg_key>",),
        CallSyntax(
            trigger="<tool_call>",
            head="<tool_call>{name}\n",
            tail="</tool_call>",
            arguments=Arguments(
                style="params",
                key_open="<arg_key>",
                key_close="</arg_key>\n<arg_value>",
                value_close="</arg_value>\n",
            ),
            between="\n",
        ),
        reasoning=Reasoning("<think>", "</think>", "\n", skipped="\n<think></think>\n"),
    ),
    Family(
        "minimax",
        ("<minimax:tool_call>",),
        CallSyntax(
            trigger="<minimax:tool_call>",
            head='<invoke name="{name}">\n',
            tail="</invoke>\n",
            arguments=Arguments(
                style="params",
                key_open='<parameter name="',
                key_close='">',
                value_close="</parameter>\n",
            ),
            section=("\n<minimax:tool_call>\n", "</minimax:tool_call>"),
        ),
        reasoning=Reasoning("<think>", "</think>", "\n\n"),
    ),
    Family(
        "kimi",
        ("<|tool_calls_section_begin|>",),
        CallSyntax(
            trigger="<|tool_calls_section_begin|>",
            head="<|tool_call_begin|>{id}<|tool_call_argument_begin|>",
            tail="<|tool_call_end|>",
            section=("<|tool_calls_section_begin|>", "<|tool_calls_section_end|>"),
            call_id="kimi",
        ),
        reasoning=Reasoning("<think>", "</think>", skipped="<think></think>"),
    ),
    Family(
        "deepseek",
        ("<｜tool▁calls▁begin｜>",),
        CallSyntax(
            trigger="<｜tool▁calls▁begin｜>",
            head="<｜tool▁call▁begin｜>{name}<｜tool▁sep｜>",
            tail="<｜tool▁call▁end｜>",
            section=("<｜tool▁calls▁begin｜>", "<｜tool▁calls▁end｜>"),
        ),
        reasoning=THINK,
        string_arguments=True,
    ),
    Family(
        "mistral",
        ("[TOOL_CALLS]",),
        CallSyntax(
            trigger="[TOOL_CALLS]",
            head="[TOOL_CALLS]{name}[CALL_ID]{id}[ARGS]",
            tail="",
            call_id="mistral",
        ),
        call_id_length=9,
    ),
    Family(
        "gemma4",
        ("<|tool_call>",),
        CallSyntax(
            trigger="<|tool_call>",
            head="<|tool_call>call:{name}",
            tail="<tool_call|>",
            arguments=Arguments(
                style="params",
                open="{",
                close="}",
                key_close=":",
                separator=",",
                quote='<|"|>',
            ),
        ),
        reasoning=Reasoning("<|channel>thought\n", "<channel|>"),
    ),
    Family(
        "harmony",
        ("<|channel|>",),
        CallSyntax(
            # The output's first space is trimmed when decoded (as mlx-lm's
            # detokenizers do): the trigger leaves it out, the head keeps it.
            trigger="to=functions.",
            head=" to=functions.{name}<|channel|>commentary json<|message|>",
            tail="<|call|>",
        ),
        reasoning=Reasoning(
            "<|channel|>analysis<|message|>", "<|end|>", "<|start|>assistant"
        ),
        answer_open="<|channel|>final<|message|>",
    ),
    Family(
        "phi4",
        ("<|tool_call|>",),
        CallSyntax(
            trigger="<|tool_call|>",
            head='<|tool_call|>{{"name": "{name}", "arguments": ',
            tail="}<|/tool_call|>",
        ),
    ),
    Family(
        "llama3",
        ("<|start_header_id|>ipython", '"parameters": '),
        CallSyntax(
            trigger='{"name": "', head='{{"name": "{name}", "parameters": ', tail="}"
        ),
    ),
    Family(
        "hermes",
        ("<tool_call>",),
        HERMES_CALLS,
        reasoning=Reasoning("<think>", "</think>", "\n\n"),
    ),
)
# Templates that render no tools: Pensieve's own tool prompt teaches Hermes calls.
GENERIC = Family("generic", (), HERMES_CALLS, native_tools=False)


def detect_family(template: str | None) -> Family:
    """The family whose markers the chat template writes (GENERIC if none)."""
    if not isinstance(template, str) or "tool" not in template:
        return GENERIC
    for family in FAMILIES:
        if any(marker in template for marker in family.markers):
            return family
    return GENERIC
