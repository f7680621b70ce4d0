"""The five-frame temporal window the temporal stages (descratch, denoise) feed their models."""

from __future__ import annotations

import vapoursynth as vs

__all__ = ["NEIGHBOURS", "neighbour_clips", "window_offsets"]

NEIGHBOURS = (-2, -1, 1, 2)
"""Offsets of the frames a model sees besides the current one (``t-2 … t+2``)."""


def neighbour_clips(clip: vs.VideoNode) -> dict[int, vs.VideoNode]:
    """``{offset: clip shifted so its frame n is frame n + offset}`` for 0 and every
    :data:`NEIGHBOURS` offset; past the ends the first or last frame repeats (the window
    never uses those: :func:`window_offsets` replaces them)."""
    shifted = {0: clip}
    for d in NEIGHBOURS:
        shifted[d] = clip[0] * -d + clip[:d] if d < 0 else clip[d:] + clip[-1] * d
    return shifted


def window_offsets(n: int, total: int, props: dict[int, vs.FrameProps]) -> list[int]:
    """Offsets of the five frames fed for frame ``n`` of ``total``: t-2 … t+2, with
    stand-ins for frames that are off the clip or across a scene change
    (``_SceneChangePrev`` on a frame cuts it from the one before, ``_SceneChangeNext`` from
    the one after; ``props`` holds the props of offsets -1, 0 and 1): the nearest frame on
    the same side that is in the shot, else the current frame. (Not the frame on the other
    side in time: two equal neighbours that differ from the current frame would make every
    moving edge look like a single-frame spot to a descratcher, and would weigh one side
    twice in a denoiser.)"""
    ok = {0: True}
    for side, key in ((-1, "_SceneChangePrev"), (1, "_SceneChangeNext")):
        near = 0 <= n + side < total and not props[0].get(key, 0)
        ok[side] = near
        ok[2 * side] = near and 0 <= n + 2 * side < total and not props[side].get(key, 0)
    out = []
    for d in (-2, -1, 0, 1, 2):
        step = 1 if d > 0 else -1
        out.append(next(k for k in (d, d - step, 0) if ok[k]))
    return out
