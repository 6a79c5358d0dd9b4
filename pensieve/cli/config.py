"""`pensieve config show | generate | validate`."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import click

from .. import daemon
from ..config import (
    INSTANCE_PATH_ENV,
    ConfigError,
    Value,
    cache_dir_value,
    config_file_path,
    env_problems,
    example_config,
    file_problems,
    instance_path,
    load_settings,
    read_config_file,
    toml_literal,
)
from ..engine.memory import cache_budget, describe, ram
from ..exposure import exposure_problem
from .options import FLAG_SOURCE, effective_settings, flag_of, server_options


@click.group()
def config() -> None:
    """Show, generate or validate the configuration."""


def shown_values(values: dict[str, Value]) -> dict[str, Value]:
    """`values` with each empty setting that stands for a computed default
    (CACHE_DIR, LOG_FILE, CHAT_TEMPLATE) shown as what it means."""
    shown = dict(values)
    shown["CACHE_DIR"] = cache_dir_value(values["CACHE_DIR"])
    if not values["LOG_FILE"].value:
        # The file `start --daemon` picks (cli/server.py: start_daemon).
        log_file = daemon.default_log_file(instance_path(), values["PORT"].value)
        shown["LOG_FILE"] = Value(
            str(log_file),
            "default: <instance folder>/pensieve-<port>.log; start --daemon only, "
            "the foreground logs to stderr",
        )
    if not values["CHAT_TEMPLATE"].value:
        shown["CHAT_TEMPLATE"] = Value("", "default: the model's own template")
    if values["PROMPT_CACHE_MB"].value in (None, "auto"):
        shown["PROMPT_CACHE_MB"] = cache_budget_value(values["PROMPT_CACHE_MB"])
    return shown


def cache_budget_value(value: Value) -> Value:
    """PROMPT_CACHE_MB=auto: the figure this machine's free RAM gives now (the
    server sizes it again once the model is loaded, on its own device)."""
    memory = ram()
    budget = cache_budget(memory)
    why = f"{value.source}: auto, {describe(budget, memory)}"
    return Value(f"auto (~{budget >> 20} now)", why + "; sized again after the load")


@config.command("show")
@server_options
def config_show(**flags: Any) -> None:
    """Every setting's effective value and where it comes from (flags given
    here count, as they would for `pensieve start`)."""
    values = shown_values(effective_settings(flags))
    moved = INSTANCE_PATH_ENV in os.environ
    path = config_file_path()
    click.echo(
        f"# instance folder: {instance_path()} "
        f"({'from ' + INSTANCE_PATH_ENV if moved else 'default'})"
    )
    click.echo(f"# config file: {path}{'' if path.is_file() else ' (none)'}")
    width = max(len(name) for name in values)
    for name, value in values.items():
        source = value.source
        if source == FLAG_SOURCE:
            source = f"flag {flag_of(name)}"
        click.echo(f"{name:<{width}}  {toml_literal(value.value)}  ({source})")


@config.command("generate")
@click.option(
    "--output",
    "-o",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="File to write (default: standard output).",
)
@click.option("--force", is_flag=True, help="Overwrite an existing file.")
def config_generate(output: Path | None, force: bool) -> None:
    """A commented example config file: every setting at its default."""
    text = example_config()
    if output is None:
        click.echo(text, nl=False)
        return
    if output.exists() and not force:
        raise click.ClickException(f"{output} exists; --force overwrites it")
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(text)
    click.echo(f"Wrote {output}", err=True)


@config.command("validate")
@click.argument("file", type=click.Path(dir_okay=False, path_type=Path), required=False)
def config_validate(file: Path | None) -> None:
    """Check a config file (default: the instance one, and the PENSIEVE_*
    environment); name each bad key and its problem; exit 1 if any."""
    path = file or config_file_path()
    if file is not None and not file.is_file():
        raise click.ClickException(f"{file}: no such file")
    try:
        problems = file_problems(read_config_file(path), path)
    except ConfigError as error:
        problems = [error]
    if file is None:
        problems += env_problems()
        if not problems and (exposed := exposure_problem(load_settings())):
            problems.append(ConfigError("PENSIEVE_HOST", exposed))
    for problem in problems:
        click.echo(f"error: {problem}", err=True)
    if problems:
        raise SystemExit(1)
    checked = f"{path}{'' if path.is_file() else ' (none)'}"
    click.echo(f"OK: {checked}" + (" and the environment" if file is None else ""))
