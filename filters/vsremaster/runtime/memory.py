"""How much memory one inference session may use, for choosing tile sizes.

CPU: half of ``MemAvailable`` from ``/proc/meminfo`` (elsewhere 4 GiB) shared by the
streams. GPU: half of the free memory ``nvidia-smi`` reports for device 0 (4 GiB if it
cannot be asked). ``$VSREMASTER_MEMORY_BUDGET`` (bytes per session) overrides both.
"""

from __future__ import annotations

import os
import shutil
import subprocess

from .session import Backend

__all__ = ["session_budget"]

_FALLBACK = 4 << 30


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
    free = _free_gpu() if backend.gpu else _free_cpu()
    return max(free // 2 // max(num_streams, 1), 256 << 20)
