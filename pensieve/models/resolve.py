"""Turn the `model` setting into a local mlx-lm model directory.

The setting is a Hugging Face repo id in MLX format, a local MLX directory, a
local `.gguf` file (imported once into the cache) or `bundled`. Nothing here
imports mlx: it runs in the gunicorn master, before the worker forks.
"""

from __future__ import annotations

import hashlib
import logging
import threading
from dataclasses import dataclass
from pathlib import Path

from .bundled import BUNDLED_MODEL_ID, bundled_gguf_path
from .digests import content_digest
from .gguf import IMPORTER_VERSION, import_in_subprocess

log = logging.getLogger(__name__)

BUNDLED = "bundled"
DIGESTS_DIR = "gguf-digests"  # under the cache folder: memoised file digests


class ModelNotAvailable(RuntimeError):
    """The configured model can be neither found locally nor downloaded."""


@dataclass(frozen=True)
class ResolvedModel:
    """A model ready to load: the id clients see and the directory to load."""

    model_id: str
    path: Path
    source: str  # "huggingface", "local", "gguf" or "bundled"
    fallback_reason: str | None = None


def resolve_model(
    spec: str, *, cache_dir: Path, fallback: bool, offline_timeout: float = 3.0
) -> ResolvedModel:
    """Resolve `spec`; with `fallback`, an unreachable repo gives the bundled model."""
    if spec == BUNDLED:
        return _bundled(cache_dir)
    path = Path(spec).expanduser()
    if spec.endswith(".gguf"):
        if not path.is_file():
            raise ModelNotAvailable(f"GGUF file not found: {path}")
        return ResolvedModel(path.stem, imported_gguf_dir(path, cache_dir), "gguf")
    if path.is_dir():
        if not (path / "config.json").is_file():
            raise ModelNotAvailable(f"{path} is not an MLX model (no config.json)")
        return ResolvedModel(path.name, path.resolve(), "local")
    try:
        return ResolvedModel(spec, _from_hub(spec, offline_timeout), "huggingface")
    except ModelNotAvailable as error:
        if not fallback:
            raise
        reason = f"{spec} is not available ({error}); serving the bundled model"
        log.warning("*" * 72)
        log.warning("FALLBACK: %s", reason)
        log.warning("*" * 72)
        bundled = _bundled(cache_dir)
        return ResolvedModel(bundled.model_id, bundled.path, bundled.source, reason)


def _bundled(cache_dir: Path) -> ResolvedModel:
    gguf = bundled_gguf_path()
    return ResolvedModel(BUNDLED_MODEL_ID, imported_gguf_dir(gguf, cache_dir), BUNDLED)


def import_key(gguf: Path, cache_dir: Path) -> str:
    """The import's key: the file's contents and the importer, not its path,
    so copies of one GGUF (the bundled one in two virtualenvs) share an import."""
    sha256 = content_digest(gguf, cache_dir / DIGESTS_DIR)
    return hashlib.sha256(f"{sha256}|{IMPORTER_VERSION}".encode()).hexdigest()[:12]


def imported_gguf_dir(gguf: Path, cache_dir: Path) -> Path:
    """The cached import of `gguf`, importing it first if needed."""
    gguf = gguf.resolve()
    key = import_key(gguf, cache_dir)
    imported = cache_dir / "imported"
    # A copy under another file name finds the import its first name made.
    done = sorted(imported.glob(f"*-{key}/config.json"))
    if done:
        return done[0].parent
    target = imported / f"{gguf.stem}-{key}"
    log.info("importing %s into %s", gguf, target)
    import_in_subprocess(gguf, target)
    return target


def _from_hub(repo_id: str, offline_timeout: float) -> Path:
    """The repo from the Hugging Face cache, else downloaded with progress bars."""
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import HfHubHTTPError, LocalEntryNotFoundError

    try:
        return Path(snapshot_download(repo_id, local_files_only=True))
    except LocalEntryNotFoundError:
        pass
    problem = hub_unreachable(offline_timeout)
    if problem:
        raise ModelNotAvailable(f"not in the local cache and {problem}")
    log.info("downloading %s from Hugging Face", repo_id)
    try:
        return Path(snapshot_download(repo_id, etag_timeout=offline_timeout))
    except (HfHubHTTPError, OSError, ValueError) as error:
        raise ModelNotAvailable(f"download failed: {error}") from error


def hub_unreachable(timeout: float) -> str | None:
    """Why the Hugging Face endpoint cannot be reached, or None if it can.

    The check runs in a thread so that a hanging DNS lookup also ends in `timeout`.
    """
    import requests
    from huggingface_hub import constants

    if constants.HF_HUB_OFFLINE:
        return "HF_HUB_OFFLINE is set"
    outcome: list[str | None] = [f"Hugging Face did not answer within {timeout:.0f} s"]

    def probe() -> None:
        try:
            requests.head(constants.ENDPOINT, timeout=timeout)
            outcome[0] = None
        except requests.RequestException as error:
            outcome[0] = f"{constants.ENDPOINT} is unreachable ({type(error).__name__})"

    thread = threading.Thread(target=probe, daemon=True)
    thread.start()
    thread.join(timeout)
    return outcome[0]
