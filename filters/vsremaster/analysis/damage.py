"""Film damage: vertical line scratches and single-frame dust / spots.

* **Scratches** (:func:`find_scratches`): a line scratch is a thin vertical line, brighter
  or darker than the picture on *both* sides, running a long way down the frame, nearly
  perfectly vertical, and present on consecutive frames (A. Kokaram, "Detection and
  removal of line scratches in motion picture films", CVPR 1996; the DeScratch filter
  follows the same recipe: vertical blur, row-wise local extremes, length, tilt). Steps:

  1. Average every 4 rows (the frame becomes H/4 × W: noise and texture drop, vertical
     lines stay) and take the two-sided line response at each pixel: for a bright line
     ``min(v - v(x-d), v - v(x+d))`` (both sides darker), the largest over d = 2, 3 px, so
     lines up to about 4 px wide respond and step edges do not; likewise for dark lines.
  2. Threshold at ``max(3, 4 sigma)`` (8-bit levels), sigma a robust (MAD) spread of the
     response over the frame, so noise and texture raise the bar.
  3. Keep columns where the response stays above threshold, with the same polarity, for
     at least a quarter of the frame height (one-row gaps bridged, ±1 px of sway allowed).
  4. Reject what real thin structures (poles, cables, window frames) look like and
     scratches do not: lines tilted by more than 1°, lines whose rows wander off a
     straight line (curved or broken structures), lines with an opposite-polarity line
     within 4 px (a lit side and a shadow side), and lines absent from both neighbouring
     frames (single-frame hairs belong to dust).

* **Dust** (:func:`find_dust`): single-frame dirt, sparkle and drop-outs are temporal
  impulses: a pixel much brighter (darker) than *every* pixel within ±3 px of it in both the
  previous and the next frame, where those two frames agree with each other. That is the
  spike detector of Kokaram's "SDI" (spike detection index; Kokaram, Morris, Fitzgerald &
  Rayner, IEEE TIP 4(11), 1995) and of DeSpot / RemoveDirt, with the ±3 px search
  standing in for motion compensation. Spikes within 8 px of places where the two
  neighbours disagree (motion) are ignored; a spike must also stand out from its own
  surroundings in the current frame (morphological top-hat / black-hat over 15×15 px);
  1-2 px spikes must clear twice the threshold (codec flicker); connected spots larger
  than 0.5 % of the frame are discarded (flashes, cuts). Without real motion
  compensation, large fast-moving objects that cover the same place in both neighbours
  can still leave false spots (about 0.5 per mille of the frame on the ``bikes`` sample).

Both work on luma at the 8-bit scale. Measured on real footage with synthetic damage in
``tests/test_analysis_damage.py``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

import cv2
import numpy as np

from .base import Frame

__all__ = ["Dust", "ScratchLine", "Scratches", "find_dust", "find_scratches"]

_ROWS = 4  # rows averaged into one before looking for lines
_OFFSETS = (2, 3)  # line-response distances to the neighbours, px
_MIN_LEVEL = 3.0  # lowest line-response threshold, 8-bit levels
_K_SIGMA = 4.0
_MIN_LENGTH = 0.25  # shortest scratch, share of the frame height
_MAX_SLOPE = math.tan(math.radians(1.0))  # px per row
_MAX_WANDER = 0.75  # RMS px off the fitted straight line
_PAIR_GAP = 4  # px: an opposite-polarity line this close makes a structure, not a scratch


@dataclass(frozen=True, slots=True)
class ScratchLine:
    """One detected scratch.

    Attributes:
        x: column at the middle of its run (px, luma grid).
        top, bottom: first and last row (px, luma grid), inclusive.
        bright: True for a bright scratch, False for a dark one.
        contrast: median line response along it (8-bit levels).
    """

    x: float
    top: int
    bottom: int
    bright: bool
    contrast: float


def _line_response(y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Bright and dark two-sided line responses on 4-row averages, (H/4)×W float32."""
    h, w = y.shape
    v = cv2.resize(y, (w, max(h // _ROWS, 1)), interpolation=cv2.INTER_AREA)
    bright = np.full(v.shape, -np.inf, np.float32)
    dark = np.full(v.shape, -np.inf, np.float32)
    for d in _OFFSETS:
        pad = cv2.copyMakeBorder(v, 0, 0, d, d, cv2.BORDER_REPLICATE)
        left, right = pad[:, : w], pad[:, 2 * d :]
        np.maximum(bright, np.minimum(v - left, v - right), out=bright)
        np.maximum(dark, np.minimum(left - v, right - v), out=dark)
    return bright, dark


def _runs(mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per column: the longest vertical run of True (one-row gaps bridged) and its end row."""
    m = mask.copy()
    m[1:-1] |= mask[:-2] & mask[2:]
    rows = np.arange(1, len(m) + 1, dtype=np.int32)[:, None]
    last_off = np.maximum.accumulate(np.where(m, 0, rows), axis=0)
    run = rows - last_off
    end = run.argmax(0)
    return run[end, np.arange(m.shape[1])], end


def _candidates(resp: np.ndarray, threshold: float, min_rows: int) -> list[tuple[int, int, int]]:
    """(column, first row, last row) of long vertical runs of ``resp > threshold``."""
    on = (resp > threshold).astype(np.uint8)
    on = cv2.dilate(on, np.ones((1, 3), np.uint8)).astype(bool)  # ±1 px of sway
    length, end = _runs(on)
    cols = length >= min_rows
    out = []
    edges = np.flatnonzero(np.diff(np.concatenate(([0], cols.view(np.int8), [0]))))
    for a, b in zip(edges[::2], edges[1::2]):
        c = a + int(np.argmax(length[a:b]))
        out.append((c, int(end[c] - length[c] + 1), int(end[c])))
    return out


def _straight(resp: np.ndarray, c: int, top: int, bottom: int) -> tuple[bool, float, float]:
    """Whether the run at column ``c`` is a straight, near-vertical line; its x and contrast."""
    lo, hi = max(c - 2, 0), min(c + 3, resp.shape[1])
    seg = resp[top : bottom + 1, lo:hi]
    peak = seg.argmax(1).astype(np.float64) + lo
    rows = np.arange(len(peak), dtype=np.float64) * _ROWS
    slope, icpt = np.polyfit(rows, peak, 1) if len(peak) > 2 else (0.0, float(c))
    wander = float(np.sqrt(np.mean((peak - (slope * rows + icpt)) ** 2)))
    ok = abs(slope) <= _MAX_SLOPE and wander <= _MAX_WANDER
    return ok, float(np.median(peak)), float(np.median(seg.max(1)))


def _lines(y: np.ndarray) -> tuple[list[ScratchLine], float, int]:
    """Spatial scratch candidates of one frame; the response threshold and run length used."""
    bright, dark = _line_response(y)
    both = np.concatenate((bright[::2, ::2].ravel(), dark[::2, ::2].ravel()))
    sigma = float(np.median(np.abs(both))) / 0.6745
    threshold = max(_MIN_LEVEL, _K_SIGMA * sigma)
    min_rows = max(3, int(round(_MIN_LENGTH * bright.shape[0])))
    found = {True: _candidates(bright, threshold, min_rows),
             False: _candidates(dark, threshold, min_rows)}
    lines = []
    for polarity, resp in ((True, bright), (False, dark)):
        others = np.array([c for c, _, _ in found[not polarity]], dtype=np.int64)
        for c, top, bottom in found[polarity]:
            if others.size and np.min(np.abs(others - c)) <= _PAIR_GAP:
                continue
            ok, x, contrast = _straight(resp, c, top, bottom)
            if ok:
                lines.append(ScratchLine(x, top * _ROWS, (bottom + 1) * _ROWS - 1, polarity,
                                         contrast))
    return lines, threshold, min_rows


def _present(y: np.ndarray, line: ScratchLine, threshold: float, min_rows: int) -> bool:
    """Whether ``y`` (a neighbouring frame) has a long line like ``line`` within 2 px."""
    x = int(round(line.x))
    lo, hi = max(x - 8, 0), min(x + 9, y.shape[1])
    bright, dark = _line_response(np.ascontiguousarray(y[:, lo:hi]))
    runs = _candidates(bright if line.bright else dark, threshold, min_rows)
    return any(abs(c + lo - line.x) <= 2 for c, _, _ in runs)


def find_scratches(
    y: np.ndarray, prev: np.ndarray | None = None, next_: np.ndarray | None = None
) -> list[ScratchLine]:
    """Vertical line scratches in a luma frame (see the module docstring for the method).

    Args:
        y: H×W float32 luma, 8-bit scale.
        prev, next_: the neighbouring frames' luma (same shape); a line must also be
            present (same polarity, within 2 px, as long a run) in at least one of them.
            None skips the check.

    Returns:
        The scratches found, possibly empty.
    """
    lines, threshold, min_rows = _lines(y)
    neighbours = [f for f in (prev, next_) if f is not None]
    if not neighbours:
        return lines
    return [ln for ln in lines if any(_present(f, ln, threshold, min_rows) for f in neighbours)]


_DUST_REACH = 3  # px searched in the neighbouring frames (motion tolerance)
_DUST_MIN = 12.0  # lowest spike threshold, 8-bit levels
_OPEN_KERNEL = np.ones((3, 3), np.uint8)
_MOTION_KERNEL = np.ones((17, 17), np.uint8)  # ±8 px around motion is not searched
_SPOT_KERNEL = np.ones((15, 15), np.uint8)  # spots up to about 14 px across
_DUST_MAX_AREA = 0.005  # share of the frame: larger outlier regions are motion, not dust


def find_dust(
    prev: np.ndarray, cur: np.ndarray, next_: np.ndarray, *, with_mask: bool = False
) -> tuple[int, float, np.ndarray | None]:
    """Single-frame spots (dust, dirt, sparkle) in ``cur``: temporal impulses.

    Args:
        prev, cur, next_: H×W float32 luma of three consecutive frames, 8-bit scale.
        with_mask: also return the spot mask.

    Returns:
        ``(count, coverage, mask)``: number of spots, share (0-1) of the frame's pixels
        they cover, and the H×W uint8 mask (255 on spots; None unless ``with_mask``).
    """
    # 8-bit copies: the morphology and saturating arithmetic below are fastest on bytes
    # (|x| rounded and clipped to 255: the few sub-black values of float clips fold up).
    prev, cur, next_ = (cv2.convertScaleAbs(f) for f in (prev, cur, next_))
    k = np.ones((2 * _DUST_REACH + 1, 2 * _DUST_REACH + 1), np.uint8)
    hi = cv2.max(cv2.dilate(prev, k), cv2.dilate(next_, k))
    lo = cv2.min(cv2.erode(prev, k), cv2.erode(next_, k))
    # Noise: robust spread of the frame difference (motion touches few pixels).
    diff = cv2.absdiff(cur, prev)
    sigma = float(np.median(diff[::4, ::4])) / 0.6745 / math.sqrt(2)  # whole levels
    threshold = max(_DUST_MIN, 4.0 * sigma)
    # Where the neighbours disagree something moves; a spike next to motion is most likely
    # a moving object uncovered in this frame only, so motion and its surroundings are out.
    moving = cv2.compare(cv2.absdiff(prev, next_), threshold, cv2.CMP_GE)
    moving = cv2.morphologyEx(moving, cv2.MORPH_OPEN, _OPEN_KERNEL)  # not their own specks
    still = cv2.bitwise_not(cv2.dilate(moving, _MOTION_KERNEL))
    amplitude = cv2.max(cv2.subtract(cur, hi), cv2.subtract(lo, cur))
    spikes = cv2.bitwise_and(cv2.compare(amplitude, threshold, cv2.CMP_GT), still)
    # A spot also stands out from its own surroundings in this frame (top-hat / black-hat):
    # smooth, slowly varying areas of fast-moving objects do not.
    local = cv2.max(cv2.morphologyEx(cur, cv2.MORPH_TOPHAT, _SPOT_KERNEL),
                    cv2.morphologyEx(cur, cv2.MORPH_BLACKHAT, _SPOT_KERNEL))
    spikes = cv2.bitwise_and(spikes, cv2.compare(local, threshold / 2, cv2.CMP_GT))
    if not cv2.countNonZero(spikes):
        return 0, 0.0, spikes if with_mask else None
    # (connectedComponents plus bincount: much faster than ...WithStats on a sparse mask)
    n, labels = cv2.connectedComponents(spikes, connectivity=8)
    xy = cv2.findNonZero(spikes).reshape(-1, 2)  # (x, y); much faster than np.nonzero
    where = (xy[:, 1], xy[:, 0])
    ids = labels[where]
    area = np.bincount(ids, minlength=n)
    # 1-2 px spots must stand out twice as far: single flickering pixels of codec noise
    # are otherwise the commonest false spot.
    strong = np.zeros(n, bool)
    strong[ids[amplitude[where] > 2 * threshold]] = True
    ok = (strong | (area >= 3)) & (area <= _DUST_MAX_AREA * cur.size)
    ok[0] = False
    keep = np.flatnonzero(ok)
    mask = None
    if with_mask:
        mask = np.where(ok, np.uint8(255), np.uint8(0))[labels]
    return int(keep.size), float(area[keep].sum()) / cur.size, mask


class Scratches:
    """Per-frame vertical line scratches (needs the previous and next frame).

    Keys: ``count`` (scratch lines found) and ``length`` (their summed length in frame
    heights: 0 on clean footage, 1.0 = one scratch from top to bottom). Costs about
    3 ms per 720×480 frame on one core (``sampled``).
    """

    name: ClassVar[str] = "Scratches"
    keys: ClassVar[tuple[str, ...]] = ("count", "length")
    before: ClassVar[int] = 1
    after: ClassVar[int] = 1
    sampled: ClassVar[bool] = True
    plot: ClassVar[tuple[str, ...]] = ("length",)
    worst: ClassVar[str] = "length"

    def measure(self, frames: Sequence[Frame]) -> dict[str, float]:
        """Find scratches in ``frames[1]`` (frames 0 and 2 are its neighbours).

        Returns:
            ``{"count": n, "length": frame heights}``.
        """
        prev, cur, nxt = (f.y for f in frames)
        lines = find_scratches(cur, prev, nxt)
        height = cur.shape[0]
        return {"count": float(len(lines)),
                "length": sum(ln.bottom - ln.top + 1 for ln in lines) / height}

    def summarize(self, series: Mapping[str, np.ndarray]) -> dict[str, Any]:
        """Mean and 90th percentile of the scratch length; share of frames with scratches.

        Returns:
            ``length`` (mean frame heights of scratch per measured frame), ``length_p90``,
            ``frames_with`` (share 0-1 of measured frames with at least one scratch),
            ``count`` (median); None when no frame of the span was measured.
        """
        return _damage_summary(series["count"], series["length"], "length")


class Dust:
    """Per-frame single-frame spots: dust, dirt, sparkle, drop-outs (needs both neighbours).

    Keys: ``count`` (spots found) and ``coverage`` (share 0-1 of the frame's pixels they
    cover; 0 on clean footage). Costs about 3 ms per 720×480 frame on one core
    (``sampled``).
    """

    name: ClassVar[str] = "Dust"
    keys: ClassVar[tuple[str, ...]] = ("count", "coverage")
    before: ClassVar[int] = 1
    after: ClassVar[int] = 1
    sampled: ClassVar[bool] = True
    plot: ClassVar[tuple[str, ...]] = ("coverage",)
    worst: ClassVar[str] = "coverage"

    def measure(self, frames: Sequence[Frame]) -> dict[str, float]:
        """Find spots in ``frames[1]`` against ``frames[0]`` and ``frames[2]``.

        Returns:
            ``{"count": spots, "coverage": share}``.
        """
        count, coverage, _ = find_dust(frames[0].y, frames[1].y, frames[2].y)
        return {"count": float(count), "coverage": coverage}

    def summarize(self, series: Mapping[str, np.ndarray]) -> dict[str, Any]:
        """Mean and 90th percentile of the coverage; share of frames with spots.

        Returns:
            ``coverage`` (mean share of pixels), ``coverage_p90``, ``frames_with`` (share
            0-1 of measured frames with at least one spot), ``count`` (median spots per
            frame); None when no frame of the span was measured.
        """
        return _damage_summary(series["count"], series["coverage"], "coverage")


def _damage_summary(count: np.ndarray, amount: np.ndarray, key: str) -> dict[str, Any]:
    c = np.asarray(count, dtype=np.float64)
    a = np.asarray(amount, dtype=np.float64)
    measured = np.isfinite(c) & np.isfinite(a)
    if not measured.any():
        return {key: None, f"{key}_p90": None, "frames_with": None, "count": None}
    c, a = c[measured], a[measured]
    return {
        key: round(float(a.mean()), 6),
        f"{key}_p90": round(float(np.percentile(a, 90)), 6),
        "frames_with": round(float(np.mean(c > 0)), 4),
        "count": float(np.median(c)),
    }
