"""OpenAI request validation and conversion to the engine's terms."""

from __future__ import annotations

import pytest
from flask.testing import FlaskClient

from fake_engine import FakeEngine
from openai_helpers import (
    CHAT,
    COMPLETION,
    WEATHER,
    assert_openai_error,
    chat,
    complete,
)
from pensieve.engine import GenerationRequest, effective_sampling
from pensieve.schemas.chat_completions import ChatCompletionRequestSchema

CHAT_VIOLATIONS = [
    ({"n": 2}, "n"),
    ({"n": "1"}, "n"),
    ({"temperature": 2.5}, "temperature"),
    ({"temperature": "1"}, "temperature"),
    ({"top_p": 1.5}, "top_p"),
    ({"max_tokens": 0}, "max_tokens"),
    ({"max_completion_tokens": "5"}, "max_completion_tokens"),
    ({"stop": 5}, "stop"),
    ({"stop": ["ok", ""]}, "stop"),
    ({"stream": "yes"}, "stream"),
    ({"stream_options": {"include_usage": True}}, "stream_options"),
    (
        {"stream": True, "stream_options": {"include_usage": "yes"}},
        "stream_options.include_usage",
    ),
    ({"seed": 1.5}, "seed"),
    ({"seed": 2**64}, "seed"),  # mlx takes a uint64 seed
    ({"seed": -1}, "seed"),
    ({"presence_penalty": 3}, "presence_penalty"),
    ({"logprobs": True}, "logprobs"),
    ({"model": ""}, "model"),
    ({"messages": []}, "messages"),
    ({"messages": "Hi"}, "messages"),
    ({"messages": [{"role": "robot", "content": "x"}]}, "messages.0.role"),
    ({"messages": [{"role": "function", "content": "x"}]}, "messages.0.role"),
    ({"messages": [{"role": "user", "content": 5}]}, "messages.0.content"),
    ({"messages": [{"role": "user"}]}, "messages.0.content"),
    (
        {"messages": [{"role": "user", "content": [{"type": "text"}]}]},
        "messages.0.content.0.text",
    ),
    (
        {"messages": [{"role": "user", "content": [{"type": "image_url"}]}]},
        "messages.0.content.0.type",
    ),
    (
        {"messages": [{"role": "user", "content": [{"type": "refusal"}]}]},
        "messages.0.content.0.type",
    ),
    ({"messages": [{"role": "tool", "content": "Sunny"}]}, "messages.0.tool_call_id"),
    ({"messages": [{"role": "assistant"}]}, "messages.0.content"),
    (
        {
            "messages": [
                {
                    "role": "assistant",
                    "tool_calls": [
                        {
                            "id": "c1",
                            "type": "function",
                            "function": {"name": "f", "arguments": "[1]"},
                        }
                    ],
                }
            ]
        },
        "messages.0.tool_calls.0.function.arguments",
    ),
    ({"tools": [{"type": "custom", "custom": {"name": "x"}}]}, "tools.0.type"),
    (
        {"tools": [{"type": "function", "function": {"name": "bad name!"}}]},
        "tools.0.function.name",
    ),
    (
        {"tools": [{"type": "function", "function": {"name": "f", "parameters": {}}}]},
        "tools.0.function.parameters",
    ),
    ({"tool_choice": "sometimes"}, "tool_choice"),
    ({"tool_choice": "required"}, "tool_choice"),
    (
        {
            "tools": [WEATHER],
            "tool_choice": {"type": "function", "function": {"name": "nope"}},
        },
        "tool_choice",
    ),
    ({"parallel_tool_calls": "no"}, "parallel_tool_calls"),
    ({"response_format": {"type": "xml"}}, "response_format.type"),
    ({"response_format": {"type": "json_schema"}}, "response_format.json_schema"),
    (
        {"response_format": {"type": "json_schema", "json_schema": {"schema": {}}}},
        "response_format.json_schema.name",
    ),
]


@pytest.mark.parametrize(("extra", "field"), CHAT_VIOLATIONS)
def test_chat_schema_violations_name_the_param(
    client: FlaskClient, extra: dict, field: str
) -> None:
    error = assert_openai_error(chat(client, {**CHAT, **extra}), 400)
    assert error["type"] == "invalid_request_error"
    assert error["param"] == field, error
    assert error["message"].startswith(f"{field}:"), error


def test_images_get_a_clear_text_only_message(client: FlaskClient) -> None:
    part = {"type": "image_url", "image_url": {"url": "data:image/png;base64,AA=="}}
    body = {**CHAT, "messages": [{"role": "user", "content": [part]}]}
    assert "reads text only" in assert_openai_error(chat(client, body), 400)["message"]


def test_messages_and_tools_reach_the_engine_as_chat_turns(
    client: FlaskClient, engine: FakeEngine
) -> None:
    call = {
        "id": "call_1",
        "type": "function",
        "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'},
    }
    body = {
        **CHAT,
        "tools": [WEATHER, {"type": "function", "function": {"name": "now"}}],
        "messages": [
            {"role": "developer", "content": "Be brief."},
            {
                "role": "user",
                "content": [
                    {"type": "text", "text": "Weather"},
                    {"type": "text", "text": "in Paris?"},
                ],
                "name": "ann",
            },
            {"role": "assistant", "content": None, "tool_calls": [call]},
            {"role": "tool", "tool_call_id": "call_1", "content": "Sunny"},
            {"role": "assistant", "content": [{"type": "refusal", "refusal": "No."}]},
            {"role": "user", "content": "More?"},
        ],
    }
    assert chat(client, body).status_code == 200
    seen = engine.request.messages
    turns = [(m.role, m.content) for m in seen]
    assert turns == [
        ("system", "Be brief."),
        ("user", "Weather\nin Paris?"),
        ("assistant", ""),
        ("tool", "Sunny"),
        ("assistant", "No."),
        ("user", "More?"),
    ]
    [tool_call] = seen[2].tool_calls
    assert (tool_call.id, tool_call.name) == ("call_1", "get_weather")
    assert tool_call.input == {"city": "Paris"}
    assert seen[3].tool_call_id == "call_1"
    assert [t.name for t in engine.request.tools] == ["get_weather", "now"]
    assert engine.request.tools[0].input_schema == WEATHER["function"]["parameters"]
    assert engine.request.tools[1].input_schema == {"type": "object", "properties": {}}


def test_tool_choice_and_response_format_take_the_messages_api_forms() -> None:
    schema = ChatCompletionRequestSchema()
    named = {"type": "function", "function": {"name": "get_weather"}}
    request = schema.load(
        {
            **CHAT,
            "tools": [WEATHER],
            "tool_choice": named,
            "parallel_tool_calls": False,
            "response_format": {
                "type": "json_schema",
                "json_schema": {"name": "answer", "schema": {"type": "object"}},
            },
        }
    ).generation
    policy = request.tool_policy
    assert (policy.choice, policy.name, policy.parallel) == (
        "tool",
        "get_weather",
        False,
    )
    assert request.response_schema == {"type": "object"}

    def load(**fields: object) -> GenerationRequest:
        return schema.load({**CHAT, **fields}).generation

    required = load(tools=[WEATHER], tool_choice="required").tool_policy
    assert (required.choice, required.parallel) == ("any", True)
    json_object = load(response_format={"type": "json_object"})
    assert json_object.response_schema == {"type": "object"}
    assert load(response_format={"type": "text"}).response_schema is None
    assert load().tool_policy.choice == "auto"


def test_sampling_fields_reach_the_engine_unchanged() -> None:
    body = {
        **CHAT,
        "temperature": 1.7,
        "top_p": 0.5,
        "stop": "END",
        "seed": 42,
        "n": 1,
        "presence_penalty": 0.5,
        "frequency_penalty": -1,
        "logit_bias": {"50256": -100},
        "user": "u",
        "store": False,
        "metadata": {"k": "v"},
    }
    request = ChatCompletionRequestSchema().load(body)
    sampling = effective_sampling(
        request.generation.sampling, room=30, max_temperature=2.0
    )
    assert (sampling.temperature, sampling.top_p) == (1.7, 0.5)
    assert sampling.stop_sequences == ("END",)
    assert sampling.max_tokens == 30  # no max_tokens: what fits
    assert request.generation.sampling.seed == 42
    nulls = {**CHAT, "temperature": None, "stop": None, "n": None, "stream": None}
    defaults = ChatCompletionRequestSchema().load(nulls)
    assert defaults.generation.sampling.temperature == 1.0
    assert defaults.stream is False
    assert defaults.generation.sampling.stop_sequences == ()


@pytest.mark.parametrize(
    ("extra", "field"),
    [
        ({"prompt": ["a", "b"]}, "prompt"),
        ({"prompt": [1, 2, 3]}, "prompt"),
        ({"prompt": ""}, "prompt"),
        ({"prompt": None}, "prompt"),
        ({"suffix": "}"}, "suffix"),
        ({"best_of": 2}, "best_of"),
        ({"logprobs": 1}, "logprobs"),
        ({"echo": "yes"}, "echo"),
        ({"n": 2}, "n"),
        ({"max_tokens": 0}, "max_tokens"),
    ],
)
def test_completion_schema_violations_name_the_param(
    client: FlaskClient, extra: dict, field: str
) -> None:
    error = assert_openai_error(complete(client, {**COMPLETION, **extra}), 400)
    assert error["param"] == field and error["message"].startswith(f"{field}:")
