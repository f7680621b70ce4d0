"""``annotate(clip)``: attach the analysis metrics to every frame as frame properties."""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Sequence

import numpy as np
import vapoursynth as vs

from ..runtime.frames import check_clip, read_plane8
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
    n = clip.num_frames
    if abs(offset) >= n:  # shorter than the window: every frame clamps to one end
        return (clip[-1] if offset > 0 else clip[0]) * n
    if offset > 0:
        return clip[offset:] + clip[-1] * offset
    return clip[0] * -offset + clip[:offset]


class _Planes(Sequence[np.ndarray]):
    """A frame's planes as float32 on the 8-bit scale, each converted on first use."""

    def __init__(self, frame: vs.VideoFrame) -> None:
        self._frame = frame
        self._lock = threading.Lock()
        self._planes: list[np.ndarray | None] = [None] * frame.format.num_planes

    def __len__(self) -> int:
        return len(self._planes)

    def __getitem__(self, p):  # type: ignore[override]
        if isinstance(p, slice):
            return [self[i] for i in range(*p.indices(len(self)))]
        with self._lock:
            plane = self._planes[p]
            if plane is None:
                plane = self._planes[p] = read_plane8(self._frame, p)
            return plane


class _FrameCache:
    """The last few converted frames by frame number: a frame in several temporal windows,
    measured on several VapourSynth threads, is converted once."""

    def __init__(self, size: int) -> None:
        self._size = size
        self._items: OrderedDict[int, Frame] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, n: int, f: vs.VideoFrame) -> Frame:
        with self._lock:
            hit = self._items.get(n)
            if hit is not None:
                self._items.move_to_end(n)
                return hit
            frame = Frame(n, _Planes(f), int(f.props.get("_FieldBased", 0)))
            self._items[n] = frame
            while len(self._items) > self._size:
                self._items.popitem(last=False)
            return frame


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
    last = clip.num_frames - 1
    cache = _FrameCache(4 * (before + after + 1) + 8)

    def measure(n: int, f: list[vs.VideoFrame]) -> vs.VideoFrame:
        frames = [
            cache.get(min(max(n + k, 0), last), vf)
            for k, vf in zip(range(-before, after + 1), f[1:])
        ]
        out = f[0].copy()
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
