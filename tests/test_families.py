"""Model families: recognised from their templates, their calls read back in
their own syntax, their grammars buildable, their reasoning split off.

The call texts below are what each family's real template renders for one
call (get_weather with city and unit), written out here as fixtures.
"""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import llguidance
import pytest

from pensieve.engine import (
    EngineUnavailable,
    TextDelta,
    ThinkingDelta,
    ToolCallEnd,
    ToolCallStart,
    ToolPolicy,
    ToolSpec,
)
from pensieve.engine.engine import read_chat_template
from pensieve.engine.families import FAMILIES, GENERIC, detect_family
from pensieve.engine.grammars import calls_grammar
from pensieve.engine.prompt import pending_lead
from pensieve.engine.toolstream import ToolCallSplitter

WEATHER = ToolSpec(
    "get_weather",
    "Weather",
    {
        "type": "object",
        "properties": {
            "city": {"type": "string"},
            "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]},
            "days": {"type": "integer", "minimum": 1},
        },
        "required": ["city", "unit"],
    },
)
PARIS = {"city": "Paris", "unit": "celsius"}
ARGS = '{"city": "Paris", "unit": "celsius"}'
# family -> (a template snippet that marks it, the call as its template renders it)
RENDERED = {
    "hermes": (
        '{{ "<tool_call>\\n" }}{{ tool_call.name }}',
        f'<tool_call>\n{{"name": "get_weather", "arguments": {ARGS}}}\n</tool_call>',
    ),
    "qwen3_coder": (
        "{{- '\\n<tool_call>\\n<function=' + tool_call.name + '>\\n' }}",
        "<tool_call>\n<function=get_weather>\n<parameter=city>\nParis\n</parameter>\n"
        "<parameter=unit>\ncelsius\n</parameter>\n</function>\n</tool_call>",
    ),
    "glm": (
        "<arg_key>{{ k }}</arg_key>{# tool #}",
        "<tool_call>get_weather\n<arg_key>city</arg_key>\n<arg_value>Paris</arg_value>\n"
        "<arg_key>unit</arg_key>\n<arg_value>celsius</arg_value>\n</tool_call>",
    ),
    "minimax": (
        "{%- set toolcall_begin_token = '<minimax:tool_call>' -%}",
        '<minimax:tool_call>\n<invoke name="get_weather">\n<parameter name="city">'
        'Paris</parameter>\n<parameter name="unit">celsius</parameter>\n</invoke>\n'
        "</minimax:tool_call>",
    ),
    "kimi": (
        "<|tool_calls_section_begin|>{# tool #}",
        "<|tool_calls_section_begin|><|tool_call_begin|>functions.get_weather:0"
        f"<|tool_call_argument_begin|>{ARGS}<|tool_call_end|>"
        "<|tool_calls_section_end|>",
    ),
    "deepseek": (
        "<｜tool▁calls▁begin｜>{# tool #}",
        "<｜tool▁calls▁begin｜><｜tool▁call▁begin｜>get_weather<｜tool▁sep｜>"
        f"{ARGS}<｜tool▁call▁end｜><｜tool▁calls▁end｜>",
    ),
    "mistral": (
        "[TOOL_CALLS]{# tool #}",
        f"[TOOL_CALLS]get_weather[CALL_ID]abc123XYZ[ARGS]{ARGS}",
    ),
    "gemma4": (
        "<|tool_call>call:{# tool #}<tool_call|>",
        '<|tool_call>call:get_weather{city:<|"|>Paris<|"|>,unit:<|"|>celsius<|"|>}'
        "<tool_call|>",
    ),
    "harmony": (
        '{{- "<|start|>assistant<|channel|>final<|message|>" }}{# tools #}',
        f" to=functions.get_weather<|channel|>commentary json<|message|>{ARGS}<|call|>",
    ),
    "phi4": (
        "<|tool_call|>{{ tool }}",
        f'<|tool_call|>{{"name": "get_weather", "arguments": {ARGS}}}<|/tool_call|>',
    ),
    "llama3": (
        '<|start_header_id|>ipython{# "parameters": tools #}',
        f'{{"name": "get_weather", "parameters": {ARGS}}}',
    ),
}


def split(splitter: ToolCallSplitter, text: str, *, chunk: int) -> list[Any]:
    events = []
    for at in range(0, len(text), chunk):
        events.extend(splitter.feed(text[at : at + chunk]))
    return events + splitter.finish()


def test_every_family_is_recognised_by_its_own_markers() -> None:
    assert {f.name for f in FAMILIES} == set(RENDERED)
    for name, (snippet, _) in RENDERED.items():
        assert detect_family(snippet).name == name
    assert detect_family("{{ messages }}") is GENERIC  # no tools: the generic prompt
    assert detect_family(None) is GENERIC


@pytest.mark.parametrize("name", sorted(RENDERED))
@pytest.mark.parametrize("chunk", [1, 3, 1000])
def test_a_call_in_its_native_syntax_is_read_back(name: str, chunk: int) -> None:
    family = next(f for f in FAMILIES if f.name == name)
    text = "Let me look.\n" + RENDERED[name][1]
    splitter = ToolCallSplitter(True, family, (WEATHER,))
    events = split(splitter, text, chunk=chunk)
    starts = [e for e in events if isinstance(e, ToolCallStart)]
    ends = [e for e in events if isinstance(e, ToolCallEnd)]
    assert [s.name for s in starts] == ["get_weather"]
    assert [e.input for e in ends] == [PARIS]
    pieces = "".join(e.partial_json for e in events if hasattr(e, "partial_json"))
    assert json.loads(pieces) == PARIS  # the deltas join to the input
    text_out = "".join(e.text for e in events if isinstance(e, TextDelta))
    assert text_out == "Let me look."  # the space before a call is the template's
    if name == "kimi":  # the family names its calls: that is the tool_use id
        assert starts[0].id == "functions.get_weather:0"


@pytest.mark.parametrize("family", [*FAMILIES, GENERIC], ids=lambda f: f.name)
@pytest.mark.parametrize("parallel", [True, False])
def test_every_family_grammar_builds(family: Any, parallel: bool) -> None:
    policy = ToolPolicy(tools=(WEATHER,), choice="any", parallel=parallel)
    tokens = {"<tool_call>": 5, "</tool_call>": 6, '<|"|>': 7, "[ARGS]": 8}
    grammar = calls_grammar(family, policy, tokens)
    assert llguidance.LLMatcher.validate_grammar(grammar) == ""
    opened = calls_grammar(family, policy, tokens, opened=family.calls.trigger)
    assert llguidance.LLMatcher.validate_grammar(opened) == ""


def test_reasoning_becomes_thinking_and_never_text() -> None:
    family = next(f for f in FAMILIES if f.name == "hermes")
    text = "<think>\nThe user wants weather.\n</think>\n\nIt is sunny."
    for chunk in (1, 4, 100):
        splitter = ToolCallSplitter(False, family, reasoning=True)
        events = split(splitter, text, chunk=chunk)
        thought = "".join(e.text for e in events if isinstance(e, ThinkingDelta))
        answer = "".join(e.text for e in events if isinstance(e, TextDelta))
        assert thought.strip() == "The user wants weather."
        assert answer == "It is sunny."


def test_output_that_starts_inside_the_reasoning() -> None:
    family = next(f for f in FAMILIES if f.name == "minimax")
    splitter = ToolCallSplitter(False, family, in_reasoning=True)
    events = split(splitter, "plan it</think>\n\nDone.", chunk=2)
    assert [type(e) for e in events if not isinstance(e, TextDelta)][0] is ThinkingDelta
    assert "".join(e.text for e in events if isinstance(e, TextDelta)) == "Done."


def test_harmony_channels_become_thinking_and_text() -> None:
    family = next(f for f in FAMILIES if f.name == "harmony")
    text = (
        "<|channel|>analysis<|message|>Easy.<|end|><|start|>assistant"
        "<|channel|>final<|message|>Paris is sunny."
    )
    events = split(ToolCallSplitter(True, family, reasoning=True), text, chunk=5)
    thought = "".join(e.text for e in events if isinstance(e, ThinkingDelta))
    answer = "".join(e.text for e in events if isinstance(e, TextDelta))
    assert (thought, answer) == ("Easy.", "Paris is sunny.")


def test_without_a_family_reasoning_text_stays_text() -> None:
    events = split(ToolCallSplitter(False), "<think>x</think>y", chunk=3)
    assert all(isinstance(e, TextDelta) for e in events)
    assert "".join(e.text for e in events) == "<think>x</think>y"


def test_a_bad_chat_template_file_is_a_clear_error(tmp_path: Path) -> None:
    missing = tmp_path / "missing.jinja"
    with pytest.raises(EngineUnavailable, match="missing.jinja"):
        read_chat_template(missing)
    broken = tmp_path / "broken.jinja"
    broken.write_text("{% for m in messages %}{{ m.content }}")
    with pytest.raises(EngineUnavailable, match=r"broken\.jinja, line 1"):
        read_chat_template(broken)
    good = tmp_path / "good.jinja"
    good.write_text("{% for m in messages %}{{ m.content }}{% endfor %}")
    assert read_chat_template(good) == good.read_text()


def family_named(name: str) -> Any:
    return next(f for f in FAMILIES if f.name == name)


@pytest.mark.parametrize("chunk", [1, 7, 1000])
def test_a_harmony_call_that_opens_the_output_without_its_space(chunk: int) -> None:
    """The output's first space is trimmed when decoded: " to=" reads "to="."""
    text = f"to=functions.get_weather<|channel|>commentary json<|message|>{ARGS}"
    splitter = ToolCallSplitter(True, family_named("harmony"), (WEATHER,))
    events = split(splitter, text + "<|call|>", chunk=chunk)
    assert [e.name for e in events if isinstance(e, ToolCallStart)] == ["get_weather"]
    assert [e.input for e in events if isinstance(e, ToolCallEnd)] == [PARIS]
    assert not [e for e in events if isinstance(e, TextDelta)]


@pytest.mark.parametrize("name", ["harmony", "minimax"])
def test_a_lazy_grammar_starts_whether_the_calls_space_was_written(name: str) -> None:
    """Triggers leave out the calls' leading space (" to=", "\\n<minimax:")."""
    family = family_named(name)
    policy = ToolPolicy(tools=(WEATHER,), choice="auto")
    for opened in (family.calls.trigger, " " + family.calls.trigger):
        if name == "minimax":
            opened = opened.replace(" ", "\n")
        grammar = calls_grammar(family, policy, {}, opened=opened)
        assert llguidance.LLMatcher.validate_grammar(grammar) == ""


@pytest.mark.parametrize(
    ("name", "prompt_end", "lead"),
    [
        ("glm", "<|assistant|>", "\n<think></think>\n"),
        ("glm", "<|assistant|>\n<think></think>", "\n"),  # thinking off wrote it
        ("kimi", "<|im_middle|>", "<think></think>"),
        ("hermes", "<|im_start|>assistant\n", ""),  # Qwen writes no empty block
    ],
)
def test_an_output_that_will_not_reason_writes_the_empty_block_history_has(
    name: str, prompt_end: str, lead: str
) -> None:
    loaded = SimpleNamespace(family=family_named(name))
    assert pending_lead(loaded, "...user text" + prompt_end) == lead  # type: ignore[arg-type]
