"""The CPU execution profile: what makes MLX fast on a CPU without a GPU.

Measured on a 2-core x86_64 machine with the bundled 135M model (README,
"Performance"): MLX's quantised matmul kernels run scalar on x86 (about 7 decode
tokens/s), while float32 matmuls go through BLAS. So on the CPU backend a small
model is served with float32 weights, and MLX's `cblas_sgemm` is routed to
OpenBLAS (the `scipy-openblas32` wheel) through a small shim that also sends
single-row products, every matmul of a decode step, to sgemv.

`preload_blas` must run before anything in the process imports mlx: libmlx
binds `cblas_sgemm` when it is loaded. Pensieve calls it on the inference
thread of the gunicorn worker, after the fork.
"""

from __future__ import annotations

import ctypes
import importlib.util
import logging
import os
import sys
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

SHIM_MODULE = "pensieve.engine._blas_shim"


def preload_blas(threads: int) -> str | None:
    """Route MLX's float32 matmuls to OpenBLAS; a description, or None if not done."""
    if sys.platform != "linux":
        return None  # macOS: MLX uses Accelerate already
    if "mlx.core" in sys.modules:
        log.warning("CPU profile: mlx was imported before the BLAS could be routed")
        return None
    shim_spec = importlib.util.find_spec(SHIM_MODULE)
    openblas = _openblas_library()
    if shim_spec is None or shim_spec.origin is None or openblas is None:
        log.warning("CPU profile: no BLAS shim or OpenBLAS installed; using MLX's own")
        return None
    blas = ctypes.CDLL(str(openblas))
    blas.scipy_openblas_set_num_threads(threads)
    shim = ctypes.CDLL(shim_spec.origin, mode=ctypes.RTLD_GLOBAL)
    shim.pensieve_blas_bind(
        ctypes.cast(blas.scipy_cblas_sgemm, ctypes.c_void_p),
        ctypes.cast(blas.scipy_cblas_sgemv, ctypes.c_void_p),
    )
    shim.pensieve_blas_threads(threads)
    return f"OpenBLAS ({openblas.name}, {threads} threads)"


def _openblas_library() -> Path | None:
    try:
        import scipy_openblas32
    except ImportError:
        return None
    name = f"lib{scipy_openblas32.get_library()}.so"
    path = Path(scipy_openblas32.get_lib_dir()) / name
    return path if path.exists() else None


def default_threads() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else 1


def float32_bytes(model: Any) -> int:
    """Bytes the model's parameters would take as float32."""
    import mlx.nn as nn
    from mlx.utils import tree_flatten

    quantized_values = 0
    quantized_names = set()
    for name, module in model.named_modules():
        if isinstance(module, nn.QuantizedLinear | nn.QuantizedEmbedding):
            rows, packed = module.weight.shape
            quantized_values += rows * packed * 32 // module.bits
            quantized_names.add(name)
    other_values = sum(
        value.size
        for key, value in tree_flatten(model.parameters())
        if key.rsplit(".", 1)[0] not in quantized_names
    )
    return 4 * (quantized_values + other_values)


def dequantize(model: Any) -> None:
    """Replace quantised layers by float32 ones, in place.

    Scales and biases are widened to float32 before dequantising: with their
    float16 type the dequantised weights would be rounded to float16.
    """
    import mlx.core as mx
    import mlx.nn as nn
    from mlx.utils import tree_unflatten

    replacements = []
    for name, module in model.named_modules():
        if not isinstance(module, nn.QuantizedLinear | nn.QuantizedEmbedding):
            continue
        weight = mx.dequantize(
            module.weight,
            module.scales.astype(mx.float32),
            module.biases.astype(mx.float32),
            group_size=module.group_size,
            bits=module.bits,
        )
        if isinstance(module, nn.QuantizedEmbedding):
            layer: Any = nn.Embedding(*weight.shape)
        else:
            layer = nn.Linear(weight.shape[1], weight.shape[0], bias="bias" in module)
            if "bias" in module:
                layer.bias = module.bias.astype(mx.float32)
        layer.weight = weight
        replacements.append((name, layer))
    model.update_modules(tree_unflatten(replacements))
    model.apply(
        lambda p: p.astype(mx.float32) if mx.issubdtype(p.dtype, mx.floating) else p
    )
    mx.eval(model.parameters())
