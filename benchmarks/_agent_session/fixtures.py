"""What agent_session.py sends and how long it waits: settings and fixture data.

The Claude-Code-shaped system text, its five tools and the session's
questions are data (data/agent_session_*.txt and .json), loaded here once.
"""

from __future__ import annotations

import re
from typing import Any

from _files import data_json, data_text
from _server import GUNICORN_SIGTERM_LINE, Readiness

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

# A Claude-Code-like system prompt, and tools shaped like Claude Code's
# (JSON Schema draft 7, closed objects).
SYSTEM_TEXT = data_text("agent_session_system.txt")
TOOLS: list[dict[str, Any]] = data_json("agent_session_tools.json")

_PROMPTS = data_json("agent_session_prompts.json")
FIRST_QUESTION: str = _PROMPTS["first_question"]
FOLLOW_UPS: list[str] = _PROMPTS["follow_ups"]  # turns 2-5
FILLER: str = _PROMPTS["filler"]  # ~300 tokens: the disconnect rounds' prompt
FRUITS: list[str] = _PROMPTS["fruits"]  # the concurrent clients' questions
