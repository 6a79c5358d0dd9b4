"""Agent-session benchmark: prompt cache, queue and cancellation, side by side.

One run measures, on this machine and one after the other (nothing overlaps):

1. A Claude-Code-shaped session through Pensieve's streaming `POST /v1/messages`
   on the bundled model: a ~2k-token system + tools prefix (a long system text
   and five tools with JSON schemas; the real size comes from `usage`), whose
   FIRST system block is `x-anthropic-billing-header: cc_version=2.1.330;
   cch=<random per turn>;` as Claude Code sends it, then 5 turns, each adding
   the previous answer and a short follow-up (~50 tokens), max_tokens 16,
   temperature 0. Time to first token (request start to the first
   `content_block_delta`) of turn 1 (cold) and turns 2-5 (warm, median),
   `usage` per turn, and the server's own log line per turn ("prompt N tokens
   (M from cache)"). Run twice: CPU profile at its default (`auto`: OpenBLAS +
   float32 weights) and `PENSIEVE_CPU_PROFILE=off` (plain MLX, 4-bit), which
   separates the cache effect from the faster prefill of the profile.
2. The same session against `mlx_lm.server` (mlx-lm's own server, OpenAI
   `/v1/chat/completions`, streaming, its prompt-cache options at their
   defaults) on the same imported model directory. Its system message is the
   billing text, then the system text, then the tools in the very text
   Pensieve renders for this model (its chat template knows no tools, so a
   `tools` field would be dropped and the prompt would be ~1k tokens shorter):
   both servers see prompts of the same size, and the stamp is at the start of
   mlx_lm.server's prompt, as an OpenAI proxy in front of it would put it.
   Plain MLX prefills ~10 tokens/s here: a turn that re-prefills everything
   takes minutes; progress is printed every 30 s.
3. 20 concurrent streaming clients (distinct short prompts, max_tokens 16)
   against a Pensieve server started with `PENSIEVE_QUEUE_DEPTH=4`: each
   request completes, or gets 529 `overloaded_error` (with `retry-after`), or
   counts as a failure (other status, error event, or no answer within the
   time bound: a hang). TTFT and total time of completed requests
   (min/median/max) and the time to a 529.
4. On that same server (prompt cache on, at its default size): 20 rounds of
   an undisturbed request (~300-token prompt, max_tokens 16), a stream
   (max_tokens 256) closed right after its first `content_block_delta`, and a
   request sent right after that disconnect. The two measured series
   interleave, so a drift of the machine's speed reaches both alike. Every
   prompt starts with its own nonce, so no request reuses more than the chat
   template's first tokens from the cache (the `cache_read_input_tokens` of
   each measured request is printed). Goal: the median TTFT after a
   disconnect within 10% of the undisturbed median. The server log's
   "cancelled after N generated tokens" lines are counted.

The servers run with a fresh instance folder (no pensieve.toml) and the model
cache of `--cache-dir`; each is stopped in a `finally`. Only 127.0.0.1 is
contacted. The script prints the load average at the start and the end (other
processes sharing the CPU make every figure noisy), a table, the goals and one
`JSON:` line holding every figure.

Run it from the repository root with the project's virtualenv active:

    python benchmarks/agent_session.py [--skip-mlx-lm-server] [--skip-profile-off]

A full run takes about 25 minutes on an idle 2-core machine (36 minutes were
measured with a load average of 4-8), most of it in mlx_lm.server's prefills;
`--skip-mlx-lm-server --skip-profile-off` takes a few minutes.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import secrets
import signal
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import requests

from _server import (
    GUNICORN_SIGTERM_LINE,
    HOST,
    ExternalStop,
    Readiness,
    anthropic_headers,
    banner,
    fmt,
    free_port,
    gunicorn_command,
    load_warning,
    loadavg,
    machine_info,
    median,
    pensieve_env,
    running_server,
    spread,
)
from pensieve.config import resolve_cache_dir
from pensieve.engine import ToolSpec
from pensieve.engine.prompt import GENERIC_TOOLS_PROMPT, tool_json
from pensieve.models.resolve import resolve_model

API_KEY = "pensieve-benchmark-key"
READY_TIMEOUT = 300.0
# /health's status only (its body unread); an early exit shows the log's tail,
# or is an ExternalStop when gunicorn logged a SIGTERM.
READINESS = Readiness(
    timeout_s=READY_TIMEOUT,
    poll_s=0.1,
    log_tail=4000,
    read_health=False,
    stop_marker=GUNICORN_SIGTERM_LINE,
)
LONG_TIMEOUT = 1800.0  # one mlx_lm.server turn: a full re-prefill at ~10 tok/s
MAX_TOKENS = 16
TURNS = 5
CLIENTS = 20
QUEUE_DEPTH = 4
CLIENT_DEADLINE = 300.0  # a concurrent client still unanswered by then hangs
READ_TIMEOUT = 30.0  # longest silence tolerated on a socket (pings come every 5 s)
DISCONNECTS = 20
DISCONNECT_MAX_TOKENS = 256
BILLING_PREFIX = "x-anthropic-billing-header: cc_version=2.1.330; cch="
PROMPT_LOG = re.compile(r"prompt (\d+) tokens \((\d+) from cache\)")
CANCEL_LOG = re.compile(r"cancelled after (\d+) generated tokens")

SYSTEM_TEXT = """\
You are an interactive command-line assistant that helps users with software \
engineering tasks. Use the instructions below and the tools available to you to \
assist the user.

IMPORTANT: Assist with defensive security tasks only. Refuse to create, modify \
or improve code that may be used maliciously. Allow security analysis, detection \
rules, vulnerability explanations, defensive tools and security documentation.
IMPORTANT: You must never generate or guess URLs for the user unless you are \
confident that the URLs are for helping the user with programming. You may use \
URLs provided by the user in their messages or local files.

# Tone and style
You should be concise, direct, and to the point. When you run a non-trivial \
command, you should explain what the command does and why you are running it, \
to make sure the user understands what you are doing (this is especially \
important when you are running a command that will make changes to the user's \
system). Remember that your output will be displayed on a command line \
interface. Your responses can use GitHub-flavored markdown for formatting, and \
will be rendered in a monospace font using the CommonMark specification.
Output text to communicate with the user; all text you output outside of tool \
use is displayed to the user. Only use tools to complete tasks. Never use tools \
like the shell or code comments as means to communicate with the user during \
the session.
IMPORTANT: You should minimize output tokens as much as possible while \
maintaining helpfulness, quality, and accuracy. Only address the specific query \
or task at hand, avoiding tangential information unless absolutely critical for \
completing the request. If you can answer in one to three sentences or a short \
paragraph, please do.
IMPORTANT: You should NOT answer with unnecessary preamble or postamble (such \
as explaining your code or summarizing your action), unless the user asks you \
to. Answer the user's question directly, without elaboration, explanation, or \
details. One word answers are best. Avoid introductions, conclusions, and \
explanations.

# Doing tasks
The user will primarily request you perform software engineering tasks. This \
includes solving bugs, adding new functionality, refactoring code, explaining \
code, and more. For these tasks the following steps are recommended:
- Use the available search tools to understand the codebase and the user's \
query. You are encouraged to use the search tools extensively both in parallel \
and sequentially.
- Implement the solution using all tools available to you.
- Verify the solution if possible with tests. NEVER assume a specific test \
framework or test script. Check the README or search the codebase to determine \
the testing approach.
- VERY IMPORTANT: When you have completed a task, you MUST run the lint and \
typecheck commands (e.g. npm run lint, npm run typecheck, ruff, etc.) with the \
shell tool if they were provided to you to ensure your code is correct.
NEVER commit changes unless the user explicitly asks you to. It is VERY \
IMPORTANT to only commit when explicitly asked, otherwise the user will feel \
that you are being too proactive.

# Tool usage policy
- When doing file search, prefer to use the Task tool in order to reduce \
context usage.
- You have the capability to call multiple tools in a single response. When \
multiple independent pieces of information are requested, batch your tool \
calls together for optimal performance. When making multiple shell tool calls, \
you MUST send a single message with multiple tool calls to run the calls in \
parallel.

# Code references
When referencing specific functions or pieces of code include the pattern \
`file_path:line_number` to allow the user to easily navigate to the source \
code location.

Here is useful information about the environment you are running in:
<env>
Working directory: /home/user/projects/pensieve
Is directory a git repo: Yes
Platform: linux
OS Version: Linux 6.8.0-45-generic
Today's date: 2025-06-14
</env>
You are powered by a local model served through the Anthropic Messages API.

gitStatus: This is the git status at the start of the conversation. Note that \
this status is a snapshot in time, and will not update during the conversation.
Current branch: main

Main branch (you will usually use this for PRs): main

Status:
M pensieve/engine/cache.py
M benchmarks/agent_session.py
"""


def tool(
    name: str, description: str, properties: dict[str, Any], required: list[str]
) -> dict[str, Any]:
    """A tool definition shaped like Claude Code's (JSON Schema draft 7)."""
    return {
        "name": name,
        "description": description,
        "input_schema": {
            "type": "object",
            "properties": properties,
            "required": required,
            "additionalProperties": False,
            "$schema": "http://json-schema.org/draft-07/schema#",
        },
    }


TOOLS: list[dict[str, Any]] = [
    tool(
        "Bash",
        "Executes a given shell command in a persistent shell session with an "
        "optional timeout, ensuring proper handling and security measures.",
        {
            "command": {"type": "string", "description": "The command to execute"},
            "timeout": {
                "type": "number",
                "description": "Optional timeout in milliseconds (max 600000)",
            },
            "description": {
                "type": "string",
                "description": "Clear, concise description of what this command "
                "does in 5-10 words.",
            },
        },
        ["command"],
    ),
    tool(
        "Read",
        "Reads a file from the local filesystem. The file_path parameter must be "
        "an absolute path. By default, it reads up to 2000 lines from the start.",
        {
            "file_path": {
                "type": "string",
                "description": "The absolute path to the file to read",
            },
            "offset": {
                "type": "number",
                "description": "The line number to start reading from",
            },
            "limit": {"type": "number", "description": "The number of lines to read"},
        },
        ["file_path"],
    ),
    tool(
        "Edit",
        "Performs exact string replacements in files. The edit will fail if "
        "old_string is not unique in the file.",
        {
            "file_path": {
                "type": "string",
                "description": "The absolute path to the file to modify",
            },
            "old_string": {"type": "string", "description": "The text to replace"},
            "new_string": {
                "type": "string",
                "description": "The text to replace it with (must be different)",
            },
            "replace_all": {
                "type": "boolean",
                "default": False,
                "description": "Replace all occurrences of old_string",
            },
        },
        ["file_path", "old_string", "new_string"],
    ),
    tool(
        "Grep",
        "A powerful search tool built on ripgrep. Supports full regex syntax and "
        "filtering files with the glob parameter.",
        {
            "pattern": {
                "type": "string",
                "description": "The regular expression pattern to search for",
            },
            "path": {"type": "string", "description": "File or directory to search"},
            "glob": {
                "type": "string",
                "description": 'Glob pattern to filter files (e.g. "*.js")',
            },
            "output_mode": {
                "type": "string",
                "enum": ["content", "files_with_matches", "count"],
                "description": "Output mode; defaults to files_with_matches",
            },
        },
        ["pattern"],
    ),
    tool(
        "TodoWrite",
        "Use this tool to create and manage a structured task list for your "
        "current coding session.",
        {
            "todos": {
                "type": "array",
                "items": {
                    "type": "object",
                    "properties": {
                        "content": {"type": "string", "minLength": 1},
                        "status": {
                            "type": "string",
                            "enum": ["pending", "in_progress", "completed"],
                        },
                        "activeForm": {"type": "string", "minLength": 1},
                    },
                    "required": ["content", "status", "activeForm"],
                    "additionalProperties": False,
                },
                "description": "The updated todo list",
            }
        },
        ["todos"],
    ),
]

FIRST_QUESTION = (
    "I am looking at the prompt cache in pensieve/engine/cache.py. In two short "
    "sentences: what does PromptCache.take return when nothing matches?"
)
FOLLOW_UPS = [
    "Thanks. And when an entry is longer than the shared prefix, is the stored "
    "cache trimmed in place or copied first? Please answer briefly.",
    "Good. Which method decides how many tokens are reusable, and why does it "
    "keep one prompt token back? One sentence is enough.",
    "Makes sense. What happens to entries that are a prefix of a newly stored "
    "one? Keep it short, I am reading the code alongside.",
    "Last one for now: how is the cache bounded, by entries, by bytes, or by "
    "both? Answer in a sentence and then we will move on.",
]
FILLER = (
    "Summarise the following notes on running language models locally in one "
    "sentence. A local server keeps the weights in memory and answers requests "
    "from editors and command-line agents. Its latency has two parts: the "
    "prefill, which processes every prompt token once and fills the key-value "
    "cache, and the decode, which produces one token per step. Agents resend "
    "the same long system prompt and tool list on every turn, so reusing the "
    "key-value cache of an earlier prompt with the same prefix skips most of "
    "the prefill. A queue in front of the model keeps requests in arrival "
    "order, refuses new ones when it is full, and tells clients when to retry. "
    "When a client disconnects, the server should stop generating within a "
    "token or two and hand the model to the next request, keeping whatever "
    "part of the cache may still be useful. Memory is bounded: the cache "
    "holds a few entries at most and evicts the least recently used one first. "
    "On a small machine without a GPU the matrix multiplications dominate, and "
    "a good BLAS library makes the prefill several times faster than naive "
    "kernels, while the decode is limited by memory bandwidth and by the "
    "overhead of each model call. Measurements on shared machines are noisy; "
    "the load average tells how much other work competed for the processors "
    "while a benchmark ran, and medians of several runs are more robust than "
    "single figures."
)


@dataclass
class Stream:
    """One streamed request as the client saw it."""

    status: int = 0
    ttft_s: float | None = None  # to the first text delta
    total_s: float | None = None  # to the end of the stream (or the error answer)
    text: str = ""
    usage: dict[str, Any] = field(default_factory=dict)
    error: str | None = None  # error type, "timeout" (a hang) or an exception
    retry_after: str | None = None


@dataclass
class Turn:
    """One turn of an agent session."""

    turn: int
    ttft_s: float
    total_s: float
    prompt_tokens: int
    input_tokens: int
    cache_read: int
    output_tokens: int
    text: str
    log_prompt: int | None = None  # Pensieve's log line "prompt N tokens"
    log_cached: int | None = None  # "... (M from cache)"


@dataclass
class Server:
    name: str
    url: str
    log_path: Path
    ready_s: float

    def log_text(self) -> str:
        return self.log_path.read_text(errors="replace")


@contextlib.contextmanager
def serving(
    name: str, command: list[str], env: dict[str, str], port: int, log_path: Path
) -> Iterator[Server]:
    """Start a server in its own session, wait for /health, stop it at the end.

    The end is SIGTERM, SIGKILL after 45 s, then SIGKILL to the session's
    process group (a worker left behind, if any).
    """
    with running_server(
        command, env, port, log_path, READINESS, new_session=True, stop_grace_s=45.0
    ) as ready:
        yield Server(name, ready.url, log_path, ready.ready_s)


@contextlib.contextmanager
def pensieve_server(
    name: str, cache_dir: Path, work: Path, **settings: str
) -> Iterator[Server]:
    """gunicorn + Pensieve on the bundled model, `settings` as PENSIEVE_* env.

    Raises ExternalStop when the server was sent SIGTERM by someone else
    before the block ended (its figures are then worthless).
    """
    port = free_port()
    instance = work / f"instance-{name}"
    instance.mkdir()
    env = pensieve_env(
        port,
        cache_dir,
        API_KEY,
        {
            "INSTANCE_PATH": str(instance),  # no pensieve.toml: defaults
            "LOG_LEVEL": "info",
            "LOG_FORMAT": "plain",
            **settings,
        },
        inherit_pensieve=False,
    )
    command = gunicorn_command()
    with serving(name, command, env, port, work / f"{name}.log") as server:
        try:
            yield server
        except Exception as error:
            if GUNICORN_SIGTERM_LINE in server.log_text():
                raise ExternalStop(f"{name}: SIGTERM from another process") from error
            raise
        if GUNICORN_SIGTERM_LINE in server.log_text():
            raise ExternalStop(f"{name}: SIGTERM from another process")


def with_pensieve(
    name: str,
    cache_dir: Path,
    work: Path,
    body: Callable[[Server], dict[str, Any]],
    **settings: str,
) -> dict[str, Any]:
    """`body` on a fresh server; started over (twice at most) after ExternalStop."""
    for attempt in range(1, 4):
        label = name if attempt == 1 else f"{name}-{attempt}"
        try:
            with pensieve_server(label, cache_dir, work, **settings) as server:
                return body(server)
        except ExternalStop as error:
            if attempt == 3:
                raise
            print(f"      {error}: starting this part over", flush=True)
    raise AssertionError("unreachable")


@contextlib.contextmanager
def mlx_lm_server(model_dir: Path, work: Path) -> Iterator[Server]:
    """`python -m mlx_lm.server` on the model directory, every option at default."""
    port = free_port()
    command = [
        sys.executable,
        "-m",
        "mlx_lm.server",
        "--model",
        str(model_dir),
        "--host",
        HOST,
        "--port",
        str(port),
    ]
    with serving(
        "mlx_lm.server", command, dict(os.environ), port, work / "mlx.log"
    ) as s:
        yield s


@contextlib.contextmanager
def ticker(label: str, every: float = 30.0) -> Iterator[None]:
    """Print the elapsed time every `every` seconds while the block runs."""
    done = threading.Event()
    started = time.perf_counter()

    def tick() -> None:
        while not done.wait(every):
            elapsed = time.perf_counter() - started
            print(f"        ... {label}: {elapsed:.0f} s", flush=True)

    thread = threading.Thread(target=tick, daemon=True)
    thread.start()
    try:
        yield
    finally:
        done.set()
        thread.join()


def sse_data(
    response: requests.Response, deadline: float
) -> Iterator[tuple[float, Any]]:
    """(arrival time, parsed `data:` payload) per SSE frame; None for [DONE]."""
    buffer = b""
    # read1: whatever has arrived. iter_content(None) would wait for the end of
    # a response sent without chunked encoding (mlx_lm.server's).
    for chunk in iter(lambda: response.raw.read1(65536), b""):
        now = time.perf_counter()
        if now > deadline:
            raise TimeoutError("stream deadline passed")
        buffer += chunk
        *lines, buffer = buffer.split(b"\n")
        for line in lines:
            line = line.rstrip(b"\r")
            if line.startswith(b"data:"):
                payload = line[5:].strip()
                yield now, None if payload == b"[DONE]" else json.loads(payload)


def error_type(response: requests.Response) -> str:
    try:
        return str(response.json()["error"]["type"])
    except (ValueError, KeyError, TypeError):
        return f"HTTP {response.status_code}: {response.text[:120]!r}"


def post_stream(
    url: str,
    body: dict[str, Any],
    headers: dict[str, str],
    timeout_s: float,
    read_timeout: float,
    on_data: Callable[[Stream, float, Any], bool],
) -> Stream:
    """POST a streaming request; `on_data` sees each frame and says when to stop.

    Leaving the `with` block closes the connection, also mid-stream (that is
    how a client disconnects). Timeouts (a socket silent for `read_timeout`, or
    the whole stream past `timeout_s`) count as hangs: error "timeout".
    """
    result = Stream()
    started = time.perf_counter()
    try:
        with requests.post(
            url,
            json=body,
            headers=headers,
            stream=True,
            timeout=(10, read_timeout),
        ) as response:
            result.status = response.status_code
            if response.status_code != 200:
                result.total_s = time.perf_counter() - started
                result.retry_after = response.headers.get("retry-after")
                result.error = error_type(response)
                return result
            for now, data in sse_data(response, started + timeout_s):
                if on_data(result, now - started, data):
                    break
    except (requests.Timeout, TimeoutError):
        result.error = "timeout"
    except requests.RequestException as error:
        result.error = f"{type(error).__name__}: {error}"
    return result


def anthropic_stream(
    url: str,
    body: dict[str, Any],
    *,
    timeout_s: float,
    disconnect_after_first: bool = False,
) -> Stream:
    """One streaming /v1/messages request, timed at the client."""
    pieces: list[str] = []

    def on_data(result: Stream, elapsed: float, event: Any) -> bool:
        kind = event.get("type") if isinstance(event, dict) else None
        if kind == "message_start":
            result.usage.update(event["message"].get("usage", {}))
        elif kind == "content_block_delta":
            pieces.append(event["delta"].get("text", ""))
            if result.ttft_s is None:
                result.ttft_s = elapsed
                if disconnect_after_first:
                    return True
        elif kind == "message_delta":
            result.usage.update(event.get("usage", {}))
            if result.ttft_s is None:  # no text at all: the prefill ended here
                result.ttft_s = elapsed
        elif kind == "message_stop":
            result.total_s = elapsed
        elif kind == "error":
            result.error = str(event.get("error", {}).get("type", event))
            result.total_s = elapsed
            return True
        return False

    headers = anthropic_headers(API_KEY)
    # Pensieve pings every 5 s, also while it prefills or queues.
    result = post_stream(
        f"{url}/v1/messages", body, headers, timeout_s, READ_TIMEOUT, on_data
    )
    result.text = "".join(pieces)
    if result.error is None and result.total_s is None and not disconnect_after_first:
        result.error = "stream ended without message_stop"
    return result


def openai_stream(url: str, body: dict[str, Any], *, timeout_s: float) -> Stream:
    """One streaming /v1/chat/completions request (usage in the last chunk)."""
    pieces: list[str] = []

    def on_data(result: Stream, elapsed: float, chunk: Any) -> bool:
        if chunk is None:  # [DONE]
            result.total_s = elapsed
            return True
        if "error" in chunk:
            result.error = str(chunk["error"])
            return True
        for choice in chunk.get("choices") or []:
            delta = choice.get("delta") or {}
            text = delta.get("content") or delta.get("reasoning") or ""
            if text:
                pieces.append(text)
                if result.ttft_s is None:
                    result.ttft_s = elapsed
            if choice.get("finish_reason") and result.ttft_s is None:
                result.ttft_s = elapsed  # no text at all: the prefill ended here
        if chunk.get("usage"):
            result.usage.update(chunk["usage"])
        return False

    # mlx_lm.server sends nothing while it prefills: only the deadline counts.
    result = post_stream(
        f"{url}/v1/chat/completions", body, {}, timeout_s, timeout_s, on_data
    )
    result.text = "".join(pieces)
    if result.error is None and result.total_s is None:
        result.error = "stream ended without [DONE]"
    return result


def billing_block() -> str:
    """Claude Code's per-request stamp: a new `cch` value every turn."""
    return f"{BILLING_PREFIX}{secrets.token_hex(3)[:5]};"


def tools_text() -> str:
    """The tools as Pensieve renders them for a template without tool support."""
    specs = [ToolSpec(t["name"], t["description"], t["input_schema"]) for t in TOOLS]
    return GENERIC_TOOLS_PROMPT.format(
        tools="\n".join(json.dumps(tool_json(spec)) for spec in specs)
    )


def pensieve_turn(url: str) -> Callable[[str, list[dict[str, str]]], Stream]:
    def send(billing: str, history: list[dict[str, str]]) -> Stream:
        body = {
            "model": "bundled",
            "max_tokens": MAX_TOKENS,
            "temperature": 0,
            "stream": True,
            "system": [
                {"type": "text", "text": billing},
                {
                    "type": "text",
                    "text": SYSTEM_TEXT,
                    "cache_control": {"type": "ephemeral"},
                },
            ],
            "tools": TOOLS,
            "messages": history,
            "metadata": {"user_id": "agent-session-benchmark"},
        }
        return anthropic_stream(url, body, timeout_s=LONG_TIMEOUT)

    return send


def mlx_lm_turn(url: str) -> Callable[[str, list[dict[str, str]]], Stream]:
    tools = tools_text()

    def send(billing: str, history: list[dict[str, str]]) -> Stream:
        system = f"{billing}\n{SYSTEM_TEXT}\n\n{tools}"
        body = {
            "messages": [{"role": "system", "content": system}, *history],
            "max_tokens": MAX_TOKENS,
            "temperature": 0,
            "stream": True,
            "stream_options": {"include_usage": True},
        }
        return openai_stream(url, body, timeout_s=LONG_TIMEOUT)

    return send


def to_turn(index: int, stream: Stream, openai: bool) -> Turn:
    if stream.error or stream.ttft_s is None or stream.total_s is None:
        raise RuntimeError(f"turn {index} failed: {stream}")
    usage = stream.usage
    if openai:
        prompt = int(usage.get("prompt_tokens", 0))
        cached = int((usage.get("prompt_tokens_details") or {}).get("cached_tokens", 0))
        fresh, output = prompt - cached, int(usage.get("completion_tokens", 0))
    else:
        cached = int(usage.get("cache_read_input_tokens", 0))
        fresh = int(usage.get("input_tokens", 0))
        prompt, output = fresh + cached, int(usage.get("output_tokens", 0))
    return Turn(
        index, stream.ttft_s, stream.total_s, prompt, fresh, cached, output, stream.text
    )


def warm_up(server: Server, openai: bool) -> None:
    """One short request: the model is loaded and its first call is behind us."""
    messages = [{"role": "user", "content": "Say hello."}]
    if openai:
        body = {"messages": messages, "max_tokens": 4, "stream": True}
        stream = openai_stream(server.url, body, timeout_s=LONG_TIMEOUT)
    else:
        body = {"model": "bundled", "max_tokens": 4, "stream": True}
        body["messages"] = messages
        stream = anthropic_stream(server.url, body, timeout_s=LONG_TIMEOUT)
    if stream.error:
        raise RuntimeError(f"{server.name}: warm-up failed: {stream.error}")


def run_session(server: Server, openai: bool) -> dict[str, Any]:
    """The 5-turn session; cold and warm TTFT, usage and log lines per turn."""
    warm_up(server, openai)
    send = mlx_lm_turn(server.url) if openai else pensieve_turn(server.url)
    history = [{"role": "user", "content": FIRST_QUESTION}]
    turns: list[Turn] = []
    for index in range(1, TURNS + 1):
        print(f"      turn {index}/{TURNS} ...", flush=True)
        with ticker(f"{server.name} turn {index}"):
            stream = send(billing_block(), history)
        turn = to_turn(index, stream, openai)
        turns.append(turn)
        print(
            f"      turn {index}: TTFT {turn.ttft_s:.2f} s, prompt "
            f"{turn.prompt_tokens} tokens ({turn.cache_read} from cache), "
            f"answer {turn.text!r}",
            flush=True,
        )
        if index < TURNS:
            history.append({"role": "assistant", "content": turn.text or "(none)"})
            history.append({"role": "user", "content": FOLLOW_UPS[index - 1]})
    if not openai:
        logged = PROMPT_LOG.findall(server.log_text())[-TURNS:]
        for turn, (prompt, cached) in zip(turns, logged, strict=False):
            turn.log_prompt, turn.log_cached = int(prompt), int(cached)
    cold = turns[0].ttft_s
    warm = median([t.ttft_s for t in turns[1:]])
    return {
        "server_ready_s": server.ready_s,
        "cold_ttft_s": cold,
        "warm_ttft_median_s": warm,
        "warm_over_cold": warm / cold if warm is not None and cold else None,
        "prefix_tokens": turns[0].prompt_tokens,
        "turns": [asdict(t) for t in turns],
    }


def session_anomalies(name: str, session: dict[str, Any]) -> list[str]:
    """Turns whose cache reuse fell short of the previous turn's prompt."""
    notes = []
    turns = session["turns"]
    for previous, turn in zip(turns, turns[1:], strict=False):
        if turn["cache_read"] < previous["prompt_tokens"]:
            notes.append(
                f"{name} turn {turn['turn']}: {turn['cache_read']} tokens from cache, "
                f"fewer than the previous prompt's {previous['prompt_tokens']}"
            )
        logged = turn["log_cached"]
        if logged is not None and logged != turn["cache_read"]:
            notes.append(
                f"{name} turn {turn['turn']}: log says {logged} from cache, usage "
                f"says {turn['cache_read']}"
            )
        if (
            turn["log_prompt"] is not None
            and turn["log_prompt"] != turn["prompt_tokens"]
        ):
            notes.append(
                f"{name} turn {turn['turn']}: log prompt {turn['log_prompt']} "
                f"tokens, usage {turn['prompt_tokens']}"
            )
    return notes


def health_poller(url: str, done: threading.Event, seen: dict[str, int]) -> None:
    """Record the largest queue length /health reports until `done`."""
    while not done.wait(0.1):
        with contextlib.suppress(requests.RequestException, ValueError):
            waiting = int(
                requests.get(f"{url}/health", timeout=2).json()["requests_waiting"]
            )
            seen["max_waiting"] = max(seen.get("max_waiting", 0), waiting)


def concurrent_clients(server: Server) -> dict[str, Any]:
    """20 streaming clients released at once against queue depth 4."""
    barrier = threading.Barrier(CLIENTS)
    results: list[Stream | None] = [None] * CLIENTS
    fruits = ["apple", "banana", "cherry", "grape", "lemon", "lime", "mango"]

    def client(index: int) -> None:
        fruit = fruits[index % len(fruits)]
        body = {
            "model": "bundled",
            "max_tokens": MAX_TOKENS,
            "temperature": 0,
            "stream": True,
            "messages": [
                {
                    "role": "user",
                    "content": f"Client {index}: in one sentence, what colour is "
                    f"a ripe {fruit}?",
                }
            ],
        }
        barrier.wait()
        results[index] = anthropic_stream(server.url, body, timeout_s=CLIENT_DEADLINE)

    seen: dict[str, int] = {}
    done = threading.Event()
    poller = threading.Thread(target=health_poller, args=(server.url, done, seen))
    poller.start()
    threads = [threading.Thread(target=client, args=(i,)) for i in range(CLIENTS)]
    started = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(
            timeout=max(1.0, started + CLIENT_DEADLINE + 60 - time.perf_counter())
        )
    wall = time.perf_counter() - started
    done.set()
    poller.join()

    completed, overloaded, failures = [], [], []
    for index, result in enumerate(results):
        if result is None:
            failures.append(f"client {index}: no answer (thread still running: hang)")
        elif result.status == 200 and result.error is None:
            completed.append(result)
        elif result.status == 529 and result.error == "overloaded_error":
            overloaded.append(result)
            if not result.retry_after:
                failures.append(f"client {index}: 529 without retry-after")
        else:
            failures.append(
                f"client {index}: status {result.status}, error {result.error}"
            )
    hangs = sum(1 for r in results if r is None or r.error == "timeout")
    return {
        "clients": CLIENTS,
        "queue_depth": QUEUE_DEPTH,
        "completed": len(completed),
        "overloaded_529": len(overloaded),
        "failed": len(failures),
        "hangs": hangs,
        "failures": failures,
        "retry_after": sorted({r.retry_after for r in overloaded if r.retry_after}),
        "max_waiting_seen": seen.get("max_waiting"),
        "wall_s": wall,
        "ttft_s": spread([r.ttft_s for r in completed if r.ttft_s is not None]),
        "total_s": spread([r.total_s for r in completed if r.total_s is not None]),
        "time_to_529_s": spread(
            [r.total_s for r in overloaded if r.total_s is not None]
        ),
    }


def filler_request(max_tokens: int) -> dict[str, Any]:
    """A ~300-token prompt that starts with its own nonce (no cache reuse)."""
    return {
        "model": "bundled",
        "max_tokens": max_tokens,
        "temperature": 0,
        "stream": True,
        "messages": [{"role": "user", "content": f"[{secrets.token_hex(4)}] {FILLER}"}],
    }


def measured(server: Server, label: str) -> Stream:
    result = anthropic_stream(server.url, filler_request(MAX_TOKENS), timeout_s=300)
    if result.error or result.ttft_s is None:
        raise RuntimeError(f"{label} request failed: {result}")
    cached = result.usage.get("cache_read_input_tokens", 0)
    prompt = result.usage.get("input_tokens", 0) + cached
    print(
        f"      {label}: TTFT {result.ttft_s:.3f} s, prompt {prompt} tokens "
        f"({cached} from cache)",
        flush=True,
    )
    return result


def disconnects(server: Server) -> dict[str, Any]:
    """TTFT right after a mid-stream disconnect vs after a finished request.

    Twenty rounds, each: one undisturbed request (it follows a request that
    finished), one stream closed after its first delta, then one request sent
    at once (it follows the disconnect). The two series interleave, so a
    drift of the machine's speed reaches both alike.
    """
    cancelled_before = len(CANCEL_LOG.findall(server.log_text()))
    undisturbed, after, first_deltas = [], [], []
    for index in range(DISCONNECTS):
        undisturbed.append(measured(server, f"round {index + 1}: undisturbed"))
        result = anthropic_stream(
            server.url,
            filler_request(DISCONNECT_MAX_TOKENS),
            timeout_s=300,
            disconnect_after_first=True,
        )
        if result.ttft_s is None or result.error:
            raise RuntimeError(f"disconnect {index + 1} failed: {result}")
        first_deltas.append(result.ttft_s)
        after.append(measured(server, f"round {index + 1}: after a disconnect"))
    time.sleep(1.0)  # the last cancellation's log line may trail
    cancelled = [int(n) for n in CANCEL_LOG.findall(server.log_text())]
    cancelled = cancelled[cancelled_before:]
    baseline = median([r.ttft_s for r in undisturbed if r.ttft_s is not None])
    disturbed = median([r.ttft_s for r in after if r.ttft_s is not None])
    return {
        "prompt_cache": "on (default size); every prompt starts with its own nonce",
        "rounds": DISCONNECTS,
        "undisturbed_ttft_s": [r.ttft_s for r in undisturbed],
        "undisturbed_median_s": baseline,
        "disconnect_first_delta_s": spread(first_deltas),
        "after_ttft_s": [r.ttft_s for r in after],
        "after_median_s": disturbed,
        "after_over_undisturbed": disturbed / baseline if baseline else None,
        "measured_cache_read": [
            r.usage.get("cache_read_input_tokens") for r in undisturbed + after
        ],
        "cancel_log_lines": len(cancelled),
        "tokens_generated_before_cancel_max": max(cancelled, default=None),
    }


def fmt_spread(values: dict[str, float | None]) -> str:
    return " / ".join(fmt(values[k]) for k in ("min", "median", "max")) + " s"


def session_rows(name: str, session: dict[str, Any] | None) -> list[tuple[str, str]]:
    if session is None:
        return [(name, "skipped")]
    rows = [
        (f"{name}: prompt at turn 1", f"{session['prefix_tokens']} tokens"),
        (f"{name}: cold TTFT (turn 1)", fmt(session["cold_ttft_s"], " s")),
        (f"{name}: warm TTFT (2-5, median)", fmt(session["warm_ttft_median_s"], " s")),
        (f"{name}: warm / cold", fmt(session["warm_over_cold"])),
    ]
    for turn in session["turns"]:
        logged = (
            f"; log {turn['log_prompt']} ({turn['log_cached']} cached)"
            if turn["log_prompt"] is not None
            else ""
        )
        rows.append(
            (
                f"{name}:   turn {turn['turn']}",
                f"TTFT {fmt(turn['ttft_s'], ' s')}, in {turn['input_tokens']} + "
                f"cache_read {turn['cache_read']}, out {turn['output_tokens']}{logged}",
            )
        )
    return rows


def print_table(rows: list[tuple[str, str]]) -> None:
    width = max(len(name) for name, _ in rows)
    print(f"\n{'measure':<{width}}  value")
    print(f"{'-' * width}  {'-' * 40}")
    for name, value in rows:
        print(f"{name:<{width}}  {value}")


def rounded(value: Any) -> Any:
    if isinstance(value, float):
        return round(value, 4)
    if isinstance(value, dict):
        return {k: rounded(v) for k, v in value.items() if k != "text"}
    if isinstance(value, list):
        return [rounded(v) for v in value]
    return value


def section(title: str) -> None:
    print(f"{title} (load avg {loadavg()})", flush=True)


def interrupted(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--skip-mlx-lm-server",
        action="store_true",
        help="leave out the mlx_lm.server session (the longest part)",
    )
    parser.add_argument(
        "--skip-profile-off",
        action="store_true",
        help="leave out the PENSIEVE_CPU_PROFILE=off session",
    )
    parser.add_argument(
        "--cache-dir",
        type=Path,
        default=resolve_cache_dir(os.environ.get("PENSIEVE_CACHE_DIR", "")),
        help="Pensieve cache folder holding the imported bundled model",
    )
    args = parser.parse_args()
    # A SIGTERM (e.g. from `timeout`) unwinds like Ctrl-C: the servers' `finally`
    # blocks run and stop them.
    signal.signal(signal.SIGTERM, interrupted)

    info = machine_info(with_machine=False)
    started = time.perf_counter()
    print(banner("Pensieve agent-session benchmark", info), flush=True)
    model_dir = resolve_model("bundled", cache_dir=args.cache_dir, fallback=False).path
    print(f"model directory: {model_dir}")
    work = Path(tempfile.mkdtemp(prefix="pensieve-agent-bench-"))
    print(f"server logs: {work}\n", flush=True)

    figures: dict[str, Any] = {"machine": info, "model_dir": str(model_dir)}
    loads: dict[str, float] = {}

    def pensieve_session(server: Server) -> dict[str, Any]:
        return run_session(server, openai=False)

    def queue_and_disconnects(server: Server) -> dict[str, Any]:
        concurrency = concurrent_clients(server)
        print(
            f"      completed {concurrency['completed']}, 529 "
            f"{concurrency['overloaded_529']}, failed {concurrency['failed']} "
            f"(hangs {concurrency['hangs']})",
            flush=True,
        )
        section("[3/5] Pensieve: 20 disconnects mid-stream ...")
        return {"concurrency": concurrency, "disconnects": disconnects(server)}

    section("[1/5] Pensieve session, CPU profile auto ...")
    figures["pensieve_auto"] = with_pensieve(
        "pensieve-auto", args.cache_dir, work, pensieve_session
    )
    loads["after_pensieve_auto"] = loadavg()

    section("[2/5] Pensieve, queue depth 4: 20 concurrent clients ...")
    figures.update(
        with_pensieve(
            "pensieve-queue",
            args.cache_dir,
            work,
            queue_and_disconnects,
            QUEUE_DEPTH=str(QUEUE_DEPTH),
        )
    )
    loads["after_queue_and_disconnects"] = loadavg()

    figures["pensieve_profile_off"] = None
    if not args.skip_profile_off:
        section("[4/5] Pensieve session, PENSIEVE_CPU_PROFILE=off ...")
        figures["pensieve_profile_off"] = with_pensieve(
            "pensieve-off", args.cache_dir, work, pensieve_session, CPU_PROFILE="off"
        )
        loads["after_pensieve_off"] = loadavg()
    else:
        section("[4/5] PENSIEVE_CPU_PROFILE=off session skipped")

    figures["mlx_lm_server"] = None
    if not args.skip_mlx_lm_server:
        section("[5/5] mlx_lm.server session (slow: ~10 tok/s prefill) ...")
        with mlx_lm_server(model_dir, work) as server:
            figures["mlx_lm_server"] = run_session(server, openai=True)
        loads["after_mlx_lm_server"] = loadavg()
    else:
        section("[5/5] mlx_lm.server session skipped")

    info["loadavg_end"] = loadavg()
    info["loadavg_between"] = loads
    figures["runtime_s"] = time.perf_counter() - started

    auto, off = figures["pensieve_auto"], figures["pensieve_profile_off"]
    mlx, conc, disc = (
        figures["mlx_lm_server"],
        figures["concurrency"],
        figures["disconnects"],
    )

    def over_mlx(session: dict[str, Any] | None) -> float | None:
        if session is None or mlx is None or not mlx["warm_ttft_median_s"]:
            return None
        return session["warm_ttft_median_s"] / mlx["warm_ttft_median_s"]

    figures["auto_warm_over_mlx_warm"] = over_mlx(auto)
    figures["off_warm_over_mlx_warm"] = over_mlx(off)
    anomalies = session_anomalies("pensieve auto", auto)
    if off is not None:
        anomalies += session_anomalies("pensieve off", off)
    figures["anomalies"] = anomalies

    rows = session_rows("pensieve (profile auto)", auto)
    rows += session_rows("pensieve (profile off)", off)
    rows += session_rows("mlx_lm.server", mlx)
    rows += [
        ("warm TTFT: pensieve auto / mlx_lm", fmt(figures["auto_warm_over_mlx_warm"])),
        ("warm TTFT: pensieve off / mlx_lm", fmt(figures["off_warm_over_mlx_warm"])),
        (
            "concurrency: completed / 529 / failed",
            f"{conc['completed']} / {conc['overloaded_529']} / {conc['failed']} "
            f"(hangs {conc['hangs']}; retry-after {conc['retry_after']})",
        ),
        ("concurrency: max queue seen", fmt(conc["max_waiting_seen"])),
        ("concurrency: TTFT min/med/max", fmt_spread(conc["ttft_s"])),
        ("concurrency: total min/med/max", fmt_spread(conc["total_s"])),
        ("concurrency: time to 529 min/med/max", fmt_spread(conc["time_to_529_s"])),
        (
            "disconnect: TTFT undisturbed (median of 20)",
            fmt(disc["undisturbed_median_s"], " s"),
        ),
        (
            "disconnect: TTFT after a disconnect (median of 20)",
            fmt(disc["after_median_s"], " s"),
        ),
        ("disconnect: after / undisturbed", fmt(disc["after_over_undisturbed"])),
        (
            "disconnect: cancel log lines (max tokens)",
            f"{disc['cancel_log_lines']} "
            f"({fmt(disc['tokens_generated_before_cancel_max'])})",
        ),
        ("load avg start / end", f"{info['loadavg_start']} / {info['loadavg_end']}"),
        ("runtime", fmt(figures["runtime_s"], " s")),
    ]
    print_table(rows)

    goals = {
        "warm <= 5% of cold (profile auto)": auto["warm_over_cold"] <= 0.05,
        "every client completed or got 529, none hung": conc["failed"] == 0,
        "TTFT after disconnects within 10%": (disc["after_over_undisturbed"] or 99)
        <= 1.10,
    }
    if off is not None:
        goals["warm <= 5% of cold (profile off)"] = off["warm_over_cold"] <= 0.05
    if figures["auto_warm_over_mlx_warm"] is not None:
        goals["warm <= half of mlx_lm.server's (auto)"] = (
            figures["auto_warm_over_mlx_warm"] <= 0.5
        )
    if figures["off_warm_over_mlx_warm"] is not None:
        goals["warm <= half of mlx_lm.server's (off)"] = (
            figures["off_warm_over_mlx_warm"] <= 0.5
        )
    figures["goals"] = goals
    print("\ngoals:")
    for goal, met in goals.items():
        print(f"  [{'met' if met else 'MISSED'}] {goal}")
    for note in anomalies + conc["failures"]:
        print(f"  note: {note}")
    warning = load_warning(info, *loads.values())
    if warning:
        print(f"\n{warning}")
    print("\nJSON: " + json.dumps(rounded(figures), separators=(",", ":")))
    return 0


if __name__ == "__main__":
    sys.exit(main())
