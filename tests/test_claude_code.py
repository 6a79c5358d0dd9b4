"""The real Claude Code CLI as a client of a server on the bundled model.

The CLI comes from npm (`@anthropic-ai/claude-code`, which ships a native Linux
binary) into a cache folder; the tests skip, saying why, only where npm or its
registry cannot be reached.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest
import requests

from conftest import API_KEY, Server

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


def run_claude(
    claude: Path, server: Server, home: Path, *args: str, timeout: float
) -> subprocess.CompletedProcess[str]:
    env = {
        "PATH": os.environ["PATH"],
        "HOME": str(home),
        "ANTHROPIC_BASE_URL": server.url,
        "ANTHROPIC_API_KEY": API_KEY,
        "CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC": "1",
        # Bound the test's time: a 135M model may ramble up to Claude Code's
        # default of 32k output tokens, minutes on this CPU. Claude Code exits
        # 1 when an answer hits this cap, and it samples at temperature 1, so
        # leave room: a greeting is tens of tokens, 1,000 take ~40 s here.
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
