"""Steps (a), (b) and (d): MLX and llama.cpp measured in child interpreters.

The BLAS routing of the CPU profile is process-wide, so plain MLX and the
profile each get a fresh interpreter (children/mlx_speed.py); llama.cpp runs
in a virtualenv of its own (children/llama_speed.py), as it is no Pensieve
dependency. This module also finds, and can build, that virtualenv.
"""

from __future__ import annotations

import json
import os
import shlex
import subprocess
import sys
from pathlib import Path
from typing import Any

from _files import child_command, run_child

from .fixtures import (
    BUILD_TIMEOUT_S,
    CHILD_TIMEOUT_S,
    DECODE_PROMPT,
    FILLER,
    LLAMA_CMAKE_ARGS,
    LLAMA_N_CTX,
    LLAMA_THREADS,
)


def bench_mlx(
    model_dir: Path,
    profile: str,
    lengths: list[int],
    decode_tokens: int,
    prefill_step_size: int,
    repeats: int,
) -> dict[str, Any]:
    """(a)/(b): plain MLX or the CPU profile, in a fresh interpreter."""
    args = {
        "model_dir": str(model_dir),
        "profile": profile,
        "lengths": lengths,
        "decode_tokens": decode_tokens,
        "prefill_step_size": prefill_step_size,
        "repeats": repeats,
        "filler": FILLER,
        "decode_prompt": DECODE_PROMPT,
    }
    label = "after" if profile == "on" else "before"
    command = child_command(sys.executable, "mlx_speed", json.dumps(args))
    return run_child(command, label, CHILD_TIMEOUT_S)


def llama_python(venv: Path) -> Path:
    """The interpreter of the llama.cpp virtualenv."""
    return venv / "bin" / "python"


def llama_build_command(venv: Path) -> str:
    """The shell command that builds llama-cpp-python in `venv`, for the log."""
    python = shlex.quote(str(llama_python(venv)))
    return (
        f"python3 -m venv {shlex.quote(str(venv))} && "
        f'CMAKE_ARGS="{LLAMA_CMAKE_ARGS}" {python} -m pip install llama-cpp-python'
    )


def llama_installed(venv: Path) -> str | None:
    """The llama_cpp version installed in `venv`, or None."""
    python = llama_python(venv)
    if not python.exists():
        return None
    done = subprocess.run(
        [str(python), "-c", "import llama_cpp; print(llama_cpp.__version__)"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    return done.stdout.strip() if done.returncode == 0 else None


def build_llama(venv: Path) -> None:
    """Create `venv` and build llama-cpp-python in it, without native tuning."""
    if not llama_python(venv).exists():
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    env = {**os.environ, "CMAKE_ARGS": LLAMA_CMAKE_ARGS}
    subprocess.run(
        [str(llama_python(venv)), "-m", "pip", "install", "llama-cpp-python"],
        env=env,
        check=True,
        timeout=BUILD_TIMEOUT_S,
    )


def bench_llama(
    venv: Path,
    gguf: Path,
    lengths: list[int],
    decode_tokens: int,
    repeats: int,
    decode_prompt_ids: list[int],
) -> dict[str, Any]:
    """(d): llama.cpp on the same GGUF, with the same decode prompt ids."""
    args = {
        "gguf": str(gguf),
        "lengths": lengths,
        "decode_tokens": decode_tokens,
        "repeats": repeats,
        "threads": LLAMA_THREADS,
        "n_ctx": LLAMA_N_CTX,
        "filler": FILLER,
        "decode_prompt_ids": decode_prompt_ids,
    }
    command = child_command(llama_python(venv), "llama_speed", json.dumps(args))
    return run_child(command, "llama.cpp", CHILD_TIMEOUT_S)
