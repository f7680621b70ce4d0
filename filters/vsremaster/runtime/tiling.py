"""Run an image model over a frame in tiles: padding, overlap and feathered blending.

A frame (NCHW float32) is split into tiles of one fixed size (so every run has the same
shape: one TensorRT engine, one set of ORT buffers). Tiles overlap by ``2 * overlap`` input
pixels, the last tile of a row or column is clamped to end at the frame edge, and
overlapping outputs are blended: the outer ``overlap / 2`` pixels of each shared side, which
saw padding instead of real context, are dropped, and the tiles cross-fade with linear ramps
(feathering) over the middle ``overlap`` pixels, so no seam shows. The frame is
mirror-padded to the model's size multiple, and by the model's ``border`` on every side for
models whose unpadded convolutions eat that many pixels.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from ..errors import InputError

__all__ = ["TilePlan", "plan_tiles", "auto_tile", "run_tiled"]


@dataclass(frozen=True, slots=True)
class TilePlan:
    """Tile geometry for one frame size, at model input scale (pixels).

    Attributes:
        width, height: frame size after padding to the model multiple.
        tile_w, tile_h: tile size (every tile has exactly this size).
        overlap: context pixels per side shared with a neighbouring tile.
        xs, ys: top-left corners of the tiles (last one clamped to the edge).
    """

    width: int
    height: int
    tile_w: int
    tile_h: int
    overlap: int
    xs: tuple[int, ...]
    ys: tuple[int, ...]

    @property
    def count(self) -> int:
        """Number of tiles per frame."""
        return len(self.xs) * len(self.ys)


def _round_up(value: int, multiple: int) -> int:
    return -(-value // multiple) * multiple


def _starts(size: int, tile: int, overlap: int) -> tuple[int, ...]:
    if tile >= size:
        return (0,)
    step = tile - 2 * overlap
    starts = list(range(0, size - tile, step))
    starts.append(size - tile)  # clamp the last tile to the edge
    return tuple(starts)


def plan_tiles(
    width: int, height: int, *, tile: tuple[int, int] | None, overlap: int, multiple: int = 1
) -> TilePlan:
    """Plan tiles for a ``width`` × ``height`` frame.

    Args:
        width, height: frame size in input pixels.
        tile: (tile_w, tile_h), or None for one tile covering the whole frame. Rounded up to
            ``multiple``; a tile larger than the frame shrinks to it.
        overlap: context pixels per side; adjacent tiles share ``2 * overlap`` pixels.
        multiple: the model's size multiple.

    Raises:
        InputError: the tile is smaller than ``4 * overlap`` (no room for both blends).
    """
    if overlap < 0:
        raise InputError(f"overlap must be >= 0, got {overlap}")
    pw, ph = _round_up(width, multiple), _round_up(height, multiple)
    if tile is None:
        tw, th = pw, ph
    else:
        tw = min(_round_up(tile[0], multiple), pw)
        th = min(_round_up(tile[1], multiple), ph)
    for t, full, name in ((tw, pw, "width"), (th, ph, "height")):
        if t < full and 4 * overlap > t:
            raise InputError(
                f"tile {name} {t} is too small for overlap {overlap} (need tile >= 4*overlap); "
                "use a larger tile or a smaller overlap"
            )
    return TilePlan(pw, ph, tw, th, overlap if (tw < pw or th < ph) else 0,
                    _starts(pw, tw, overlap), _starts(ph, th, overlap))


def auto_tile(
    width: int, height: int, *, bytes_per_pixel: int, budget: int, multiple: int = 1
) -> tuple[int, int] | None:
    """Largest tile whose working memory fits ``budget`` bytes; None if the frame fits whole.

    Args:
        bytes_per_pixel: model's peak working memory per input pixel (manifest, measured).
        budget: bytes one session may use.
    """
    if bytes_per_pixel <= 0 or width * height * bytes_per_pixel <= budget:
        return None
    side = int(math.sqrt(budget / bytes_per_pixel)) // multiple * multiple
    side = max(side, max(64, multiple))
    return (min(side, _round_up(width, multiple)), min(side, _round_up(height, multiple)))


def _ramp(length: int, start: int, end: int, total: int, overlap: int) -> np.ndarray:
    """1-D blending weights (output pixels) of a tile spanning [start, end) of ``total``.

    On a side shared with a neighbour the outer ``overlap / 2`` pixels, where the network saw
    padding instead of real context, get weight 0 (a hard crop); the next ``overlap`` pixels
    ramp linearly to 1. Two neighbours sharing ``2 * overlap`` pixels thus get complementary
    weights that sum to 1 across the seam.
    """
    w = np.ones(length, np.float32)
    if overlap > 0:
        dead = overlap // 2
        r = np.zeros(dead + overlap, np.float32)
        r[dead:] = (np.arange(overlap, dtype=np.float32) + 0.5) / overlap
        if start > 0:
            w[: r.size] = r
        if end < total:
            w[-r.size :] = np.minimum(w[-r.size :], r[::-1])
    return w


def _pad(x: np.ndarray, top: int, bottom: int, left: int, right: int) -> np.ndarray:
    if top == bottom == left == right == 0:
        return x
    return np.pad(x, ((0, 0), (0, 0), (top, bottom), (left, right)), mode="symmetric")


def run_tiled(
    x: np.ndarray,
    infer: Callable[[np.ndarray], np.ndarray],
    plan: TilePlan,
    *,
    scale: int,
    border: int = 0,
) -> np.ndarray:
    """Run ``infer`` over ``x`` tile by tile and return the blended, cropped result.

    Args:
        x: input frame, float32 ``[1, C, H, W]``.
        infer: the model: ``[1, C, th + 2*border, tw + 2*border]`` ->
            ``[1, C_out, th*scale, tw*scale]``.
        plan: from :func:`plan_tiles` for (W, H).
        scale: model scale factor.
        border: context pixels per side the model eats (mirror-padded at frame edges).

    Returns:
        float32 ``[1, C_out, H*scale, W*scale]``.
    """
    _, _, h, w = x.shape
    padded = _pad(x, border, plan.height - h + border, border, plan.width - w + border)
    tw, th = plan.tile_w, plan.tile_h
    if plan.count == 1:
        y = infer(np.ascontiguousarray(padded))
        return y[:, :, : h * scale, : w * scale]
    weights, norm = _weights(plan, scale)
    acc: np.ndarray | None = None
    tiles = ((ty, tx) for ty in plan.ys for tx in plan.xs)
    for (ty, tx), wt in zip(tiles, weights):
        tile = np.ascontiguousarray(padded[:, :, ty : ty + th + 2 * border, tx : tx + tw + 2 * border])
        out = infer(tile)
        if acc is None:
            acc = np.zeros((1, out.shape[1], plan.height * scale, plan.width * scale), np.float32)
        ys, xs = slice(ty * scale, (ty + th) * scale), slice(tx * scale, (tx + tw) * scale)
        acc[0, :, ys, xs] += out[0] * wt
    assert acc is not None
    acc *= norm
    return acc[:, :, : h * scale, : w * scale]


@functools.lru_cache(maxsize=16)
def _weights(plan: TilePlan, scale: int) -> tuple[list[np.ndarray], np.ndarray]:
    """Per-tile blending weights (row-major over ``plan``) and 1 / their sum: the same for
    every frame of a clip, so computed once per plan."""
    ov = plan.overlap * scale
    total = np.zeros((plan.height * scale, plan.width * scale), np.float32)
    weights = []
    for ty in plan.ys:
        wy = _ramp(plan.tile_h * scale, ty, ty + plan.tile_h, plan.height, ov)
        for tx in plan.xs:
            wx = _ramp(plan.tile_w * scale, tx, tx + plan.tile_w, plan.width, ov)
            wt = wy[:, None] * wx[None, :]
            total[ty * scale : (ty + plan.tile_h) * scale, tx * scale : (tx + plan.tile_w) * scale] += wt
            weights.append(wt)
    return weights, 1.0 / total
