"""Messages for the user, routed where VapourSynth users look for them.

Inside a VapourSynth script (vspipe, vspreview, vsview) messages go through
``core.log_message`` so they appear in the previewer's log and on vspipe's stderr. They are
also sent to the ``vsremaster`` :mod:`logging` logger. Nothing is ever written to stdout,
which vspipe uses for video.
"""

from __future__ import annotations

import logging
import threading

import vapoursynth as vs

__all__ = ["logger", "info", "warning", "once"]

logger = logging.getLogger("vsremaster")

_seen: set[str] = set()
_seen_lock = threading.Lock()


def _emit(level: int, vs_type: vs.MessageType, message: str) -> None:
    logger.log(level, message)
    try:
        vs.core.log_message(vs_type, f"vsremaster: {message}")
    except Exception:  # no core in this thread/environment: logging alone is enough
        pass


def info(message: str) -> None:
    """Report something the user may want to know (assumed defaults, chosen tile size)."""
    _emit(logging.INFO, vs.MESSAGE_TYPE_INFORMATION, message)


def warning(message: str) -> None:
    """Report something that is probably not what the user wanted, but not an error."""
    _emit(logging.WARNING, vs.MESSAGE_TYPE_WARNING, message)


def once(key: str, message: str, *, level: str = "info") -> None:
    """Emit ``message`` only the first time ``key`` is seen in this process.

    Used for per-frame observations (e.g. a missing ``_Matrix``) that would otherwise flood
    the log once per frame.
    """
    with _seen_lock:
        if key in _seen:
            return
        _seen.add(key)
    (warning if level == "warning" else info)(message)
