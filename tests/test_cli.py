"""The `pensieve` command through click's runner: models, service files, PID
files, refusals. (Real servers: test_lifecycle.py.)"""

from __future__ import annotations

import os
import plistlib
import socket
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest
from click.testing import CliRunner
from huggingface_hub import constants

from pensieve.cli import cli
from pensieve.models.bundled import BUNDLED_MODEL_ID, bundled_gguf_path


@pytest.fixture
def env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """No PENSIEVE_* variables but a temporary instance folder; returns it."""
    for name in [name for name in os.environ if name.startswith("PENSIEVE_")]:
        monkeypatch.delenv(name)
    instance = tmp_path / "instance"
    monkeypatch.setenv("PENSIEVE_INSTANCE_PATH", str(instance))
    return instance


@pytest.fixture
def hub_cache(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """An empty Hugging Face cache, and a hub endpoint on a closed local port."""
    cache = tmp_path / "hf"
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(cache))
    monkeypatch.setattr(constants, "ENDPOINT", "http://127.0.0.1:9")
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    return cache


def fake_hub_repo(cache: Path, repo_id: str) -> Path:
    """A cached MLX repo in Hugging Face's layout: blobs, a snapshot, a ref."""
    repo = cache / f"models--{repo_id.replace('/', '--')}"
    commit = "0" * 40
    snapshot = repo / "snapshots" / commit
    snapshot.mkdir(parents=True)
    (repo / "blobs").mkdir()
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(commit)
    for name, blob, content in [
        ("config.json", "a" * 40, b"{}"),
        ("model.safetensors", "b" * 40, b"x" * 5000),
    ]:
        (repo / "blobs" / blob).write_bytes(content)
        (snapshot / name).symlink_to(Path("../../blobs") / blob)
    return repo


def test_models_list_shows_the_bundled_import_and_hub_models(
    env: Path, cache_dir: Path, bundled_model_dir: Path, hub_cache: Path
) -> None:
    fake_hub_repo(hub_cache, "mlx-community/tiny-4bit")
    result = CliRunner().invoke(
        cli, ["models", "list"], env={"PENSIEVE_CACHE_DIR": str(cache_dir)}
    )
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert lines[0].split() == ["NAME", "SOURCE", "SIZE", "PATH"]
    bundled = lines[1].split()
    assert bundled[:4] == ["bundled", "bundled", "98.4", "MB"]
    assert bundled[4] == str(bundled_gguf_path())
    assert f"serves as {BUNDLED_MODEL_ID}" in lines[1]
    imported = next(line for line in lines if bundled_model_dir.name in line)
    assert imported.split()[1] == "imported" and str(bundled_model_dir) in imported
    hub = next(line for line in lines if line.startswith("mlx-community/tiny-4bit"))
    assert hub.split()[1:4] == ["huggingface", "5.0", "KB"]


def test_models_rm_deletes_imports_and_hub_repos(
    env: Path, tmp_path: Path, hub_cache: Path
) -> None:
    cache = tmp_path / "cache"
    imported = cache / "imported" / "model-0123456789ab"
    imported.mkdir(parents=True)
    (imported / "config.json").write_text("{}")
    repo = fake_hub_repo(hub_cache, "someone/tiny")
    runner = CliRunner(env={"PENSIEVE_CACHE_DIR": str(cache)})

    refused = runner.invoke(cli, ["models", "rm", "model-0123456789ab"], input="n\n")
    assert refused.exit_code == 1 and imported.is_dir()
    result = runner.invoke(cli, ["models", "rm", "model-0123456789ab"], input="y\n")
    assert result.exit_code == 0, result.output
    assert not imported.exists()
    result = runner.invoke(cli, ["models", "rm", "-y", "someone/tiny"])
    assert result.exit_code == 0, result.output
    assert not repo.exists()

    missing = runner.invoke(cli, ["models", "rm", "-y", "nothing/here"])
    assert missing.exit_code == 1
    assert "no local model named 'nothing/here'" in missing.output
    bundled = runner.invoke(cli, ["models", "rm", "-y", "bundled"])
    assert bundled.exit_code == 1 and "cannot be removed" in bundled.output


def test_models_pull_fails_fast_and_clearly_when_offline(
    env: Path, hub_cache: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    runner = CliRunner(env={"PENSIEVE_OFFLINE_TIMEOUT": "2"})
    started = time.monotonic()
    result = runner.invoke(cli, ["models", "pull", "mlx-community/tiny-4bit"])
    assert time.monotonic() - started < 8
    assert result.exit_code == 1
    assert "cannot download mlx-community/tiny-4bit: http://127.0.0.1:9 is " in (
        result.output
    )
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    result = runner.invoke(cli, ["models", "pull", "mlx-community/tiny-4bit"])
    assert result.exit_code == 1 and "HF_HUB_OFFLINE is set" in result.output
    result = runner.invoke(cli, ["models", "pull", "./model.gguf"])
    assert result.exit_code == 1 and "models import-gguf" in result.output


def test_import_gguf_reuses_the_cached_import(
    env: Path, cache_dir: Path, bundled_model_dir: Path
) -> None:
    gguf = bundled_gguf_path()
    result = CliRunner(env={"PENSIEVE_CACHE_DIR": str(cache_dir)}).invoke(
        cli, ["models", "import-gguf", str(gguf)]
    )
    assert result.exit_code == 0, result.output
    assert f": {bundled_model_dir}\n" in result.output
    assert f"pensieve start --model {gguf}" in result.output


def test_service_install_writes_a_systemd_user_unit(
    env: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    home = tmp_path / "home"
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.delenv("XDG_CONFIG_HOME", raising=False)
    monkeypatch.setenv("PENSIEVE_MODEL", "bundled")
    result = CliRunner().invoke(
        cli, ["service", "install", "--system", "systemd", "--port", "8123"]
    )
    assert result.exit_code == 0, result.output
    unit = home / ".config" / "systemd" / "user" / "pensieve.service"
    assert f"Wrote {unit}\n" in result.output
    assert "  systemctl --user enable --now pensieve.service" in result.output
    text = unit.read_text()
    assert f'ExecStart="{sys.executable}" "-m" "pensieve" "start"\n' in text
    assert 'Environment="PENSIEVE_PORT=8123"' in text
    assert 'Environment="PENSIEVE_MODEL=bundled"' in text
    assert f'Environment="PENSIEVE_INSTANCE_PATH={env}"' in text
    assert "TimeoutStopSec=45\n" in text and "WantedBy=default.target" in text
    assert stat.S_IMODE(unit.stat().st_mode) == 0o600  # it holds the API key


def test_service_install_writes_a_launchd_agent(
    env: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    home = tmp_path / "home"
    monkeypatch.setenv("HOME", str(home))
    result = CliRunner().invoke(
        cli, ["service", "install", "--system", "launchd", "--api-key", "k"]
    )
    assert result.exit_code == 0, result.output
    plist = home / "Library" / "LaunchAgents" / "dev.pensieve.server.plist"
    assert f"launchctl bootstrap gui/{os.getuid()} {plist}" in result.output
    agent = plistlib.loads(plist.read_bytes())
    assert agent["ProgramArguments"] == [sys.executable, "-m", "pensieve", "start"]
    assert agent["EnvironmentVariables"]["PENSIEVE_API_KEY"] == "k"
    assert agent["RunAtLoad"] is True
    assert agent["StandardErrorPath"] == str(env / "pensieve-7777.log")


def dead_pid() -> int:
    process = subprocess.Popen(["true"])
    process.wait()
    return process.pid


def test_status_and_stop_remove_a_stale_pid_file(env: Path) -> None:
    env.mkdir()
    pid_file = env / "pensieve-7790.pid"
    runner = CliRunner()
    pid_file.write_text(f"{dead_pid()}\n")
    result = runner.invoke(cli, ["status", "--port", "7790"])
    assert result.exit_code == 1
    assert "Removed a stale PID file: process " in result.output
    assert "Pensieve is not running on http://127.0.0.1:7790." in result.output
    assert not pid_file.exists()

    # A live process that is not a server (its pid was reused): never signalled.
    bystander = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    try:
        pid_file.write_text(str(bystander.pid))
        result = runner.invoke(cli, ["stop", "--port", "7790"])
        assert result.exit_code == 1
        assert f"process {bystander.pid} is not a Pensieve server" in result.output
        assert "Pensieve is not running" in result.output
        assert bystander.poll() is None and not pid_file.exists()
    finally:
        bystander.kill()
        bystander.wait()


def test_start_refuses_a_port_in_use(env: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = CliRunner().invoke(cli, ["start", "--daemon", "--port", str(port)])
    assert result.exit_code == 1
    assert f"127.0.0.1:{port} is already in use" in result.output
    assert not list(env.glob("*.pid"))
