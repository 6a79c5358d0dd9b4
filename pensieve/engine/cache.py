"""Prompt cache: the KV caches of recent prompts, reused by longest token prefix.

Agents such as Claude Code resend the same long system prompt and tool list on
every turn, plus a growing conversation: starting from the KV of the longest
cached prefix turns a multi-second prefill into a few new tokens.

Only the inference thread touches the caches' arrays (`take`, `store`); the
greenlets may `peek` at the token lists to estimate usage ahead of time.
"""

from __future__ import annotations

import copy
import functools
import logging
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from .prompt import Rendered, hf_tokenizer

log = logging.getLogger(__name__)


@dataclass
class CacheEntry:
    tokens: list[int]
    kv: list[Any] = field(repr=False)  # mlx-lm cache objects, one per layer
    nbytes: int = 0
    _text: str | None = field(default=None, repr=False)

    def text(self, decode: Callable[[list[int]], str]) -> str:
        """The tokens' text (decoded once: entries never change)."""
        if self._text is None:
            self._text = decode(self.tokens)
        return self._text


@dataclass(frozen=True)
class CacheHit:
    """A KV cache to start from and how many prompt tokens it already holds."""

    kv: list[Any] | None
    reused: int


def common_prefix(a: Sequence[int], b: Sequence[int]) -> int:
    size = min(len(a), len(b))
    for index in range(size):
        if a[index] != b[index]:
            return index
    return size


def spelt_prefix(
    tokens: list[int],
    start: int,
    text: str,
    decode: Callable[[list[int]], str],
    whole: str,
) -> tuple[int, str]:
    """The most of `tokens` (at least `start`; `whole` is their text) whose
    text begins `text`, and that text; (0, "") when not even `start` tokens do."""
    if text.startswith(whole):
        return len(tokens), whole
    low, found = start, (0, "")
    high = len(tokens) - 1
    while low <= high:  # a prefix of a prefix is one: search for the longest
        middle = (low + high) // 2
        spelt = decode(tokens[:middle])
        if text.startswith(spelt):
            found, low = (middle, spelt), middle + 1
        else:
            high = middle - 1
    return found


def fitting_prefix(entry: CacheEntry, max_bytes: int) -> CacheEntry | None:
    """The longest prefix of `entry` whose KV fits in `max_bytes`, in arrays of
    its own size (None where its layers cannot be cut: not trimmable, or not
    plain KV). An agent's long prompt is then cached in part, not dropped."""
    import mlx.core as mx

    total = len(entry.tokens)
    per_token = max(1, entry.nbytes // max(1, entry.kv[0].offset))
    keep = min(total, max_bytes // per_token)
    plain = all(
        isinstance(getattr(layer, "keys", None), mx.array) and layer.is_trimmable()
        for layer in entry.kv
    )
    if keep <= 0 or not plain:
        log.info(
            "prompt cache: a %d-token entry (%d MiB) exceeds the budget of %d MiB "
            "and cannot be cut: not kept",
            total,
            entry.nbytes >> 20,
            max_bytes >> 20,
        )
        return None
    for layer in entry.kv:
        # Copies: a slice would keep the whole of the old buffers alive.
        layer.keys = mx.contiguous(layer.keys[..., :keep, :])
        layer.values = mx.contiguous(layer.values[..., :keep, :])
        layer.offset = keep
        mx.eval(layer.keys, layer.values)
    kept = CacheEntry(entry.tokens[:keep], entry.kv, sum(c.nbytes for c in entry.kv))
    log.info(
        "prompt cache: a %d-token entry (%d MiB) exceeds the budget of %d MiB: "
        "kept its first %d tokens (%d MiB)",
        total,
        entry.nbytes >> 20,
        max_bytes >> 20,
        keep,
        kept.nbytes >> 20,
    )
    return kept if kept.nbytes <= max_bytes else None


def prefix_of(kv: list[Any], held: int, tokens: int) -> list[Any]:
    """Caches holding the first `tokens` of the `held` in `kv`, which stays as
    it is.

    Plain and quantized KV layers share `kv`'s arrays through slices: the new
    request's first step then copies those `tokens` into a buffer of its own,
    and nothing else is copied (a whole-entry copy of a 20k-token Phi-3 prompt
    is ~8 GB, and a hit on just the chat template's first tokens would pay
    it). Other layers (rotating windows) are copied whole and trimmed.
    """
    from mlx.utils import tree_map
    from mlx_lm.models.cache import KVCache, QuantizedKVCache

    layers: list[Any] = []
    for layer in kv:
        if type(layer) in (KVCache, QuantizedKVCache) and layer.keys is not None:
            shared = copy.copy(layer)  # its attributes, not its arrays
            shared.keys, shared.values = tree_map(
                lambda array: array[..., :tokens, :], (layer.keys, layer.values)
            )
            shared.offset = tokens
        else:
            shared = copy.deepcopy(layer)
            shared.trim(held - tokens)
        layers.append(shared)
    return layers


def raw_decoder(tokenizer: Any) -> Callable[[list[int]], str]:
    """The text of token ids, special tokens and spaces as they are. (Not the
    fast tokenizer's own decoder: for some vocabularies, MiniMax's, it spells
    text otherwise than transformers' `decode`, which renders the template.)"""
    return functools.partial(
        hf_tokenizer(tokenizer).decode,
        skip_special_tokens=False,
        clean_up_tokenization_spaces=False,
    )


class PromptCache:
    """LRU store of KV caches, bounded by entries and bytes."""

    def __init__(self, *, max_entries: int, max_bytes: int | None) -> None:
        """`max_bytes` None: not sized yet (nothing is kept until it is)."""
        self.max_entries = max_entries
        self.max_bytes = max_bytes
        self._entries: list[CacheEntry] = []  # least recently used first
        self._guard = threading.Lock()  # short critical sections only

    @property
    def enabled(self) -> bool:
        return self.max_entries > 0 and bool(self.max_bytes)

    @property
    def nbytes(self) -> int:
        return sum(entry.nbytes for entry in self._entries)

    def __len__(self) -> int:
        return len(self._entries)

    def peek(self, prompt: Sequence[int]) -> int:
        """How many prompt tokens a `take` would reuse now (no mlx calls)."""
        with self._guard:
            entries = list(self._entries)
        return max((self._usable(entry, prompt) for entry in entries), default=0)

    def align(self, rendered: Rendered) -> list[int]:
        """The rendered prompt's tokens, starting with those of the cached
        entry that spells the longest prefix of its text.

        Tokenising a whole conversation does not always give the tokens it
        was generated as: the model's own call, or the generation prompt's
        `\n\n` before it, may be spelt in other tokens once more text follows.
        Spelling the same text in the cached tokens lets the cache cover it.
        """
        with self._guard:
            held = list(self._entries)
        prompt = rendered.token_ids
        if not held:
            return prompt
        best = max(held, key=lambda e: (common_prefix(e.tokens, prompt), len(e.tokens)))
        start = common_prefix(best.tokens, prompt)
        if start == len(best.tokens):
            return prompt
        text, decode = rendered.text, raw_decoder(rendered.tokenizer)
        whole = best.text(decode)  # decoded once per entry
        size, spelt = spelt_prefix(best.tokens, start, text, decode, whole)
        if size <= start:
            return prompt
        return best.tokens[:size] + rendered.encode(text[len(spelt) :])

    def take(self, prompt: Sequence[int]) -> CacheHit:
        """The best cache for `prompt`; an exact prefix is handed over, not copied."""
        with self._guard:
            scored = [(self._usable(e, prompt), i) for i, e in enumerate(self._entries)]
            reused, index = max(scored, default=(0, -1))
            if reused == 0:
                return CacheHit(None, 0)
            entry = self._entries[index]
            del self._entries[index]
            if reused == len(entry.tokens):
                return CacheHit(entry.kv, reused)  # it will be extended in place
            self._entries.append(entry)  # kept, and now the most recently used
        # A longer entry: keep it, and start from its first `reused` tokens.
        return CacheHit(prefix_of(entry.kv, len(entry.tokens), reused), reused)

    def entries(self) -> list[CacheEntry]:
        """The entries now, least recently used first."""
        with self._guard:
            return list(self._entries)

    def store(self, tokens: list[int], kv: list[Any]) -> bool:
        """Keep `kv`, which holds exactly `tokens`, evicting the least recently
        used; False when nothing of it could be kept."""
        if not self.enabled or not tokens:
            return False
        assert self.max_bytes is not None  # enabled
        entry = CacheEntry(list(tokens), kv, sum(c.nbytes for c in kv))
        if entry.nbytes > self.max_bytes:
            entry = fitting_prefix(entry, self.max_bytes)
            if entry is None:
                return False
        with self._guard:
            # An entry that is a prefix of the new one is now redundant.
            self._entries = [
                e
                for e in self._entries
                if common_prefix(e.tokens, tokens) < len(e.tokens)
            ]
            self._entries.append(entry)
            while len(self._entries) > self.max_entries or self.nbytes > self.max_bytes:
                self._entries.pop(0)
        return True

    @staticmethod
    def _usable(entry: CacheEntry, prompt: Sequence[int]) -> int:
        """Tokens of `entry` reusable for `prompt`, leaving one prompt token to run."""
        reused = min(common_prefix(entry.tokens, prompt), len(prompt) - 1)
        trimmable = all(layer.is_trimmable() for layer in entry.kv)
        if reused < len(entry.tokens) and not trimmable:
            return 0
        return max(reused, 0)
