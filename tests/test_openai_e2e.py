"""The official OpenAI SDK against the real server and the real bundled model."""

from __future__ import annotations

import json
from typing import Any

import anthropic
import openai
import pytest
import requests

from conftest import API_KEY, Server

QUESTION = [{"role": "user", "content": "What is the capital of France?"}]
GREEDY: dict[str, Any] = {"model": "gpt-4o", "messages": QUESTION, "temperature": 0}


@pytest.fixture(scope="module")
def client(server: Server) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{server.url}/v1", api_key=API_KEY, max_retries=0)


def local_model_id(server: Server) -> str:
    return requests.get(
        f"{server.url}/health", timeout=5, headers={"x-api-key": API_KEY}
    ).json()["model"]


def test_chat_completion(client: openai.OpenAI, server: Server) -> None:
    completion = client.chat.completions.create(**GREEDY, max_tokens=12)
    assert completion.object == "chat.completion"
    assert completion.id.startswith("chatcmpl-")
    assert completion.model == local_model_id(server)
    [choice] = completion.choices
    assert choice.message.role == "assistant" and choice.message.tool_calls is None
    assert "paris" in (choice.message.content or "").lower()
    assert choice.finish_reason in ("stop", "length")
    usage = completion.usage
    assert usage is not None and usage.prompt_tokens > 10
    assert 0 < usage.completion_tokens <= 12
    assert usage.total_tokens == usage.prompt_tokens + usage.completion_tokens


def test_stream_matches_the_whole_answer_and_reports_usage(
    client: openai.OpenAI,
) -> None:
    whole = client.chat.completions.create(**GREEDY, max_completion_tokens=10)
    chunks = list(
        client.chat.completions.create(
            **GREEDY,
            max_completion_tokens=10,
            stream=True,
            stream_options={"include_usage": True},
        )
    )
    assert {chunk.id for chunk in chunks} == {chunks[0].id}
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == whole.choices[0].message.content
    reasons = [c.choices[0].finish_reason for c in chunks if c.choices]
    assert reasons[-1] == whole.choices[0].finish_reason and not any(reasons[:-1])
    final = chunks[-1]
    assert final.choices == [] and final.usage is not None and whole.usage is not None
    assert final.usage.completion_tokens == whole.usage.completion_tokens
    assert final.usage.prompt_tokens == whole.usage.prompt_tokens
    # The same prompt again: the engine's prompt cache served most of it.
    assert final.usage.prompt_tokens_details is not None
    assert final.usage.prompt_tokens_details.cached_tokens > 0
    assert final.usage.prompt_tokens_details.cached_tokens < final.usage.prompt_tokens


def test_raw_stream_is_data_lines_ending_with_done(server: Server) -> None:
    response = requests.post(
        f"{server.url}/v1/chat/completions",
        json={**GREEDY, "max_tokens": 4, "stream": True},
        headers={"Authorization": f"Bearer {API_KEY}"},
        timeout=300,
    )
    assert response.headers["content-type"].startswith("text/event-stream")
    frames = [f for f in response.text.split("\n\n") if f]
    assert frames[-1] == "data: [DONE]"
    for frame in frames[:-1]:
        if frame.startswith(":"):
            assert frame == ": keep-alive"
        else:
            assert frame.startswith("data: ") and "\n" not in frame
            assert json.loads(frame[6:])["object"] == "chat.completion.chunk"


def test_stop_strings(client: openai.OpenAI) -> None:
    text = client.chat.completions.create(**GREEDY, max_tokens=12)
    full = text.choices[0].message.content or ""
    words = full.split()
    assert len(words) >= 2, full
    stop = words[1]
    stopped = client.chat.completions.create(
        **GREEDY, max_tokens=12, stop=[stop, "never-generated"]
    )
    assert stopped.choices[0].message.content == full[: full.index(stop)]
    assert stopped.choices[0].finish_reason == "stop"


def test_greedy_output_is_identical_through_both_apis(
    client: openai.OpenAI, server: Server
) -> None:
    system = "You answer in one short sentence."
    message = anthropic.Anthropic(
        base_url=server.url, api_key=API_KEY, max_retries=0
    ).messages.create(
        model="claude-sonnet-5-5",
        max_tokens=12,
        system=system,
        messages=QUESTION,  # type: ignore[arg-type]
        extra_body={"temperature": 0},
    )
    completion = client.chat.completions.create(
        **{**GREEDY, "messages": [{"role": "developer", "content": system}, *QUESTION]},
        max_tokens=12,
    )
    assert completion.choices[0].message.content == message.content[0].text  # type: ignore[union-attr]
    usage = completion.usage
    assert usage is not None
    assert usage.completion_tokens == message.usage.output_tokens
    assert usage.prompt_tokens == (
        message.usage.input_tokens
        + (message.usage.cache_creation_input_tokens or 0)
        + (message.usage.cache_read_input_tokens or 0)
    )


def test_openai_sampling_fields_are_accepted(client: openai.OpenAI) -> None:
    completion = client.chat.completions.create(
        model="gpt-4o",
        messages=QUESTION,
        max_tokens=3,
        temperature=1.8,
        top_p=0.9,
        seed=7,
        n=1,
        presence_penalty=0.5,
        frequency_penalty=0.5,
        user="someone",
    )
    assert completion.usage is not None and completion.usage.completion_tokens <= 3


@pytest.mark.parametrize(
    ("call", "error", "param"),
    [
        (
            lambda c: c.chat.completions.create(**GREEDY, n=2),
            openai.BadRequestError,
            "n",
        ),
        (
            lambda c: c.chat.completions.create(**{**GREEDY, "temperature": 3}),
            openai.BadRequestError,
            "temperature",
        ),
        (
            lambda c: c.chat.completions.create(
                model="m",
                messages=[
                    {
                        "role": "user",
                        "content": [
                            {
                                "type": "image_url",
                                "image_url": {"url": "data:image/png;base64,AA=="},
                            }
                        ],
                    }
                ],
            ),
            openai.BadRequestError,
            "messages.0.content.0.type",
        ),
        (
            lambda c: c.embeddings.create(model="m", input="x"),
            openai.NotFoundError,
            None,
        ),
    ],
)
def test_sdk_raises_the_typed_exception(
    client: openai.OpenAI, call: Any, error: type[openai.APIStatusError], param: str
) -> None:
    with pytest.raises(error) as caught:
        call(client)
    assert caught.value.param == param and caught.value.message


def test_wrong_key_is_an_authentication_error(server: Server) -> None:
    wrong = openai.OpenAI(base_url=f"{server.url}/v1", api_key="nope", max_retries=0)
    with pytest.raises(openai.AuthenticationError) as caught:
        wrong.chat.completions.create(**GREEDY, max_tokens=2)
    assert caught.value.code == "invalid_api_key"


def test_prompt_too_long_is_context_length_exceeded(client: openai.OpenAI) -> None:
    with pytest.raises(openai.BadRequestError) as caught:
        client.chat.completions.create(
            model="m",
            max_tokens=5,
            messages=[{"role": "user", "content": "hello " * 9000}],
        )
    assert caught.value.code == "context_length_exceeded"
    message = caught.value.body["message"]  # type: ignore[index]
    assert message.startswith("prompt is too long: ")
    assert message.endswith(" tokens > 8191 maximum")


def test_models_list_and_retrieve(client: openai.OpenAI, server: Server) -> None:
    models = list(client.models.list())
    assert models[0].id == local_model_id(server)
    assert {m.object for m in models} == {"model"}
    model = client.models.retrieve("gpt-4o")
    assert (model.id, model.object, model.owned_by) == ("gpt-4o", "model", "pensieve")


def test_text_completion_whole_and_streamed(client: openai.OpenAI) -> None:
    request: dict[str, Any] = {
        "model": "gpt-3.5-turbo-instruct",
        "prompt": "The capital of France is",
        "max_tokens": 5,
        "temperature": 0,
    }
    completion = client.completions.create(**request)
    assert completion.object == "text_completion"
    [choice] = completion.choices
    assert choice.text and choice.finish_reason in ("stop", "length")
    usage = completion.usage
    assert usage is not None and 0 < usage.prompt_tokens < 10  # no chat template
    assert 0 < usage.completion_tokens <= 5
    chunks = list(
        client.completions.create(
            **request, stream=True, stream_options={"include_usage": True}
        )
    )
    assert "".join(c.choices[0].text for c in chunks if c.choices) == choice.text
    assert chunks[-1].usage is not None
    assert chunks[-1].usage.completion_tokens == usage.completion_tokens


WEATHER_FUNCTION = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Get the weather forecast for a city.",
        "parameters": {
            "type": "object",
            "properties": {
                "city": {"type": "string"},
                "days": {"type": "integer", "minimum": 1, "maximum": 7},
            },
            "required": ["city", "days"],
        },
    },
}
WEATHER_QUESTION = [{"role": "user", "content": "Weather in Paris for 3 days?"}]
FORCED: dict[str, Any] = {
    "model": "gpt-4o",
    "messages": WEATHER_QUESTION,
    "temperature": 0,
    "max_tokens": 100,
    "tools": [WEATHER_FUNCTION],
    "tool_choice": "required",
    "parallel_tool_calls": False,
}


def test_tool_call_round_trip(client: openai.OpenAI) -> None:
    import jsonschema

    completion = client.chat.completions.create(**FORCED)
    choice = completion.choices[0]
    assert choice.finish_reason == "tool_calls"
    [call] = choice.message.tool_calls
    arguments = json.loads(call.function.arguments)
    jsonschema.validate(arguments, WEATHER_FUNCTION["function"]["parameters"])
    answer = client.chat.completions.create(
        model="gpt-4o",
        temperature=0,
        max_tokens=20,
        tools=[WEATHER_FUNCTION],
        tool_choice="none",
        messages=[
            *WEATHER_QUESTION,
            choice.message.model_dump(exclude_none=True),
            {"role": "tool", "tool_call_id": call.id, "content": "Sunny, 24 C"},
        ],
    )
    assert answer.choices[0].finish_reason in ("stop", "length")
    assert answer.choices[0].message.content


def test_streamed_tool_call_deltas_reassemble(client: openai.OpenAI) -> None:
    whole = client.chat.completions.create(**FORCED).choices[0].message.tool_calls[0]
    name, arguments, finish = "", "", None
    for chunk in client.chat.completions.create(**FORCED, stream=True):
        choice = chunk.choices[0]
        finish = choice.finish_reason or finish
        for call in choice.delta.tool_calls or ():
            assert call.index == 0
            name += call.function.name or ""
            arguments += call.function.arguments or ""
    assert finish == "tool_calls"
    assert name == whole.function.name
    assert json.loads(arguments) == json.loads(whole.function.arguments)


def test_response_format_json_schema_validates(client: openai.OpenAI) -> None:
    import jsonschema

    schema = {
        "type": "object",
        "properties": {"title": {"type": "string"}, "year": {"type": "integer"}},
        "required": ["title", "year"],
    }
    completion = client.chat.completions.create(
        model="gpt-4o",
        temperature=0,
        max_tokens=60,
        messages=[{"role": "user", "content": "Name a famous film and its year."}],
        response_format={
            "type": "json_schema",
            "json_schema": {"name": "film", "schema": schema},
        },
    )
    jsonschema.validate(json.loads(completion.choices[0].message.content), schema)


def test_a_forced_call_with_room_for_more_is_not_repeated(
    client: openai.OpenAI,
) -> None:
    # Parallel calls allowed, the 135M model once opened the same get_weather
    # call again and again until max_tokens: finish_reason "length", and a
    # client joining the argument deltas got two JSON objects.
    options: dict[str, Any] = {
        **{k: v for k, v in FORCED.items() if k != "parallel_tool_calls"},
        "max_tokens": 60,
        "tool_choice": {"type": "function", "function": {"name": "get_weather"}},
    }
    choice = client.chat.completions.create(**options).choices[0]
    assert choice.finish_reason == "tool_calls"
    whole = [(c.function.name, c.function.arguments) for c in choice.message.tool_calls]
    assert len(set(whole)) == len(whole)
    calls: dict[int, list[str]] = {}
    finish = None
    for chunk in client.chat.completions.create(**options, stream=True):
        finish = chunk.choices[0].finish_reason or finish
        for call in chunk.choices[0].delta.tool_calls or ():
            name, arguments = calls.setdefault(call.index, ["", ""])
            calls[call.index] = [
                name + (call.function.name or ""),
                arguments + (call.function.arguments or ""),
            ]
    assert finish == "tool_calls"
    assert [tuple(calls[index]) for index in sorted(calls)] == whole
    for _, arguments in whole:
        json.loads(arguments)  # one JSON object per call
