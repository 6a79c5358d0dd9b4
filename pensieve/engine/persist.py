"""The prompt cache across restarts: entries written at shutdown, read at load.

With `PENSIEVE_PROMPT_CACHE_DIR` set, a server that stops (SIGTERM, after
draining) writes its prompt-cache entries there in mlx-lm's prompt-cache
format, and the next server on the same model reads them back once the model
has loaded: Claude Code's first turn after a restart is then a cache hit.
A file names the model and KV precision it was made with; others are skipped.
Both run on the inference thread (they touch mlx arrays).
"""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path

from .cache import PromptCache

log = logging.getLogger(__name__)

SUFFIX = ".safetensors"


def save_entries(cache: PromptCache, directory: Path, model_key: str) -> int:
    """Write the entries (replacing what the folder held); how many were
    written (0, logged, where the folder cannot be written)."""
    try:
        return _save(cache, directory, model_key)
    except OSError as error:  # the server still shuts down as it should
        log.error("prompt cache: cannot write to %s: %s", directory, error)
        return 0


def _save(cache: PromptCache, directory: Path, model_key: str) -> int:
    from mlx_lm.models.cache import save_prompt_cache

    started = time.monotonic()
    directory.mkdir(parents=True, exist_ok=True)
    for old in directory.glob(f"entry-*{SUFFIX}"):
        old.unlink()
    entries = cache.entries()  # least recently used first
    for index, entry in enumerate(entries):
        metadata = {"model": model_key, "tokens": json.dumps(entry.tokens)}
        partial = directory / f"entry-{index:02d}.partial{SUFFIX}"
        save_prompt_cache(str(partial), entry.kv, metadata)
        partial.rename(directory / f"entry-{index:02d}{SUFFIX}")
    log.info(
        "prompt cache: wrote %d entries (%d tokens) to %s in %.2f s",
        len(entries),
        sum(len(entry.tokens) for entry in entries),
        directory,
        time.monotonic() - started,
    )
    return len(entries)


def load_entries(cache: PromptCache, directory: Path, model_key: str) -> int:
    """Read back the entries written for this model; how many were kept."""
    import mlx.core as mx
    from mlx_lm.models.cache import load_prompt_cache

    started = time.monotonic()
    restored = tokens = 0
    for path in sorted(directory.glob(f"entry-[0-9][0-9]{SUFFIX}")):
        try:
            kv, metadata = load_prompt_cache(str(path), return_metadata=True)
            held = json.loads(metadata["tokens"])
            mx.eval([layer.state for layer in kv])  # read now, not at first use
        except Exception as error:  # a damaged file costs its entry only
            log.warning("prompt cache: cannot read %s: %s", path.name, error)
            continue
        if metadata.get("model") != model_key:
            log.info("prompt cache: %s is for another model: skipped", path.name)
            continue
        if cache.store(held, kv):
            restored, tokens = restored + 1, tokens + len(held)
    if restored:
        log.info(
            "prompt cache: restored %d entries (%d tokens) from %s in %.2f s",
            restored,
            tokens,
            directory,
            time.monotonic() - started,
        )
    return restored
