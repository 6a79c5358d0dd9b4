"""Every Pensieve setting in one place: its default, its type and what it does.

Precedence, highest first: explicit overrides (CLI flags, a test config) >
environment (`PENSIEVE_<NAME>`) > the instance config file
(`<instance folder>/pensieve.toml`, keys in lower case) > defaults. The
instance folder is Flask's, moved by `PENSIEVE_INSTANCE_PATH`. Settings live
in `app.config` under their upper-case names.
"""

from __future__ import annotations

import json
import os
import sys
import textwrap
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace
from typing import Any

from flask import Flask

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10
    import tomli as tomllib

DEFAULT_MODEL = "mlx-community/Phi-3-mini-128k-instruct-4bit"
CONFIG_FILE_NAME = "pensieve.toml"
INSTANCE_PATH_ENV = "PENSIEVE_INSTANCE_PATH"


class ConfigError(ValueError):
    """A bad setting: `where` names it (env variable, file key or flag)."""

    def __init__(self, where: str, problem: str) -> None:
        super().__init__(f"{where}: {problem}")
        self.where = where
        self.problem = problem


def choice(*allowed: str) -> Callable[[str], str]:
    """A parser accepting only `allowed` values."""

    def parse(value: str) -> str:
        if value not in allowed:
            raise ValueError(f"must be one of {', '.join(allowed)}; got {value!r}")
        return value

    return parse


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
        32 * 1024 * 1024,
        integer(1),
        "Largest request body accepted; larger ones get 413 request_too_large.",
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
        2048,
        integer(0),
        "Most memory the kept prompt KV caches may use (MiB).",
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
        "PREFILL_STEP_SIZE",
        512,
        integer(1),
        "Prompt tokens processed per model call.",
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

# The TOML type each default's Python type asks for, and how errors name it.
TOML_TYPES: Mapping[type, tuple[tuple[type, ...], str]] = {
    str: ((str,), "a string"),
    int: ((int,), "an integer"),
    float: ((int, float), "a number"),
}


@dataclass(frozen=True)
class Value:
    """A setting's effective value and where it came from."""

    value: Any
    source: str  # "default", "file <path>", "env PENSIEVE_X", "flag --x", ...


def instance_path(environ: Mapping[str, str] = os.environ) -> Path:
    """The instance folder: $PENSIEVE_INSTANCE_PATH, else Flask's default."""
    if configured := environ.get(INSTANCE_PATH_ENV):
        return Path(configured).expanduser().resolve()
    # Flask's own rule (the `instance/` beside a source checkout, or
    # <prefix>/var/pensieve-instance for an installed package), no app needed.
    named = SimpleNamespace(import_name="pensieve", name="pensieve")
    return Path(Flask.auto_find_instance_path(named))  # type: ignore[arg-type]


def config_file_path(environ: Mapping[str, str] = os.environ) -> Path:
    """The instance config file (it need not exist)."""
    return instance_path(environ) / CONFIG_FILE_NAME


def read_config_file(path: Path) -> dict[str, Any]:
    """The TOML file's table; an absent file is empty."""
    try:
        with open(path, "rb") as file:
            return tomllib.load(file)
    except FileNotFoundError:
        return {}
    except tomllib.TOMLDecodeError as error:
        raise ConfigError(str(path), f"not valid TOML: {error}") from None
    except OSError as error:
        raise ConfigError(str(path), f"cannot be read: {error.strerror}") from None


def parse_file_value(setting: Setting, raw: Any) -> Any:
    """A value from the TOML file, checked for its type, then like the env's."""
    allowed, kind = TOML_TYPES[type(setting.default)]
    if isinstance(raw, bool) or not isinstance(raw, allowed):
        raise ValueError(f"must be {kind}; got {raw!r}")
    return setting.parse(str(raw))


def file_problems(data: Mapping[str, Any], path: Path) -> list[ConfigError]:
    """Every problem of a config file's table: unknown keys, bad values."""
    from difflib import get_close_matches

    keys = [setting.key for setting in SETTINGS]
    problems = []
    for key, raw in data.items():
        setting = SETTINGS_BY_NAME.get(key.upper()) if key.islower() else None
        if setting is None:
            close = get_close_matches(key.lower(), keys, n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            problems.append(ConfigError(f"{path}: {key}", f"unknown key{hint}"))
            continue
        try:
            parse_file_value(setting, raw)
        except ValueError as error:
            problems.append(ConfigError(f"{path}: {key}", str(error)))
    return problems


def env_problems(environ: Mapping[str, str] = os.environ) -> list[ConfigError]:
    """Every PENSIEVE_* environment variable with a value its setting refuses."""
    problems = []
    for setting in SETTINGS:
        if setting.env in environ:
            try:
                setting.parse(environ[setting.env])
            except ValueError as error:
                problems.append(ConfigError(setting.env, str(error)))
    return problems


def resolve_settings(
    overrides: Mapping[str, Any] | None = None,
    environ: Mapping[str, str] = os.environ,
    *,
    override_source: str = "override",
) -> dict[str, Value]:
    """Each setting's value and source: overrides > env > file > default.

    Raises ConfigError (naming the variable or key) for the first bad value.
    """
    path = config_file_path(environ)
    data = read_config_file(path)
    if problems := file_problems(data, path):
        raise problems[0]
    if problems := env_problems(environ):
        raise problems[0]
    values = {}
    for setting in SETTINGS:
        if overrides and setting.name in overrides:
            value = Value(overrides[setting.name], override_source)
        elif setting.env in environ:
            value = Value(setting.parse(environ[setting.env]), f"env {setting.env}")
        elif setting.key in data:
            parsed = parse_file_value(setting, data[setting.key])
            value = Value(parsed, f"file {path}")
        else:
            value = Value(setting.default, "default")
        values[setting.name] = value
    return values


def load_settings(
    overrides: Mapping[str, Any] | None = None,
    environ: Mapping[str, str] = os.environ,
) -> dict[str, Any]:
    """The effective settings: overrides > environment > file > defaults.

    Override keys that are not settings (e.g. Flask's TESTING) pass through.
    """
    values = {
        name: value.value for name, value in resolve_settings(None, environ).items()
    }
    values.update(overrides or {})
    return values


def toml_literal(value: Any) -> str:
    """`value` as a TOML literal (JSON's string escapes are TOML's too)."""
    return json.dumps(value) if isinstance(value, str) else repr(value)


def example_config() -> str:
    """A commented TOML config file: every setting, its meaning and default."""
    lines = [
        "# Pensieve configuration: every setting at its default, commented out.",
        "# Uncomment and edit a line to change it. Precedence, highest first:",
        "# `pensieve start` flags > PENSIEVE_* environment > this file > defaults.",
        f"# Pensieve reads it as {CONFIG_FILE_NAME} in its instance folder,",
        f"# which ${INSTANCE_PATH_ENV} moves; `pensieve config show` names it.",
        "",
    ]
    for setting in SETTINGS:
        lines += [f"# {line}" for line in textwrap.wrap(setting.help, 76)]
        lines.append(f"# (environment: {setting.env})")
        lines.append(f"# {setting.key} = {toml_literal(setting.default)}")
        lines.append("")
    return "\n".join(lines)


def model_is_default(config: Mapping[str, Any]) -> bool:
    """True when the user did not choose a model (fallback is then allowed)."""
    return config["MODEL"] == DEFAULT_MODEL
