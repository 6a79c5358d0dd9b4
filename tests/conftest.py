"""Shared fixtures: the imported bundled model and a real gunicorn server."""

from __future__ import annotations

from pathlib import Path

import pytest

from pensieve.models.resolve import resolve_model


@pytest.fixture(scope="session")
def cache_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A Pensieve cache folder of this test session's own."""
    return tmp_path_factory.mktemp("pensieve-cache")


@pytest.fixture(scope="session")
def bundled_model_dir(cache_dir: Path) -> Path:
    """The bundled GGUF imported into an mlx-lm model directory (once a session)."""
    return resolve_model("bundled", cache_dir=cache_dir, fallback=False).path
