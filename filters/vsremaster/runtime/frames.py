"""Convert clips to the planar float RGB/GRAY a model needs, and back to the clip's format.

Conversion uses each frame's own colour properties (``_Matrix``, ``_Range``,
``_ChromaLocation``); where a YUV frame has no usable ``_Matrix`` the default for its
resolution is assumed (BT.709 above 1024×576, BT.470BG at 576 lines, SMPTE 170M below) and
said once in the log. The way back uses the same per-frame properties, so a title whose
matrix changes mid-stream converts correctly, and every frame property of the input is
carried to the output. Integer outputs are dithered (error diffusion).
"""

from __future__ import annotations

from fractions import Fraction

import numpy as np
import vapoursynth as vs

from .. import log
from ..errors import InputError

__all__ = [
    "check_clip", "default_matrix", "to_model", "from_model", "to_rgb24", "read_plane8",
    "write_plane8",
]

core = vs.core

_UNSPECIFIED = 2  # H.273 "unspecified" for _Matrix/_Transfer/_Primaries
_RESIZE = "Spline36"  # kernel for the exact resize to a requested size


def check_clip(clip: vs.VideoNode, func: str) -> vs.VideoFormat:
    """Validate that ``clip`` has a constant format and size; return its format.

    Raises:
        InputError: variable format/size, or an unsupported sample type/depth.
    """
    if not isinstance(clip, vs.VideoNode):
        raise InputError(f"{func}: expected a VapourSynth clip, got {type(clip).__name__}")
    fmt = clip.format
    if fmt is None or clip.width == 0 or clip.height == 0:
        raise InputError(
            f"{func}: the clip has a variable format or size; make it constant first "
            "(e.g. core.resize.Bicubic(clip, width=..., height=..., format=...))"
        )
    if fmt.color_family not in (vs.YUV, vs.RGB, vs.GRAY):
        raise InputError(f"{func}: colour family {fmt.color_family.name} is not supported")
    ok = (fmt.sample_type == vs.INTEGER and 8 <= fmt.bits_per_sample <= 16) or (
        fmt.sample_type == vs.FLOAT and fmt.bits_per_sample in (16, 32)
    )
    if not ok:
        raise InputError(
            f"{func}: {fmt.name} is not supported; use 8-16 bit integer or 16/32 bit float"
        )
    return fmt


def default_matrix(width: int, height: int) -> int:
    """H.273 matrix assumed for a YUV frame of this size that does not say its own."""
    if width > 1024 or height > 576:
        return 1  # BT.709
    if height == 576 or height == 288:
        return 5  # BT.470BG (PAL)
    return 6  # SMPTE 170M (NTSC / BT.601)


def _prepare(clip: vs.VideoNode, func: str, progressive: bool) -> vs.VideoNode:
    """Per-frame checks and defaults that conversion needs, as a cheap ModifyFrame."""
    yuv = clip.format.color_family == vs.YUV
    if not yuv and not progressive:
        return clip
    matrix = default_matrix(clip.width, clip.height)

    def fix(n: int, f: vs.VideoFrame) -> vs.VideoFrame:
        props = f.props
        if progressive and props.get("_FieldBased", 0) not in (0,):
            order = {1: "BFF", 2: "TFF"}.get(int(props["_FieldBased"]), "interlaced")
            raise vs.Error(
                f"{func}: frame {n} is interlaced (_FieldBased={props['_FieldBased']}, {order}); "
                "deinterlace first (e.g. vsremaster.deinterlace or bwdif), or set _FieldBased=0 "
                "if the clip is really progressive"
            )
        if yuv and props.get("_Matrix", _UNSPECIFIED) == _UNSPECIFIED:
            log.once(
                f"matrix:{func}:{clip.width}x{clip.height}",
                f"{func}: frames carry no _Matrix; assuming {vs.MatrixCoefficients(matrix).name} "
                f"for {clip.width}x{clip.height} (set _Matrix on the source to override)",
            )
            f = f.copy()
            f.props["_Matrix"] = matrix
        return f

    return core.std.ModifyFrame(clip, clip, fix)


def to_model(
    clip: vs.VideoNode, channels: int, func: str, *, progressive: bool = True
) -> tuple[vs.VideoNode, vs.VideoNode]:
    """Convert ``clip`` to the model's planar float format.

    Args:
        clip: constant-format YUV/RGB/GRAY clip, 8-16 bit integer or 16/32 bit float.
        channels: planes the model takes: 3 (RGBS) or 1 (GRAYS).
        func: name used in error messages.
        progressive: raise (per frame) on ``_FieldBased`` != 0.

    Returns:
        (model_clip, prepared) where ``prepared`` is the input with checks and colour
        defaults applied; pass it to :func:`from_model` to convert back.

    Raises:
        InputError: unsupported format, or a 3-channel clip for a 1-channel model.
    """
    fmt = check_clip(clip, func)
    prepared = _prepare(clip, func, progressive)
    if channels == 1:
        if fmt.color_family != vs.GRAY:
            raise InputError(
                f"{func}: the model takes one (GRAY) plane but the clip is {fmt.name}; "
                "pass a GRAY clip or use an RGB model"
            )
        return core.resize.Point(prepared, format=vs.GRAYS), prepared
    if fmt.color_family == vs.GRAY:
        gray = core.resize.Point(prepared, format=vs.GRAYS)
        return core.std.ShufflePlanes(gray, [0, 0, 0], vs.RGB), prepared
    return core.resize.Bicubic(prepared, format=vs.RGBS), prepared


def to_rgb24(clip: vs.VideoNode, func: str) -> vs.VideoNode:
    """``clip`` as 8-bit RGB for OpenCV-style per-frame work (detection, overlays).

    YUV frames without ``_Matrix`` get the size's default matrix (see :func:`default_matrix`);
    GRAY is copied to the three channels; interlaced frames raise (per frame).
    """
    fmt = check_clip(clip, func)
    prepared = _prepare(clip, func, progressive=True)
    if fmt.color_family == vs.GRAY:
        prepared = core.std.ShufflePlanes(prepared, [0, 0, 0], vs.RGB)
    return core.resize.Bicubic(prepared, format=vs.RGB24, dither_type="error_diffusion")


def from_model(
    out: vs.VideoNode,
    prepared: vs.VideoNode,
    *,
    width: int | None = None,
    height: int | None = None,
) -> vs.VideoNode:
    """Convert model output back to ``prepared``'s format, resized to ``width``×``height``.

    Frame ``n`` of the result takes every property of frame ``n`` of ``prepared``; the
    sample aspect ratio is adjusted when the resize changes the shape, so the display
    aspect ratio is kept.

    Args:
        out: model output, RGBS or GRAYS, same frame count as ``prepared``.
        prepared: second value returned by :func:`to_model`.
        width, height: final size (default: the model output size).
    """
    fmt = prepared.format
    width, height = width or out.width, height or out.height
    resize = getattr(core.resize, _RESIZE)
    if fmt.color_family == vs.GRAY and out.format.color_family == vs.RGB:
        out = core.std.Expr(core.std.SplitPlanes(out), "x y + z + 3 /")
    int_out = fmt.sample_type == vs.INTEGER
    kwargs = {"dither_type": "error_diffusion"} if int_out else {}

    if fmt.color_family != vs.YUV:
        result = resize(out, width, height, format=fmt.id, **kwargs)
    else:
        nodes: dict[tuple[int, int, int], vs.VideoNode] = {}

        def pick(n: int, f: vs.VideoFrame) -> vs.VideoNode:
            p = f.props
            key = (int(p["_Matrix"]), int(p.get("_Range", 0)), int(p.get("_ChromaLocation", 0)))
            node = nodes.get(key)
            if node is None:
                node = nodes[key] = resize(
                    out, width, height, format=fmt.id, matrix=key[0], range=key[1],
                    chromaloc=key[2], **kwargs,
                )
            return node

        template = core.std.BlankClip(out, width=width, height=height, format=fmt.id)
        result = core.std.FrameEval(template, pick, prop_src=prepared, clip_src=out)
    result = core.std.CopyFrameProps(result, prepared)
    sar = Fraction(prepared.width * height, width * prepared.height)
    if sar != 1:
        result = _scale_sar(result, sar)
    return result


def _scale_sar(clip: vs.VideoNode, factor: Fraction) -> vs.VideoNode:
    """Multiply each frame's ``_SARNum/_SARDen`` (1:1 when absent) by ``factor``."""

    def fix(n: int, f: vs.VideoFrame) -> vs.VideoFrame:
        f = f.copy()
        num = int(f.props.get("_SARNum", 1)) or 1
        den = int(f.props.get("_SARDen", 1)) or 1
        sar = Fraction(num, den) * factor
        f.props["_SARNum"], f.props["_SARDen"] = sar.numerator, sar.denominator
        return f

    return core.std.ModifyFrame(clip, clip, fix)


def read_plane8(f: vs.VideoFrame, p: int) -> np.ndarray:
    """Plane ``p`` of ``f`` as a new float32 array on the 8-bit scale.

    Integer samples are divided by 2**(bits-8) (a 10-bit 512 is 128.0); float samples are
    multiplied by 255 and YUV chroma (-0.5..0.5) is centred on 128, so analysis thresholds
    and noise sigmas mean the same whatever the clip's depth.
    """
    fmt = f.format
    out = np.asarray(f[p]).astype(np.float32)
    if fmt.sample_type == vs.INTEGER:
        if fmt.bits_per_sample > 8:
            out *= np.float32(1.0 / (1 << (fmt.bits_per_sample - 8)))
        return out
    out *= np.float32(255.0)
    if p and fmt.color_family == vs.YUV:
        out += np.float32(128.0)
    return out


def write_plane8(f: vs.VideoFrame, p: int, plane: np.ndarray) -> None:
    """Store an 8-bit-scale float plane (see :func:`read_plane8`) into writable frame ``f``;
    integer samples are rounded and clipped to the code range."""
    fmt = f.format
    dst = np.asarray(f[p])
    if fmt.sample_type == vs.INTEGER:
        scale = float(1 << (fmt.bits_per_sample - 8))
        top = (1 << fmt.bits_per_sample) - 1
        np.copyto(dst, np.clip(np.rint(plane * scale), 0, top), casting="unsafe")
    else:
        centre = 128.0 if p and fmt.color_family == vs.YUV else 0.0
        np.copyto(dst, (plane - np.float32(centre)) * np.float32(1.0 / 255.0), casting="unsafe")
