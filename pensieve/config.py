"""Every Pensieve setting in one place: its default, its type and what it does.

Precedence: explicit overrides (CLI flags, test config) > environment
(`PENSIEVE_<NAME>`) > defaults. Settings live in `app.config` under their
upper-case names.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

DEFAULT_MODEL = "mlx-community/Phi-3-mini-128k-instruct-4bit"


def choice(*allowed: str) -> Callable[[str], str]:
    """A parser accepting only `allowed` values."""

    def parse(value: str) -> str:
        if value not in allowed:
            raise ValueError(f"must be one of {', '.join(allowed)}; got {value!r}")
        return value

    return parse


@dataclass(frozen=True)
class Setting:
    """One configuration value."""

    name: str
    default: Any
    parse: Callable[[str], Any]
    help: str

    @property
    def env(self) -> str:
        return f"PENSIEVE_{self.name}"


SETTINGS: tuple[Setting, ...] = (
    Setting("HOST", "127.0.0.1", str, "Address the server binds to."),
    Setting("PORT", 7777, int, "Port the server listens on."),
    Setting("API_KEY", "pensieve-local-key", str, "Key clients must send."),
    Setting(
        "MODEL",
        DEFAULT_MODEL,
        str,
        "Hugging Face repo id (MLX format), local MLX directory, .gguf file, "
        "or 'bundled'. The default falls back to the bundled model when it "
        "can be neither found nor downloaded.",
    ),
    Setting("CACHE_DIR", "", str, "Cache folder (default: ~/.cache/pensieve)."),
    Setting(
        "OFFLINE_TIMEOUT",
        3.0,
        float,
        "Seconds to wait for Hugging Face before treating it as unreachable.",
    ),
    Setting(
        "KEEPALIVE_SECONDS",
        5.0,
        float,
        "Longest silence on a stream before a ping event is sent.",
    ),
    Setting(
        "MODEL_ALIASES",
        "claude-opus-5-5,claude-sonnet-5-5,claude-haiku-5-5",
        str,
        "Comma-separated model ids listed by /v1/models besides the local id "
        "(every id is served by the loaded model).",
    ),
    Setting(
        "MAX_REQUEST_BYTES",
        32 * 1024 * 1024,
        int,
        "Largest request body accepted; larger ones get 413 request_too_large.",
    ),
    Setting(
        "CPU_PROFILE",
        "auto",
        choice("auto", "off"),
        "auto: on the CPU backend, route MLX's matmuls to OpenBLAS and serve "
        "small models with float32 weights; off: plain MLX.",
    ),
    Setting(
        "CPU_THREADS", 0, int, "BLAS threads for the CPU profile (0: one per core)."
    ),
    Setting(
        "CPU_DEQUANTIZE_MAX_MB",
        2048,
        int,
        "Largest float32 model size the CPU profile dequantises to (MiB); "
        "larger models keep their quantised weights.",
    ),
    Setting("PREFILL_STEP_SIZE", 512, int, "Prompt tokens processed per model call."),
)


def load_settings(
    overrides: Mapping[str, Any] | None = None,
    environ: Mapping[str, str] = os.environ,
) -> dict[str, Any]:
    """The effective settings: overrides > environment > defaults."""
    values = {}
    for setting in SETTINGS:
        value = setting.default
        if setting.env in environ:
            try:
                value = setting.parse(environ[setting.env])
            except ValueError as error:
                raise ValueError(f"{setting.env}: {error}") from None
        values[setting.name] = value
    values.update(overrides or {})
    return values


def model_is_default(config: Mapping[str, Any]) -> bool:
    """True when the user did not choose a model (fallback is then allowed)."""
    return config["MODEL"] == DEFAULT_MODEL
