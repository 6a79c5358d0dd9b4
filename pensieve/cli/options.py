"""Flags shared by the commands, and the settings they make effective.

A flag is parsed like the environment variable of its setting, and reaches
the server as that variable: flags > environment > instance file > defaults
holds in the server too.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, TypeVar

import click

from ..config import (
    INSTANCE_PATH_ENV,
    SETTINGS_BY_NAME,
    ConfigError,
    Value,
    instance_path,
    resolve_cache_dir,
    resolve_settings,
)

F = TypeVar("F", bound=Callable[..., Any])

# click parameter name -> setting name
ADDRESS_FLAGS = {"host": "HOST", "port": "PORT"}
SERVER_FLAGS = {**ADDRESS_FLAGS, "model": "MODEL", "api_key": "API_KEY"}
FLAG_SOURCE = "flag"


def flag_of(name: str) -> str:
    """The command-line flag of a setting: API_KEY -> --api-key."""
    return "--" + name.lower().replace("_", "-")


def _option(name: str) -> Callable[[F], F]:
    setting = SETTINGS_BY_NAME[name]
    return click.option(
        flag_of(name),
        default=None,
        metavar=name,
        help=f"{setting.help} [{setting.env}]",
    )


def address_options(func: F) -> F:
    """--host and --port (which server `stop` and `status` mean)."""
    for name in reversed(ADDRESS_FLAGS.values()):
        func = _option(name)(func)
    return func


def server_options(func: F) -> F:
    """--host, --port, --model, --api-key."""
    for name in reversed(SERVER_FLAGS.values()):
        func = _option(name)(func)
    return func


def parse_flags(flags: Mapping[str, Any]) -> dict[str, Any]:
    """The flags given, as settings parsed like their environment variables."""
    parsed = {}
    for param, name in SERVER_FLAGS.items():
        if flags.get(param) is None:
            continue
        try:
            parsed[name] = SETTINGS_BY_NAME[name].parse(str(flags[param]))
        except ValueError as error:
            raise click.BadParameter(str(error), param_hint=flag_of(name)) from None
    return parsed


def effective_settings(flags: Mapping[str, Any]) -> dict[str, Value]:
    """Every setting's value and source, the flags included."""
    try:
        return resolve_settings(parse_flags(flags), override_source=FLAG_SOURCE)
    except ConfigError as error:
        raise click.ClickException(str(error)) from None


def settings_values(flags: Mapping[str, Any]) -> dict[str, Any]:
    return {name: value.value for name, value in effective_settings(flags).items()}


def server_environment(flags: Mapping[str, Any]) -> dict[str, str]:
    """This process's environment with the flags as PENSIEVE_* variables."""
    env = dict(os.environ)
    for name, value in parse_flags(flags).items():
        env[SETTINGS_BY_NAME[name].env] = str(value)
    env[INSTANCE_PATH_ENV] = str(instance_path())
    return env


def flags_environment(flags: Mapping[str, Any]) -> dict[str, str]:
    """Only the flags given, as PENSIEVE_* variables."""
    return {
        SETTINGS_BY_NAME[name].env: str(value)
        for name, value in parse_flags(flags).items()
    }


def cache_dir_of(settings: Mapping[str, Any]) -> Path:
    return resolve_cache_dir(settings["CACHE_DIR"])


def human_size(size: float) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if size < 1000:
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1000
    return f"{size:.1f} TB"
