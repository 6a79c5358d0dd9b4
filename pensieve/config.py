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
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace
from typing import Any

from flask import Flask

from .engine.loading import CPUProfile
from .engine.settings import EngineSettings
from .settings import DEFAULT_MODEL, SETTINGS, SETTINGS_BY_NAME, Setting

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10
    import tomli as tomllib

CONFIG_FILE_NAME = "pensieve.toml"
INSTANCE_PATH_ENV = "PENSIEVE_INSTANCE_PATH"


class ConfigError(ValueError):
    """A bad setting: `where` names it (env variable, file key or flag)."""

    def __init__(self, where: str, problem: str) -> None:
        super().__init__(f"{where}: {problem}")
        self.where = where
        self.problem = problem


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


def resolve_cache_dir(
    configured: str = "", environ: Mapping[str, str] = os.environ
) -> Path:
    """Pensieve's cache folder: the CACHE_DIR setting (`~` expanded), else
    `$XDG_CACHE_HOME/pensieve` (`~/.cache/pensieve`). The server, the CLI and
    model resolution all use this one answer."""
    if configured:
        return Path(configured).expanduser()
    xdg = environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(xdg) / "pensieve"


def cache_dir_value(value: Value, environ: Mapping[str, str] = os.environ) -> Value:
    """CACHE_DIR as the folder it names; an unset one says which default rule."""
    folder = str(resolve_cache_dir(value.value, environ))
    if value.value:
        return Value(folder, value.source)
    rule = "$XDG_CACHE_HOME/pensieve" if environ.get("XDG_CACHE_HOME") else None
    return Value(folder, f"default: {rule or '~/.cache/pensieve'}")


def engine_settings(config: Mapping[str, Any]) -> EngineSettings:
    """The engine's settings, from the app's (upper-case) configuration."""
    return EngineSettings(
        model=config["MODEL"],
        cache_dir=resolve_cache_dir(config["CACHE_DIR"]),
        chat_template=Path(template).expanduser()
        if (template := config["CHAT_TEMPLATE"])
        else None,
        fallback=model_is_default(config),
        offline_timeout=config["OFFLINE_TIMEOUT"],
        keepalive_seconds=config["KEEPALIVE_SECONDS"],
        max_temperature=config["MAX_TEMPERATURE"],
        queue_depth=config["QUEUE_DEPTH"],
        queue_timeout=config["QUEUE_TIMEOUT"],
        queue_retry_after=config["QUEUE_RETRY_AFTER"],
        prompt_cache_entries=config["PROMPT_CACHE_ENTRIES"],
        prompt_cache_bytes=None
        if (megabytes := config["PROMPT_CACHE_MB"]) in (None, "auto")
        else megabytes * 1024**2,
        prompt_cache_dir=Path(folder).expanduser()
        if (folder := config["PROMPT_CACHE_DIR"])
        else None,
        prefill_step_size=config["PREFILL_STEP_SIZE"],
        max_batch=None if (batch := config["MAX_BATCH"]) == "auto" else int(batch),
        kv_bits=None if config["KV_BITS"] == "off" else int(config["KV_BITS"]),
        cpu_profile=CPUProfile(
            enabled=config["CPU_PROFILE"] == "auto",
            threads=config["CPU_THREADS"],
            dequantize_max_bytes=config["CPU_DEQUANTIZE_MAX_MB"] * 1024**2,
        ),
    )
