"""The reasoning phase of constrained decoding: budget, then the answer's grammar.

A logits processor in front of GrammarConstraint. While the model reasons
(the prompt opened the block, or the model opened it as its first token),
nothing is constrained but the budget: at `budget` tokens the family's close
marker is forced, then the text its template writes before the answer, and
the answer's grammar (a forced call, a structured answer) takes over. A model
that does not reason gets the grammar from its first token; where reasoning
is allowed, that first token may also open the reasoning block.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import numpy as np

from .constrain import GrammarConstraint, added_tokens
from .families import Family, Reasoning
from .tools import Constraint

log = logging.getLogger(__name__)

CLOSE_WINDOW = 12  # tokens decoded to look for the reasoning's close


class ReasoningGate:
    """Reasoning first (within budget), then the answer's constraint."""

    def __init__(self, loaded: Any, family: Family, constraint: Constraint) -> None:
        self._tokenizer = loaded.tokenizer
        reasoning = family.reasoning
        self._reasoning: Reasoning | None = None
        if constraint.in_reasoning or (
            constraint.reasoning and self._is_marker(loaded, reasoning)
        ):
            self._reasoning = reasoning
        self._budget = constraint.budget
        self._make_answer: Callable[[], GrammarConstraint] = lambda: GrammarConstraint(
            loaded,
            family,
            policy=constraint.policy,
            response_schema=constraint.response_schema,
        )
        self._strict = (
            constraint.policy.forced or constraint.response_schema is not None
        )
        self._phase = "reasoning" if constraint.in_reasoning else "start"
        self._answer = self._make_answer() if self._phase == "start" else None
        self._forcing: list[int] = []
        # The opening's tokens, once: they are looked at on every early step.
        self._opener = self.encode(self._reasoning.open) if self._reasoning else []
        if self._phase == "start" and self._opener and constraint.force_reasoning:
            self._phase, self._answer = "reasoning", None
            self._forcing = list(self._opener)
        if self._reasoning is None and constraint.lead:  # GLM's empty block
            self._phase, self._answer = "closing", None
            self._forcing = self.encode(constraint.lead)
        self._seen: int | None = None
        self._thought: list[int] = []

    @staticmethod
    def _is_marker(loaded: Any, reasoning: Reasoning | None) -> bool:
        """Whether the model has the reasoning's opening marker as a token of
        its own (else it never reasons: Qwen2.5 shares Qwen3's template family)."""
        if reasoning is None:
            return False
        ids = loaded.tokenizer.encode(reasoning.open, add_special_tokens=False)
        return bool(ids) and ids[0] in set(added_tokens(loaded).values())

    def encode(self, text: str) -> list[int]:
        return self._tokenizer.encode(text, add_special_tokens=False) if text else []

    def __call__(self, tokens: Any, logits: Any) -> Any:
        import mlx.core as mx

        new = self._new_tokens(tokens)
        for token in new:
            self._step(token)
        vocab = logits.shape[-1]
        mask = self._mask(tokens, vocab)
        if mask is None:
            return logits
        return mx.where(mx.array(mask), logits, mx.array(-np.inf, dtype=logits.dtype))

    def _new_tokens(self, tokens: Any) -> list[int]:
        if self._seen is None:
            self._seen = tokens.size
            return []
        new = tokens[self._seen :].tolist()
        self._seen = tokens.size
        return new

    def _step(self, token: int) -> None:
        """Follow the phase the output is in, one generated token at a time."""
        if self._forcing and token == self._forcing[0]:
            self._forcing.pop(0)
            if not self._forcing and self._phase == "closing":
                self._begin_answer()
            return
        if self._phase == "start":
            opener = self._opener
            if opener and token == opener[0]:
                self._phase, self._answer = "reasoning", None
                self._forcing = opener[1:]
            else:
                self._phase = "answer"
        elif self._phase == "reasoning":
            self._thought.append(token)
            assert self._reasoning is not None
            recent = self._tokenizer.decode(self._thought[-CLOSE_WINDOW:])
            if self._reasoning.close in recent:
                self._close(after_only=True)

    def _close(self, *, after_only: bool = False) -> None:
        """End the reasoning: force its close (unless written) and what follows."""
        assert self._reasoning is not None
        after = self.encode(self._reasoning.after) if self._strict else []
        close = [] if after_only else self.encode(self._reasoning.close)
        self._forcing = close + after
        self._phase = "closing"
        if not self._forcing:
            self._begin_answer()

    def _begin_answer(self) -> None:
        self._phase = "answer"
        self._answer = self._make_answer()

    def _mask(self, tokens: Any, vocab: int) -> np.ndarray | None:
        if self._forcing:
            mask = np.zeros(vocab, dtype=bool)
            mask[self._forcing[0]] = True
            return mask
        if self._phase == "reasoning":
            if self._budget is not None and len(self._thought) >= self._budget:
                log.info("reasoning budget of %d tokens reached: closing", self._budget)
                self._close()
                return self._mask(tokens, vocab)
            return None
        if self._answer is None:
            return None
        self._answer.consume(tokens)
        mask = self._answer.allowed(vocab)
        opener = self._opener
        if mask is not None and self._phase == "start" and opener and opener[0] < vocab:
            mask[opener[0]] = True  # the model may reason first
        return mask
