"""The one VapourSynth filter every ML stage runs its model through.

Frames are handed to ONNX Runtime inside ``std.FrameEval`` + ``std.ModifyFrame`` callbacks:
FrameEval makes a fresh ModifyFrame per frame, so VapourSynth's worker threads run frames
in parallel (a single ModifyFrame instance would serialise them), and the session pool
bounds how many run at once. Every input frame reaches the callback through the ``clips``
list: nothing calls ``get_frame()`` inside a callback (that can deadlock VapourSynth).
Temporal models get their neighbours the same way, as extra clips shifted in time.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import vapoursynth as vs

from .session import SessionPool
from .tiling import TilePlan, run_tiled

__all__ = ["model_filter"]

core = vs.core


def model_filter(
    clips: Sequence[vs.VideoNode],
    pool: SessionPool,
    plan: TilePlan,
    *,
    scale: int,
    border: int,
    out_channels: int,
    value_range: tuple[float, float] = (0.0, 1.0),
) -> vs.VideoNode:
    """Apply an image model to planar float clips.

    Args:
        clips: one or more RGBS/GRAYS clips of equal size and length; their planes are
            concatenated in order into the model's NCHW input (C = total planes).
        pool: sessions of the model.
        plan: tile plan for the clips' size (see :func:`~vsremaster.runtime.tiling.plan_tiles`).
        scale: model output size / input size.
        border: context pixels per side the model eats.
        out_channels: 3 (RGBS output) or 1 (GRAYS output).
        value_range: input is clamped to it (YUV->RGB can overshoot), output too.

    Returns:
        RGBS/GRAYS clip of size (W*scale, H*scale); frame props are those of ``clips[0]``.
    """
    first = clips[0]
    fmt = vs.RGBS if out_channels == 3 else vs.GRAYS
    blank = core.std.BlankClip(
        first, width=first.width * scale, height=first.height * scale, format=fmt, keep=True
    )
    lo, hi = value_range
    sources = list(clips)

    def infer(n: int, f: list[vs.VideoFrame]) -> vs.VideoFrame:
        planes = [np.asarray(fr[p]) for fr in f[:-1] for p in range(fr.format.num_planes)]
        x = np.stack(planes)[None]
        np.clip(x, lo, hi, out=x)
        y = run_tiled(x, pool.run, plan, scale=scale, border=border)
        dst = f[-1].copy()
        for p in range(out_channels):
            np.clip(y[0, p], lo, hi, out=np.asarray(dst[p]))
        dst.props.clear()
        dst.props.update(f[0].props)
        return dst

    def per_frame(n: int) -> vs.VideoNode:
        return core.std.ModifyFrame(blank, [*sources, blank], infer)

    return core.std.FrameEval(blank, per_frame, clip_src=[*sources, blank])
