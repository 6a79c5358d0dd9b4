"""Which API a request speaks, Anthropic's or OpenAI's.

The route decides where it can: `/v1/messages…` is Anthropic's, and
`/v1/chat/completions` and `/v1/completions` are OpenAI's, even when the method
is wrong. Elsewhere (`/v1/models`, unknown routes) the headers decide: a
request with an `anthropic-version` or `x-api-key` header is an Anthropic one
(the Anthropic SDKs and Claude Code send both), any other is an OpenAI one.
"""

from __future__ import annotations

from flask import request

OPENAI_PREFIXES = ("/v1/chat/completions", "/v1/completions")
ANTHROPIC_PREFIXES = ("/v1/messages",)


def from_anthropic_client() -> bool:
    """Whether the request carries a header only Anthropic clients send."""
    return "anthropic-version" in request.headers or "x-api-key" in request.headers


def speaks_openai() -> bool:
    """Whether the current request should be answered in OpenAI's shapes."""
    if request.path.startswith(OPENAI_PREFIXES):
        return True
    if request.path.startswith(ANTHROPIC_PREFIXES):
        return False
    return not from_anthropic_client()
