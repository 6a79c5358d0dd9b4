"""Where the benchmarks' data files and child programs are, and running a child.

Fixture data (long prompts, tool lists, schema tables) lives in data/ as JSON
or text, so that the scripts hold only what they measure. The programs in
children/ run in a fresh interpreter each (a CPU profile is process-wide, and
an interpreter's start-up is part of what skeleton.py measures); they talk to
the parent through stdout: `PROGRESS <text>` lines, echoed as they come, and
one `RESULT <json>` line.
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
import threading
from pathlib import Path
from typing import Any

BENCHMARKS = Path(__file__).resolve().parent
ROOT = BENCHMARKS.parent
DATA = BENCHMARKS / "data"
CHILDREN = BENCHMARKS / "children"


def data_text(name: str) -> str:
    """The text of data/`name`, exactly as stored."""
    return (DATA / name).read_text(encoding="utf-8")


def data_json(name: str) -> Any:
    """The parsed JSON of data/`name`."""
    return json.loads(data_text(name))


def child_command(python: str | Path, name: str, *args: str) -> list[str]:
    """`python children/<name>.py args...` as a subprocess command."""
    return [str(python), str(CHILDREN / f"{name}.py"), *args]


def run_child(
    command: list[str], label: str, timeout: float, env: dict[str, str] | None = None
) -> dict[str, Any]:
    """Run a child in the repository root; echo its PROGRESS lines, return RESULT.

    The child is killed after `timeout` seconds; RuntimeError (with the tail
    of its stderr) when it fails or prints no RESULT line.
    """
    with tempfile.TemporaryFile() as stderr:
        process = subprocess.Popen(
            command, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=stderr, text=True
        )
        watchdog = threading.Timer(timeout, process.kill)
        watchdog.start()
        result: dict[str, Any] | None = None
        try:
            assert process.stdout is not None
            for line in process.stdout:
                if line.startswith("PROGRESS "):
                    print(f"      {label}: {line.removeprefix('PROGRESS ').rstrip()}")
                    sys.stdout.flush()
                elif line.startswith("RESULT "):
                    result = json.loads(line.removeprefix("RESULT "))
            process.wait()
        finally:
            watchdog.cancel()
            if process.poll() is None:
                process.kill()
                process.wait()
        if process.returncode != 0 or result is None:
            stderr.seek(0)
            tail = stderr.read().decode(errors="replace")[-4000:]
            raise RuntimeError(
                f"{label} failed (exit {process.returncode}, timeout {timeout:.0f} s)"
                f":\n{tail}"
            )
        return result
