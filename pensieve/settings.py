"""Every Pensieve setting: its name, default, parser and what it does.

`config.py` layers them (flags > environment > instance file > defaults);
this module only lists them. A setting `NAME` is `PENSIEVE_NAME` in the
environment and `name` in the instance TOML file.
"""

from __future__ import annotations

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


def auto_or(parse: Callable[[str], Any]) -> Callable[[str], Any]:
    """A parser accepting "auto" (None: decided at run time) or `parse`'s values."""

    def parse_or_auto(value: str) -> Any:
        if str(value).lower() == "auto":
            return None
        try:
            return parse(value)
        except ValueError as error:
            message = str(error).replace("must be", "must be auto or", 1)
            raise ValueError(message) from None

    return parse_or_auto


def integer(minimum: int, maximum: int | None = None) -> Callable[[str], int]:
    """A parser for a whole number in [minimum, maximum]."""

    def parse(value: str) -> int:
        try:
            number = int(value)
        except ValueError:
            raise ValueError(f"must be an integer; got {value!r}") from None
        if number < minimum or (maximum is not None and number > maximum):
            upper = f" and at most {maximum}" if maximum is not None else ""
            raise ValueError(f"must be at least {minimum}{upper}; got {number}")
        return number

    return parse


def number(minimum: float, maximum: float) -> Callable[[str], float]:
    """A parser for a number in [minimum, maximum]."""

    def parse(value: str) -> float:
        try:
            result = float(value)
        except ValueError:
            raise ValueError(f"must be a number; got {value!r}") from None
        if not minimum <= result <= maximum:  # also rejects NaN
            raise ValueError(f"must be from {minimum} to {maximum}; got {value}")
        return result

    return parse


def seconds(value: str) -> float:
    """A parser for a non-negative duration in seconds."""
    try:
        number = float(value)
    except ValueError:
        raise ValueError(f"must be a number of seconds; got {value!r}") from None
    if not number >= 0:  # also rejects NaN
        raise ValueError(f"must not be negative; got {value}")
    return number


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

    @property
    def key(self) -> str:
        """The setting's key in the TOML config file."""
        return self.name.lower()


SETTINGS: tuple[Setting, ...] = (
    Setting("HOST", "127.0.0.1", str, "Address the server binds to."),
    Setting("PORT", 7777, integer(1, 65535), "Port the server listens on."),
    Setting("API_KEY", "pensieve-local-key", str, "Key clients must send."),
    Setting(
        "ALLOWED_HOSTS",
        "",
        str,
        "Host names requests may be addressed to besides localhost, loopback "
        "addresses and the bind address (comma-separated; * allows any).",
    ),
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
        "CHAT_TEMPLATE",
        "",
        str,
        "A Jinja chat template file to use instead of the model's own (for a "
        "model whose template is missing or broken).",
    ),
    Setting(
        "OFFLINE_TIMEOUT",
        3.0,
        seconds,
        "Seconds to wait for Hugging Face before treating it as unreachable.",
    ),
    Setting(
        "KEEPALIVE_SECONDS",
        5.0,
        seconds,
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
        "auto",
        auto_or(integer(1)),
        "Largest request body accepted; larger ones get 413 request_too_large "
        "before they are read. auto: 128 bytes a token of the model's context "
        "window, at least 1 MiB.",
    ),
    Setting(
        "MAX_JSON_DEPTH",
        100,
        integer(2),
        "Deepest nesting of arrays and objects a request body may have; "
        "deeper ones get 400 before they are parsed.",
    ),
    Setting(
        "MAX_TEMPERATURE",
        2.0,
        number(0.0, 2.0),
        "Highest sampling temperature used; requests asking for more are "
        "sampled at this one (Claude Code always asks for 1.0; 0 makes every "
        "answer greedy).",
    ),
    Setting(
        "QUEUE_DEPTH",
        8,
        integer(0),
        "Requests that may wait for the model; more get 529 overloaded_error.",
    ),
    Setting(
        "QUEUE_TIMEOUT",
        600.0,
        seconds,
        "Seconds a request may wait for the model before it gets 529.",
    ),
    Setting(
        "QUEUE_RETRY_AFTER",
        5,
        integer(0),
        "The retry-after header (seconds) sent with 529 overloaded_error.",
    ),
    Setting(
        "PROMPT_CACHE_ENTRIES",
        4,
        integer(0),
        "Prompt KV caches kept for reuse by longest prefix (0 disables the cache).",
    ),
    Setting(
        "PROMPT_CACHE_MB",
        "auto",
        auto_or(integer(0)),
        "Most memory the kept prompt KV caches may use (MiB); auto: what the "
        "device has free once the model is loaded, less a margin.",
    ),
    Setting(
        "CPU_PROFILE",
        "auto",
        choice("auto", "off"),
        "auto: on the CPU backend, route MLX's matmuls to OpenBLAS and serve "
        "small models with float32 weights; off: plain MLX.",
    ),
    Setting(
        "CPU_THREADS",
        0,
        integer(0),
        "BLAS threads for the CPU profile (0: one per core).",
    ),
    Setting(
        "CPU_DEQUANTIZE_MAX_MB",
        2048,
        integer(0),
        "Largest float32 model size the CPU profile dequantises to (MiB); "
        "larger models keep their quantised weights.",
    ),
    Setting(
        "KV_BITS",
        "off",
        choice("off", "8", "4"),
        "Quantize the KV cache (live requests and prompt-cache entries) to 8 or "
        "4 bits with mlx-lm's quantized KV cache: about 1/2 or 1/4 of the "
        "memory, at some drift from full-precision output (see README).",
    ),
    Setting(
        "PROMPT_CACHE_DIR",
        "",
        str,
        "A folder where the prompt cache's entries are written at shutdown and "
        "read back at the next start on the same model (empty: not kept).",
    ),
    Setting(
        "MAX_BATCH",
        "auto",
        auto_or(integer(1, 256)),
        "Requests decoded together in one batch (continuous batching); more "
        "wait in the queue. auto: 16 on CUDA, 8 on a CPU or Metal; 1 serves one "
        "request at a time. Models whose KV cache cannot batch (and KV_BITS) "
        "run one at a time.",
    ),
    Setting(
        "PREFILL_STEP_SIZE",
        512,
        integer(1),
        "Prompt tokens processed per model call.",
    ),
    Setting(
        "MAX_CONNECTIONS",
        1000,
        integer(8),
        "Open client connections served at once (bounded by the process's "
        "file limit); near the cap, the connections waiting on their client "
        "longest are closed first.",
    ),
    Setting(
        "READ_TIMEOUT",
        15.0,
        seconds,
        "Seconds a client has to send a whole request (head and body) once "
        "it has sent its first byte; a slower one is cut off (0: no limit).",
    ),
    Setting(
        "IDLE_TIMEOUT",
        75,
        integer(0),
        "Seconds an idle keep-alive connection stays open between requests "
        "(0: one request per connection).",
    ),
    Setting(
        "GRACEFUL_TIMEOUT",
        30,
        integer(0),
        "On SIGTERM, seconds in-flight requests may take to finish; new "
        "requests get 529 overloaded_error meanwhile.",
    ),
    Setting("LOG_FORMAT", "plain", choice("plain", "json"), "Log line format."),
    Setting(
        "LOG_LEVEL",
        "info",
        choice("debug", "info", "warning", "error"),
        "Lowest level of log lines written.",
    ),
    Setting(
        "LOG_FILE",
        "",
        str,
        "Log file of `pensieve start --daemon` (default: pensieve-<port>.log "
        "in the instance folder).",
    ),
    Setting(
        "LOG_MAX_MB",
        10,
        integer(1),
        "Size at which the daemon's log file is rotated (MiB).",
    ),
    Setting(
        "LOG_BACKUPS",
        3,
        integer(1),
        "Rotated daemon log files kept (log.1 is the newest).",
    ),
)
SETTINGS_BY_NAME: Mapping[str, Setting] = {s.name: s for s in SETTINGS}
