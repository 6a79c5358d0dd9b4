"""Constrained decoding with llguidance, as an mlx-lm logits processor.

Runs on the inference thread. The grammar is active from the first token (a
forced tool call, a structured answer) or switched on when the model opens a
tool call by itself (`auto`). Tokens the grammar forbids get -inf logits, so
whatever the sampler picks keeps the output valid.

A grammar guarantees validity only if the output ends. A small model can loop
inside a string or an array (`"bread_bread_bread…"`, the same array item
again and again) until max_tokens cuts the call off. Once the constrained
output ends in such a loop, the constraint closes it: inside a string only
tokens that end the string remain (where the grammar allows one), outside one
only tokens made of `]` and `}`, then the end of the turn; where the grammar
allows none of them yet (a string with a `pattern` not met), the tokens of the
loop are barred, so the model has to write something else. The result is a
call whose looping value is cut short, still schema-valid; a long value that
does not repeat itself is never touched.
"""

from __future__ import annotations

import logging
from typing import Any

import numpy as np

from .families import Family
from .grammars import calls_grammar, json_grammar
from .tools import GrammarError, ToolPolicy

log = logging.getLogger(__name__)

TRIGGER_WINDOW = 16  # tokens decoded to look for the tool-call opening
LOOP_MIN_REPEATS = 3  # a loop: the same token run at least this many times
LOOP_MIN_TOKENS = 32  # ... covering at least this many tokens
LOOP_MAX_PERIOD = 64  # longest token run looked for


def ll_tokenizer(loaded: Any) -> Any:
    """llguidance's view of the model's tokenizer, built once per model (~0.5 s)."""
    if "ll_tokenizer" not in loaded.extras:
        import llguidance.hf

        hf = loaded.tokenizer._tokenizer  # the wrapped transformers tokenizer
        loaded.extras["ll_tokenizer"] = llguidance.hf.from_tokenizer(
            hf, eos_token=sorted(loaded.tokenizer.eos_token_ids)
        )
    return loaded.extras["ll_tokenizer"]


def added_tokens(loaded: Any) -> dict[str, int]:
    """The model's added tokens (its markers) by their text, once per model."""
    if "added_tokens" not in loaded.extras:
        vocab = loaded.tokenizer._tokenizer.get_added_vocab()
        loaded.extras["added_tokens"] = {text: id for text, id in vocab.items() if text}
    return loaded.extras["added_tokens"]


def closing_tokens(loaded: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Token masks for closing a loop: (ends a string, closes brackets, EOS).

    Built once per model by decoding every token on its own (~1 s).
    """
    if "closing_tokens" not in loaded.extras:
        tokenizer = loaded.tokenizer
        size = len(tokenizer._tokenizer)
        string_end = np.zeros(size, dtype=bool)
        brackets = np.zeros(size, dtype=bool)
        eos = np.zeros(size, dtype=bool)
        for token in range(size):
            text = tokenizer.decode([token]).strip()
            if text and set(text) <= set('"]}'):
                string_end[token] = text.startswith('"')
                brackets[token] = '"' not in text
        eos[[t for t in tokenizer.eos_token_ids if t < size]] = True
        loaded.extras["closing_tokens"] = (string_end, brackets, eos)
    return loaded.extras["closing_tokens"]


def ends_in_loop(tokens: list[int]) -> list[int]:
    """The run of tokens `tokens` end by repeating back to back, or []."""
    for period in range(1, min(LOOP_MAX_PERIOD, len(tokens) // LOOP_MIN_REPEATS) + 1):
        run = tokens[-period:]
        repeats = 1
        while tokens[-(repeats + 1) * period : -repeats * period] == run:
            repeats += 1
        if repeats >= LOOP_MIN_REPEATS and repeats * period >= LOOP_MIN_TOKENS:
            return run
    return []


class JSONScanner:
    """Tracks whether generated text is inside a JSON string."""

    def __init__(self) -> None:
        self.in_string = False
        self._escaped = False

    def feed(self, text: str) -> None:
        for char in text:
            if self._escaped:
                self._escaped = False
            elif self.in_string and char == "\\":
                self._escaped = True
            elif char == '"':
                self.in_string = not self.in_string


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
        family: Family,
        *,
        policy: ToolPolicy,
        response_schema: dict[str, Any] | None,
    ) -> None:
        self._loaded = loaded
        self._ll = ll_tokenizer(loaded)
        self._family = family
        self._tokens = added_tokens(loaded)
        self._policy = policy
        self._matcher: Any = None
        self._watch = policy.active and not policy.forced
        self._seen: int | None = None
        self._recent: list[int] = []
        self._constrained: list[int] = []  # tokens generated under the grammar
        self._scanner = JSONScanner()
        self._loop: list[int] = []  # the repeated run, once found
        self._rearm = False  # watch for a new loop once the forced close is written
        self._closing: list[int] = []  # tokens forced to close a looping value
        if policy.forced:
            grammar = calls_grammar(family, policy, self._tokens)
            self._matcher = new_matcher(self._ll, grammar)
        elif response_schema is not None:
            self._matcher = new_matcher(self._ll, json_grammar(response_schema))
            self._watch = False

    def allowed(self, vocab: int) -> np.ndarray | None:
        """The tokens the grammar allows next (None: no grammar active).

        Where the grammar forces text, only its canonical next token: the
        call is written in the very tokens its later render tokenises to.
        """
        if self._matcher is None:
            return None
        mask = np.zeros(vocab, dtype=bool)
        forced = self._closing or self._matcher.compute_ff_tokens()
        if forced and (self._closing or not self._loop):
            mask[forced[0]] = forced[0] < vocab
            return mask
        bits = np.frombuffer(self._matcher.compute_bitmask(), dtype=np.uint8)
        allowed = np.unpackbits(bits, bitorder="little")
        size = min(vocab, allowed.size)
        mask[:size] = allowed[:size].astype(bool)
        return self._closer(mask) if self._loop else mask

    def consume(self, tokens: Any) -> None:
        """Take in the tokens generated since the last call."""
        if self._seen is None:
            self._seen = tokens.size  # the first call sees the prompt only
            return
        for token in tokens[self._seen :].tolist():
            self._consume(token)
        self._seen = tokens.size

    def __call__(self, tokens: Any, logits: Any) -> Any:
        import mlx.core as mx

        self.consume(tokens)
        mask = self.allowed(logits.shape[-1])
        if mask is None:
            return logits
        return mx.where(mx.array(mask), logits, mx.array(-np.inf, dtype=logits.dtype))

    def _closer(self, mask: np.ndarray) -> np.ndarray:
        """`mask` narrowed to the tokens that close the output soonest."""
        string_end, brackets, eos = closing_tokens(self._loaded)
        size = min(mask.size, string_end.size)
        preferred = [string_end] if self._scanner.in_string else [brackets, eos]
        looping = [t for t in self._loop if t < mask.size]
        for tokens in preferred:
            narrowed = np.zeros_like(mask)
            narrowed[:size] = mask[:size] & tokens[:size]
            narrowed[looping] = False  # a raw value's "}]}]" closes nothing
            if narrowed.any():
                return narrowed
        varied = mask.copy()
        varied[looping] = False
        return varied if varied.any() else mask

    def _close_raw_value(self) -> list[int]:
        """Tokens that end a looping raw (unquoted) argument value, where the
        grammar accepts them now: the family's value close, quote or tail."""
        calls, tokenizer = self._family.calls, self._loaded.tokenizer
        form = calls.arguments
        if form.style == "json" or self._matcher is None:
            return []  # a JSON value closes by the JSON's own rules (`_closer`)
        for close in (form.quote, form.value_close, calls.tail):
            tokens = tokenizer.encode(close, add_special_tokens=False) if close else []
            if tokens and self._matcher.validate_tokens(tokens) == len(tokens):
                return tokens
        return []

    def _consume(self, token: int) -> None:
        if self._matcher is not None:
            if not self._matcher.consume_token(token):
                log.warning("grammar rejected a token: %s", self._matcher.get_error())
                self._matcher = None
                return
            if self._closing and token == self._closing[0]:
                self._closing.pop(0)
            self._scanner.feed(self._loaded.tokenizer.decode([token]))
            if self._loop and self._rearm and not self._closing:
                # A raw value's loop is closed by its own close: watch anew
                # (the next value may loop too). A JSON loop keeps the output
                # closing as soon as it can.
                self._loop, self._constrained, self._rearm = [], [], False
            self._constrained.append(token)
            if not self._loop and (loop := ends_in_loop(self._constrained)):
                log.info(
                    "constrained output repeats itself after %d tokens: closing it",
                    len(self._constrained),
                )
                self._loop = loop
                self._closing = self._close_raw_value()
                self._rearm = bool(self._closing)
            return
        if not self._watch:
            return
        self._recent = (self._recent + [token])[-TRIGGER_WINDOW:]
        text = self._loaded.tokenizer.decode(self._recent)
        trigger = self._family.calls.trigger
        if trigger in text:
            self._watch = False
            opened = text[text.rindex(trigger) :]
            try:
                grammar = calls_grammar(
                    self._family, self._policy, self._tokens, opened=opened
                )
                self._matcher = new_matcher(self._ll, grammar)
            except (ValueError, GrammarError) as error:
                log.warning("tool call left unconstrained: %s", error)
