"""Film and tape damage removal: ``vsremaster.descratch``."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import vapoursynth as vs

from ..errors import InputError
from ..runtime.frames import check_clip
from ..runtime.session import Backend
from ..runtime.tiling import plan_tiles, run_tiled
from .temporal import open_model, require_progressive, window_clips, window_order

__all__ = ["descratch", "DEFAULT_DESCRATCH_MODEL", "DAMAGE_AREA_PROP"]

core = vs.core

DEFAULT_DESCRATCH_MODEL = "vsr-descratch-v1"
DAMAGE_AREA_PROP = "VSRDamageArea"
"""Frame property: share of the frame's pixels the model flagged as damage (probability
> 0.5), 0-1."""

_MULTIPLE = 4  # the network down-samples twice
_CHROMA_SIGMA = 3.0  # px at chroma size: reach of the fill under the mask
_LUMA = (0.2126, 0.7152, 0.0722)  # BT.709 luma weights, for RGB clips


def _fill(plane: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Normalised convolution (Knutsson & Westin, 1993): each pixel's Gaussian-weighted
    average of the unmasked pixels around it, for chroma under the damage."""
    keep = 1.0 - mask
    num = cv2.GaussianBlur(plane * keep, (0, 0), _CHROMA_SIGMA)
    den = cv2.GaussianBlur(keep, (0, 0), _CHROMA_SIGMA)
    return np.where(den > 1e-3, num / np.maximum(den, 1e-3), plane)


def descratch(
    clip: vs.VideoNode,
    strength: float = 1.0,
    model: str | Path = DEFAULT_DESCRATCH_MODEL,
    *,
    backend: str | Backend = "auto",
    num_streams: int | None = None,
    mask: bool = False,
) -> vs.VideoNode:
    """Remove line scratches, vertical lines, dust, hairs, "snow" and blotches.

    vsremaster's own temporal network (``vsr-descratch-v1``; see
    :mod:`vsremaster.training.descratch` and the model card ``onnx/vsr-descratch-v1.md``)
    looks at five frames of luma, ``t-2 … t+2``, and gives for every pixel of frame ``t`` a
    damage probability ``a`` and a replacement value ``r``; the output is ``y + strength · a ·
    (r - y)``, so pixels it does not flag keep their values. Chroma (and, for RGB, the
    colour around the luma) is filled under the same mask from the undamaged surroundings
    (normalised convolution, σ 3 px at chroma size), since damage takes a pixel's colour
    with it. Frames across a scene change (``_SceneChangePrev/_SceneChangeNext``) and past
    the clip's ends are not used: the nearest frame on the same side stands in, else the
    current one.

    Args:
        clip: progressive clip, constant format (YUV/GRAY/RGB, 8-16 bit integer or 16/32 bit
            float), any size (the model pads to a multiple of 4).
        strength: 0-1, how much of the correction is applied (0 = unchanged).
        model: manifest id or path of an ONNX file with the same I/O (input ``(N, 5, H, W)``
            float luma in 0-1, output ``(N, 2, H, W)``: damage probability, replacement).
        backend: "auto" (TensorRT → CUDA → OpenVINO → CPU), "tensorrt", "cuda",
            "openvino" (OpenVINO's CPU plugin, fp32), "cpu" (ONNX Runtime) or "torch" (the
            ONNX graph in PyTorch; CUDA when torch sees a GPU).
        num_streams: parallel sessions; default 1 on CPU, 2 on GPU.
        mask: return the detected damage instead: a GRAY clip of the luma size and the
            clip's sample type and depth (0 = clean, peak = damage; ``strength`` applied),
            for inspection in a previewer.

    Returns:
        The restored clip (same format, size, length and props, plus ``VSRDamageArea``: the
        share of pixels flagged), or the mask clip.

    Raises:
        InputError: variable format, unsupported depth, an interlaced clip (``_FieldBased``
            1 or 2 on frame 0: deinterlace first), ``strength`` outside 0-1, a model of
            another task.
        ModelError / ModelMissingError / ChecksumError: model unknown, missing or altered.
        BackendError: the requested backend is not available.
    """
    fmt = check_clip(clip, "descratch")
    if not 0.0 <= strength <= 1.0:
        raise InputError(f"descratch: strength must be between 0 and 1, got {strength}")
    require_progressive(clip, "descratch")
    pool = open_model(model, "descratch", backend, num_streams)

    total = clip.num_frames
    plan = plan_tiles(clip.width, clip.height, tile=None, overlap=0, multiple=_MULTIPLE)
    integer = fmt.sample_type == vs.INTEGER
    peak = (1 << fmt.bits_per_sample) - 1 if integer else 1.0
    rgb = fmt.color_family == vs.RGB

    def luma(f: vs.VideoFrame) -> np.ndarray:
        if rgb:
            return sum(w * np.asarray(f[p], np.float32) for p, w in enumerate(_LUMA)) / peak
        return np.asarray(f[0], np.float32) / peak

    def damage(n: int, f: list[vs.VideoFrame]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(current luma, damage probability × strength, replacement) in 0-1."""
        order = window_order(n, total, f)
        lumas = {i: luma(f[i]) for i in {0, *order}}
        x = np.stack([lumas[i] for i in order])[None]
        y = run_tiled(x, pool.run, plan, scale=1)[0]
        return lumas[0], np.clip(y[0] * strength, 0.0, 1.0), y[1]

    def restore(n: int, f: list[vs.VideoFrame]) -> vs.VideoFrame:
        cur, a, r = damage(n, f)
        dst = f[0].copy()
        fixed = cur + a * (r - cur)
        if rgb:  # luma from the model, the colour around it filled under the mask
            planes = (np.asarray(f[0][p], np.float32) / peak for p in range(3))
            out = [c + a * (fixed + _fill(c - cur, a) - c) for c in planes]
        else:  # luma from the model; chroma filled under the mask
            out = [fixed]
            for p in range(1, fmt.num_planes):
                c = np.asarray(f[0][p], np.float32) / peak
                h, w = c.shape
                ac = a if a.shape == (h, w) else cv2.resize(a, (w, h),
                                                           interpolation=cv2.INTER_AREA)
                out.append(c + ac * (_fill(c, ac) - c))
        for p, value in enumerate(out):
            if integer:
                value = np.rint(np.clip(value, 0.0, 1.0) * peak)
            np.copyto(np.asarray(dst[p]), value, casting="unsafe")
        dst.props[DAMAGE_AREA_PROP] = float((a > 0.5).mean())
        return dst

    canvas = clip
    if mask:
        gray = core.query_video_format(vs.GRAY, fmt.sample_type, fmt.bits_per_sample, 0, 0)
        canvas = core.std.BlankClip(clip, format=gray.id, keep=True)

    def show_mask(n: int, f: list[vs.VideoFrame]) -> vs.VideoFrame:
        a = damage(n, f)[1] * peak
        dst = f[-1].copy()
        np.copyto(np.asarray(dst[0]), np.rint(a) if integer else a, casting="unsafe")
        dst.props.update(f[0].props)
        return dst

    sources = window_clips(clip) + ([canvas] if mask else [])
    func = show_mask if mask else restore
    return core.std.ModifyFrame(canvas, sources, func)
