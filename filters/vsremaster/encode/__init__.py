"""Encoding generated scripts: vspipe | x265 (or FFmpeg's libx265) into Matroska with audio.

    from vsremaster.encode import encode, media_info
    result = encode(Path("film.vpy"), Path("film.mkv"), crf=18, preset="slow")
    print(result.frames, result.commands)
    # per-scene CRF for a mean VMAF of 95 against the script's frames, resumable chunks
    result = encode(Path("film.vpy"), Path("film.mkv"), target=TargetQuality(vmaf=95), chunks=2)
    info = media_info(result.output)  # codec, size, bit depth, frames, duration, audio...

See :mod:`vsremaster.encode.pipeline` for the steps and failure handling.

The names below are imported lazily: ``python -m vsremaster.encode.probe`` (the script
probe's child process) then imports only what it needs.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .inspect import MediaInfo, media_info
    from .pipeline import (
        X265_DEFAULTS,
        X265_PRESETS,
        EncodeInterrupted,
        EncodeResult,
        encode,
        ffmpeg_x265_params,
        parse_x265_params,
        x265_cli_args,
    )
    from .probe import ScriptInfo, probe_script
    from .progress import FrameProgress, parse_vspipe_progress
    from .target import Scene, TargetQuality
    from .tools import ffmpeg_exe, vspipe_exe, x265_exe

_EXPORTS = {
    "encode": "pipeline",
    "EncodeResult": "pipeline",
    "EncodeInterrupted": "pipeline",
    "X265_PRESETS": "pipeline",
    "X265_DEFAULTS": "pipeline",
    "TargetQuality": "target",
    "Scene": "target",
    "parse_x265_params": "pipeline",
    "x265_cli_args": "pipeline",
    "ffmpeg_x265_params": "pipeline",
    "probe_script": "probe",
    "ScriptInfo": "probe",
    "media_info": "inspect",
    "MediaInfo": "inspect",
    "FrameProgress": "progress",
    "parse_vspipe_progress": "progress",
    "vspipe_exe": "tools",
    "x265_exe": "tools",
    "ffmpeg_exe": "tools",
}

__all__ = [
    "X265_DEFAULTS",
    "X265_PRESETS",
    "EncodeInterrupted",
    "EncodeResult",
    "FrameProgress",
    "MediaInfo",
    "Scene",
    "ScriptInfo",
    "TargetQuality",
    "encode",
    "ffmpeg_exe",
    "ffmpeg_x265_params",
    "media_info",
    "parse_vspipe_progress",
    "parse_x265_params",
    "probe_script",
    "vspipe_exe",
    "x265_cli_args",
    "x265_exe",
]


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{module}", __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
