"""Where vsremaster keeps downloaded and generated files.

``$VSREMASTER_MODELS`` (default ``$XDG_CACHE_HOME/vsremaster/models``) holds converted ONNX
models and the registry-package sources they were made from; ``$VSREMASTER_SAMPLES``
(default ``$XDG_CACHE_HOME/vsremaster/samples``) holds sample clips for the demo, tests and
benchmarks. ``$XDG_CACHE_HOME`` defaults to ``~/.cache``.
"""

from __future__ import annotations

import os
from pathlib import Path

__all__ = ["cache_root", "models_dir", "samples_dir"]


def cache_root() -> Path:
    """``$XDG_CACHE_HOME/vsremaster`` (``~/.cache/vsremaster`` by default)."""
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "vsremaster"


def models_dir() -> Path:
    """Model cache: ``$VSREMASTER_MODELS`` or ``<cache_root>/models``."""
    env = os.environ.get("VSREMASTER_MODELS")
    return Path(env) if env else cache_root() / "models"


def samples_dir() -> Path:
    """Sample clips: ``$VSREMASTER_SAMPLES`` or ``<cache_root>/samples``."""
    env = os.environ.get("VSREMASTER_SAMPLES")
    return Path(env) if env else cache_root() / "samples"
