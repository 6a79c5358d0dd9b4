"""The real Claude Code CLI as a client of a server on the bundled model.

The CLI comes from npm (`@anthropic-ai/claude-code`, which ships a native Linux
binary) into a cache folder; the tests skip, saying why, only where npm or its
registry cannot be reached.

Claude Code samples at temperature 1, at which the 135M model may ramble past
any output cap (Claude Code then exits 1). The server here runs with
`PENSIEVE_MAX_TEMPERATURE=0`, as a user of a small model would set it: every
answer is greedy, so each run of these tests sees the same answers.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from conftest import API_KEY, Server, bundled_server

CLAUDE_CODE = "@anthropic-ai/claude-code@2.1.330"


@pytest.fixture(scope="session")
def claude() -> Path:
    """The `claude` executable, installed once into a cache folder."""
    npm = shutil.which("npm")
    if npm is None:
        pytest.skip("npm is not installed, so Claude Code cannot be installed")
    cache = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache"))
    prefix = cache / "pensieve-tests" / CLAUDE_CODE.replace("/", "_")
    binary = prefix / "node_modules" / ".bin" / "claude"
    if not binary.exists():
        result = subprocess.run(
            [npm, "install", "--prefix", str(prefix), CLAUDE_CODE],
            capture_output=True,
            text=True,
            timeout=600,
        )
        if result.returncode != 0:
            unreachable = ("ENOTFOUND", "ECONNREFUSED", "ETIMEDOUT", "EAI_AGAIN")
            if any(code in result.stderr for code in unreachable):
                pytest.skip(f"the npm registry is unreachable: {result.stderr[-300:]}")
            raise RuntimeError(f"npm install failed:\n{result.stderr[-2000:]}")
    return binary


@pytest.fixture(scope="module")
def server(
    cache_dir: Path, bundled_model_dir: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Server]:
    with bundled_server(cache_dir, tmp_path_factory, MAX_TEMPERATURE="0") as running:
        yield running


def test_max_temperature_makes_sampling_greedy(server: Server) -> None:
    def answer(temperature: float) -> str:
        body = {
            "model": "m",
            "max_tokens": 12,
            "temperature": temperature,
            "messages": [{"role": "user", "content": "Name three colours."}],
        }
        response = requests.post(
            f"{server.url}/v1/messages",
            json=body,
            headers={"x-api-key": API_KEY, "anthropic-version": "2023-06-01"},
            timeout=120,
        )
        assert response.status_code == 200, response.text
        return response.json()["content"][0]["text"]

    greedy = answer(0)
    assert [answer(1.0), answer(1.0)] == [greedy, greedy]


def run_claude(
    claude: Path, server: Server, home: Path, *args: str, timeout: float
) -> subprocess.CompletedProcess[str]:
    env = {
        "PATH": os.environ["PATH"],
        "HOME": str(home),
        "ANTHROPIC_BASE_URL": server.url,
        "ANTHROPIC_API_KEY": API_KEY,
        "CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC": "1",
        # Bound the test's time: Claude Code's default cap is 32k output
        # tokens, minutes on this CPU; 1,000 take ~40 s here.
        "CLAUDE_CODE_MAX_OUTPUT_TOKENS": "1000",
        "API_TIMEOUT_MS": "1500000",
    }
    return subprocess.run(
        [str(claude), *args],
        env=env,
        cwd=home,
        capture_output=True,
        text=True,
        timeout=timeout,
        stdin=subprocess.DEVNULL,
    )


def test_claude_code_bare_prints_the_model_answer(
    claude: Path, server: Server, tmp_path: Path
) -> None:
    # ~1.8k prompt tokens: minutes of prefill on this CPU, kept alive by pings.
    result = run_claude(
        claude, server, tmp_path, "--bare", "-p", "Say hello", timeout=1500
    )
    assert result.returncode == 0, result.stderr + result.stdout
    assert result.stdout.strip(), result.stderr
    assert "POST /v1/messages?beta=true" in server.log()


def test_claude_code_full_prompt_ends_in_prompt_too_long(
    claude: Path, server: Server, tmp_path: Path
) -> None:
    # Without --bare the prompt (~19k tokens) exceeds the 8k window: a clean error.
    result = run_claude(claude, server, tmp_path, "-p", "Say hello", timeout=600)
    output = result.stdout + result.stderr
    assert "prompt is too long" in output.lower(), output[-2000:]
    assert requests.get(f"{server.url}/health", timeout=5).status_code == 200
