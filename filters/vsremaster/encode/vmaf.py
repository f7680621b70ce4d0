"""VMAF scores with the bundled FFmpeg's libvmaf (model ``vmaf_v0.6.1``, built in).

VMAF (Netflix, "Toward a practical perceptual video quality metric", 2016; libvmaf) scores a
distorted video against its reference on a 0-100 scale per frame. Here the reference is
always what the restoration script outputs (never the raw source: a restored title compared
with its source would score the restoration, not the encode).

Both inputs are compared at their own resolution (they must be the same size) after
conversion to the pixel format of the encode, so an 8-bit script output compared with a
10-bit encode is shifted exactly, not rescaled.
"""

from __future__ import annotations

import itertools
import json
import os
import subprocess
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import EncodeError
from .process import command_line
from .tools import ffmpeg_exe, ffmpeg_file

__all__ = ["VmafStats", "pool", "vmaf_scores"]

_TAIL = 12
_serial = itertools.count()


@dataclass(frozen=True, slots=True)
class VmafStats:
    """Pooled VMAF of a set of frames.

    Attributes:
        mean: Arithmetic mean of the per-frame scores (0-100).
        low: The ``percentile``-th percentile of the per-frame scores (0-100), e.g. the
            1st percentile: the level that all but the worst 1 % of frames reach.
        percentile: Which percentile ``low`` is (0-100).
        frames: Number of frames pooled.
    """

    mean: float
    low: float
    percentile: float
    frames: int


def pool(scores: Sequence[float] | np.ndarray, percentile: float = 1.0) -> VmafStats:
    """Mean and low percentile (linear interpolation between frames) of per-frame scores.

    Raises:
        ValueError: no scores.
    """
    values = np.asarray(scores, dtype=np.float64)
    if values.size == 0:
        raise ValueError("no VMAF scores to pool")
    return VmafStats(
        mean=float(values.mean()),
        low=float(np.percentile(values, percentile)),
        percentile=float(percentile),
        frames=int(values.size),
    )


# Frame n of each input gets timestamp n in one time base, so that libvmaf pairs the two
# inputs frame by frame. Timestamps from each input's own frame rate and time base do not
# line up at NTSC rates: a Matroska file's (1 ms) against a y4m's (1001/30000 s) made it
# score 13 pairs for 12 frames at 29.97 fps, pairing frames by time, not by number.
_RENUMBER = "settb=1/1000,setpts=N"


def _select(ranges: Sequence[tuple[int, int]] | None) -> str:
    """Filter chain that keeps frames in ``[a, b)`` ranges and renumbers timestamps."""
    if not ranges:
        return _RENUMBER
    terms = "+".join(f"between(n\\,{a}\\,{b - 1})" for a, b in ranges)
    return f"select='{terms}',{_RENUMBER}"


def vmaf_scores(
    distorted: Path,
    reference: Path,
    *,
    pix_fmt: str,
    distorted_frames: Sequence[tuple[int, int]] | None = None,
    reference_frames: Sequence[tuple[int, int]] | None = None,
    distorted_seek: tuple[float, float] | None = None,
    threads: int | None = None,
    log_dir: Path,
) -> np.ndarray:
    """Per-frame VMAF of ``distorted`` against ``reference``.

    Args:
        distorted: The encode (raw HEVC, Matroska, anything FFmpeg reads).
        reference: The script's output frames (usually a ``.y4m``).
        pix_fmt: FFmpeg pixel format both are converted to (the encode's, e.g.
            ``yuv420p10le``).
        distorted_frames / reference_frames: ``[start, end)`` frame ranges to compare, in
            each file's frame numbering; None compares every frame. Both selections must
            have the same number of frames.
        distorted_seek: (start, duration) in seconds: decode only that part of
            ``distorted`` (accurate seek: its frame 0 is then the first frame at or after
            ``start``), numbering ``distorted_frames`` from there.
        threads: libvmaf threads (default: all cores).
        log_dir: Folder for libvmaf's JSON log (kept for inspection).

    Returns:
        float64 array, one score (0-100) per compared frame, in order.

    Raises:
        EncodeError: FFmpeg fails, or the two selections differ in frame count.
    """
    # The log's name goes into the filter graph: one we make up (no ':' or quotes to escape),
    # relative to the folder FFmpeg runs in.
    log_name = f"vmaf-{os.getpid()}-{next(_serial)}.json"
    log_path = log_dir / log_name
    threads = threads or os.cpu_count() or 1
    graph = (
        f"[0:v]{_select(distorted_frames)},format={pix_fmt}[d];"
        f"[1:v]{_select(reference_frames)},format={pix_fmt}[r];"
        f"[d][r]libvmaf=log_fmt=json:log_path={log_name}:n_threads={threads}"
    )
    argv = [
        str(ffmpeg_exe()), "-hide_banner", "-nostdin", "-nostats", "-loglevel", "error",
        *(["-ss", f"{max(0.0, distorted_seek[0]):.6f}", "-t", f"{distorted_seek[1]:.6f}"]
          if distorted_seek else []),
        "-i", ffmpeg_file(distorted.resolve()), "-i", ffmpeg_file(reference.resolve()),
        "-lavfi", graph, "-f", "null", "-",
    ]  # fmt: skip
    proc = subprocess.run(
        argv, stdin=subprocess.DEVNULL, capture_output=True, check=False, cwd=log_dir
    )
    if proc.returncode != 0 or not log_path.is_file():
        tail = proc.stderr.decode("utf-8", "replace").strip().splitlines()[-_TAIL:]
        raise EncodeError(
            "VMAF measurement failed (ffmpeg exit status "
            f"{proc.returncode}):\n" + "\n".join(f"  {line}" for line in tail)
            + f"\nCommand: {command_line(argv)}"
        )
    data = json.loads(log_path.read_text(encoding="utf-8"))
    scores = np.array([f["metrics"]["vmaf"] for f in data.get("frames", [])], dtype=np.float64)
    expected = _count(distorted_frames), _count(reference_frames)
    if expected[0] is not None and expected[1] is not None and expected[0] != expected[1]:
        raise EncodeError(f"VMAF: {expected[0]} distorted frames vs {expected[1]} reference")
    want = expected[0] if expected[0] is not None else expected[1]
    if want is not None and scores.size != want:
        raise EncodeError(
            f"VMAF scored {scores.size} frames where {want} were expected "
            f"({distorted.name} is shorter than its selection?)"
        )
    return scores


def _count(ranges: Sequence[tuple[int, int]] | None) -> int | None:
    return None if ranges is None else sum(b - a for a, b in ranges)
