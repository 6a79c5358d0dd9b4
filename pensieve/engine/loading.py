"""Loading a model on the inference thread: weights, CPU profile, GPU warm-up.

Everything in this module that touches mlx must run on the engine's one
inference thread: mlx streams are thread-local.
"""

from __future__ import annotations

import copy
import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from . import cpu
from .families import GENERIC, Family, detect_family
from .memory import FreeMemory, free_memory

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class CPUProfile:
    """How to run on the CPU backend (see pensieve/engine/cpu.py)."""

    enabled: bool = True
    threads: int = 0  # 0: one per available core
    dequantize_max_bytes: int = 2 * 1024**3


@dataclass(frozen=True)
class LoadedModel:
    """A model in memory with its tokenizer and the facts /health reports."""

    model: Any
    tokenizer: Any  # mlx_lm's TokenizerWrapper
    context_length: int
    backend: str  # "cpu", "cuda" or "metal"
    load_seconds: float
    profile: tuple[str, ...] = ()  # what the CPU profile changed
    family: Family = GENERIC  # how its template writes tool calls and reasoning
    memory: FreeMemory | None = None  # the device's, once the model is in it
    extras: dict[str, Any] = field(default_factory=dict)  # built lazily, per model


def load_model(
    path: Path, cpu_profile: CPUProfile, chat_template: str | None = None
) -> LoadedModel:
    """Load an mlx-lm model directory. Runs on the inference thread.

    With the CPU profile enabled, OpenBLAS is routed in before mlx is imported
    and, on the CPU backend, a model small enough is served in float32. On a
    GPU backend a warm-up then runs, so that its kernels are built before the
    server reports ready rather than during the first requests.
    """
    started = time.monotonic()
    profile: list[str] = []
    if cpu_profile.enabled:
        threads = cpu_profile.threads or cpu.default_threads()
        if blas := cpu.preload_blas(threads):
            profile.append(blas)

    import mlx.core as mx
    from mlx_lm import load

    model, tokenizer, config = load(str(path), return_config=True)
    if chat_template is not None:  # PENSIEVE_CHAT_TEMPLATE: the user's own
        tokenizer._tokenizer.chat_template = chat_template
    backend = _backend(mx)
    if backend != "cpu":
        profile = []  # the BLAS routed in is never called
    elif cpu_profile.enabled:
        size = cpu.float32_bytes(model)
        if size <= cpu_profile.dequantize_max_bytes:
            cpu.dequantize(model)
            profile.append(f"float32 weights ({size / 1024**2:.0f} MiB)")
    if backend == "cpu" and _installed("mlx-cuda-13"):
        log.warning(
            "mlx-cuda-13 is installed but MLX runs on the CPU: mlx-cpu's library "
            "replaced its own. Run `pip install --force-reinstall --no-deps "
            "mlx-cuda-13` to use the GPU."
        )
    if backend != "cpu":
        _warm_up(model, tokenizer)  # the CPU has no kernels to build on first use
    return LoadedModel(
        model=model,
        tokenizer=tokenizer,
        context_length=_context_length(config, tokenizer),
        backend=backend,
        load_seconds=time.monotonic() - started,
        profile=tuple(profile),
        family=detect_family(tokenizer.chat_template),
        memory=free_memory(backend),
    )


def _installed(distribution: str) -> bool:
    from importlib.metadata import PackageNotFoundError, version

    try:
        version(distribution)
    except PackageNotFoundError:
        return False
    return True


WARM_UP_SUFFIXES = (2, 4, 8, 12, 16, 24, 32)  # new tokens after a cache hit


def _warm_up(model: Any, tokenizer: Any) -> None:
    """Serve a few short requests the way `decode` does.

    A fresh prefill, then continuations of trimmed copies of its cache (as
    after a prompt-cache hit) by suffixes of several lengths, each decoding
    two tokens, greedily and with samplers at common settings. A GPU backend
    builds kernels on first use, per path and per size class of the new
    tokens (minutes on a fresh machine; MLX keeps them on disk afterwards):
    here rather than in the first requests. Samplers at other settings still
    build their own on first use (seconds: their settings are compiled in).
    The CPU needs none of it: there, the first requests were measured as fast
    as later ones, and the warm-up would add ~2 s to every start.
    """
    import mlx.core as mx
    from mlx_lm.generate import generate_step
    from mlx_lm.models.cache import make_prompt_cache, trim_prompt_cache
    from mlx_lm.sample_utils import make_sampler

    prompt = mx.array(tokenizer.encode("The quick brown fox jumps over the dog. " * 6))
    kv = make_prompt_cache(model)
    for _ in generate_step(prompt, model, max_tokens=2, prompt_cache=kv):
        pass
    samplers = [
        make_sampler(temp=1.0),  # Anthropic's default, Claude Code's
        make_sampler(temp=0.7, top_p=0.9),
    ]
    for index, new in enumerate(WARM_UP_SUFFIXES):
        hit = copy.deepcopy(kv)
        trim_prompt_cache(hit, hit[0].offset - (prompt.size - new))
        steps = generate_step(
            prompt[-new:],
            model,
            max_tokens=2,
            sampler=samplers[index % len(samplers)],
            prompt_cache=hit,
        )
        for _ in steps:
            pass


def _context_length(config: dict[str, Any], tokenizer: Any) -> int:
    for key in ("max_position_embeddings", "max_sequence_length", "n_ctx"):
        if isinstance(config.get(key), int):
            return config[key]
    return int(getattr(tokenizer, "model_max_length", 4096))


def _backend(mx: Any) -> str:
    if mx.default_device() == mx.cpu:
        return "cpu"
    if mx.metal.is_available():
        return "metal"
    return "cuda"
