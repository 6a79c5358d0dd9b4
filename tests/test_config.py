"""Configuration: precedence (flag > env > file > default), the instance folder,
validation that names the key and its problem, the generated example."""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest
from click.testing import CliRunner

from pensieve import create_app
from pensieve.cli import cli
from pensieve.cli.options import cache_dir_of, settings_values
from pensieve.config import (
    SETTINGS,
    ConfigError,
    engine_settings,
    example_config,
    load_settings,
    resolve_settings,
    tomllib,
)
from pensieve.extension import engine_of


@pytest.fixture
def instance(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """An empty instance folder of the test's own, and no PENSIEVE_* variables."""
    for name in [name for name in os.environ if name.startswith("PENSIEVE_")]:
        monkeypatch.delenv(name)
    folder = tmp_path / "instance"
    folder.mkdir()
    monkeypatch.setenv("PENSIEVE_INSTANCE_PATH", str(folder))
    return folder


def shown(runner: CliRunner, *args: str) -> dict[str, tuple[str, str]]:
    """`pensieve config show` as {NAME: (value, source)}."""
    result = runner.invoke(cli, ["config", "show", *args])
    assert result.exit_code == 0, result.output
    rows = {}
    for line in result.output.splitlines():
        if match := re.fullmatch(r"(\w+)\s+(.+?)\s+\((.+)\)", line):
            rows[match[1]] = (match[2], match[3])
    assert set(rows) == {setting.name for setting in SETTINGS}
    return rows


def test_flag_beats_env_beats_file_beats_default(
    instance: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    runner = CliRunner()
    assert shown(runner)["PORT"] == ("7777", "default")
    config_file = instance / "pensieve.toml"
    config_file.write_text('port = 1111\nmodel = "bundled"\n')
    assert shown(runner)["PORT"] == ("1111", f"file {config_file}")
    monkeypatch.setenv("PENSIEVE_PORT", "2222")
    assert shown(runner)["PORT"] == ("2222", "env PENSIEVE_PORT")
    rows = shown(runner, "--port", "3333")
    assert rows["PORT"] == ("3333", "flag --port")
    # Each setting keeps its own winner.
    assert rows["MODEL"] == ('"bundled"', f"file {config_file}")
    assert rows["HOST"] == ('"127.0.0.1"', "default")


def test_show_gives_the_effective_paths_of_empty_defaults(
    instance: Path, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.delenv("XDG_CACHE_HOME", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    runner = CliRunner()
    rows = shown(runner, "--port", "4444")
    cache = tmp_path / "home" / ".cache" / "pensieve"
    assert rows["CACHE_DIR"] == (f'"{cache}"', "default: ~/.cache/pensieve")
    value, source = rows["LOG_FILE"]
    assert value == f'"{instance / "pensieve-4444.log"}"'  # follows the port
    assert source.startswith("default: ") and "stderr" in source
    assert rows["CHAT_TEMPLATE"] == ('""', "default: the model's own template")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert shown(runner)["CACHE_DIR"] == (
        f'"{tmp_path / "xdg" / "pensieve"}"',
        "default: $XDG_CACHE_HOME/pensieve",
    )


def test_show_gives_set_paths_and_their_sources(
    instance: Path, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    config_file = instance / "pensieve.toml"
    config_file.write_text('cache_dir = "~/models"\nlog_file = "/var/log/p.log"\n')
    rows = shown(CliRunner())
    home = tmp_path / "home"
    assert rows["CACHE_DIR"] == (f'"{home / "models"}"', f"file {config_file}")
    assert rows["LOG_FILE"] == ('"/var/log/p.log"', f"file {config_file}")
    monkeypatch.setenv("PENSIEVE_CACHE_DIR", str(tmp_path / "c"))
    rows = shown(CliRunner())
    assert rows["CACHE_DIR"] == (f'"{tmp_path / "c"}"', "env PENSIEVE_CACHE_DIR")


def test_the_app_reads_the_instance_folder_and_file(instance: Path) -> None:
    (instance / "pensieve.toml").write_text('api_key = "from-file"\nqueue_depth = 3\n')
    app = create_app({"TESTING": True})
    assert Path(app.instance_path) == instance
    assert app.config["API_KEY"] == "from-file"
    assert app.config["QUEUE_DEPTH"] == 3
    assert load_settings({"API_KEY": "override"})["API_KEY"] == "override"


def test_the_default_instance_folder_is_flasks(
    instance: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("PENSIEVE_INSTANCE_PATH")
    app = create_app({"TESTING": True})
    assert app.instance_path == str(Path(__file__).resolve().parents[1] / "instance")


def test_validate_names_each_bad_key_and_its_problem(
    instance: Path, tmp_path: Path
) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text(
        'port = "abc"\nprot = 1\nlog_format = "xml"\n'
        "graceful_timeout = true\nkeepalive_seconds = -1\nPORT = 5\n"
    )
    result = CliRunner().invoke(cli, ["config", "validate", str(bad)])
    assert result.exit_code == 1
    errors = result.stderr.splitlines()
    assert errors == [
        f"error: {bad}: port: must be an integer; got 'abc'",
        f"error: {bad}: prot: unknown key (did you mean 'port'?)",
        f"error: {bad}: log_format: must be one of plain, json; got 'xml'",
        f"error: {bad}: graceful_timeout: must be an integer; got True",
        f"error: {bad}: keepalive_seconds: must not be negative; got -1",
        f"error: {bad}: PORT: unknown key (did you mean 'port'?)",
    ]


def test_validate_reports_toml_syntax_and_environment_errors(
    instance: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (instance / "pensieve.toml").write_text("port = \n")
    monkeypatch.setenv("PENSIEVE_PORT", "99999")
    result = CliRunner().invoke(cli, ["config", "validate"])
    assert result.exit_code == 1
    assert "pensieve.toml: not valid TOML: Invalid value (at line 1" in result.stderr
    assert "PENSIEVE_PORT: must be at least 1 and at most 65535; got 99999" in (
        result.stderr
    )


def test_a_good_file_validates(instance: Path) -> None:
    (instance / "pensieve.toml").write_text('model = "bundled"\noffline_timeout = 1\n')
    result = CliRunner().invoke(cli, ["config", "validate"])
    assert result.exit_code == 0, result.output
    assert result.output.startswith("OK: ")


def test_bad_settings_stop_commands_before_they_start_anything(
    instance: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    runner = CliRunner()
    monkeypatch.setenv("PENSIEVE_LOG_LEVEL", "loud")
    result = runner.invoke(cli, ["start", "--daemon"])
    assert result.exit_code == 1
    assert "PENSIEVE_LOG_LEVEL: must be one of debug, info, warning, error" in (
        result.output
    )
    monkeypatch.delenv("PENSIEVE_LOG_LEVEL")
    result = runner.invoke(cli, ["start", "--port", "0"])
    assert result.exit_code == 2
    assert "--port" in result.output and "must be at least 1" in result.output
    with pytest.raises(ConfigError, match="PENSIEVE_PORT: must be an integer"):
        resolve_settings(environ={"PENSIEVE_PORT": "x"})


def test_generate_writes_a_commented_example_of_every_setting(
    instance: Path, tmp_path: Path
) -> None:
    runner = CliRunner()
    target = tmp_path / "example.toml"
    assert runner.invoke(cli, ["config", "generate", "-o", str(target)]).exit_code == 0
    text = target.read_text()
    assert text == example_config()
    assert tomllib.loads(text) == {}  # everything commented out
    for setting in SETTINGS:
        assert f"(environment: {setting.env})" in text
    uncommented = re.sub(r"^# (\w+ = )", r"\1", text, flags=re.MULTILINE)
    values = tomllib.loads(uncommented)
    assert values == {s.key: s.default for s in SETTINGS}
    target.write_text(uncommented)
    assert runner.invoke(cli, ["config", "validate", str(target)]).exit_code == 0
    again = runner.invoke(cli, ["config", "generate", "-o", str(target)])
    assert again.exit_code == 1 and "--force" in again.output
    assert runner.invoke(cli, ["config", "generate"]).output == text


@pytest.mark.parametrize(
    ("value", "problem"),
    [
        ("3", "must be from 0.0 to 2.0; got 3"),
        ("-0.1", "must be from 0.0 to 2.0; got -0.1"),
        ("nan", "must be from 0.0 to 2.0; got nan"),
        ("warm", "must be a number; got 'warm'"),
    ],
)
def test_max_temperature_must_be_a_temperature(value: str, problem: str) -> None:
    with pytest.raises(
        ConfigError, match=re.escape(f"PENSIEVE_MAX_TEMPERATURE: {problem}")
    ):
        resolve_settings(environ={"PENSIEVE_MAX_TEMPERATURE": value})
    settings = resolve_settings(environ={"PENSIEVE_MAX_TEMPERATURE": "0.3"})
    assert settings["MAX_TEMPERATURE"].value == 0.3


def test_a_home_relative_cache_dir_is_one_folder_for_server_and_cli(
    instance: Path, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    home = tmp_path / "home"
    monkeypatch.setenv("HOME", str(home))
    (instance / "pensieve.toml").write_text('cache_dir = "~/models"\n')
    server = engine_of(create_app()).settings.cache_dir
    cli_folder = cache_dir_of(settings_values({}))
    assert server == cli_folder == home / "models"
    listed = CliRunner().invoke(cli, ["models", "list"])
    assert listed.exit_code == 0, listed.output
    assert not Path("~").exists()  # no folder literally named "~" was made


@pytest.mark.parametrize(
    ("value", "budget"),
    [(None, None), ("auto", None), ("AUTO", None), ("512", 512 * 1024**2)],
)
def test_the_prompt_cache_budget_is_auto_or_mebibytes(
    instance: Path, monkeypatch: pytest.MonkeyPatch, value: str | None, budget: int
) -> None:
    if value is not None:
        monkeypatch.setenv("PENSIEVE_PROMPT_CACHE_MB", value)
    assert engine_settings(load_settings()).prompt_cache_bytes == budget


def test_a_bad_prompt_cache_budget_says_auto_is_allowed(instance: Path) -> None:
    result = CliRunner().invoke(
        cli, ["config", "show"], env={"PENSIEVE_PROMPT_CACHE_MB": "lots"}
    )
    assert result.exit_code != 0
    assert "must be auto or an integer; got 'lots'" in result.output + result.stderr


def test_config_show_estimates_the_auto_budget(instance: Path) -> None:
    result = CliRunner().invoke(cli, ["config", "show"])
    [line] = [line for line in result.output.splitlines() if "PROMPT_CACHE_MB" in line]
    assert "auto (~" in line and "GiB free of" in line and "margin" in line


def test_kv_bits_is_off_8_or_4(instance: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    assert engine_settings(load_settings()).kv_bits is None
    monkeypatch.setenv("PENSIEVE_KV_BITS", "8")
    assert engine_settings(load_settings()).kv_bits == 8
    result = CliRunner().invoke(cli, ["config", "show"], env={"PENSIEVE_KV_BITS": "3"})
    assert result.exit_code != 0
    assert "must be one of off, 8, 4; got '3'" in result.output + result.stderr
