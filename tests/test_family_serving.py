"""Every model family served end to end, through the HTTP API.

Each family is a tiny random-weight model (tests/tiny_models.py) wearing a
small chat template of this suite's own in that family's syntax
(tests/family_templates/). Random weights write noise, so only the shape is
checked: a forced call's input validates, whole and streamed; a call cut by
max_tokens is left out; reasoning is a signed thinking block closed within its
budget; count_tokens counts what the template itself renders.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any

import jsonschema
import numpy as np
import pytest
from flask import Flask
from flask.testing import FlaskClient
from tiny_models import FAMILY_MARKERS, build_family_model
from transformers import AutoTokenizer

from pensieve import create_app
from pensieve.engine import ToolPolicy, ToolSpec
from pensieve.engine.constrain import GrammarConstraint
from pensieve.engine.families import Family
from pensieve.extension import engine_of

TEMPLATES = Path(__file__).resolve().parent / "family_templates"
KEY = "family-key"
HEADERS = {"x-api-key": KEY, "anthropic-version": "2023-06-01"}
SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "city": {"type": "string", "maxLength": 12},
        "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]},
    },
    "required": ["city", "unit"],
}
WEATHER = {"name": "get_weather", "description": "The weather.", "input_schema": SCHEMA}
HF_WEATHER = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "The weather.",
        "parameters": SCHEMA,
    },
}
QUESTION = [{"role": "user", "content": "What is the weather in Paris?"}]
SYSTEM = "You are terse."
CALL_ID = "call12345"  # 9 letters and digits: what Mistral's template demands
PARIS = {"city": "Paris", "unit": "celsius"}
RESULT = "18 C, sunny"
BUDGET = 1024  # the least budget_tokens the Messages API accepts
# The thought's text, tokenised again, may take a few more tokens than were
# generated ("ELD", "ELD", ... read back as "EL", "DEL", "DEL", ...): allowed
# for, well below the 24 more that an unenforced budget would let it take.
RETOKENIZED = 8


@dataclass(frozen=True)
class Case:
    """One family: its name in FAMILIES, its markers in FAMILY_MARKERS."""

    family: str
    stem: str
    opens: bool = False  # the template's generation prompt opens the reasoning

    @property
    def template(self) -> str:
        return (TEMPLATES / f"{self.family}.jinja").read_text(encoding="utf-8")

    @property
    def reasons(self) -> bool:
        return FAMILY_MARKERS[self.stem].reasoning


CASES = (
    Case("hermes", "qwen3"),
    Case("qwen3_coder", "qwen3.5", opens=True),
    Case("glm", "glm-4.6"),
    Case("minimax", "minimax-m2", opens=True),
    Case("kimi", "kimi-k2-thinking"),
    Case("deepseek", "deepseek-v3.1"),
    Case("mistral", "mistral-small-3.2"),
    Case("gemma4", "gemma-4"),
    Case("harmony", "gpt-oss"),
    Case("phi4", "phi-4-mini.llama-cpp"),
    Case("llama3", "llama-3.3"),
)
REASONING = tuple(c for c in CASES if c.reasons)
OPENING = tuple(c for c in CASES if c.opens)


def case_id(case: Case) -> str:
    return case.family


@dataclass
class Served:
    """A real app (real engine) on one family's tiny model."""

    app: Flask
    client: FlaskClient
    tokenizer: Any  # the model's own Hugging Face tokenizer

    @property
    def family(self) -> Family:
        return engine_of(self.app).loaded().family

    @cached_property
    def forced_call(self) -> dict[str, Any]:
        """The response to forced(), asked once (greedy: always the same)."""
        return self.message(forced())

    def message(self, body: dict[str, Any]) -> dict[str, Any]:
        response = self.client.post("/v1/messages", json=body, headers=HEADERS)
        assert response.status_code == 200, response.text
        return response.get_json()

    def stream(self, body: dict[str, Any]) -> list[dict[str, Any]]:
        body = {**body, "stream": True}
        response = self.client.post("/v1/messages", json=body, headers=HEADERS)
        assert response.status_code == 200, response.text
        return [
            json.loads(line[len("data: ") :])
            for line in response.text.splitlines()
            if line.startswith("data: ")
        ]


class Servers:
    """One app per family, built on first use and kept for the module."""

    def __init__(self, root: Path, tokenizer_dir: Path, cache_dir: Path) -> None:
        self.root, self.tokenizer_dir, self.cache_dir = root, tokenizer_dir, cache_dir
        self.served: dict[str, Served] = {}

    def __getitem__(self, case: Case) -> Served:
        if case.family not in self.served:
            target = build_family_model(
                case.stem, case.template, self.root / case.family, self.tokenizer_dir
            )
            app = create_app(
                {
                    "MODEL": str(target),
                    "API_KEY": KEY,
                    "CACHE_DIR": str(self.cache_dir),
                    "CPU_THREADS": 1,  # a model this small gains nothing from more
                }
            )
            tokenizer = AutoTokenizer.from_pretrained(str(target))
            self.served[case.family] = Served(app, app.test_client(), tokenizer)
        return self.served[case.family]


@pytest.fixture(scope="module")
def servers(
    tmp_path_factory: pytest.TempPathFactory, bundled_model_dir: Path, cache_dir: Path
) -> Servers:
    return Servers(tmp_path_factory.mktemp("families"), bundled_model_dir, cache_dir)


def forced(**extra: Any) -> dict[str, Any]:
    """A request that must call get_weather, once, greedily."""
    return {
        "model": "m",
        "max_tokens": 120,
        "temperature": 0,
        "messages": QUESTION,
        "tools": [WEATHER],
        "tool_choice": {
            "type": "tool",
            "name": "get_weather",
            "disable_parallel_tool_use": True,
        },
        **extra,
    }


def chat(**extra: Any) -> dict[str, Any]:
    return {"model": "m", "temperature": 0, "messages": QUESTION, **extra}


def blocks(message: dict[str, Any], kind: str) -> list[dict[str, Any]]:
    return [block for block in message["content"] if block["type"] == kind]


def stop_reason(events: list[dict[str, Any]]) -> str:
    [delta] = [e for e in events if e["type"] == "message_delta"]
    return delta["delta"]["stop_reason"]


@pytest.mark.parametrize("case", CASES, ids=case_id)
def test_the_template_is_read_as_its_family(servers: Servers, case: Case) -> None:
    assert servers[case].family.name == case.family


@pytest.mark.parametrize("case", CASES, ids=case_id)
def test_a_forced_call_validates(servers: Servers, case: Case) -> None:
    served = servers[case]
    message = served.forced_call
    assert message["stop_reason"] == "tool_use", message
    [call] = blocks(message, "tool_use")
    assert call["name"] == "get_weather" and call["id"]
    jsonschema.validate(call["input"], SCHEMA)
    trigger = served.family.calls.trigger.strip()
    assert not any(trigger in b["text"] for b in blocks(message, "text")), message


@pytest.mark.parametrize("case", CASES, ids=case_id)
def test_a_forced_call_streams_its_input(servers: Servers, case: Case) -> None:
    served = servers[case]
    events = served.stream(forced())
    assert events[0]["type"] == "message_start"
    assert events[-1]["type"] == "message_stop"
    assert stop_reason(events) == "tool_use", events
    starts = [
        e
        for e in events
        if e["type"] == "content_block_start"
        and e["content_block"]["type"] == "tool_use"
    ]
    assert [s["content_block"]["name"] for s in starts] == ["get_weather"]
    pieces = "".join(
        e["delta"]["partial_json"]
        for e in events
        if e["type"] == "content_block_delta"
        and e["index"] == starts[0]["index"]
        and e["delta"]["type"] == "input_json_delta"
    )
    streamed = json.loads(pieces)
    jsonschema.validate(streamed, SCHEMA)
    [whole] = blocks(served.forced_call, "tool_use")  # greedy: the same call
    assert streamed == whole["input"]


@pytest.mark.parametrize("case", CASES, ids=case_id)
def test_a_call_cut_by_max_tokens_is_left_out(servers: Servers, case: Case) -> None:
    served = servers[case]
    message = served.message(forced(max_tokens=4))
    assert message["stop_reason"] == "max_tokens", message
    assert blocks(message, "tool_use") == [], message  # no call fits in 4 tokens
    assert stop_reason(served.stream(forced(max_tokens=4))) == "max_tokens"


@pytest.mark.parametrize("case", REASONING, ids=case_id)
def test_thinking_is_a_signed_block_within_its_budget(
    servers: Servers, case: Case
) -> None:
    served = servers[case]
    reasoning = served.family.reasoning
    assert reasoning is not None
    thinking = {"type": "enabled", "budget_tokens": BUDGET}
    message = served.message(chat(max_tokens=BUDGET + 24, thinking=thinking))
    first, *rest = message["content"]
    assert first["type"] == "thinking" and first["signature"], message
    thought = first["thinking"]
    tokens = served.tokenizer.encode(thought, add_special_tokens=False)
    assert len(tokens) <= BUDGET + RETOKENIZED, "the budget closes the reasoning"
    assert reasoning.close not in thought
    assert not [b for b in rest if b["type"] == "thinking"]
    if thought.strip():
        assert not any(thought.strip() in b["text"] for b in blocks(message, "text"))
    assert message["usage"]["output_tokens"] <= BUDGET + 24


@pytest.mark.parametrize("case", REASONING, ids=case_id)
def test_thinking_switched_off_writes_none(servers: Servers, case: Case) -> None:
    message = servers[case].message(chat(max_tokens=12, thinking={"type": "disabled"}))
    assert blocks(message, "thinking") == [], message


@pytest.mark.parametrize("case", OPENING, ids=case_id)
def test_openai_reasoning_content_where_the_prompt_opens_it(
    servers: Servers, case: Case
) -> None:
    # The OpenAI face has no switch for thinking: a template whose generation
    # prompt opens the reasoning by default is where reasoning_content shows.
    body = {"model": "m", "max_tokens": 10, "temperature": 0, "messages": QUESTION}
    bearer = {"Authorization": f"Bearer {KEY}"}
    response = servers[case].client.post(
        "/v1/chat/completions", json=body, headers=bearer
    )
    assert response.status_code == 200, response.text
    choice = response.get_json()["choices"][0]
    assert choice["message"].get("reasoning_content"), choice
    assert choice["finish_reason"] == "length"


def hf_history(string_arguments: bool) -> list[dict[str, Any]]:
    """The conversation of HISTORY the Hugging Face way."""
    arguments: Any = json.dumps(PARIS) if string_arguments else PARIS
    call = {
        "id": CALL_ID,
        "type": "function",
        "function": {"name": "get_weather", "arguments": arguments},
    }
    return [
        {"role": "system", "content": SYSTEM},
        *QUESTION,
        {"role": "assistant", "content": "", "tool_calls": [call]},
        {
            "role": "tool",
            "tool_call_id": CALL_ID,
            "name": "get_weather",
            "content": RESULT,
        },
    ]


HISTORY = [
    *QUESTION,
    {
        "role": "assistant",
        "content": [
            {"type": "tool_use", "id": CALL_ID, "name": "get_weather", "input": PARIS}
        ],
    },
    {
        "role": "user",
        "content": [{"type": "tool_result", "tool_use_id": CALL_ID, "content": RESULT}],
    },
]


@pytest.mark.parametrize("case", CASES, ids=case_id)
def test_count_tokens_is_the_templates_own_render(servers: Servers, case: Case) -> None:
    served = servers[case]
    body = {"model": "m", "system": SYSTEM, "messages": HISTORY, "tools": [WEATHER]}
    response = served.client.post(
        "/v1/messages/count_tokens", json=body, headers=HEADERS
    )
    assert response.status_code == 200, response.text
    text = served.tokenizer.apply_chat_template(
        hf_history(FAMILY_MARKERS[case.stem].string_arguments),
        tools=[HF_WEATHER],
        add_generation_prompt=True,
        tokenize=False,
    )
    assert RESULT in text and "Paris" in text  # the template rendered it all
    expected = served.tokenizer.encode(text, add_special_tokens=False)
    assert response.get_json()["input_tokens"] == len(expected)


@pytest.mark.parametrize("case", CASES, ids=case_id)
def test_the_next_turn_reads_the_models_own_call_from_the_cache(
    servers: Servers, case: Case
) -> None:
    """An agent loop's second turn (the call, then its result) re-renders the
    call as the tokens the model generated: the cache holds all of it but
    its last token (the end of turn, sampled but never run through the model)."""
    served = servers[case]
    first = served.message(forced())
    [use] = blocks(first, "tool_use")
    result = {"type": "tool_result", "tool_use_id": use["id"], "content": RESULT}
    history = [{"role": "assistant", "content": first["content"]}]
    history.append({"role": "user", "content": [result]})
    second = served.message(forced(messages=[*QUESTION, *history], max_tokens=2))
    usage = first["usage"]
    prompt = usage["input_tokens"] + usage["cache_read_input_tokens"]
    own_call = usage["output_tokens"] - 1
    assert second["usage"]["cache_read_input_tokens"] >= prompt + own_call


def call_opening(family: Family) -> str:
    """The text a call starts with, up to and including its trigger."""
    opening = family.calls.section[0] + family.calls.head_text
    trigger = family.calls.trigger
    return opening[: opening.index(trigger) + len(trigger)]


@pytest.mark.parametrize("case", CASES, ids=case_id)
def test_under_auto_the_grammar_takes_over_at_the_familys_own_marker(
    servers: Servers, case: Case
) -> None:
    """The lazy trigger: free text is not constrained; the family's call
    marker, as the model writes it, hands the output to the calls' grammar."""
    served = servers[case]
    loaded = engine_of(served.app).loaded()
    policy = ToolPolicy(tools=(ToolSpec("get_weather", "", SCHEMA),), choice="auto")
    constraint = GrammarConstraint(
        loaded, loaded.family, policy=policy, response_schema=None
    )
    tokenizer, vocab = loaded.tokenizer, len(served.tokenizer)
    written = tokenizer.encode("Hi", add_special_tokens=False)
    constraint.consume(np.array(written))  # the prompt
    written += tokenizer.encode("Let me check.", add_special_tokens=False)
    constraint.consume(np.array(written))
    assert constraint.allowed(vocab) is None  # free text
    written += tokenizer.encode(call_opening(loaded.family), add_special_tokens=False)
    constraint.consume(np.array(written))
    mask = constraint.allowed(vocab)
    assert mask is not None and 0 < mask.sum() < vocab // 2


@pytest.mark.parametrize("case", CASES, ids=case_id)
def test_a_free_string_that_loops_is_closed_and_the_call_validates(
    servers: Servers, case: Case
) -> None:
    """No maxLength: random weights repeat a word inside the string until the
    loop guard closes it, by the family's own rules (JSON or raw values)."""
    free = {**SCHEMA, "properties": {"city": {"type": "string"}}, "required": ["city"]}
    tool = {**WEATHER, "input_schema": free}
    message = servers[case].message(forced(tools=[tool], max_tokens=200))
    assert message["stop_reason"] == "tool_use", message
    [use] = blocks(message, "tool_use")
    jsonschema.validate(use["input"], free)
