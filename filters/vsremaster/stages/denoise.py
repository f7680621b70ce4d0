"""Noise and compression-artefact removal: ``vsremaster.denoise``."""

from __future__ import annotations

import math
import numbers
from collections.abc import Sequence
from pathlib import Path

import cv2
import numpy as np
import vapoursynth as vs

from ..errors import InputError
from ..runtime.frames import check_clip, read_plane8
from ..runtime.session import Backend
from ..runtime.tiling import plan_tiles, run_tiled
from .temporal import open_model, require_progressive, window_clips, window_order

__all__ = ["denoise", "estimate_sigma", "DEFAULT_DENOISE_MODEL", "MODES", "SIGMA_MAX",
           "SIGMA_PROP"]

core = vs.core

DEFAULT_DENOISE_MODEL = "vsr-denoise-v1"
MODES = ("noise", "compression", "both")
SIGMA_MAX = 30.0
"""Largest noise sigma (8-bit scale) the model was trained for."""
SIGMA_PROP = "VSRDenoiseSigma"
"""Frame property: the sigma per plane (8-bit scale) the frame was denoised with."""

_SIGMA_SCALE = 50.0  # the model's noise map holds sigma / 50 (vsremaster.training.denoise)
_MULTIPLE = 4  # the network down-samples twice
_GRAIN_SIGMA = 1.5  # px: keep_grain returns what the removed part has above this low-pass
_ESTIMATE_FRAMES = 9


def estimate_sigma(clip: vs.VideoNode, frames: int = _ESTIMATE_FRAMES) -> list[float]:
    """Noise sigma per plane (8-bit scale, each plane at its own resolution): the median
    over ``frames`` frames spread evenly over the clip of the analysis's estimator
    (:func:`vsremaster.analysis.noise.estimate_noise`: weak-texture PCA after Liu et al. 2013
    and Chen et al. 2015). A plane too small to measure gets 0."""
    from ..analysis.noise import estimate_noise

    check_clip(clip, "estimate_sigma")
    count = min(frames, clip.num_frames)
    picks = sorted({round(i * (clip.num_frames - 1) / max(count - 1, 1)) for i in range(count)})
    per_plane: list[list[float]] = [[] for _ in range(clip.format.num_planes)]
    for n in picks:
        f = clip.get_frame(n)
        for p, values in enumerate(per_plane):
            values.append(estimate_noise(read_plane8(f, p)).sigma)
    return [0.0 if all(math.isnan(v) for v in values) else float(np.nanmedian(values))
            for values in per_plane]


def _sigmas(clip: vs.VideoNode, sigma, mode: str) -> list[float]:
    planes = clip.format.num_planes
    if sigma is None:
        sigmas = [0.0] * planes if mode == "compression" else estimate_sigma(clip)
        return [min(s, SIGMA_MAX) for s in sigmas]
    values = [float(sigma)] if isinstance(sigma, numbers.Real) else [float(s) for s in sigma]
    if len(values) == 1:
        values *= planes
    if len(values) != planes:
        raise InputError(f"denoise: sigma needs 1 or {planes} values (one per plane), got "
                         f"{len(values)}")
    if not all(0.0 <= s <= SIGMA_MAX for s in values):
        raise InputError(f"denoise: sigma must be between 0 and {SIGMA_MAX:g} (8-bit scale), "
                         f"got {values}")
    return values


def denoise(
    clip: vs.VideoNode,
    sigma: float | Sequence[float] | None = None,
    mode: str = "noise",
    strength: float = 1.0,
    keep_grain: float = 0.0,
    model: str | Path = DEFAULT_DENOISE_MODEL,
    *,
    backend: str | Backend = "auto",
    num_streams: int | None = None,
) -> vs.VideoNode:
    """Remove noise and codec damage (blocking, ringing, mosquito noise) with a temporal model.

    vsremaster's own network (``vsr-denoise-v1``; see :mod:`vsremaster.training.denoise` and
    the model card ``onnx/vsr-denoise-v1.md``) sees five frames ``t-2 … t+2`` of one plane
    plus a noise map (the plane's sigma, as in FFDNet, Zhang et al. 2018) and a compression
    map, and gives frame ``t`` clean; every plane goes through it with its own sigma.
    Frames across a scene change (``_SceneChangePrev``/``_SceneChangeNext``) and past the
    clip's ends are not used: the nearest frame on the same side stands in, and on the
    first or last frame of a shot the frames mirrored from the other side
    (:func:`vsremaster.stages.temporal.window_offsets`).

    The output is ``x + strength · (d + keep_grain · hp(x - d) - x)``, with ``d`` the
    model's output and ``hp`` the part of the removed component above a Gaussian low-pass
    of σ 1.5 px: ``keep_grain`` puts fine grain back (the look of the era) without bringing
    back low-frequency noise. Block edges and ringing are fine detail too: in the
    compression modes ``keep_grain`` brings them back in proportion (the analysis's
    blockiness on box, H.264 CRF 46: input 1.30, output 1.04, with keep_grain 0.5 1.15,
    with 1.0 1.24), so keep it 0 for codec damage.

    Args:
        clip: progressive clip, constant format (YUV/GRAY/RGB, 8-16 bit integer or 16/32 bit
            float), any size.
        sigma: noise standard deviation on the 8-bit scale (0-30): one value for every
            plane, or one per plane (chroma at its subsampled resolution). None: measured
            on the clip (:func:`estimate_sigma`, capped at 30) for ``noise`` and ``both``;
            0 for ``compression`` (codec damage alone).
        mode: ``"noise"`` (sensor/film noise, grain), ``"compression"`` (a decoded lossy
            encode: H.264, MPEG-2) or ``"both"`` (a noisy source that was then compressed).
        strength: 0-1, share of the correction applied (0 = unchanged).
        keep_grain: 0-1, share of the removed fine detail/grain put back.
        model: manifest id or path of an ONNX file with the same I/O (input ``(N, 7, H, W)``:
            five frames in 0-1, sigma / 50, compression flag; output ``(N, 1, H, W)``).
        backend: "auto" (TensorRT → CUDA → OpenVINO → CPU), "tensorrt", "cuda",
            "openvino" (OpenVINO's CPU plugin, fp32), "cpu" (ONNX Runtime) or "torch" (the
            ONNX graph in PyTorch; CUDA when torch sees a GPU).
        num_streams: parallel sessions; default 1 on CPU, 2 on GPU.

    Returns:
        The clip, same format, size, length and props, plus ``VSRDenoiseSigma`` (the sigma
        used per plane).

    Raises:
        InputError: variable format, unsupported depth, an interlaced clip (``_FieldBased``
            1 or 2 on frame 0: deinterlace first), an unknown mode, sigma outside 0-30 or
            with the wrong number of values, ``strength`` or ``keep_grain`` outside 0-1, a
            model of another task.
        ModelError / ModelMissingError / ChecksumError: model unknown, missing or altered.
        BackendError: the requested backend is not available.
    """
    fmt = check_clip(clip, "denoise")
    if mode not in MODES:
        raise InputError(f"denoise: mode must be one of {', '.join(MODES)}; got {mode!r}")
    for name, value in (("strength", strength), ("keep_grain", keep_grain)):
        if not 0.0 <= value <= 1.0:
            raise InputError(f"denoise: {name} must be between 0 and 1, got {value}")
    require_progressive(clip, "denoise")
    pool = open_model(model, "denoise", backend, num_streams)
    sigmas = _sigmas(clip, sigma, mode)
    coded = 0.0 if mode == "noise" else 1.0

    total = clip.num_frames
    integer = fmt.sample_type == vs.INTEGER
    peak = (1 << fmt.bits_per_sample) - 1 if integer else 1.0
    # float chroma is centred on 0: shift it to the model's 0-1
    offsets = [0.5 if not integer and fmt.color_family == vs.YUV and p else 0.0
               for p in range(fmt.num_planes)]
    plans, maps = {}, {}  # per plane: tile plan, and the constant noise/compression maps

    def plane_out(p: int, frames: list[np.ndarray]) -> np.ndarray:
        if p not in plans:
            h, w = frames[0].shape
            plans[p] = plan_tiles(w, h, tile=None, overlap=0, multiple=_MULTIPLE)
            maps[p] = [np.full((h, w), sigmas[p] / _SIGMA_SCALE, np.float32),
                       np.full((h, w), coded, np.float32)]
        x = np.stack([*frames, *maps[p]])[None]
        d = run_tiled(x, pool.run, plans[p], scale=1)[0, 0]
        cur = frames[2]
        if keep_grain:
            removed = cur - d
            d = d + keep_grain * (removed - cv2.GaussianBlur(removed, (0, 0), _GRAIN_SIGMA))
        return cur + strength * (d - cur)

    def restore(n: int, f: list[vs.VideoFrame]) -> vs.VideoFrame:
        order = window_order(n, total, f, mirror=True)
        dst = f[0].copy()
        for p in range(fmt.num_planes):
            if sigmas[p] == 0.0 and not coded:
                continue  # nothing to remove in this plane
            planes = {i: np.asarray(f[i][p], np.float32) / peak + offsets[p] for i in set(order)}
            value = plane_out(p, [planes[i] for i in order]) - offsets[p]
            if integer:
                value = np.rint(np.clip(value, 0.0, 1.0) * peak)
            np.copyto(np.asarray(dst[p]), value, casting="unsafe")
        dst.props[SIGMA_PROP] = sigmas
        return dst

    return core.std.ModifyFrame(clip, window_clips(clip), restore)
