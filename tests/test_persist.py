"""The prompt cache across restarts: entries written, read back, or skipped."""

from __future__ import annotations

from pathlib import Path

import mlx.core as mx
import pytest
from test_prompt_cache import BIG, kv

from pensieve.engine.cache import PromptCache
from pensieve.engine.persist import load_entries, save_entries


def cache_of(*token_lists: list[int]) -> PromptCache:
    cache = PromptCache(max_entries=8, max_bytes=BIG)
    for tokens in token_lists:
        cache.store(tokens, kv(len(tokens)))
    return cache


def test_entries_come_back_with_their_tokens_arrays_and_order(tmp_path: Path) -> None:
    first, second = [1, 2, 3], [7, 8, 9, 10, 11]
    saved = cache_of(first, second)
    assert save_entries(saved, tmp_path, "model A") == 2
    restored = PromptCache(max_entries=8, max_bytes=BIG)
    assert load_entries(restored, tmp_path, "model A") == 2
    assert [e.tokens for e in restored.entries()] == [first, second]  # LRU order
    for old, new in zip(saved.entries(), restored.entries(), strict=True):
        for a, b in zip(old.kv, new.kv, strict=True):
            size = a.offset
            assert b.offset == size
            assert mx.array_equal(a.keys[..., :size, :], b.keys[..., :size, :])
    assert restored.peek([7, 8, 9, 10, 11, 12]) == 5  # a hit, as before the restart


def test_entries_of_another_model_are_skipped(tmp_path: Path) -> None:
    save_entries(cache_of([1, 2, 3]), tmp_path, "model A")
    restored = PromptCache(max_entries=8, max_bytes=BIG)
    assert load_entries(restored, tmp_path, "model B") == 0 and len(restored) == 0


def test_a_damaged_file_costs_only_its_entry(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    save_entries(cache_of([1, 2, 3], [4, 5, 6]), tmp_path, "model A")
    (tmp_path / "entry-00.safetensors").write_bytes(b"not a safetensors file")
    restored = PromptCache(max_entries=8, max_bytes=BIG)
    assert load_entries(restored, tmp_path, "model A") == 1
    assert [e.tokens for e in restored.entries()] == [[4, 5, 6]]
    assert "cannot read entry-00.safetensors" in caplog.text


def test_writing_replaces_what_the_folder_held(tmp_path: Path) -> None:
    save_entries(cache_of([1], [2], [3]), tmp_path, "model A")
    save_entries(cache_of([9, 9]), tmp_path, "model A")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["entry-00.safetensors"]


def test_a_disabled_cache_restores_nothing(tmp_path: Path) -> None:
    save_entries(cache_of([1, 2, 3]), tmp_path, "model A")
    off = PromptCache(max_entries=0, max_bytes=BIG)
    assert load_entries(off, tmp_path, "model A") == 0


def test_entries_restored_and_never_used_are_written_again(tmp_path: Path) -> None:
    """A restart with no request in between keeps the entries (the files are
    replaced while the restored arrays came from them)."""
    save_entries(cache_of([1, 2, 3]), tmp_path, "model A")
    restored = PromptCache(max_entries=8, max_bytes=BIG)
    load_entries(restored, tmp_path, "model A")
    assert save_entries(restored, tmp_path, "model A") == 1
    again = PromptCache(max_entries=8, max_bytes=BIG)
    assert load_entries(again, tmp_path, "model A") == 1
    assert again.entries()[0].kv[0].keys[0, 0, :3, 0].tolist() == [0.0, 1.0, 2.0]


def test_a_missing_folder_restores_nothing_and_a_file_cannot_be_written(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Bad PROMPT_CACHE_DIR values: nothing to read is no error; a path that
    is a file cannot be written, which is logged (and shutdown goes on)."""
    cache = cache_of([1, 2, 3])
    assert load_entries(cache, tmp_path / "missing", "model A") == 0
    not_a_folder = tmp_path / "file"
    not_a_folder.write_text("x")
    assert save_entries(cache, not_a_folder, "model A") == 0
    assert f"cannot write to {not_a_folder}" in caplog.text


def test_the_setting_is_a_folder_with_home_expanded() -> None:
    from pensieve.config import engine_settings
    from pensieve.settings import SETTINGS

    config = {setting.name: setting.default for setting in SETTINGS}
    assert engine_settings(config).prompt_cache_dir is None
    config["PROMPT_CACHE_DIR"] = "~/kept"
    assert engine_settings(config).prompt_cache_dir == Path.home() / "kept"
