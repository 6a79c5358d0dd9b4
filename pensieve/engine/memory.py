"""How much memory the prompt cache may use: sized from the device, not fixed.

A model without grouped-query attention keeps ~393 KB of KV per token
(Phi-3-mini), so one 20k-token Claude Code prompt is ~7.9 GB: a fixed 2 GB
budget would never cache it. The default budget is what the device has free
once the model is loaded, less a margin for the live request and the rest of
the system. `free_memory` runs on the inference thread (it asks mlx).
"""

from __future__ import annotations

import os
import platform
from dataclasses import dataclass

MARGIN_FRACTION = 0.25  # of the device's memory, kept free
MARGIN_MIN = 2 * 1024**3


@dataclass(frozen=True)
class FreeMemory:
    """What a device has, and has free now, with the words for where from."""

    total: int
    free: int
    source: str


def cache_budget(memory: FreeMemory) -> int:
    """The prompt cache's budget: free memory less the margin (never negative)."""
    margin = max(MARGIN_MIN, int(memory.total * MARGIN_FRACTION))
    return max(0, memory.free - margin)


def describe(budget: int, memory: FreeMemory) -> str:
    gib = 1024**3
    return (
        f"{budget / gib:.1f} GiB: {memory.free / gib:.1f} GiB free of "
        f"{memory.total / gib:.1f} GiB ({memory.source}) less a margin of "
        f"{max(MARGIN_MIN, int(memory.total * MARGIN_FRACTION)) / gib:.1f} GiB"
    )


def free_memory(backend: str) -> FreeMemory:
    """The device's memory after the model loaded: on CUDA what the device
    reports free; on Metal the recommended working set less what mlx holds;
    on the CPU the RAM the system has available."""
    if backend == "cpu":
        return ram()
    import mlx.core as mx

    info = mx.device_info()
    if "free_memory" in info:  # CUDA: what the device has free, all processes
        free = int(info["free_memory"])
        return FreeMemory(int(info["total_memory"]), free, f"{backend} memory free")
    total = int(
        info.get("max_recommended_working_set_size") or info.get("memory_size") or 0
    )
    if not total:
        return ram()
    used = int(mx.get_active_memory()) + int(mx.get_cache_memory())
    return FreeMemory(total, max(0, total - used), f"{backend} memory less mlx's")


def ram() -> FreeMemory:
    """Total and available RAM (Linux: /proc/meminfo; elsewhere: sysconf)."""
    if platform.system() == "Linux":
        fields: dict[str, int] = {}
        with open("/proc/meminfo") as meminfo:
            for line in meminfo:
                name, value = line.split(":", 1)
                fields[name] = int(value.split()[0]) * 1024
        available = fields.get("MemAvailable", fields.get("MemFree", 0))
        return FreeMemory(fields["MemTotal"], available, "RAM available")
    page = os.sysconf("SC_PAGE_SIZE")
    total = os.sysconf("SC_PHYS_PAGES") * page
    return FreeMemory(total, total // 2, "half the RAM")


def mlx_memory() -> dict[str, int]:
    """What mlx's allocator holds now, at its peak, and keeps for reuse, in
    bytes. Only after the model loaded (mlx is initialised by then); these
    are counters, safe to read from any thread."""
    import mlx.core as mx

    return {
        "mlx_active_bytes": int(mx.get_active_memory()),
        "mlx_peak_bytes": int(mx.get_peak_memory()),
        "mlx_cache_bytes": int(mx.get_cache_memory()),
    }
