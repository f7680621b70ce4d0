"""What the five-frame temporal stages (descratch, denoise) share: the input checks, the
model's session pool and the window of frames fed for each output frame."""

from __future__ import annotations

from pathlib import Path

import vapoursynth as vs

from ..errors import InputError
from ..models.store import stage_model_path
from ..runtime.session import (
    Backend, SessionConfig, SessionPool, check_backend, get_pool, stream_count,
)

__all__ = ["NEIGHBOURS", "WINDOW", "neighbour_clips", "open_model", "require_progressive",
           "window_clips", "window_order", "window_offsets"]

NEIGHBOURS = (-2, -1, 1, 2)
"""Offsets of the frames a model sees besides the current one (``t-2 … t+2``)."""


def neighbour_clips(clip: vs.VideoNode, offsets=NEIGHBOURS) -> dict[int, vs.VideoNode]:
    """``{offset: clip shifted so its frame n is frame n + offset}`` for 0 and every offset
    (default :data:`NEIGHBOURS`); past the ends the first or last frame repeats (the window
    never uses those: :func:`window_offsets` replaces them)."""
    shifted = {0: clip}
    n = clip.num_frames
    for d in offsets:
        if abs(d) >= n:  # a clip shorter than the window: every frame is past an end
            shifted[d] = (clip[0] if d < 0 else clip[-1]) * n
        else:
            shifted[d] = clip[0] * -d + clip[:d] if d < 0 else clip[d:] + clip[-1] * d
    return shifted


WINDOW = (0, *NEIGHBOURS)
"""Offsets of the clips :func:`window_clips` gives, in that order (the current frame first)."""


def window_clips(clip: vs.VideoNode) -> list[vs.VideoNode]:
    """The clip shifted by each :data:`WINDOW` offset: pass them to ``std.ModifyFrame``,
    whose frame list then feeds :func:`window_order`."""
    shifted = neighbour_clips(clip)
    return [shifted[d] for d in WINDOW]


def window_order(n: int, total: int, frames: list[vs.VideoFrame], *,
                 mirror: bool = False) -> list[int]:
    """Indices into ``frames`` (frame ``n`` of each :func:`window_clips` clip) of the five
    frames fed for frame ``n``, t-2 … t+2 (see :func:`window_offsets`)."""
    props = {d: frames[WINDOW.index(d)].props for d in (-1, 0, 1)}
    return [WINDOW.index(d) for d in window_offsets(n, total, props, mirror=mirror)]


def window_offsets(n: int, total: int, props: dict[int, vs.FrameProps], *,
                   mirror: bool = False) -> list[int]:
    """Offsets of the five frames fed for frame ``n`` of ``total``: t-2 … t+2, with
    stand-ins for frames that are off the clip or across a scene change
    (``_SceneChangePrev`` on a frame cuts it from the one before, ``_SceneChangeNext`` from
    the one after; ``props`` holds the props of offsets -1, 0 and 1): the nearest frame on
    the same side that is in the shot; with ``mirror``, when that side has none, the frame
    as far on the other side (``t+2, t+1, t, t+1, t+2`` on the first frame of a shot); else
    the current frame.

    The descratcher does not mirror: two equal neighbours that differ from the current
    frame would make every moving edge look like a single-frame spot. The denoiser does:
    fed the current frame three times it barely denoises: on the benchmark clips
    (``benchmarks/denoise.py``, "ends" PSNR-Y, Gaussian σ 10-20) the first and last frame
    came out 6.5-14 dB behind the frames inside; mirrored, 1.8-4.8 dB (two other noisy
    frames instead of four).
    """
    ok = {0: True}
    for side, key in ((-1, "_SceneChangePrev"), (1, "_SceneChangeNext")):
        near = 0 <= n + side < total and not props[0].get(key, 0)
        ok[side] = near
        ok[2 * side] = near and 0 <= n + 2 * side < total and not props[side].get(key, 0)
    out = []
    for d in (-2, -1, 0, 1, 2):
        inner = d - (d > 0) + (d < 0)  # the same-side frame nearer t (0 for d = ±1, 0)
        near = (d, inner, -d, -inner) if mirror else (d, inner)
        out.append(next((k for k in near if k and ok[k]), 0))
    return out


def require_progressive(clip: vs.VideoNode, func: str) -> None:
    """Refuse a clip whose frame 0 says it is interlaced (``_FieldBased`` 1 or 2).

    Raises:
        InputError: naming ``func`` and the ways out.
    """
    field_based = clip.get_frame(0).props.get("_FieldBased", 0)
    if field_based in (1, 2):
        raise InputError(
            f"{func}: the clip is interlaced (_FieldBased={field_based}); the model needs "
            "progressive frames: deinterlace first (vsremaster.deinterlace), or "
            "std.SetFieldBased(clip, 0) if it is progressive"
        )


def open_model(model: str | Path, task: str, backend: str | Backend,
               num_streams: int | None) -> SessionPool:
    """The session pool of a ``task`` model (manifest id, sha256-checked, or a path) for the
    stage function of the same name (``num_streams``: default 1 on CPU, 2 on GPU).

    Raises:
        InputError / ModelError / ModelMissingError / ChecksumError: as
            :func:`vsremaster.models.store.stage_model_path`.
        BackendError: the backend is not available.
    """
    path = stage_model_path(model, task, task)
    backend = check_backend(backend)
    streams, _ = stream_count(backend, num_streams, task)
    return get_pool(SessionConfig(model=path, backend=backend, num_streams=streams))
