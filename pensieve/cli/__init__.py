"""The `pensieve` command (click): run the server, show its configuration,
manage local models.

    pensieve start [--host] [--port] [--model] [--api-key] [--daemon]
    pensieve stop | status [--host] [--port]
    pensieve config show | generate [--output] | validate [FILE]
    pensieve models list | pull ID | rm ID | import-gguf FILE
    pensieve service install
"""

from __future__ import annotations

import click

from .config import config
from .models import models
from .server import service, start, status, stop


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="pensieve")
def cli() -> None:
    """Pensieve: a local LLM server speaking the Anthropic Messages API."""


for command in (start, stop, status, config, models, service):
    cli.add_command(command)


def main() -> None:
    """The console script's entry point."""
    cli(prog_name="pensieve")
