"""`pensieve models list | pull | rm | import-gguf`."""

from __future__ import annotations

import time
from pathlib import Path

import click

from ..models import local
from ..models.gguf import GGUFImportError
from ..models.resolve import ModelNotAvailable
from .options import cache_dir_of, human_size, settings_values


@click.group()
def models() -> None:
    """Local models: the bundled one, imported GGUF files, the Hugging Face cache."""


@models.command("list")
def models_list() -> None:
    """The local models, with their sizes."""
    cache_dir = cache_dir_of(settings_values({}))
    found = local.list_models(cache_dir)
    if not found:
        click.echo("No local models (and the bundled model is not installed).")
        return
    rows = [("NAME", "SOURCE", "SIZE", "PATH")]
    for model in found:
        note = f"  ({model.note})" if model.note else ""
        size = human_size(model.size_bytes)
        rows.append((model.name, model.source, size, f"{model.path}{note}"))
    widths = [max(len(row[i]) for row in rows) for i in range(3)]
    for row in rows:
        cells = [row[i].ljust(widths[i]) for i in range(3)]
        click.echo("  ".join([*cells, row[3]]))


@models.command("pull")
@click.argument("repo_id")
def models_pull(repo_id: str) -> None:
    """Download an MLX model from Hugging Face (resumes a partial download)."""
    settings = settings_values({})
    try:
        path = local.pull_model(repo_id, offline_timeout=settings["OFFLINE_TIMEOUT"])
    except ModelNotAvailable as error:
        raise click.ClickException(str(error)) from None
    if not (path / "config.json").is_file():
        click.echo(f"warning: {repo_id} has no config.json: not an MLX model?")
    click.echo(f"Downloaded {repo_id} to {path}")
    click.echo(f"Serve it with: pensieve start --model {repo_id}")


@models.command("rm")
@click.argument("name")
@click.option("--yes", "-y", is_flag=True, help="Do not ask for confirmation.")
def models_rm(name: str, yes: bool) -> None:
    """Delete a local model (a name from `pensieve models list`)."""
    cache_dir = cache_dir_of(settings_values({}))
    known = {model.name: model for model in local.list_models(cache_dir)}
    if name in known and name != local.BUNDLED and not yes:
        size = human_size(known[name].size_bytes)
        click.confirm(f"Delete {name} ({size}, {known[name].path})?", abort=True)
    try:
        removed = local.remove_model(name, cache_dir)
    except (local.UnknownModel, ValueError) as error:
        raise click.ClickException(str(error)) from None
    click.echo(f"Deleted {removed.name} ({human_size(removed.size_bytes)}).")


@models.command("import-gguf")
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
def models_import_gguf(file: Path) -> None:
    """Import a llama-family .gguf file into an MLX model directory (once)."""
    cache_dir = cache_dir_of(settings_values({}))
    started = time.monotonic()
    click.echo(f"Importing {file} …")
    try:
        target = local.import_gguf_file(file, cache_dir)
    except GGUFImportError as error:
        raise click.ClickException(str(error)) from None
    click.echo(f"Imported in {time.monotonic() - started:.1f} s: {target}")
    click.echo(f"Serve it with: pensieve start --model {file.resolve()}")
