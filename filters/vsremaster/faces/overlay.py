"""Preview of face tracks: boxes, landmarks and track ids drawn on the clip.

Open the result in vspreview/vsview to check that tracks are stable, end at scene cuts and
bridge short misses before running the restoration.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import vapoursynth as vs

from ..errors import InputError
from ..runtime.frames import to_rgb24
from .scan import FaceScan, frame_rgb, read_sidecar

__all__ = ["overlay"]

core = vs.core

# BGR-free palette (RGB), one colour per track id modulo its length
_PALETTE = [(255, 64, 64), (64, 200, 255), (255, 210, 0), (120, 255, 90), (255, 90, 255),
            (255, 150, 40), (150, 120, 255), (0, 255, 200)]


def _draw(img: np.ndarray, scan: FaceScan, n: int, thickness: int) -> np.ndarray:
    import cv2

    if n in scan.cuts:
        cv2.putText(img, "scene cut", (8, 24), cv2.FONT_HERSHEY_SIMPLEX, 0.7, (255, 255, 255), 2)
    for track, row in scan.tracks_at(n):
        colour = _PALETTE[track.id % len(_PALETTE)]
        x0, y0, x1, y1 = (round(v) for v in track.boxes[row])
        bridged = np.isnan(track.scores[row])
        cv2.rectangle(img, (x0, y0), (x1, y1), colour, thickness,
                      lineType=cv2.LINE_4 if bridged else cv2.LINE_AA)
        if not bridged:  # the raw detection, thin and grey: how far smoothing moved the box
            rx0, ry0, rx1, ry1 = (round(v) for v in track.raw[row])
            cv2.rectangle(img, (rx0, ry0), (rx1, ry1), (160, 160, 160), 1)
        if track.landmarks is not None:
            for x, y in track.landmarks[row]:
                cv2.circle(img, (round(x), round(y)), max(1, thickness), colour, -1)
        label = f"#{track.id}" + (" bridged" if bridged else f" {track.scores[row]:.2f}")
        cv2.putText(img, label, (x0, max(12, y0 - 4)), cv2.FONT_HERSHEY_SIMPLEX, 0.45, colour, 1)
    return img


def overlay(clip: vs.VideoNode, tracks: FaceScan | str | Path, *, thickness: int = 2) -> vs.VideoNode:
    """Draw face tracks on ``clip``.

    Args:
        clip: the clip the tracks were made from (same size and length).
        tracks: a :class:`FaceScan` or the path of a ``TITLE.faces.json`` sidecar.
        thickness: line thickness in pixels.

    Returns:
        An RGB24 clip: each track's smoothed box and landmarks in its colour with its id and
        confidence ("bridged" on frames filled across a miss), the raw detection in thin grey,
        and "scene cut" on the first frame of each new scene.

    Raises:
        InputError: the tracks were made from a clip of another size or length.
    """
    scan = tracks if isinstance(tracks, FaceScan) else read_sidecar(Path(tracks))
    if (clip.width, clip.height, clip.num_frames) != (scan.width, scan.height, scan.num_frames):
        raise InputError(
            f"overlay: tracks are for {scan.width}x{scan.height}, {scan.num_frames} frames; "
            f"the clip is {clip.width}x{clip.height}, {clip.num_frames} frames"
        )
    rgb = to_rgb24(clip, "overlay")

    def draw(n: int, f: vs.VideoFrame) -> vs.VideoFrame:
        img = _draw(frame_rgb(f), scan, n, thickness)
        out = f.copy()
        for p in range(3):
            np.copyto(np.asarray(out[p]), img[..., p])
        return out

    return core.std.ModifyFrame(rgb, rgb, draw)
