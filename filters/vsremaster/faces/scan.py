"""The face pass over a clip: detect in every frame, find scene cuts, track, write the sidecar.

``vsremaster faces track SRC -o TITLE.faces.json`` runs :func:`scan_faces` and
:func:`write_sidecar`; ``face_enhance`` and ``overlay`` read the sidecar back with
:func:`read_sidecar`. Scene cuts come from the caller (an analysis report), or are measured in
the same pass with the analysis's scene-change features (:mod:`vsremaster.analysis.scenes`).

Sidecar (``TITLE.faces.json``, version 1)::

    {"format": "vsremaster.faces", "version": 1,
     "source": {...}, "clip": {"width", "height", "num_frames", "fps": "30000/1001"},
     "cuts": [first frames of new scenes],
     "detector": {"model", "family", "landmarks", "score", "tiles", "normalise"},
     "tracking": {parameters},
     "stats": {"frames", "frames_with_faces", "detections", "detect_fps", "track_seconds"},
     "tracks": [{"id", "start", "end", "boxes", "raw", "scores", "landmarks"}, ...]}

Boxes ``(x0, y0, x1, y1)`` and landmarks are in pixels of the scanned clip; per-track arrays
hold one row per frame ``start..end-1`` (``raw``/``scores`` are null on bridged frames).
A track's ``landmarks`` are ``[frames][K][2]`` with the K points named, in order, by
``detector.landmarks``: BlazeFace (``family`` ``blazeface``) gives 6, ``right_eye, left_eye,
nose_tip, mouth_centre, right_ear, left_ear``; YuNet, SCRFD and RetinaFace give 5,
``right_eye, left_eye, nose_tip, right_mouth_corner, left_mouth_corner`` ("right" is the
person's right, the image's left). Files written before ``family`` and ``landmarks`` were
recorded come from BlazeFace. Readers (alignment, overlay) go by K.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import Any

import numpy as np
import vapoursynth as vs

from ..errors import InputError
from ..runtime.frames import to_rgb24
from .detect import FaceDetector
from .track import Detection, Track, track_faces

__all__ = ["FaceScan", "scan_faces", "write_sidecar", "read_sidecar", "frame_rgb"]

FORMAT = "vsremaster.faces"
VERSION = 1


@dataclass(slots=True)
class FaceScan:
    """Result of a face pass (what the sidecar holds).

    Attributes:
        width, height, num_frames, fps: the scanned clip.
        cuts: first frames of new scenes (tracks never cross them).
        tracks: the smoothed tracks.
        detector, tracking: the settings used.
        stats: counts and timings of the pass.
        detections: per-frame raw detections (kept in memory only; not in the sidecar).
        source: free-form description of what was scanned.
    """

    width: int
    height: int
    num_frames: int
    fps: Fraction
    cuts: list[int]
    tracks: list[Track]
    detector: dict[str, Any] = field(default_factory=dict)
    tracking: dict[str, Any] = field(default_factory=dict)
    stats: dict[str, Any] = field(default_factory=dict)
    detections: list[list[Detection]] | None = None
    source: dict[str, Any] = field(default_factory=dict)

    def tracks_at(self, n: int) -> list[tuple[Track, int]]:
        """``(track, row)`` of every track present in frame ``n``."""
        return [(t, n - t.start) for t in self.tracks if t.start <= n < t.end]

    def to_dict(self) -> dict[str, Any]:
        return {
            "format": FORMAT, "version": VERSION, "source": self.source,
            "clip": {"width": self.width, "height": self.height, "num_frames": self.num_frames,
                     "fps": f"{self.fps.numerator}/{self.fps.denominator}"},
            "cuts": list(self.cuts), "detector": self.detector, "tracking": self.tracking,
            "stats": self.stats, "tracks": [t.to_dict() for t in self.tracks],
        }  # fmt: skip


def frame_rgb(f: vs.VideoFrame) -> np.ndarray:
    """``(H, W, 3)`` uint8 copy of an RGB24 frame."""
    return np.dstack([np.asarray(f[p]) for p in range(3)])


def scan_faces(
    clip: vs.VideoNode,
    detector: FaceDetector | None = None,
    *,
    cuts: Sequence[int] | None = None,
    tracking: Mapping[str, Any] | None = None,
    progress: Callable[[int, int], None] | None = None,
    keep_detections: bool = False,
) -> FaceScan:
    """Detect faces in every frame of ``clip``, then track them within scenes.

    Args:
        clip: constant-format progressive clip (YUV, RGB or GRAY, any depth).
        detector: the detector (default: :class:`FaceDetector` with its defaults).
        cuts: scene cuts (first frames of new scenes); None measures them in the same pass.
        tracking: keyword arguments for :func:`~vsremaster.faces.track.track_faces`.
        progress: ``progress(done, total)`` after each frame.
        keep_detections: keep the per-frame detections in the result (for benchmarks).

    Raises:
        InputError: variable format, or an interlaced frame (deinterlace first).
    """
    from ..analysis import annotate, prop_name
    from ..analysis.scenes import SceneChange, find_cuts

    detector = detector or FaceDetector()
    tracking = dict(tracking or {})
    measured = SceneChange() if cuts is None else None
    src = annotate(clip, [measured]) if measured else clip
    rgb = to_rgb24(src, "faces")
    total = clip.num_frames
    names = [prop_name(measured, k) for k in measured.keys] if measured else []
    series = {name: np.full(total, np.nan) for name in names}
    per_frame: list[list[Detection]] = []
    start = time.perf_counter()
    try:
        for n, f in enumerate(rgb.frames(close=True)):
            for name in names:
                series[name][n] = f.props.get(name, np.nan)
            per_frame.append(detector.detect(frame_rgb(f)))
            if progress is not None:
                progress(n + 1, total)
    except vs.Error as exc:
        raise InputError(f"faces: {exc}") from exc
    detect_seconds = time.perf_counter() - start
    if measured:
        cuts = find_cuts({k: series[prop_name(measured, k)] for k in measured.keys})
    cuts = sorted(int(c) for c in cuts if 0 < int(c) < total)
    t0 = time.perf_counter()
    tracks = track_faces(per_frame, cuts=cuts, **tracking)
    track_seconds = time.perf_counter() - t0
    return FaceScan(
        width=clip.width, height=clip.height, num_frames=total,
        fps=Fraction(clip.fps.numerator, clip.fps.denominator), cuts=cuts, tracks=tracks,
        detector={"model": str(detector.model), "family": detector.family,
                  "landmarks": list(detector.landmark_names), "score": detector.score,
                  "tiles": detector.tiles, "normalise": detector.normalise},
        tracking=tracking,
        stats={"frames": total, "frames_with_faces": sum(1 for d in per_frame if d),
               "detections": sum(len(d) for d in per_frame),
               "detect_fps": round(total / max(detect_seconds, 1e-9), 2),
               "track_seconds": round(track_seconds, 3)},
        detections=per_frame if keep_detections else None,
    )  # fmt: skip


def write_sidecar(scan: FaceScan, path: Path) -> Path:
    """Write ``scan`` as JSON to ``path`` atomically (a partial file never has the final name)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(f".{path.name}.partial-{os.getpid()}")
    try:
        partial.write_text(json.dumps(scan.to_dict(), indent=1) + "\n", encoding="utf-8")
        os.replace(partial, path)
    finally:
        partial.unlink(missing_ok=True)
    return path


def read_sidecar(path: Path) -> FaceScan:
    """Read a ``TITLE.faces.json`` written by :func:`write_sidecar`.

    Raises:
        InputError: missing, not JSON, another format or version, or malformed tracks.
    """
    path = Path(path)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise InputError(f"cannot read face tracks {path}: {exc}") from exc
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        raise InputError(f"{path} is not a vsremaster faces file (format {FORMAT!r})")
    if data.get("version") != VERSION:
        raise InputError(f"{path}: faces file version {data.get('version')!r}, "
                         f"this vsremaster reads version {VERSION}")
    try:
        clip = data["clip"]
        return FaceScan(
            width=int(clip["width"]), height=int(clip["height"]),
            num_frames=int(clip["num_frames"]), fps=Fraction(clip["fps"]),
            cuts=[int(c) for c in data["cuts"]],
            tracks=[Track.from_dict(t) for t in data["tracks"]],
            detector=data.get("detector", {}), tracking=data.get("tracking", {}),
            stats=data.get("stats", {}), source=data.get("source", {}),
        )  # fmt: skip
    except (KeyError, TypeError, ValueError) as exc:
        raise InputError(f"{path}: malformed faces file ({exc!r})") from exc
