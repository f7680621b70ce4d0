"""Noise level: sigma per plane and per luma band, not fooled by texture.

Method (per plane), after Liu, Tanaka & Okutomi, "Single-image noise level estimation for
blind denoising" (IEEE TIP 22(12), 2013), with the eigenvalue statistic of Chen, Zhu & Heng,
"An efficient statistical method for image noise level estimation" (ICCV 2015):

1. Cut the plane into 5×5 patches on a grid (stride chosen for about 12 000 patches) and
   measure each patch's texture strength ``xi``: the sum of its squared horizontal and
   vertical pixel differences.
2. For a patch of pure Gaussian noise of std sigma, ``xi`` follows (approximately) a gamma
   law, Gamma(k = N²/2, theta = 2·sigma²·tr(DᵀD)/N²) with N = 5 and tr(DᵀD) = 4·N·(N-1)
   (Liu 2013, eq. 11); its 99 % quantile ``tau`` (Wilson-Hilferty approximation) separates
   patches that can be flat-plus-noise from textured ones.
3. Starting from the (over-)estimate of step 5, keep the patches with ``xi < tau``, take
   the 25 eigenvalues of their covariance and estimate sigma² with Chen's rule: drop the
   largest eigenvalues until the mean of the rest is no larger than their median (what
   remains is the noise subspace, whose Marchenko-Pastur spread is symmetric enough that
   mean ≈ median ≈ sigma²). Liu's own statistic, the smallest eigenvalue, is biased low by
   that spread (about -7 % in sigma with 10 000 patches of 49 pixels; Chen 2015, sec. 3).
   Recompute ``tau`` from the new sigma and repeat until it settles (2-4 rounds). If too
   few patches pass (a clean frame: sigma near 0), the 100 flattest are used.
4. The luma bands (dark / mid / bright thirds of the nominal 16-235 range, by patch mean)
   repeat step 3 on their own patches, giving the signal dependence of the noise
   (Poisson-Gaussian sources, film grain, gamma-encoded camera noise).
5. The "naive" estimator is Immerkær's fast noise variance estimation (J. Immerkær, "Fast
   noise variance estimation", CVIU 64(2):300-302, 1996) over the whole plane:
   sigma = sqrt(pi/2) / (6 (W-2)(H-2)) · sum |I * N|, N = [[1,-2,1],[-2,4,-2],[1,-2,1]].
   It is exact on flat noisy images and reads texture as noise; it is reported so that its
   bias can be seen (and it seeds step 3: nothing above 1.25× it is ever considered).

Why this and not Immerkær restricted to flat pixels (Tai & Yang 2008): the Immerkær
residual inside the weak-texture patches is biased by the selection itself (the patches
kept are those whose noise happened to be small: -2 to -5 % in our tests), and a
gradient-percentile edge mask leaves the fine texture in (+12 to +20 % at sigma 2); the
PCA statistic separates the low-rank texture that survives the selection from the
full-rank noise. 5×5 patches measured as accurate as 7×7 here at half the cost. Measured
accuracy on real footage: ``tests/test_analysis_noise.py``.

All sigmas are standard deviations on the 8-bit scale, at each plane's own resolution
(chroma noise of a 4:2:0 clip is measured on the subsampled planes). The estimator
assumes white noise: spatially correlated noise (film grain, noise that went through a
codec or a scaler) reads lower than its per-pixel std, as it does for every
patch-based estimator.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any, ClassVar, NamedTuple

import cv2
import numpy as np

from .base import Frame, span_stats

__all__ = [
    "BAND_EDGES", "Noise", "NoiseEstimate", "estimate_noise", "immerkaer_sigma",
]

_PATCH = 5
_DIM = _PATCH * _PATCH
_TARGET_PATCHES = 12_000
_CHUNK = 512  # patches per block of the cumulative covariance sums
_MIN_PATCHES = 4 * _DIM  # fewest patches an estimate uses (the flattest, if need be)
_SIGMA_FLOOR = 0.3  # thresholds never assume less noise than 8-bit rounding (0.29)
_CONFIDENCE_Z = 2.3263478740408408  # standard normal quantile of Liu's 0.99 confidence
_GAMMA_K = _DIM / 2
_GAMMA_THETA = 2 * (4 * _PATCH * (_PATCH - 1)) / _DIM  # times sigma²
_IMMERKAER = math.sqrt(math.pi / 2) / 6
_LAPLACE2 = np.array([[1, -2, 1], [-2, 4, -2], [1, -2, 1]], np.float32)

BAND_EDGES: tuple[float, float] = (16 + 219 / 3, 16 + 2 * 219 / 3)
"""Luma (8-bit scale) separating the dark / mid / bright bands: thirds of 16-235."""


def _gamma_quantile_factor() -> float:
    """``tau / sigma²`` for Liu's threshold: Wilson-Hilferty quantile of the gamma law."""
    k = _GAMMA_K
    return k * _GAMMA_THETA * (1 - 1 / (9 * k) + _CONFIDENCE_Z * math.sqrt(1 / (9 * k))) ** 3


_TAU_FACTOR = _gamma_quantile_factor()


def immerkaer_sigma(plane: np.ndarray) -> float:
    """Immerkær's (1996) noise sigma over a whole plane: fast, biased upwards by texture.

    Args:
        plane: H×W float32 plane (any scale; the result has the same scale), H, W >= 3.

    Returns:
        Estimated noise standard deviation (>= 0).
    """
    h, w = plane.shape
    residual = cv2.filter2D(plane, cv2.CV_32F, _LAPLACE2)[1:-1, 1:-1]
    return _IMMERKAER * cv2.norm(residual, cv2.NORM_L1) / ((h - 2) * (w - 2))


def _stride(h: int, w: int) -> int:
    return max(1, round(math.sqrt((h - _PATCH + 1) * (w - _PATCH + 1) / _TARGET_PATCHES)))


def _texture(plane: np.ndarray, stride: int) -> np.ndarray:
    """Texture strength of every grid patch: sum of squared h and v differences, (Gy, Gx)."""
    h, w = plane.shape
    sums = {"normalize": False, "anchor": (0, 0), "borderType": cv2.BORDER_CONSTANT}
    ny, nx = h - _PATCH + 1, w - _PATCH + 1
    xi = np.zeros(((ny - 1) // stride + 1, (nx - 1) // stride + 1), np.float32)
    for a, b, size in ((plane[:, 1:], plane[:, :-1], (_PATCH - 1, _PATCH)),
                       (plane[1:, :], plane[:-1, :], (_PATCH, _PATCH - 1))):
        d = cv2.subtract(a, b)
        cv2.multiply(d, d, dst=d)  # in place: one full-size temporary per direction
        cv2.boxFilter(d, -1, size, dst=d, **sums)
        xi += d[:ny:stride, :nx:stride]
    return xi


class _Moments:
    """Patches sorted by texture, with cumulative sums for the covariance of any prefix.

    Args:
        pixels: the plane, flattened (float32).
        centre: subtracted from every pixel (the plane's mean), so the float64 sums need
            no per-patch mean removal and lose no precision.
        corners: flat index of each patch's top-left pixel, sorted by ``xi``.
        offsets: flat offsets of the N×N pixels of a patch from its corner.
        xi: texture strength of each patch, ascending.
    """

    def __init__(
        self, pixels: np.ndarray, centre: float, corners: np.ndarray, offsets: np.ndarray,
        xi: np.ndarray,
    ) -> None:
        self.xi = xi
        m = len(corners) // _CHUNK * _CHUNK
        c = np.float32(centre)
        # (blocks, N², CHUNK): one gather straight into the layout the products need.
        blocks = pixels[offsets[None, :, None] + corners[:m].reshape(-1, 1, _CHUNK)] - c
        self.rest = pixels[offsets[:, None] + corners[None, m:]] - c  # (N², leftover)
        zero2, zero1 = np.zeros((1, _DIM, _DIM)), np.zeros((1, _DIM))
        products = blocks @ blocks.transpose(0, 2, 1)
        self.s2 = np.concatenate([zero2, np.cumsum(products, 0, dtype=np.float64)])
        self.s1 = np.concatenate([zero1, np.cumsum(blocks.sum(2, dtype=np.float64), 0)])
        self.blocks = blocks

    def sums(self, tau: float) -> tuple[int, np.ndarray, np.ndarray]:
        """Count, sum and sum of outer products of the patches with ``xi < tau``."""
        count = int(np.searchsorted(self.xi, tau))
        k = count // _CHUNK
        part = self.blocks[k] if k < len(self.blocks) else self.rest
        part = part[:, : count - k * _CHUNK]
        s2 = self.s2[k] + (part @ part.T)
        s1 = self.s1[k] + part.sum(1, dtype=np.float64)
        return count, s1, s2


def _chen_sigma2(count: int, s1: np.ndarray, s2: np.ndarray) -> float:
    """Chen et al. (2015) noise variance from the covariance of ``count`` patches.

    The eigenvalues (ascending) are cut from the top until the mean of the rest is no
    larger than their median; that mean is sigma².
    """
    mean = s1 / count
    eig = np.linalg.eigvalsh(s2 / count - np.outer(mean, mean))
    ends = np.arange(1, len(eig) + 1)
    means = np.cumsum(eig) / ends
    below = np.searchsorted(eig, means, side="left")
    above = ends - np.searchsorted(eig, means, side="right")
    ok = np.flatnonzero(above >= below)
    return float(max(means[ok[-1]] if ok.size else eig[0], 0.0))


def _iterate(parts: Sequence[_Moments], sigma0: float, rounds: int = 4) -> tuple[float, int]:
    """Liu's weak-texture iteration over one or more patch sets; returns (sigma, patches)."""
    sigma2 = sigma0 * sigma0
    count = 0
    for _ in range(rounds):
        tau = max(sigma2, _SIGMA_FLOOR**2) * _TAU_FACTOR
        total = [p.sums(tau) for p in parts]
        count = sum(t[0] for t in total)
        if count < _MIN_PATCHES:  # too few flat patches: keep the flattest ones
            xi = np.concatenate([p.xi for p in parts])
            if len(xi) < _MIN_PATCHES:
                return math.nan, len(xi)
            tau = float(np.partition(xi, _MIN_PATCHES - 1)[_MIN_PATCHES - 1])
            total = [p.sums(np.nextafter(tau, np.inf)) for p in parts]
            count = sum(t[0] for t in total)
            if count < _MIN_PATCHES:
                return math.nan, count
        new = _chen_sigma2(count, sum(t[1] for t in total), sum(t[2] for t in total))
        done = abs(new - sigma2) <= 0.01 * max(sigma2, _SIGMA_FLOOR**2)
        sigma2 = new
        if done:
            break
    return math.sqrt(sigma2), count


class NoiseEstimate(NamedTuple):
    """What :func:`estimate_noise` found in one plane (8-bit-scale standard deviations).

    Attributes:
        sigma: weak-texture PCA estimate; NaN when the plane has fewer than 100
            candidate patches (tiny planes).
        naive: Immerkær's whole-plane estimate (biased upwards by texture).
        bands: (dark, mid, bright) sigmas; NaN for a band with fewer than 100 candidate
            patches, or when bands were not asked for.
        flat: share (0-1) of the plane's patches used for ``sigma`` (weak-textured).
    """

    sigma: float
    naive: float
    bands: tuple[float, float, float]
    flat: float


def estimate_noise(plane: np.ndarray, *, bands: bool = False) -> NoiseEstimate:
    """Noise sigma of one plane: weak-texture PCA (Liu 2013 + Chen 2015), and Immerkær's.

    Args:
        plane: H×W float32 plane on the 8-bit scale (all NaN when H or W is under 10).
        bands: also estimate sigma in the dark / mid / bright luma bands (patch mean below
            :data:`BAND_EDGES` [0], between, above [1]); meaningful for luma.

    Returns:
        The :class:`NoiseEstimate`.
    """
    plane = np.ascontiguousarray(plane, dtype=np.float32)
    h, w = plane.shape
    nan3 = (math.nan, math.nan, math.nan)
    if h < 2 * _PATCH or w < 2 * _PATCH:
        return NoiseEstimate(math.nan, math.nan, nan3, 0.0)
    naive = immerkaer_sigma(plane)
    stride = _stride(h, w)
    xi = _texture(plane, stride)
    # Only patches that can pass the first (loosest) threshold are ever used: the naive
    # estimate reads texture as noise, so it bounds sigma from above (margin for chance).
    start = 1.25 * naive + 0.05
    loosest = max(start, _SIGMA_FLOOR) ** 2 * _TAU_FACTOR
    if xi.size > _MIN_PATCHES:  # never fewer candidates than an estimate needs
        loosest = max(loosest, float(np.partition(xi.ravel(), _MIN_PATCHES)[_MIN_PATCHES]))
    iy, ix = np.nonzero(xi < loosest)
    xi_kept = xi[iy, ix]
    order = np.argsort(xi_kept)
    xi_kept = xi_kept[order]
    corners = (iy[order] * stride) * w + ix[order] * stride
    offsets = (np.arange(_PATCH)[:, None] * w + np.arange(_PATCH)[None, :]).ravel()
    # Patches are centred on the plane's mean; the DC direction is then just one more
    # (signal) eigenvalue, and no per-patch mean removal is needed.
    pixels = plane.ravel()
    centre = float(cv2.mean(plane)[0])
    per_band = nan3
    if bands:
        means = pixels[corners[:, None] + offsets[None, :]].mean(1)
        band = np.searchsorted(np.asarray(BAND_EDGES, np.float32), means, side="right")
        parts = [_Moments(pixels, centre, corners[band == b], offsets, xi_kept[band == b])
                 for b in range(3)]
    else:
        parts = [_Moments(pixels, centre, corners, offsets, xi_kept)]
    sigma, used = _iterate(parts, start)
    if bands:  # each band starts from the whole plane's sigma: fewer rounds
        seed = sigma if math.isfinite(sigma) else start
        per_band = tuple(_iterate([p], seed)[0] for p in parts)  # type: ignore[assignment]
    return NoiseEstimate(sigma, naive, per_band, used / xi.size if math.isfinite(sigma) else 0.0)


class Noise:
    """Per-frame noise level: sigma per plane and per luma band, and the naive estimate.

    Keys (8-bit-scale standard deviations; NaN when undefined, e.g. no chroma in GRAY):

    * ``sigmaY``, ``sigmaU``, ``sigmaV``: weak-texture PCA estimate per plane (the value to
      set a denoiser's sigma from). Chroma at its subsampled resolution.
    * ``sigmaDark``, ``sigmaMid``, ``sigmaBright``: luma sigma in the dark / mid / bright
      thirds of 16-235 (NaN when the frame has under 100 patches of that brightness).
    * ``naiveY``, ``naiveU``, ``naiveV``: Immerkær (1996) over the whole plane; reads
      texture as noise, reported to show that bias.
    * ``flat``: share (0-1) of luma patches judged weak-textured at the final threshold.

    Costs about 8-11 ms per 720×480 4:2:0 frame on one core (``sampled``).
    """

    name: ClassVar[str] = "Noise"
    keys: ClassVar[tuple[str, ...]] = (
        "sigmaY", "sigmaU", "sigmaV", "sigmaDark", "sigmaMid", "sigmaBright",
        "naiveY", "naiveU", "naiveV", "flat",
    )
    before: ClassVar[int] = 0
    after: ClassVar[int] = 0
    sampled: ClassVar[bool] = True
    plot: ClassVar[tuple[str, ...]] = ("sigmaY", "sigmaU", "sigmaV", "naiveY")
    worst: ClassVar[str] = "sigmaY"

    def measure(self, frames: Sequence[Frame]) -> dict[str, float]:
        """Measure the noise of ``frames[0]`` (planes float32, 8-bit scale).

        Returns:
            ``{key: value}`` for every key in :attr:`keys`.
        """
        planes = frames[0].planes
        luma = estimate_noise(planes[0], bands=True)
        out = {
            "sigmaY": luma.sigma, "sigmaDark": luma.bands[0], "sigmaMid": luma.bands[1],
            "sigmaBright": luma.bands[2], "naiveY": luma.naive, "flat": luma.flat,
            "sigmaU": math.nan, "sigmaV": math.nan, "naiveU": math.nan, "naiveV": math.nan,
        }
        for key, plane in zip("UV", planes[1:3]):
            chroma = estimate_noise(plane)
            out[f"sigma{key}"], out[f"naive{key}"] = chroma.sigma, chroma.naive
        return out

    def summarize(self, series: Mapping[str, np.ndarray]) -> dict[str, Any]:
        """Median and 10th/90th percentiles of the plane sigmas; medians of the rest.

        Returns:
            ``sigma_y``, ``sigma_y_p10``, ``sigma_y_p90`` (and the same for u, v), the band
            medians ``sigma_dark``/``sigma_mid``/``sigma_bright``, the naive medians
            ``naive_y``/``naive_u``/``naive_v`` and ``flat``; values None when no frame of
            the span was measured.
        """
        out: dict[str, Any] = {}
        for plane in "YUV":
            out.update(span_stats(series[f"sigma{plane}"], f"sigma_{plane.lower()}"))
        for key in ("sigmaDark", "sigmaMid", "sigmaBright", "naiveY", "naiveU", "naiveV", "flat"):
            snake = "".join(f"_{c.lower()}" if c.isupper() else c for c in key)
            out.update(span_stats(series[key], snake, spread=False))
        return out
