"""Synthetic noise with known strength: Gaussian, Poisson-Gaussian and film-grain-like.

Every generator takes a YUV or GRAY clip of any depth (8-16 bit integer, 16/32 bit float)
and returns a clip of the same format, length and frame properties. Strengths are given on
the **8-bit scale** (sigma 5 adds the same visible noise to an 8-bit and to a 10-bit clip,
where it is 20 code values), matching the analysis metrics. Noise is drawn per frame and
plane from ``numpy.random.default_rng((seed, n, plane))``, so frame ``n`` is the same
whatever order frames are requested in, and the same ``seed`` reproduces the same clip.

Integer outputs are rounded and clipped to the format's full code range (0-255 at 8 bit);
near black or white, clipping makes the realised noise weaker than asked (an 8-bit limited
range clip has 16 code values of headroom below black: about 3 sigma at sigma 5). Float
outputs are not clipped, so for exact ground truth use a float (``YUV420PS``) clip.

:func:`map_planes` is the per-frame numpy plumbing the generators share (also used by
:mod:`vsremaster.training.degrade.damage`).
"""

from __future__ import annotations

from collections.abc import Callable

import cv2
import numpy as np
import vapoursynth as vs

from ...errors import InputError
from ...runtime.frames import check_clip, read_plane8, write_plane8

__all__ = [
    "PlaneFunc", "add_film_grain", "add_gaussian_noise", "add_poisson_gaussian_noise", "map_planes",
]

core = vs.core

PlaneFunc = Callable[[int, list[np.ndarray]], list[np.ndarray]]
"""``func(n, planes) -> planes``: float32 planes on the 8-bit scale, modified per frame."""


def _check_yuv(clip: vs.VideoNode, func: str) -> vs.VideoFormat:
    fmt = check_clip(clip, func)
    if fmt.color_family not in (vs.YUV, vs.GRAY):
        raise InputError(
            f"{func}: the clip is {fmt.name}; luma/chroma strengths need a YUV or GRAY clip "
            "(convert first, e.g. core.resize.Bicubic(clip, format=vs.YUV444PS, matrix_s='709'))"
        )
    return fmt


def map_planes(clip: vs.VideoNode, func: PlaneFunc, *, name: str = "map_planes") -> vs.VideoNode:
    """Apply a numpy function to every frame, on float32 planes at the 8-bit scale.

    Args:
        clip: constant-format YUV or GRAY clip, 8-16 bit integer or 16/32 bit float.
        func: ``func(n, planes) -> planes`` for frame ``n``; ``planes`` are fresh float32
            copies (Y, U, V at their own sizes, chroma centred on 128; or (Y,)), values on
            the 8-bit scale; it returns planes of the same shapes (it may modify and return
            its input). Values are rounded and clipped to the code range for integer clips.
        name: function name used in error messages.

    Returns:
        A clip of ``clip``'s format, length and frame properties.

    Raises:
        InputError: RGB or variable-format clip.
    """
    fmt = _check_yuv(clip, name)

    def modify(n: int, f: vs.VideoFrame) -> vs.VideoFrame:
        planes = func(n, [read_plane8(f, p) for p in range(fmt.num_planes)])
        out = f.copy()
        for p, plane in enumerate(planes):
            write_plane8(out, p, plane)
        return out

    return core.std.ModifyFrame(clip, clip, modify)


def _rng(seed: int, n: int, plane: int) -> np.random.Generator:
    return np.random.default_rng((seed, n, plane))


def _sigmas(clip: vs.VideoNode, sigma_y: float, sigma_uv: float | None, func: str) -> list[float]:
    sigma_uv = sigma_y if sigma_uv is None else sigma_uv
    if sigma_y < 0 or sigma_uv < 0:
        raise InputError(f"{func}: sigmas must be >= 0, got sigma_y={sigma_y}, sigma_uv={sigma_uv}")
    return [sigma_y, sigma_uv, sigma_uv][: clip.format.num_planes]


def add_gaussian_noise(
    clip: vs.VideoNode, sigma_y: float, sigma_uv: float | None = None, *, seed: int = 0
) -> vs.VideoNode:
    """Add white Gaussian noise, independently per pixel, plane and frame.

    The model every denoiser benchmark uses (additive white Gaussian noise, AWGN):
    ``out = in + N(0, sigma²)``.

    Args:
        clip: YUV or GRAY clip, any supported depth.
        sigma_y: luma noise standard deviation on the 8-bit scale (e.g. 2-30).
        sigma_uv: chroma noise standard deviation on the 8-bit scale, at the chroma plane's
            own (subsampled) resolution (default: ``sigma_y``).
        seed: random seed; the same seed gives the same noise.

    Returns:
        The noisy clip, same format and properties.

    Raises:
        InputError: RGB clip or negative sigma.
    """
    sigmas = _sigmas(clip, sigma_y, sigma_uv, "add_gaussian_noise")

    def noisy(n: int, planes: list[np.ndarray]) -> list[np.ndarray]:
        for p, (plane, s) in enumerate(zip(planes, sigmas)):
            if s > 0:
                noise = _rng(seed, n, p).standard_normal(plane.shape, dtype=np.float32)
                plane += noise * np.float32(s)
        return planes

    return map_planes(clip, noisy, name="add_gaussian_noise")


def add_poisson_gaussian_noise(
    clip: vs.VideoNode,
    gain: float,
    sigma_read: float = 0.0,
    sigma_uv: float = 0.0,
    *,
    seed: int = 0,
) -> vs.VideoNode:
    """Add signal-dependent (Poisson-Gaussian) luma noise, as a camera sensor makes.

    The Poissonian-Gaussian model of Foi, Trimeche, Katkovnik & Egiazarian, "Practical
    Poissonian-Gaussian noise modeling and fitting for single-image raw-data" (IEEE TIP
    17(10), 2008): luma ``y`` (8-bit scale) becomes ``gain · Poisson(y / gain) +
    N(0, sigma_read²)``, so its variance is ``gain · y + sigma_read²`` (e.g. gain 0.2 gives
    sigma 3.2 at y=50 and 6.9 at y=235). Chroma gets signal-independent Gaussian noise.

    Args:
        clip: YUV or GRAY clip, any supported depth.
        gain: 8-bit code values per photo-electron (> 0); larger is noisier.
        sigma_read: signal-independent (read-out) noise, 8-bit scale.
        sigma_uv: chroma Gaussian noise, 8-bit scale.
        seed: random seed.

    Returns:
        The noisy clip, same format and properties.

    Raises:
        InputError: RGB clip, ``gain <= 0`` or a negative sigma.
    """
    if gain <= 0:
        raise InputError(f"add_poisson_gaussian_noise: gain must be > 0, got {gain}")
    sigmas = _sigmas(clip, sigma_read, sigma_uv, "add_poisson_gaussian_noise")

    def noisy(n: int, planes: list[np.ndarray]) -> list[np.ndarray]:
        y = planes[0]
        photons = _rng(seed, n, 3).poisson(np.maximum(y, 0) / gain)
        planes[0] = photons.astype(np.float32) * np.float32(gain)
        for p, s in enumerate(sigmas):
            if s > 0:
                noise = _rng(seed, n, p).standard_normal(planes[p].shape, dtype=np.float32)
                planes[p] += noise * np.float32(s)
        return planes

    return map_planes(clip, noisy, name="add_poisson_gaussian_noise")


def _grain_kernel(size: float) -> np.ndarray:
    """1-D Gaussian kernel of std ``size`` px scaled so filtered unit white noise has std 1."""
    radius = max(1, int(np.ceil(3 * size)))
    k = cv2.getGaussianKernel(2 * radius + 1, size, cv2.CV_32F)
    return k / np.sqrt(np.sum(k * k))


def add_film_grain(
    clip: vs.VideoNode,
    sigma_y: float,
    sigma_uv: float | None = None,
    *,
    size: float = 1.0,
    seed: int = 0,
) -> vs.VideoNode:
    """Add spatially correlated, film-grain-like Gaussian noise.

    White Gaussian noise low-pass filtered with a Gaussian of std ``size`` pixels, then
    rescaled so that its per-pixel standard deviation is exactly ``sigma`` (the usual
    "filtered white noise" grain synthesis, cf. the AV1 film-grain model, which shapes
    white noise with an autoregressive filter: Norkin & Birkbeck, "Film grain synthesis for
    AV1 video codec", DCC 2018). Larger ``size`` gives coarser, blotchier grain; grain is
    new on every frame. Chroma grain uses the same size in chroma-plane pixels.

    Args:
        clip: YUV or GRAY clip, any supported depth.
        sigma_y: luma grain standard deviation per pixel, 8-bit scale.
        sigma_uv: chroma grain standard deviation, 8-bit scale (default ``sigma_y / 2``).
        size: grain correlation length, std of the shaping Gaussian in pixels (0.5-3).
        seed: random seed.

    Returns:
        The grainy clip, same format and properties.

    Raises:
        InputError: RGB clip, negative sigma or ``size <= 0``.
    """
    if size <= 0:
        raise InputError(f"add_film_grain: size must be > 0 pixels, got {size}")
    sigmas = _sigmas(clip, sigma_y, sigma_y / 2 if sigma_uv is None else sigma_uv, "add_film_grain")
    kernel = _grain_kernel(size)

    def grainy(n: int, planes: list[np.ndarray]) -> list[np.ndarray]:
        for p, (plane, s) in enumerate(zip(planes, sigmas)):
            if s > 0:
                white = _rng(seed, n, p).standard_normal(plane.shape, dtype=np.float32)
                grain = cv2.sepFilter2D(white, -1, kernel, kernel, borderType=cv2.BORDER_REFLECT)
                plane += grain * np.float32(s)
        return planes

    return map_planes(clip, grainy, name="add_film_grain")
