"""How much memory one inference session may use, for choosing tile sizes.

The stated budget: a 4K output (3840x2160) stays under 6 GiB of process memory on the CPU
and 8 GiB of GPU memory, whatever the model, because frames are tiled so that the inference
working memory of a stage's sessions together stays within :data:`CPU_STAGE_BUDGET`
(4 GiB) / :data:`GPU_STAGE_BUDGET` (6 GiB), shared by its streams; on a smaller machine
they share half of what is free instead: CPU half of ``MemAvailable`` from
``/proc/meminfo`` (elsewhere 4 GiB), GPU half of the free memory ``nvidia-smi`` reports for
device 0 (4 GiB if it cannot be asked).
``$VSREMASTER_MEMORY_BUDGET`` (bytes per session) overrides all of it. Measured:
``benchmarks/memory.py``.
"""

from __future__ import annotations

import os
import shutil
import subprocess

from .session import Backend

__all__ = ["CPU_STAGE_BUDGET", "GPU_STAGE_BUDGET", "session_budget"]

_FALLBACK = 4 << 30
CPU_STAGE_BUDGET = 4 << 30
"""Most inference working memory a stage's CPU sessions plan for together (bytes)."""
GPU_STAGE_BUDGET = 6 << 30
"""Most inference working memory a stage's GPU sessions plan for together (bytes)."""


def _free_cpu() -> int:
    try:
        with open("/proc/meminfo", encoding="ascii") as fh:
            for line in fh:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 2 * _FALLBACK


def _free_gpu() -> int:
    exe = shutil.which("nvidia-smi")
    if exe:
        try:
            out = subprocess.run(
                [exe, "--query-gpu=memory.free", "--format=csv,noheader,nounits", "-i", "0"],
                capture_output=True, text=True, timeout=10,
            )
            return int(out.stdout.split()[0]) << 20
        except (OSError, ValueError, IndexError, subprocess.TimeoutExpired):
            pass
    return 2 * _FALLBACK


def session_budget(backend: Backend, num_streams: int) -> int:
    """Bytes of working memory one of ``num_streams`` sessions may use on ``backend``."""
    env = os.environ.get("VSREMASTER_MEMORY_BUDGET")
    if env:
        return int(env)
    if backend.gpu:
        free, cap = _free_gpu(), GPU_STAGE_BUDGET
    else:
        free, cap = _free_cpu(), CPU_STAGE_BUDGET
    return max(min(free // 2, cap) // max(num_streams, 1), 256 << 20)
