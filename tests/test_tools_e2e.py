"""Tool use and structured output on the real bundled model, through the SDK.

Constrained decoding guarantees the shape: every tool input and every
structured answer validates against its schema, whatever the 135M model does.
"""

from __future__ import annotations

import json
from typing import Any

import anthropic
import jsonschema
import pytest

from conftest import API_KEY, Server

WEATHER = {
    "name": "get_weather",
    "description": "Get the weather forecast for a city.",
    "input_schema": {
        "type": "object",
        "properties": {
            "city": {"type": "string"},
            "days": {"type": "integer", "minimum": 1, "maximum": 7},
            "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]},
        },
        "required": ["city", "days"],
    },
}
TIME = {
    "name": "get_time",
    "description": "Current time in a timezone.",
    "input_schema": {
        "type": "object",
        "properties": {"timezone": {"type": "string"}},
        "required": ["timezone"],
    },
}
QUESTION = [
    {"role": "user", "content": "What will the weather be in Paris for 3 days?"}
]
SCHEMAS = {tool["name"]: tool["input_schema"] for tool in (WEATHER, TIME)}


@pytest.fixture(scope="module")
def client(server: Server) -> anthropic.Anthropic:
    return anthropic.Anthropic(base_url=server.url, api_key=API_KEY, max_retries=0)


def create(client: anthropic.Anthropic, **kwargs: Any) -> Any:
    options = {"model": "m", "max_tokens": 120, "messages": QUESTION, **kwargs}
    return client.messages.create(extra_body={"temperature": 0}, **options)


def tool_uses(message: Any) -> list[Any]:
    return [block for block in message.content if block.type == "tool_use"]


def assert_valid(call: Any) -> None:
    assert call.id.startswith("toolu_")
    jsonschema.validate(call.input, SCHEMAS[call.name])


def test_forced_tool_call(client: anthropic.Anthropic) -> None:
    message = create(
        client,
        tools=[WEATHER, TIME],
        tool_choice={
            "type": "tool",
            "name": "get_weather",
            "disable_parallel_tool_use": True,
        },
    )
    assert message.stop_reason == "tool_use"
    [call] = tool_uses(message)
    assert call.name == "get_weather"
    assert_valid(call)


def test_any_tool_call_streamed(client: anthropic.Anthropic) -> None:
    pieces: dict[int, str] = {}
    with client.messages.stream(
        model="m",
        max_tokens=120,
        messages=QUESTION,
        tools=[WEATHER, TIME],
        tool_choice={"type": "any"},
        extra_body={"temperature": 0},
    ) as stream:
        for event in stream:
            if (
                event.type == "content_block_delta"
                and event.delta.type == "input_json_delta"
            ):
                pieces[event.index] = (
                    pieces.get(event.index, "") + event.delta.partial_json
                )
        final = stream.get_final_message()
    assert final.stop_reason == "tool_use"
    calls = tool_uses(final)
    assert calls and set(pieces) == {final.content.index(c) for c in calls}
    for call in calls:
        assert json.loads(pieces[final.content.index(call)]) == call.input
        assert_valid(call)


def test_parallel_calls_are_allowed_or_disabled(client: anthropic.Anthropic) -> None:
    single = create(
        client,
        tools=[WEATHER],
        tool_choice={"type": "any", "disable_parallel_tool_use": True},
    )
    assert len(tool_uses(single)) == 1
    several = create(client, tools=[WEATHER], tool_choice={"type": "any"})
    assert len(tool_uses(several)) >= 1
    for call in tool_uses(several):
        assert_valid(call)


def test_tool_choice_none_never_calls(client: anthropic.Anthropic) -> None:
    message = create(
        client, tools=[WEATHER], tool_choice={"type": "none"}, max_tokens=40
    )
    assert not tool_uses(message)
    assert message.stop_reason != "tool_use"


def test_auto_calls_are_valid_when_the_model_makes_them(
    client: anthropic.Anthropic,
) -> None:
    message = create(
        client,
        tools=[WEATHER],
        messages=[
            {"role": "user", "content": "Use the get_weather tool for Paris, 2 days."}
        ],
    )
    for call in tool_uses(message):
        assert_valid(call)
    if tool_uses(message):
        assert message.stop_reason == "tool_use"


def test_full_loop_tool_result_then_answer(client: anthropic.Anthropic) -> None:
    first = create(
        client,
        tools=[WEATHER],
        tool_choice={"type": "any", "disable_parallel_tool_use": True},
    )
    [call] = tool_uses(first)
    final = create(
        client,
        tools=[WEATHER],
        max_tokens=40,
        messages=[
            *QUESTION,
            {"role": "assistant", "content": [c.model_dump() for c in first.content]},
            {
                "role": "user",
                "content": [
                    {
                        "type": "tool_result",
                        "tool_use_id": call.id,
                        "content": "Sunny, 24 C",
                    }
                ],
            },
        ],
        tool_choice={"type": "none"},
    )
    assert final.stop_reason in ("end_turn", "max_tokens")
    assert final.content[0].type == "text" and final.content[0].text.strip()


def test_structured_output_validates(client: anthropic.Anthropic) -> None:
    schema = {
        "type": "object",
        "properties": {"title": {"type": "string"}, "words": {"type": "integer"}},
        "required": ["title", "words"],
        "additionalProperties": False,
    }
    message = client.messages.create(
        model="m",
        max_tokens=80,
        messages=[{"role": "user", "content": "Give this chat a short title."}],
        extra_body={
            "temperature": 0,
            "output_config": {"format": {"type": "json_schema", "schema": schema}},
        },
    )
    jsonschema.validate(json.loads(message.content[0].text), schema)


@pytest.mark.parametrize(
    ("tools", "choice", "field"),
    [
        (
            [
                {
                    **WEATHER,
                    "input_schema": {
                        "type": "object",
                        "properties": {"a": {"type": "wrong"}},
                    },
                }
            ],
            None,
            "tools.0.input_schema",
        ),
        ([WEATHER], {"type": "tool", "name": "nope"}, "tool_choice.name"),
    ],
)
def test_bad_tools_are_400(
    client: anthropic.Anthropic, tools: list, choice: dict | None, field: str
) -> None:
    extra = {"tool_choice": choice} if choice else {}
    with pytest.raises(anthropic.BadRequestError) as caught:
        client.messages.create(
            model="m", max_tokens=5, messages=QUESTION, tools=tools, **extra
        )
    assert caught.value.body["error"]["message"].startswith(f"{field}:")


LOOPING_CALLS = [
    # Greedy, the 135M model loops inside these calls ("bread_bread_bread…",
    # "example.com.au,example.com.au,…") until max_tokens would cut them off.
    (
        "order_pizza",
        "Large pizza with mushrooms and olives.",
        {
            "type": "object",
            "properties": {
                "size": {"enum": ["small", "medium", "large"]},
                "toppings": {
                    "type": "array",
                    "items": {"type": "string"},
                    "maxItems": 5,
                },
            },
            "required": ["size", "toppings"],
        },
    ),
    (
        "send_email",
        "Email bob@example.com saying hi.",
        {
            "type": "object",
            "properties": {
                "to": {"type": "string", "pattern": "^[^@ ]+@[^@ ]+$"},
                "subject": {"type": "string"},
                "body": {"type": "string"},
            },
            "required": ["to", "body"],
        },
    ),
]


@pytest.mark.parametrize(("name", "question", "schema"), LOOPING_CALLS)
def test_a_looping_call_is_closed_valid(
    client: anthropic.Anthropic, name: str, question: str, schema: dict[str, Any]
) -> None:
    message = client.messages.create(
        model="m",
        max_tokens=160,  # the loops start well before; a margin for other CPUs
        messages=[{"role": "user", "content": question}],
        tools=[{"name": name, "description": f"Tool {name}", "input_schema": schema}],
        tool_choice={"type": "tool", "name": name, "disable_parallel_tool_use": True},
        extra_body={"temperature": 0},
    )
    assert message.stop_reason == "tool_use", message.content
    (call,) = tool_uses(message)
    jsonschema.validate(call.input, schema)


def test_any_never_makes_the_same_call_twice(client: anthropic.Anthropic) -> None:
    # Greedy, the 135M model once wrote this get_weather call twice in a turn.
    schema: dict[str, Any] = dict(WEATHER["input_schema"])  # type: ignore[arg-type]
    schema["properties"] = {
        k: v for k, v in schema["properties"].items() if k != "unit"
    }
    tool = {**WEATHER, "input_schema": schema}
    message = create(client, tools=[tool], tool_choice={"type": "any"})
    assert message.stop_reason == "tool_use"
    calls = [(c.name, json.dumps(c.input, sort_keys=True)) for c in tool_uses(message)]
    assert calls and len(set(calls)) == len(calls)
    for call in tool_uses(message):
        jsonschema.validate(call.input, schema)
