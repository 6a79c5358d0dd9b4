"""The engine's settings: one frozen value with resolved types and paths.

Built once from the app's configuration by `pensieve.config.engine_settings`;
the engine reads nothing else.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from .loading import CPUProfile


@dataclass(frozen=True)
class EngineSettings:
    """What the engine needs to know, resolved (paths expanded, sizes in bytes)."""

    model: str  # a repo id, a directory, a .gguf file or "bundled"
    cache_dir: Path
    chat_template: Path | None = None  # a template file replacing the model's
    fallback: bool = False  # serve the bundled model if `model` is unreachable
    offline_timeout: float = 3.0
    keepalive_seconds: float = 5.0
    max_temperature: float = 2.0
    queue_depth: int = 8
    queue_timeout: float = 600.0
    queue_retry_after: int = 5
    prompt_cache_entries: int = 4
    prompt_cache_bytes: int | None = None  # None: sized from the device at load
    prompt_cache_dir: Path | None = None  # entries kept across restarts
    prefill_step_size: int = 512
    max_batch: int | None = None  # requests run at once; None: by the backend
    kv_bits: int | None = None  # quantized KV cache (8 or 4 bits), or full precision
    cpu_profile: CPUProfile = field(default_factory=CPUProfile)
