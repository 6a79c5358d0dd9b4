"""Content digests of model files, memoised so a start does not re-read them.

A GGUF import is keyed by what the file holds, not where it lies: the same
bundled GGUF in two virtualenvs shares one import. The full sha256 is read
once per file version (about 0.1 s for the 100 MB bundled model from the page
cache, more from a cold disk) and memoised under the file's path with its
size, mtime, ctime and inode; any rewrite, copy or replacement changes one of
those and the file is hashed again. A partial hash (first and last MiB) would
be cheaper but could mistake two fine-tunes of one size for each other.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from contextlib import suppress
from pathlib import Path

CHUNK_BYTES = 1024 * 1024


def file_sha256(path: Path) -> str:
    """The hex sha256 of the file's bytes."""
    digest = hashlib.sha256()
    with open(path, "rb") as file:
        while chunk := file.read(CHUNK_BYTES):
            digest.update(chunk)
    return digest.hexdigest()


def file_version(path: Path) -> dict[str, int]:
    """What changes whenever the file at `path` is rewritten or replaced."""
    stat = path.stat()
    return {
        "size": stat.st_size,
        "mtime_ns": stat.st_mtime_ns,
        "ctime_ns": stat.st_ctime_ns,
        "inode": stat.st_ino,
    }


def memo_path(path: Path, memo_dir: Path) -> Path:
    """The memo file of `path` (one per source path: no shared file to race on)."""
    name = hashlib.sha256(str(path).encode()).hexdigest()[:16]
    return memo_dir / f"{name}.json"


def content_digest(path: Path, memo_dir: Path) -> str:
    """The sha256 of `path`'s contents, memoised in `memo_dir` per file version."""
    path = path.resolve()
    version = file_version(path)
    memo = memo_path(path, memo_dir)
    with suppress(OSError, ValueError):
        saved = json.loads(memo.read_text())
        if saved["path"] == str(path) and saved["version"] == version:
            return str(saved["sha256"])
    sha256 = file_sha256(path)
    with suppress(OSError):  # a read-only cache only costs a re-hash next time
        save_memo(memo, {"path": str(path), "version": version, "sha256": sha256})
    return sha256


def save_memo(memo: Path, record: dict[str, object]) -> None:
    """Write `record` to `memo` atomically (two servers may start at once)."""
    memo.parent.mkdir(parents=True, exist_ok=True)
    handle, staging = tempfile.mkstemp(dir=memo.parent, prefix=".memo-")
    try:
        with os.fdopen(handle, "w") as file:
            json.dump(record, file)
        os.replace(staging, memo)
    finally:
        with suppress(FileNotFoundError):
            os.unlink(staging)
