"""`pensieve service install`: a per-user service running `pensieve start`.

A systemd user unit on Linux, a launchd agent on macOS. The service runs the
server in the foreground (the service manager supervises it) with the
configuration of the shell that installed it: the PENSIEVE_* variables and
flags given, plus the instance folder, whose config file stays live.
"""

from __future__ import annotations

import os
import plistlib
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

SYSTEMD_UNIT = "pensieve.service"
LAUNCHD_LABEL = "dev.pensieve.server"
# Besides PENSIEVE_*: where the caches are, so the service finds the same models.
CARRIED_ENV = (
    "HF_HOME",
    "HF_HUB_CACHE",
    "HF_ENDPOINT",
    "HF_HUB_OFFLINE",
    "XDG_CACHE_HOME",
)


@dataclass(frozen=True)
class ServiceFile:
    """A service definition to write, and the commands that enable it."""

    path: Path
    content: bytes
    enable: list[str]


def service_command() -> list[str]:
    """`pensieve start` through this interpreter (the same virtualenv)."""
    return [sys.executable, "-m", "pensieve", "start"]


def service_environment(
    flags_env: Mapping[str, str], environ: Mapping[str, str] = os.environ
) -> dict[str, str]:
    """The environment the service runs with: this shell's settings, then flags."""
    carried = {
        name: value
        for name, value in environ.items()
        if name.startswith("PENSIEVE_") or name in CARRIED_ENV
    }
    return dict(sorted({**carried, **flags_env}.items()))


def systemd_quote(value: str) -> str:
    """A double-quoted systemd word; `%` would otherwise be a specifier."""
    escaped = value.replace("\\", "\\\\").replace('"', '\\"').replace("%", "%%")
    return f'"{escaped}"'


def systemd_unit(command: list[str], env: Mapping[str, str], stop_seconds: int) -> str:
    """A systemd user unit running `command` with `env`."""
    exec_start = " ".join(systemd_quote(arg).replace("$", "$$") for arg in command)
    lines = [
        "[Unit]",
        "Description=Pensieve local LLM server (Anthropic Messages API)",
        "After=network.target",
        "",
        "[Service]",
        "Type=simple",
        f"ExecStart={exec_start}",
        *(f"Environment={systemd_quote(f'{k}={v}')}" for k, v in env.items()),
        # SIGTERM to gunicorn's master, which drains its worker.
        "KillMode=mixed",
        f"TimeoutStopSec={stop_seconds}",
        "Restart=on-failure",
        "RestartSec=2",
        "",
        "[Install]",
        "WantedBy=default.target",
        "",
    ]
    return "\n".join(lines)


def launchd_plist(
    command: list[str], env: Mapping[str, str], stop_seconds: int, log_path: Path
) -> bytes:
    """A launchd agent running `command` with `env` at login, restarted on failure."""
    agent = {
        "Label": LAUNCHD_LABEL,
        "ProgramArguments": command,
        "EnvironmentVariables": dict(env),
        "RunAtLoad": True,
        "KeepAlive": {"SuccessfulExit": False},
        "ExitTimeOut": stop_seconds,
        "StandardOutPath": str(log_path),
        "StandardErrorPath": str(log_path),
    }
    return plistlib.dumps(agent)


def service_file(
    system: str,
    env: Mapping[str, str],
    *,
    stop_seconds: int,
    log_path: Path,
    home: Path,
    environ: Mapping[str, str] = os.environ,
) -> ServiceFile:
    """The service definition for `system` ("systemd" or "launchd")."""
    command = service_command()
    if system == "launchd":
        path = home / "Library" / "LaunchAgents" / f"{LAUNCHD_LABEL}.plist"
        content = launchd_plist(command, env, stop_seconds, log_path)
        return ServiceFile(
            path, content, [f"launchctl bootstrap gui/{os.getuid()} {path}"]
        )
    config_home = Path(environ.get("XDG_CONFIG_HOME") or home / ".config")
    path = config_home / "systemd" / "user" / SYSTEMD_UNIT
    content = systemd_unit(command, env, stop_seconds).encode()
    enable = [
        "systemctl --user daemon-reload",
        f"systemctl --user enable --now {SYSTEMD_UNIT}",
    ]
    return ServiceFile(path, content, enable)


def write_service_file(service: ServiceFile) -> None:
    """Write it readable by its owner only: it may hold the API key."""
    service.path.parent.mkdir(parents=True, exist_ok=True)
    service.path.write_bytes(service.content)
    service.path.chmod(0o600)


def default_system() -> str:
    return "launchd" if sys.platform == "darwin" else "systemd"
