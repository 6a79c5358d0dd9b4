"""Model resolution: bundled, GGUF files, local directories, hub and fallback."""

from __future__ import annotations

import json
import os
import shutil
import time
from pathlib import Path

import pytest
import requests
from huggingface_hub import constants

from conftest import API_KEY, running_server
from pensieve.config import DEFAULT_MODEL
from pensieve.models import digests, resolve
from pensieve.models.bundled import BUNDLED_MODEL_ID, bundled_gguf_path
from pensieve.models.resolve import ModelNotAvailable, resolve_model


@pytest.fixture
def unreachable_hub(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """An empty HF cache and an endpoint on a closed local port."""
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "hf"))
    monkeypatch.setattr(constants, "ENDPOINT", "http://127.0.0.1:9")
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)


def test_imported_bundled_model_is_a_standard_mlx_lm_directory(
    bundled_model_dir: Path,
) -> None:
    config = json.loads((bundled_model_dir / "config.json").read_text())
    assert config["model_type"] == "llama"
    assert config["tie_word_embeddings"] is True
    assert config["quantization"]["bits"] == 4
    assert config["quantization"]["group_size"] == 32
    assert config["quantization"]["model.embed_tokens"]["bits"] == 8
    tokenizer_config = json.loads(
        (bundled_model_dir / "tokenizer_config.json").read_text()
    )
    assert "<|im_start|>" in tokenizer_config["chat_template"]
    assert (bundled_model_dir / "model.safetensors").stat().st_size > 50_000_000


def test_second_resolution_reuses_the_import(
    cache_dir: Path, bundled_model_dir: Path
) -> None:
    started = time.monotonic()
    again = resolve_model("bundled", cache_dir=cache_dir, fallback=False)
    assert again.path == bundled_model_dir
    assert time.monotonic() - started < 1.0
    assert again.model_id == BUNDLED_MODEL_ID and again.fallback_reason is None


def test_gguf_path_and_local_directory(
    cache_dir: Path, bundled_model_dir: Path
) -> None:
    from_gguf = resolve_model(
        str(bundled_gguf_path()), cache_dir=cache_dir, fallback=False
    )
    assert from_gguf.path == bundled_model_dir and from_gguf.source == "gguf"
    local = resolve_model(str(bundled_model_dir), cache_dir=cache_dir, fallback=False)
    assert local.path == bundled_model_dir and local.source == "local"


def test_a_copy_of_the_bundled_gguf_elsewhere_reuses_its_import(
    cache_dir: Path, bundled_model_dir: Path, tmp_path: Path
) -> None:
    """Two clones, two virtualenvs: different paths, one import."""
    clone = tmp_path / "other-venv" / bundled_gguf_path().name
    clone.parent.mkdir()
    shutil.copyfile(bundled_gguf_path(), clone)
    started = time.monotonic()
    resolved = resolve_model(str(clone), cache_dir=cache_dir, fallback=False)
    assert resolved.path == bundled_model_dir
    assert time.monotonic() - started < 5  # hashed, not imported again
    assert len(list((cache_dir / "imported").glob("*/config.json"))) == 1


@pytest.fixture
def recorded_imports(monkeypatch: pytest.MonkeyPatch) -> list[Path]:
    """The GGUF importer replaced by one that only writes config.json: the
    import key is under test here, not the import (see the tests above)."""
    made: list[Path] = []

    def fake_import(gguf: Path, output_dir: Path) -> Path:
        output_dir.mkdir(parents=True)
        (output_dir / "config.json").write_text("{}")
        made.append(output_dir)
        return output_dir

    monkeypatch.setattr(resolve, "import_in_subprocess", fake_import)
    return made


def test_the_import_key_is_the_content_not_the_path(
    tmp_path: Path, recorded_imports: list[Path]
) -> None:
    cache = tmp_path / "cache"
    first, second, renamed, other = (
        tmp_path / "a" / "m.gguf",
        tmp_path / "b" / "m.gguf",
        tmp_path / "c" / "n.gguf",
        tmp_path / "d" / "m.gguf",
    )
    for path, content in [(first, b"x" * 4096), (second, b"x" * 4096)]:
        path.parent.mkdir()
        path.write_bytes(content)
    renamed.parent.mkdir()
    shutil.copy2(first, renamed)
    other.parent.mkdir()
    other.write_bytes(b"y" * 4096)  # same size, other bytes
    shared = resolve.imported_gguf_dir(first, cache)
    assert resolve.imported_gguf_dir(second, cache) == shared
    assert resolve.imported_gguf_dir(renamed, cache) == shared
    assert recorded_imports == [shared]
    assert resolve.imported_gguf_dir(other, cache) != shared
    assert len(recorded_imports) == 2


def test_the_digest_is_computed_once_per_file_version(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    hashed: list[Path] = []
    real_sha256 = digests.file_sha256

    def counted_sha256(path: Path) -> str:
        hashed.append(path)
        return real_sha256(path)

    monkeypatch.setattr(digests, "file_sha256", counted_sha256)
    gguf, memo = tmp_path / "m.gguf", tmp_path / "memo"
    gguf.write_bytes(b"x" * 4096)
    first = digests.content_digest(gguf, memo)
    assert digests.content_digest(gguf, memo) == first
    assert len(hashed) == 1
    # Rewritten in place with the same size and mtime: ctime still tells.
    before = gguf.stat()
    time.sleep(0.05)  # file times tick coarsely (a jiffy): let ctime move on
    with open(gguf, "r+b") as file:
        file.write(b"y")
    os.utime(gguf, ns=(before.st_atime_ns, before.st_mtime_ns))
    assert digests.content_digest(gguf, memo) != first
    assert len(hashed) == 2


def test_missing_files_are_clear_errors(cache_dir: Path, tmp_path: Path) -> None:
    with pytest.raises(ModelNotAvailable, match="GGUF file not found"):
        resolve_model(str(tmp_path / "no.gguf"), cache_dir=cache_dir, fallback=False)
    with pytest.raises(ModelNotAvailable, match="no config.json"):
        resolve_model(str(tmp_path), cache_dir=cache_dir, fallback=False)


def test_default_model_falls_back_in_seconds_when_offline(
    unreachable_hub: None, cache_dir: Path, bundled_model_dir: Path
) -> None:
    started = time.monotonic()
    resolved = resolve_model(DEFAULT_MODEL, cache_dir=cache_dir, fallback=True)
    assert time.monotonic() - started < 5
    assert resolved.path == bundled_model_dir
    assert resolved.fallback_reason and DEFAULT_MODEL in resolved.fallback_reason


def test_explicit_repo_does_not_fall_back(
    unreachable_hub: None, cache_dir: Path
) -> None:
    with pytest.raises(ModelNotAvailable, match="unreachable"):
        resolve_model("someone/some-model", cache_dir=cache_dir, fallback=False)


def test_server_on_the_default_model_says_it_fell_back(
    cache_dir: Path, bundled_model_dir: Path, tmp_path: Path
) -> None:
    env = {
        "PENSIEVE_CACHE_DIR": str(cache_dir),
        "PENSIEVE_API_KEY": API_KEY,
        "HF_HUB_CACHE": str(tmp_path / "hf"),
        "HF_ENDPOINT": "http://127.0.0.1:9",
    }
    log_path = tmp_path / "gunicorn.log"
    with running_server(env, log_path) as server:
        health = requests.get(
            f"{server.url}/health", timeout=5, headers={"x-api-key": API_KEY}
        ).json()
    assert health["model"] == BUNDLED_MODEL_ID
    assert DEFAULT_MODEL in health["fallback"]
    assert f"FALLBACK: {DEFAULT_MODEL} is not available" in log_path.read_text()
