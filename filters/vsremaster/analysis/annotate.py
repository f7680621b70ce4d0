"""``annotate(clip)``: attach the analysis metrics to every frame as frame properties."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import vapoursynth as vs

from ..runtime.frames import check_clip
from .base import PROP_PREFIX, Frame, Metric

__all__ = ["annotate", "prop_name"]

core = vs.core


def prop_name(metric: Metric | type, key: str) -> str:
    """Frame property holding ``key`` of ``metric``: ``VSR_<Name><Key>``."""
    return f"{PROP_PREFIX}{metric.name}{key[:1].upper()}{key[1:]}"


def _shift(clip: vs.VideoNode, offset: int) -> vs.VideoNode:
    """Frame n of the result is frame n+offset of ``clip``, clamped to the clip's ends."""
    if offset == 0:
        return clip
    if offset > 0:
        return clip[offset:] + clip[-1] * offset
    return clip[0] * -offset + clip[:offset]


def _to_frame(n: int, f: vs.VideoFrame) -> Frame:
    fmt = f.format
    if fmt.sample_type == vs.INTEGER:
        scale = 1.0 / (1 << (fmt.bits_per_sample - 8))
        planes = tuple(np.asarray(f[p], dtype=np.float32) * scale for p in range(fmt.num_planes))
    else:  # float: Y 0-1, chroma -0.5..0.5
        planes = tuple(
            np.asarray(f[p], dtype=np.float32) * 255 + (128 if p else 0)
            for p in range(fmt.num_planes)
        )
    return Frame(n, planes, int(f.props.get("_FieldBased", 0)))


def annotate(
    clip: vs.VideoNode, metrics: Sequence[Metric] | None = None, *, every: int = 1
) -> vs.VideoNode:
    """Measure every frame and attach the numbers as ``VSR_*`` frame properties.

    Cheap metrics are measured on every frame, costly ones (``Metric.sampled``) on every
    ``every``-th frame only. The clip's frames are otherwise returned untouched (props kept).
    See :func:`vsremaster.analysis.default_metrics` for the metrics and their properties.

    Args:
        clip: constant-format YUV/GRAY/RGB clip (RGB is measured as BT.709 YUV).
        metrics: metric objects (default: all of :func:`default_metrics`).
        every: sampling step for costly metrics (1 = every frame).

    Raises:
        InputError: variable format or size.
    """
    from . import default_metrics

    check_clip(clip, "annotate")
    if every < 1:
        raise ValueError(f"annotate: every must be >= 1, got {every}")
    metrics = list(metrics) if metrics is not None else default_metrics()
    src = clip
    if clip.format.color_family == vs.RGB:
        src = core.resize.Bicubic(clip, format=vs.YUV444PS, matrix_s="709")
    before = max((m.before for m in metrics), default=0)
    after = max((m.after for m in metrics), default=0)
    window = [_shift(src, k) for k in range(-before, after + 1)]

    def measure(n: int, fs: list[vs.VideoFrame]) -> vs.VideoFrame:
        frames = [_to_frame(n + k, f) for k, f in zip(range(-before, after + 1), fs[1:])]
        out = fs[0].copy()
        for metric in metrics:
            if metric.sampled and n % every:
                continue
            lo = before - metric.before
            values = metric.measure(frames[lo : lo + metric.before + 1 + metric.after])
            for key, value in values.items():
                out.props[prop_name(metric, key)] = float(value)
        return out

    def per_frame(n: int) -> vs.VideoNode:
        return core.std.ModifyFrame(clip, [clip, *window], measure)

    return core.std.FrameEval(clip, per_frame, clip_src=[clip, *window])
