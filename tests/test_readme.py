"""README's examples, run verbatim (but for the port) against a real server."""

from __future__ import annotations

import contextlib
import io
import json
import re
import subprocess
from typing import Any

import pytest
import requests

from conftest import API_KEY, ROOT, Server

README = (ROOT / "README.md").read_text()
README_URL = "http://127.0.0.1:7777"


def blocks(language: str) -> list[str]:
    return re.findall(rf"```{language}\n(.*?)```", README, re.S)


def block_with(language: str, marker: str) -> str:
    (found,) = [block for block in blocks(language) if marker in block]
    return found


def on(server: Server, code: str) -> str:
    assert README_URL in code
    return code.replace(README_URL, server.url)


def run_python(code: str) -> str:
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        exec(compile(code, "README.md", "exec"), {})  # noqa: S102
    return printed.getvalue()


def greedy_answer(server: Server, question: str, max_tokens: int) -> str:
    body = {
        "model": "m",
        "max_tokens": max_tokens,
        "temperature": 0,
        "messages": [{"role": "user", "content": question}],
    }
    headers = {"x-api-key": API_KEY, "anthropic-version": "2023-06-01"}
    answer = requests.post(f"{server.url}/v1/messages", json=body, headers=headers)
    return answer.json()["content"][0]["text"]


QUESTION = "What is the capital of France?"


def test_the_readme_names_the_default_address_and_key() -> None:
    assert f"export ANTHROPIC_BASE_URL={README_URL}" in README
    assert f"export ANTHROPIC_API_KEY={API_KEY}" in README


@pytest.mark.parametrize("marker", ["curl -s"])
def test_the_curl_example(server: Server, marker: str) -> None:
    command = on(server, block_with("sh", marker))
    result = subprocess.run(["bash", "-c", command], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    message: dict[str, Any] = json.loads(result.stdout)
    assert message["type"] == "message"
    assert message["content"][0]["text"] == greedy_answer(server, QUESTION, 100)


def test_the_anthropic_sdk_example_answers_greedily(server: Server) -> None:
    printed = run_python(on(server, block_with("python", "import anthropic")))
    assert printed.strip() and printed == greedy_answer(server, QUESTION, 200) + "\n"


def test_the_openai_sdk_example_answers_greedily(server: Server) -> None:
    code = block_with("python", "import openai").replace(
        f"{README_URL}/v1", f"{server.url}/v1"
    )
    printed = run_python(code)
    answer = greedy_answer(server, QUESTION, 200)
    assert printed.startswith(answer + "\n")
    counted = printed[len(answer) + 1 :]
    assert counted == greedy_answer(server, "Count to five.", 100)
