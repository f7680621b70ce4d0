"""Compression damage (blocking, ringing) and blur, measured without a reference.

* **Blockiness** (:func:`blockiness`): block-transform codecs (MPEG-2, MPEG-4, H.264) quantise
  8×8 blocks independently, so at low bitrates the luma jumps at block boundaries. For
  every column boundary ``x`` (and row boundary ``y``), the mean absolute difference across
  it is folded modulo 8; the blockiness is the mean difference across the block-boundary
  phase divided by the mean across the six phases inside the block, averaged over the
  horizontal and vertical directions: 1.0 for content with no grid, higher with blocking
  (this boundary-vs-interior gradient ratio is the classic no-reference measure: Wang,
  Sheikh & Bovik, "No-reference perceptual quality assessment of JPEG compressed images",
  ICIP 2002, terms B and A; the modulo-8 folding follows Vlachos, "Detection of blocking
  artifacts in compressed video", Electronics Letters 36(13), 2000). ``blockiness`` uses the
  8×8 grid anchored at the frame's top-left, where encoders put it; ``blockinessAny``
  takes the strongest of the 8 grid phases per direction, which finds the grid of a
  cropped source but reads about 0.1 higher on clean footage.
* **Ringing** (:func:`ringing`): quantised DCT coefficients leave oscillations ("mosquito
  noise") in the smooth areas next to strong edges. It is the mean high-frequency activity
  (|I - Gaussian_1px(I)|, 8-bit levels) in the smooth pixels 2-4 px from a strong edge,
  minus the same activity in smooth pixels far from edges (noise cancels out; the detail
  that real edges carry beside them does not, so clean footage reads 0.4-1.4), rising by
  0.3-0.9 with MPEG-2 mosquito noise (measured: ``tests/test_analysis_damage.py``). After
  the edge-based
  ringing-region measures of Feng & Allebach ("Measurement of ringing artifacts in JPEG
  images", Proc. SPIE 6076, 2006) and Liu, Klomp & Heynderickx ("A perceptually relevant
  approach to ringing region detection", IEEE TIP 19(6), 2010). At the lowest bitrates
  the codec smooths everything and ringing falls again while blocking and blur rise.
* **Blur** (:func:`blur_sigma`): the edge-spread of strong, isolated step edges. For a
  step of contrast ``h`` blurred by a Gaussian of std ``s``, the peak gradient is
  ``h / (sqrt(2 pi) s)``; so each edge gives ``s = h / (sqrt(2 pi) g_max)`` (measured after a
  1-px Gaussian pre-filter against noise, which is then subtracted in quadrature), and the
  frame's blur is the median over its edges, in pixels. This is the edge-width idea of
  Marziliano, Dufaux, Winkler & Ebrahimi ("A no-reference perceptual blur metric", ICIP
  2002; FFmpeg's ``blurdetect``) made noise-robust: Marziliano's width between intensity
  extrema collapses to 1-2 px on noisy frames, the contrast/slope ratio does not (cf. the
  gradient-based local blur scale of Elder & Zucker, IEEE TPAMI 20(7), 1998). Useful range
  about 0.5-3.5 px (blur beyond that saturates).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any, ClassVar

import cv2
import numpy as np

from .base import Frame, span_stats

__all__ = ["Blur", "Compression", "blockiness", "blur_sigma", "ringing"]

_BLOCK = 8
_INSIDE = (-3, -2, -1, 1, 2, 3)  # phases relative to the boundary, inside the blocks


def _phase_ratios(profile: np.ndarray) -> np.ndarray:
    """Boundary/interior ratio for each of the 8 phases of a 1-D mean-difference profile.

    ``profile[i]`` is the mean |I(i+1) - I(i)|; phase ``j`` is the boundary between pixel
    ``8k + j`` and ``8k + j + 1`` (``j = 7`` for the frame-anchored grid).
    """
    n = len(profile) // _BLOCK * _BLOCK
    fold = profile[:n].reshape(-1, _BLOCK).mean(0, dtype=np.float64)
    inside = np.mean([np.roll(fold, -k) for k in _INSIDE], axis=0)
    return fold / np.maximum(inside, 1e-6)


def blockiness(y: np.ndarray) -> tuple[float, float]:
    """Blocking on the 8×8 grid: boundary vs interior luma differences.

    Args:
        y: H×W float32 luma, 8-bit scale (H, W >= 16).

    Returns:
        ``(aligned, any_grid)``: the ratio on the frame-anchored grid and on the strongest
        grid phase, each averaged over the horizontal and vertical directions. About 1.0
        without blocking (0.95-1.1 on clean footage), 1.3-2 for heavily blocky MPEG-2 or
        starved H.264. NaN for frames under 24 pixels in either direction.
    """
    if min(y.shape) < 3 * _BLOCK:
        return math.nan, math.nan
    dx = cv2.absdiff(y[:, 1:], y[:, :-1])
    dy = cv2.absdiff(y[1:, :], y[:-1, :])
    cols = cv2.reduce(dx, 0, cv2.REDUCE_AVG).ravel()
    rows = cv2.reduce(dy, 1, cv2.REDUCE_AVG).ravel()
    rh, rv = _phase_ratios(cols), _phase_ratios(rows)
    return float((rh[7] + rv[7]) / 2), float((rh.max() + rv.max()) / 2)


_KERNEL9 = np.ones((9, 9), np.uint8)
_KERNEL3 = np.ones((3, 3), np.uint8)


def ringing(y: np.ndarray) -> float:
    """Mosquito-noise activity beside strong edges, in 8-bit levels.

    Args:
        y: H×W float32 luma, 8-bit scale.

    Returns:
        Mean |I - blur(I)| in smooth pixels 2-4 px from strong edges minus that in smooth
        pixels more than 4 px from them: 0.4-1.3 on clean footage (edges have detail
        beside them), rising by 0.2-1 with visible mosquito noise. NaN when the frame has
        too few strong edges or smooth areas.
    """
    g = cv2.Sobel(y, cv2.CV_32F, 1, 0)
    gy = cv2.Sobel(y, cv2.CV_32F, 0, 1)
    cv2.add(np.abs(g, out=g), np.abs(gy, out=gy), dst=g)  # L1 Sobel magnitude
    # Strong edges: above 100 (a step of about 25 levels) and in the frame's top 3 %.
    strong = max(100.0, float(np.percentile(g[::4, ::4], 97)))
    edges = cv2.compare(g, strong, cv2.CMP_GT)
    near = cv2.dilate(edges, _KERNEL9)
    smooth = cv2.compare(g, strong / 4, cv2.CMP_LT)
    # (in place where possible: full-frame temporaries are what these metrics spend on)
    halo = cv2.subtract(near, cv2.dilate(edges, _KERNEL3, dst=edges), dst=edges)
    cv2.bitwise_and(smooth, halo, dst=halo)
    far = cv2.bitwise_and(smooth, cv2.bitwise_not(near, dst=near), dst=near)
    if cv2.countNonZero(halo) < 200 or cv2.countNonZero(far) < 200:
        return math.nan
    activity = cv2.GaussianBlur(y, (0, 0), 1.0, dst=gy)
    cv2.absdiff(y, activity, dst=activity)
    return float(cv2.mean(activity, halo)[0] - cv2.mean(activity, far)[0])


_PRE_SIGMA = 1.0  # Gaussian pre-filter (px) against noise, removed again in quadrature
_REACH = 9  # contrast is measured between x - 9 and x + 9
_MIN_CONTRAST = 20.0  # 8-bit levels


def _edge_spreads(s: np.ndarray) -> np.ndarray:
    """Edge-spread std (px, pre-filter included) of isolated step edges along rows of ``s``."""
    g = np.abs(s[:, 2:] - s[:, :-2]) * np.float32(0.5)  # g[:, i] is at column i + 1
    r = _REACH
    w = g.shape[1]
    if w <= 2 * r + 2:
        return np.empty(0, np.float32)
    c = g[:, r : w - r]
    peak = (c >= g[:, r - 1 : w - r - 1]) & (c > g[:, r + 1 : w - r + 1])
    contrast = np.abs(s[:, 2 * r + 1 : w + 1] - s[:, 1 : w - 2 * r + 1])
    # Isolated: the gradient near the ends of the measuring span is small, so the contrast
    # is this edge's own step and not a neighbour's.
    isolated = (g[:, 2 : w - 2 * r + 2] < 0.3 * c) & (g[:, 2 * r - 2 : w - 2] < 0.3 * c)
    keep = peak & isolated & (contrast >= _MIN_CONTRAST) & (c >= 1.0)
    return contrast[keep] / (math.sqrt(2 * math.pi) * c[keep])


def blur_sigma(y: np.ndarray, *, step: int = 3) -> tuple[float, int]:
    """Gaussian-equivalent blur of the frame's strong edges, in pixels.

    Args:
        y: H×W float32 luma, 8-bit scale.
        step: use every ``step``-th row (for vertical edges) and column (horizontal ones).

    Returns:
        ``(sigma, edges)``: the median blur std over the measured edges (0 for a perfectly
        sharp step; about 1-1.3 for sharp real footage, 2-3 for soft or upscaled video),
        NaN when fewer than 20 edges qualify; and the number of edges measured.
    """
    s = cv2.GaussianBlur(y, (0, 0), _PRE_SIGMA)
    spreads = np.concatenate(
        [_edge_spreads(s[::step]), _edge_spreads(np.ascontiguousarray(s[:, ::step].T))]
    )
    if spreads.size < 20:
        return math.nan, int(spreads.size)
    total = float(np.median(spreads))
    return math.sqrt(max(total * total - _PRE_SIGMA**2, 0.0)), int(spreads.size)


class Compression:
    """Per-frame codec damage on luma: blocking on the 8×8 grid and ringing.

    Keys: ``blockiness`` (frame-anchored grid: 0.95-1.1 clean, 1.3-2 for blocky MPEG-2 or
    starved H.264), ``blockinessAny`` (strongest grid phase, for cropped sources; ~0.1
    higher on clean footage), ``ringing`` (8-bit levels of extra activity beside strong
    edges: 0.4-1.4 clean, higher with mosquito noise; compare a title with itself rather
    than with a fixed bar). About 3 ms per 720×480 frame on one core (``sampled``).
    """

    name: ClassVar[str] = "Compression"
    keys: ClassVar[tuple[str, ...]] = ("blockiness", "blockinessAny", "ringing")
    before: ClassVar[int] = 0
    after: ClassVar[int] = 0
    sampled: ClassVar[bool] = True
    plot: ClassVar[tuple[str, ...]] = ("blockiness", "blockinessAny", "ringing")
    worst: ClassVar[str] = "blockiness"

    def measure(self, frames: Sequence[Frame]) -> dict[str, float]:
        """Measure ``frames[0]``'s luma (float32, 8-bit scale).

        Returns:
            ``{"blockiness", "blockinessAny", "ringing"}`` (floats, NaN when undefined).
        """
        y = frames[0].y
        aligned, any_grid = blockiness(y)
        return {"blockiness": aligned, "blockinessAny": any_grid, "ringing": ringing(y)}

    def summarize(self, series: Mapping[str, np.ndarray]) -> dict[str, Any]:
        """Median and 10th/90th percentiles of each key over the span.

        Returns:
            ``blockiness``, ``blockiness_any``, ``ringing`` with ``_p10``/``_p90``; None
            when no frame of the span was measured.
        """
        return {
            **span_stats(series["blockiness"], "blockiness"),
            **span_stats(series["blockinessAny"], "blockiness_any"),
            **span_stats(series["ringing"], "ringing"),
        }


class Blur:
    """Per-frame sharpness: Gaussian-equivalent blur of strong edges, in pixels.

    Keys: ``sigma`` (median edge blur std in px, NaN with fewer than 20 usable edges) and
    ``edges`` (how many edges it was measured on). About 1.5 ms per 720×480 frame on one
    core (``sampled``).
    """

    name: ClassVar[str] = "Blur"
    keys: ClassVar[tuple[str, ...]] = ("sigma", "edges")
    before: ClassVar[int] = 0
    after: ClassVar[int] = 0
    sampled: ClassVar[bool] = True
    plot: ClassVar[tuple[str, ...]] = ("sigma",)
    worst: ClassVar[str] = "sigma"

    def measure(self, frames: Sequence[Frame]) -> dict[str, float]:
        """Measure ``frames[0]``'s luma (float32, 8-bit scale).

        Returns:
            ``{"sigma": px, "edges": count}``.
        """
        sigma, edges = blur_sigma(frames[0].y)
        return {"sigma": sigma, "edges": float(edges)}

    def summarize(self, series: Mapping[str, np.ndarray]) -> dict[str, Any]:
        """Median and 10th/90th percentiles of the blur sigma; median edge count.

        Returns:
            ``sigma``, ``sigma_p10``, ``sigma_p90``, ``edges``; None when not measured.
        """
        return {**span_stats(series["sigma"], "sigma"),
                **span_stats(series["edges"], "edges", spread=False)}
