"""`pensieve start | stop | status` and `pensieve service install`."""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path
from typing import Any

import click

from .. import daemon
from .. import service as services
from ..config import SETTINGS_BY_NAME, instance_path
from ..models.resolve import BUNDLED
from .options import (
    address_options,
    flags_environment,
    human_size,
    server_environment,
    server_options,
    settings_values,
)


def port_flag(port: int) -> str:
    """The --port a command needs to reach the server on `port`."""
    return "" if port == SETTINGS_BY_NAME["PORT"].default else f" --port {port}"


@click.command()
@server_options
@click.option("--daemon", "-d", "detach", is_flag=True, help="Run in the background.")
@click.option(
    "--wait",
    default=600.0,
    show_default=True,
    help="With --daemon: seconds to wait for the model to be ready.",
)
def start(detach: bool, wait: float, **flags: Any) -> None:
    """Run the server (gunicorn with Pensieve's config), in the foreground
    unless --daemon, which returns once /health is ready."""
    settings = settings_values(flags)
    address = daemon_address(settings)
    instance = instance_path()
    instance.mkdir(parents=True, exist_ok=True)
    pid_path = daemon.pid_file(instance, address.port)
    running = daemon.check_pid_file(pid_path).pid
    if running is not None:
        raise click.ClickException(
            f"Pensieve already runs on port {address.port} (pid {running}); "
            f"stop it with: pensieve stop{port_flag(address.port)}"
        )
    if daemon.port_in_use(address.host, address.port):
        raise click.ClickException(f"{address.host}:{address.port} is already in use")
    argv = daemon.gunicorn_argv(pid_path)
    env = server_environment(flags)
    if not detach:
        click.echo(f"Starting Pensieve on {address.url}")
        click.echo(daemon.connect_lines(address.url, settings["API_KEY"]))
        sys.stdout.flush()
        os.execve(sys.executable, argv, env)  # becomes the gunicorn master
    start_daemon(settings, address, argv, env, wait)


def daemon_address(settings: dict[str, Any]) -> daemon.Address:
    return daemon.Address(settings["HOST"], settings["PORT"])


def start_daemon(
    settings: dict[str, Any],
    address: daemon.Address,
    argv: list[str],
    env: dict[str, str],
    wait: float,
) -> None:
    """Start detached, wait for /health to be ready, print how to connect."""
    instance = instance_path()
    log_path = Path(
        settings["LOG_FILE"] or daemon.default_log_file(instance, address.port)
    )
    started = time.monotonic()
    spawned = daemon.spawn_daemon(
        argv,
        env,
        log_path,
        max_bytes=settings["LOG_MAX_MB"] * 1024**2,
        backups=settings["LOG_BACKUPS"],
    )
    process = spawned.server
    click.echo(
        f"Starting Pensieve on {address.url} (pid {process.pid}); log: {log_path}"
    )
    try:
        key = settings["API_KEY"]
        health = daemon.wait_until_ready(address.url, process, wait, key)
    except daemon.StartFailed as error:
        if process.poll() is None:
            if not daemon.stop_process(process.pid, settings["GRACEFUL_TIMEOUT"] + 5):
                process.kill()
            process.wait(timeout=10)
        spawned.wait_for_log()
        reason = daemon.failure_reason(log_path) or str(error)
        tail = daemon.log_tail(log_path)
        raise click.ClickException(
            f"Pensieve failed to start: {reason}\nLast lines of {log_path}:\n{tail}"
        ) from None
    except TimeoutError as error:
        raise click.ClickException(
            f"Pensieve is {error}; it keeps starting in the background "
            f"(pid {process.pid}): see `pensieve status`, or `pensieve stop`"
        ) from None
    click.echo(
        f"Ready in {time.monotonic() - started:.1f} s: {health['model']} "
        f"({health['model_source']}) on {health['backend']}."
    )
    if health.get("fallback"):
        click.echo(f"FALLBACK: {health['fallback']}")
    click.echo(daemon.connect_lines(address.url, settings["API_KEY"]))
    click.echo(f"Stop it with: pensieve stop{port_flag(address.port)}")


@click.command()
@address_options
@click.option(
    "--timeout",
    type=float,
    default=None,
    help="Seconds to wait for a graceful exit [default: GRACEFUL_TIMEOUT + 15].",
)
def stop(timeout: float | None, **flags: Any) -> None:
    """Stop the server started by `pensieve start` (SIGTERM: requests in
    flight finish first)."""
    settings = settings_values(flags)
    address = daemon_address(settings)
    state = daemon.check_pid_file(daemon.pid_file(instance_path(), address.port))
    if state.removed_because:
        click.echo(f"Removed a stale PID file: {state.removed_because}.")
    if state.pid is None:
        hint = ""
        if daemon.fetch_health(address.url) is not None:
            hint = (
                " (a server answers there, but it was not started by `pensieve start`)"
            )
        raise click.ClickException(f"Pensieve is not running on {address.url}{hint}")
    grace = settings["GRACEFUL_TIMEOUT"]
    limit = timeout if timeout is not None else grace + 15
    click.echo(
        f"Stopping Pensieve (pid {state.pid}); requests in flight get {grace} s…"
    )
    if not daemon.stop_process(state.pid, limit):
        raise click.ClickException(
            f"pid {state.pid} is still running after {limit:.0f} s; "
            f"`kill -9 {state.pid}` ends it at once"
        )
    click.echo("Stopped.")


@click.command()
@address_options
def status(**flags: Any) -> None:
    """Show the server's health; exit 0 if it runs, 1 if not."""
    settings = settings_values(flags)
    address = daemon_address(settings)
    state = daemon.check_pid_file(daemon.pid_file(instance_path(), address.port))
    if state.removed_because:
        click.echo(f"Removed a stale PID file: {state.removed_because}.")
    health = daemon.fetch_health(address.url, api_key=settings["API_KEY"])
    pid = f"pid {state.pid}" if state.pid else "not started by `pensieve start`"
    if health is None:
        if state.pid is None:
            click.echo(f"Pensieve is not running on {address.url}.")
            sys.exit(1)
        click.echo(f"Pensieve is starting ({pid}): {address.url} does not answer yet.")
        return
    click.echo(f"Pensieve is running on {address.url} ({pid})")
    click.echo(health_summary(health))


def health_summary(health: dict[str, Any]) -> str:
    """/health as a few indented lines."""
    lines = [f"  status:  {health['status']}"]
    if health.get("error"):
        lines.append(f"  error:   {health['error']}")
    if health.get("model"):
        lines.append(f"  model:   {health['model']} ({health.get('model_source')})")
    if health.get("fallback"):
        lines.append(f"  FALLBACK: {health['fallback']}")
    if health.get("backend"):
        lines.append(
            f"  backend: {health['backend']}, {health['context_length']}-token "
            f"context, loaded in {health['load_seconds']} s"
        )
    memory = human_size(health.get("memory", {}).get("rss_bytes", 0))
    lines.append(
        f"  memory:  {memory} resident; up {health.get('uptime_seconds')} s; "
        f"{health.get('requests_waiting', 0)} requests waiting"
    )
    return "\n".join(lines)


@click.group()
def service() -> None:
    """Run Pensieve as a user service (systemd on Linux, launchd on macOS)."""


@service.command("install")
@server_options
@click.option(
    "--system",
    type=click.Choice(["systemd", "launchd"]),
    default=services.default_system(),
    show_default=True,
    help="Service manager to write for.",
)
def service_install(system: str, **flags: Any) -> None:
    """Write a service running `pensieve start` with this configuration."""
    settings = settings_values(flags)
    env = services.service_environment(flags_environment(flags))
    model = Path(settings["MODEL"]).expanduser()
    if settings["MODEL"] != BUNDLED and model.exists():
        # A relative path would be read from the service's own folder.
        env["PENSIEVE_MODEL"] = str(model.resolve())
    env["PENSIEVE_INSTANCE_PATH"] = str(instance_path())
    definition = services.service_file(
        system,
        env,
        stop_seconds=settings["GRACEFUL_TIMEOUT"] + 15,
        log_path=daemon.default_log_file(instance_path(), settings["PORT"]),
        home=Path.home(),
    )
    services.write_service_file(definition)
    click.echo(f"Wrote {definition.path}")
    click.echo("Enable and start it with:")
    for command in definition.enable:
        click.echo(f"  {command}")
    if system == "systemd":
        click.echo("Logs: journalctl --user -u pensieve -f")
        click.echo(
            "To keep it running while you are logged out: loginctl enable-linger"
        )
