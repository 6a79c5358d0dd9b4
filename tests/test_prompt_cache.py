"""The prompt cache: reuse by longest token prefix, LRU bounded by entries and bytes.

Entries hold real mlx-lm KV caches, small ones, filled on the CPU.
"""

from __future__ import annotations

from typing import Any

import mlx.core as mx
import pytest
from mlx_lm.models.cache import KVCache, RotatingKVCache

from pensieve.engine.cache import PromptCache, common_prefix
from pensieve.engine.decoding import reserve
from pensieve.engine.memory import FreeMemory, cache_budget, free_memory, ram
from pensieve.engine.prompt import Rendered

BIG = 1 << 40


def kv(n_tokens: int, layers: int = 2, dims: int = 4) -> list[Any]:
    """A trimmable KV cache holding `n_tokens` (values 0..n-1 along the tokens)."""
    caches = []
    for _ in range(layers):
        cache = KVCache()
        steps = mx.arange(n_tokens, dtype=mx.float32).reshape(1, 1, n_tokens, 1)
        keys = mx.broadcast_to(steps, (1, 2, n_tokens, dims))
        cache.update_and_fetch(keys, keys)
        caches.append(cache)
    return caches


def rotating_kv(n_tokens: int) -> list[Any]:
    """A sliding-window cache that has wrapped around: not trimmable."""
    cache = RotatingKVCache(max_size=4)
    keys = mx.zeros((1, 2, n_tokens, 4))
    cache.update_and_fetch(keys, keys)
    assert not cache.is_trimmable()
    return [cache]


def size_of(caches: list[Any]) -> int:
    return sum(layer.nbytes for layer in caches)


def offsets(caches: list[Any]) -> list[int]:
    return [layer.offset for layer in caches]


def filled(*token_lists: list[int], **bounds: int) -> PromptCache:
    cache = PromptCache(
        max_entries=bounds.get("max_entries", 8),
        max_bytes=bounds.get("max_bytes", BIG),
    )
    for tokens in token_lists:
        cache.store(tokens, kv(len(tokens)))
    return cache


@pytest.mark.parametrize(
    ("a", "b", "size"),
    [([], [], 0), ([1, 2], [], 0), ([1, 2, 3], [1, 2, 4], 2), ([1, 2], [1, 2, 3], 2)],
)
def test_common_prefix(a: list[int], b: list[int], size: int) -> None:
    assert common_prefix(a, b) == size == common_prefix(b, a)


def test_empty_cache_misses() -> None:
    cache = filled()
    assert cache.peek([1, 2, 3]) == 0
    hit = cache.take([1, 2, 3])
    assert hit.kv is None and hit.reused == 0


def test_unrelated_prompt_misses_and_keeps_the_entry() -> None:
    cache = filled([1, 2, 3])
    hit = cache.take([7, 8, 9])
    assert (hit.kv, hit.reused) == (None, 0)
    assert len(cache) == 1


def test_exact_prefix_is_handed_over() -> None:
    cache = PromptCache(max_entries=4, max_bytes=BIG)
    stored = kv(3)
    cache.store([1, 2, 3], stored)
    hit = cache.take([1, 2, 3, 4, 5])
    assert hit.kv is stored and hit.reused == 3
    assert len(cache) == 0 and cache.nbytes == 0


def test_longer_entry_gives_a_trimmed_copy_and_stays() -> None:
    cache = PromptCache(max_entries=4, max_bytes=BIG)
    stored = kv(6)
    cache.store([1, 2, 3, 4, 5, 6], stored)
    hit = cache.take([1, 2, 3, 9, 9])
    assert hit.reused == 3 and hit.kv is not None
    assert all(a is not b for a, b in zip(hit.kv, stored, strict=True))
    assert offsets(hit.kv) == [3, 3]
    keys, _ = hit.kv[0].keys_and_values()
    assert keys[0, 0, :, 0].tolist() == [0.0, 1.0, 2.0]
    extra = mx.full((1, 2, 1, 4), 99.0)
    hit.kv[0].update_and_fetch(extra, extra)  # extending the copy...
    kept, _ = stored[0].keys_and_values()  # ...leaves the cached arrays alone
    assert kept[0, 0, :, 0].tolist() == [0.0, 1.0, 2.0, 3.0, 4.0, 5.0]
    assert offsets(stored) == [6, 6] and len(cache) == 1
    assert cache.take([1, 2, 3, 4, 0]).reused == 4  # still there, untouched


def test_a_partial_hit_copies_only_the_tokens_it_reuses() -> None:
    cache = PromptCache(max_entries=4, max_bytes=BIG)
    stored = kv(600)  # buffers of 768 tokens (mlx-lm grows them by 256)
    cache.store(list(range(600)), stored)
    hit = cache.take([0, 1, 2, 9999])  # e.g. just the chat template's head
    assert hit.reused == 3 and hit.kv is not None
    # Slices of the entry's arrays: nothing of its 600 tokens was copied.
    assert [layer.keys.shape[2] for layer in hit.kv] == [3, 3]
    assert [layer.keys.shape[2] for layer in stored] == [768, 768]
    extra = mx.full((1, 2, 1, 4), 99.0)
    keys, _ = hit.kv[0].update_and_fetch(extra, extra)
    assert keys[0, 0, :, 0].tolist() == [0.0, 1.0, 2.0, 99.0]
    assert stored[0].keys[0, 0, 3, 0].item() == 3.0  # the entry is untouched


def test_a_partial_hit_on_quantized_kv_is_the_entrys_prefix() -> None:
    cache = PromptCache(max_entries=4, max_bytes=BIG)
    stored = [layer.to_quantized(group_size=32, bits=8) for layer in kv(40, dims=64)]
    whole = [mx.dequantize(*layer.keys, group_size=32, bits=8) for layer in stored]
    cache.store(list(range(40)), stored)
    hit = cache.take([*range(10), 9999])
    assert hit.reused == 10 and hit.kv is not None
    extra = mx.full((1, 2, 1, 64), 99.0)
    keys, _ = hit.kv[0].update_and_fetch(extra, extra)
    keys = mx.dequantize(*keys, group_size=32, bits=8)
    assert mx.array_equal(keys[..., :10, :], whole[0][..., :10, :])
    assert keys[0, 0, 10, 0].item() == pytest.approx(99.0, rel=0.01)
    after = mx.dequantize(*stored[0].keys, group_size=32, bits=8)
    assert mx.array_equal(after, whole[0]) and stored[0].offset == 40


def test_a_partial_hit_on_a_sliding_window_that_has_not_wrapped() -> None:
    cache = PromptCache(max_entries=4, max_bytes=BIG)
    window = RotatingKVCache(max_size=16)
    keys = mx.arange(6, dtype=mx.float32).reshape(1, 1, 6, 1) * mx.ones((1, 2, 6, 4))
    window.update_and_fetch(keys, keys)
    cache.store([1, 2, 3, 4, 5, 6], [window])
    hit = cache.take([1, 2, 3, 9])
    assert hit.reused == 3 and hit.kv is not None and hit.kv[0] is not window
    assert hit.kv[0].offset == 3 and window.offset == 6


def test_a_prompt_equal_to_an_entry_leaves_one_token_to_compute() -> None:
    cache = filled([1, 2, 3, 4])
    hit = cache.take([1, 2, 3, 4])
    assert hit.reused == 3 and hit.kv is not None
    assert offsets(hit.kv) == [3, 3] and len(cache) == 1


def test_a_prompt_shorter_than_the_entry() -> None:
    cache = filled([1, 2, 3, 4])
    assert cache.take([1, 2]).reused == 1
    assert cache.take([1]).reused == 0


def test_longest_match_wins() -> None:
    cache = filled([1, 2, 9], [1, 2, 3, 4, 7], [5])
    hit = cache.take([1, 2, 3, 4, 5])
    assert hit.reused == 4 and hit.kv is not None and offsets(hit.kv) == [4, 4]


def test_eviction_by_entries_drops_the_least_recently_used() -> None:
    cache = filled([1, 1], [2, 2], [3, 3], max_entries=2)
    assert len(cache) == 2
    assert cache.peek([1, 1, 0]) == 0
    assert cache.peek([2, 2, 0]) == 2 and cache.peek([3, 3, 0]) == 2


def test_eviction_by_bytes() -> None:
    one = size_of(kv(2))
    cache = filled([1, 1], [2, 2], [3, 3], max_bytes=2 * one)
    assert len(cache) == 2 and cache.nbytes == 2 * one
    assert cache.peek([1, 1, 0]) == 0 and cache.peek([3, 3, 0]) == 2


def test_an_entry_whose_first_token_outgrows_the_budget_is_not_stored() -> None:
    cache = filled([1, 1], max_bytes=1)
    assert len(cache) == 0 and cache.nbytes == 0


def test_an_entry_that_is_a_prefix_of_a_new_one_is_dropped() -> None:
    cache = PromptCache(max_entries=8, max_bytes=BIG)
    cache.store([1, 2, 3], kv(3))
    cache.store([1, 2, 4], kv(3))  # diverges: both kept
    longer = kv(5)
    cache.store([1, 2, 3, 4, 5], longer)
    assert len(cache) == 2
    cache.store([1, 2, 3, 4, 5], kv(5))  # the same tokens again: replaced
    assert len(cache) == 2
    assert cache.take([1, 2, 3, 4, 5, 6]).kv is not longer


def test_a_longer_entry_is_kept_beside_its_prefix() -> None:
    cache = filled([1, 2, 3, 4], [1, 2])
    assert len(cache) == 2


@pytest.mark.parametrize(
    "prompt",
    [[], [1], [1, 2], [1, 2, 3], [1, 2, 3, 4], [1, 2, 3, 4, 5, 6], [1, 5], [4, 4, 4]],
)
def test_peek_is_what_take_would_reuse(prompt: list[int]) -> None:
    cache = filled([1, 2, 3], [1, 2, 3, 4, 5], [4, 4])
    assert cache.peek(prompt) == cache.take(prompt).reused


@pytest.mark.parametrize(("entries", "budget"), [(0, BIG), (4, 0)])
def test_disabled_cache_stores_nothing(entries: int, budget: int) -> None:
    cache = PromptCache(max_entries=entries, max_bytes=budget)
    assert not cache.enabled
    cache.store([1, 2, 3], kv(3))
    assert len(cache) == 0 and cache.take([1, 2, 3, 4]).reused == 0


def test_empty_token_list_is_not_stored() -> None:
    cache = PromptCache(max_entries=4, max_bytes=BIG)
    cache.store([], kv(1))
    assert len(cache) == 0


def test_non_trimmable_layers_are_reused_only_on_exact_prefix() -> None:
    cache = PromptCache(max_entries=4, max_bytes=BIG)
    stored = rotating_kv(6)
    tokens = [1, 2, 3, 4, 5, 6]
    cache.store(tokens, stored)
    assert cache.peek(tokens) == 0  # would need a trim by one
    assert cache.peek([1, 2, 3, 9]) == 0
    assert cache.take([1, 2, 3, 9]).reused == 0
    hit = cache.take([*tokens, 7])
    assert hit.kv is stored and hit.reused == 6 and len(cache) == 0


def test_a_copied_entry_counts_as_recently_used() -> None:
    cache = filled([1, 2, 3, 4], [7, 7], max_entries=2)
    assert cache.take([1, 2, 3, 9]).reused == 3  # uses the older entry
    cache.store([8, 8], kv(2))  # evicts the least recently used: [7, 7]
    assert cache.peek([1, 2, 3, 9]) == 3


# --- align: the same text, spelt in the cached tokens -----------------------


@pytest.fixture(scope="module")
def tokenizer(bundled_model_dir: Any) -> Any:
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(bundled_model_dir)


def encode(tokenizer: Any, text: str) -> list[int]:
    return tokenizer.encode(text, add_special_tokens=False)


def test_a_prompt_is_spelt_in_the_tokens_the_model_generated(tokenizer: Any) -> None:
    """The model wrote "Hello world" as "Hel" + "lo world"; the next prompt
    tokenises it canonically, yet reuses every cached token."""
    generated = encode(tokenizer, "Q: hi\nA:") + encode(tokenizer, " Hel")
    generated += encode(tokenizer, "lo world")
    text = "Q: hi\nA: Hello world\nQ: and?"
    canonical = encode(tokenizer, text)
    cache = filled(generated)
    assert common_prefix(canonical, generated) < len(generated)  # the premise
    aligned = cache.align(Rendered(text, tokenizer))
    assert aligned[: len(generated)] == generated
    assert tokenizer.decode(aligned) == text
    assert cache.peek(aligned) == len(generated)


def test_align_keeps_the_prompt_when_no_entry_spells_its_text(tokenizer: Any) -> None:
    other = encode(tokenizer, "Something else entirely")
    text = "Q: hi\nA: Hello"
    canonical = encode(tokenizer, text)
    assert filled(other).align(Rendered(text, tokenizer)) == canonical
    assert filled().align(Rendered(text, tokenizer)) == canonical


def test_align_takes_the_part_of_an_entry_that_still_spells_the_text(
    tokenizer: Any,
) -> None:
    generated = encode(tokenizer, "Q: hi\nA: Hel") + encode(tokenizer, "lo there")
    text = "Q: hi\nA: Hello world"  # the entry's last word differs
    aligned = filled(generated).align(Rendered(text, tokenizer))
    assert tokenizer.decode(aligned) == text
    assert common_prefix(aligned, generated) > common_prefix(
        encode(tokenizer, text), generated
    )


def test_a_longer_entry_that_spells_more_wins_over_a_whole_shorter_one(
    tokenizer: Any,
) -> None:
    """A turn's whole text may begin the prompt while another entry (the
    model's call, spelt in its own tokens) covers more of it in part."""
    head = encode(tokenizer, "Q: hi\nA:")
    generated = head + encode(tokenizer, " Hel") + encode(tokenizer, "lo there")
    text = "Q: hi\nA: Hello world"  # the generated entry's last word differs
    aligned = filled(generated, head).align(Rendered(text, tokenizer))
    assert tokenizer.decode(aligned) == text
    assert common_prefix(aligned, generated) > len(head) + 1


# --- the budget: sized from the device, and entries that outgrow it ---------


def test_an_entry_larger_than_the_budget_keeps_its_longest_prefix_that_fits() -> None:
    whole = kv(100)
    per_token = size_of(whole) // 100
    cache = PromptCache(max_entries=4, max_bytes=per_token * 40 + per_token // 2)
    tokens = list(range(100))
    cache.store(tokens, whole)
    assert len(cache) == 1 and cache.nbytes <= cache.max_bytes
    assert cache.peek(tokens + [7]) == 40  # its first 40 tokens
    hit = cache.take(tokens[:40] + [7])
    assert hit.reused == 40 and offsets(hit.kv) == [40, 40]
    keys = hit.kv[0].keys[..., :40, :]
    assert keys[0, 0, :, 0].tolist() == list(range(40))  # the same KV, cut


def test_an_entry_that_cannot_be_cut_is_not_kept() -> None:
    cache = PromptCache(max_entries=4, max_bytes=1)
    cache.store(list(range(8)), rotating_kv(8))
    assert len(cache) == 0


def test_an_unsized_cache_keeps_nothing() -> None:
    cache = PromptCache(max_entries=4, max_bytes=None)
    assert not cache.enabled
    cache.store([1, 2, 3], kv(3))
    assert len(cache) == 0


@pytest.mark.parametrize(
    ("total_gib", "free_gib", "budget_gib"),
    [
        (128, 100, 100 - 32),  # a 25% margin of a big machine
        (24, 20, 20 - 6),
        (8, 3, 1),  # the margin is at least 2 GiB
        (8, 1, 0),  # never negative: nothing is cached
    ],
)
def test_the_budget_is_free_memory_less_a_margin(
    total_gib: int, free_gib: int, budget_gib: int
) -> None:
    gib = 1024**3
    memory = FreeMemory(total_gib * gib, free_gib * gib, "test")
    assert cache_budget(memory) == budget_gib * gib


def test_the_cpus_memory_is_the_ram_available() -> None:
    memory = ram()
    assert 0 < memory.free <= memory.total


@pytest.mark.parametrize(
    ("info", "free_gib"),
    [
        # mlx's CUDA backend reports the device's free memory itself...
        ({"total_memory": 140 * 2**30, "free_memory": 100 * 2**30}, 100),
        # ...Metal a recommended working set, less what mlx holds (1 GiB here).
        ({"max_recommended_working_set_size": 48 * 2**30}, 47),
    ],
)
def test_the_free_memory_of_a_gpu(
    monkeypatch: pytest.MonkeyPatch, info: dict[str, int], free_gib: int
) -> None:
    monkeypatch.setattr(mx, "device_info", lambda: info)
    monkeypatch.setattr(mx, "get_active_memory", lambda: 2**30)
    monkeypatch.setattr(mx, "get_cache_memory", lambda: 0)
    memory = free_memory("gpu")
    assert memory.free == free_gib * 2**30


def test_a_reserved_kv_takes_the_prompt_in_one_buffer() -> None:
    """The prompt's chunks are written into one buffer, not regrown (and
    copied) chunk by chunk; once it is in, growth is mlx-lm's again."""
    layers = [KVCache(), RotatingKVCache(max_size=64)]
    reserve(layers, 1000)
    buffers = set()
    for _ in range(10):
        chunk = mx.ones((1, 2, 100, 4))
        for layer in layers:
            layer.update_and_fetch(chunk, chunk)
        buffers.add(layers[0].keys.shape[2])
    assert buffers == {1024} and layers[0].offset == 1000
    reserve(layers, 0)
    assert layers[0].step == KVCache.step == 256
    one = mx.ones((1, 2, 30, 4))
    layers[0].update_and_fetch(one, one)
    assert layers[0].keys.shape[2] == 1000 + 256  # grown by one step
