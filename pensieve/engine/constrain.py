"""Constrained decoding with llguidance, as an mlx-lm logits processor.

Runs on the inference thread. The grammar is active from the first token (a
forced tool call, a structured answer) or switched on when the model opens a
tool call by itself (`auto`). Tokens the grammar forbids get -inf logits, so
whatever the sampler picks keeps the output valid.
"""

from __future__ import annotations

import logging
from typing import Any

import numpy as np

from .tools import OPEN, ToolPolicy, calls_grammar, json_grammar

log = logging.getLogger(__name__)

TRIGGER_WINDOW = 16  # tokens decoded to look for the tool-call opening


class GrammarError(ValueError):
    """A schema or grammar llguidance cannot compile."""


def ll_tokenizer(loaded: Any) -> Any:
    """llguidance's view of the model's tokenizer, built once per model (~0.5 s)."""
    if "ll_tokenizer" not in loaded.extras:
        import llguidance.hf

        hf = loaded.tokenizer._tokenizer  # the wrapped transformers tokenizer
        loaded.extras["ll_tokenizer"] = llguidance.hf.from_tokenizer(
            hf, eos_token=sorted(loaded.tokenizer.eos_token_ids)
        )
    return loaded.extras["ll_tokenizer"]


def new_matcher(tokenizer: Any, grammar: str) -> Any:
    import llguidance

    matcher = llguidance.LLMatcher(tokenizer, grammar, log_level=0)
    if matcher.is_error():
        raise GrammarError(matcher.get_error())
    return matcher


class GrammarConstraint:
    """Masks the logits to what the active grammar allows."""

    def __init__(
        self,
        loaded: Any,
        *,
        policy: ToolPolicy,
        response_schema: dict[str, Any] | None,
    ) -> None:
        self._loaded = loaded
        self._ll = ll_tokenizer(loaded)
        self._policy = policy
        self._matcher: Any = None
        self._watch = policy.active and not policy.forced
        self._seen: int | None = None
        self._recent: list[int] = []
        if policy.forced:
            self._matcher = new_matcher(self._ll, calls_grammar(policy))
        elif response_schema is not None:
            self._matcher = new_matcher(self._ll, json_grammar(response_schema))
            self._watch = False

    def __call__(self, tokens: Any, logits: Any) -> Any:
        import mlx.core as mx

        if self._seen is None:
            self._seen = tokens.size  # the first call sees the prompt only
        else:
            for token in tokens[self._seen :].tolist():
                self._consume(token)
            self._seen = tokens.size
        if self._matcher is None:
            return logits
        bits = np.frombuffer(self._matcher.compute_bitmask(), dtype=np.uint8)
        allowed = np.unpackbits(bits, bitorder="little")
        vocab = logits.shape[-1]
        mask = np.zeros(vocab, dtype=bool)
        size = min(vocab, allowed.size)
        mask[:size] = allowed[:size].astype(bool)
        return mx.where(mx.array(mask), logits, mx.array(-np.inf, dtype=logits.dtype))

    def _consume(self, token: int) -> None:
        if self._matcher is not None:
            if not self._matcher.consume_token(token):
                log.warning("grammar rejected a token: %s", self._matcher.get_error())
                self._matcher = None
            return
        if not self._watch:
            return
        self._recent = (self._recent + [token])[-TRIGGER_WINDOW:]
        text = self._loaded.tokenizer.decode(self._recent)
        if OPEN in text:
            self._watch = False
            opened = text[text.rindex(OPEN) :]
            try:
                self._matcher = new_matcher(
                    self._ll, calls_grammar(self._policy, opened=opened)
                )
            except (ValueError, GrammarError) as error:
                log.warning("tool call left unconstrained: %s", error)
