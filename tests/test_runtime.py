"""Runtime: tile planning, feathered tiling without seams, backend selection errors."""

from __future__ import annotations

import numpy as np
import pytest

from vsremaster.errors import BackendError, InputError
from vsremaster.runtime.session import Backend, available_backends, check_backend
from vsremaster.runtime.tiling import auto_tile, plan_tiles, run_tiled


def box_blur_2x(x: np.ndarray) -> np.ndarray:
    """A stand-in model with a 3x3 receptive field and zero padding, then 2x nearest."""
    p = np.pad(x, ((0, 0), (0, 0), (1, 1), (1, 1)))
    h, w = x.shape[2:]
    y = sum(p[:, :, i : i + h, j : j + w] for i in range(3) for j in range(3)) / 9
    return y.repeat(2, axis=2).repeat(2, axis=3)


def test_plan_covers_frame_with_equal_tiles_and_clamped_last():
    plan = plan_tiles(700, 300, tile=(256, 128), overlap=16, multiple=8)
    assert plan.width == 704 and plan.height == 304  # padded to the multiple
    assert plan.xs[0] == 0 and plan.xs[-1] + plan.tile_w == plan.width
    assert plan.ys[-1] + plan.tile_h == plan.height
    # neighbours share at least 2*overlap pixels, so every seam has context on both sides
    assert all(b - a <= plan.tile_w - 2 * plan.overlap for a, b in zip(plan.xs, plan.xs[1:]))
    assert plan.tile_w % 8 == 0 and plan.tile_h % 8 == 0


def test_plan_single_tile_when_frame_fits():
    plan = plan_tiles(320, 240, tile=None, overlap=16)
    assert plan.count == 1 and (plan.tile_w, plan.tile_h) == (320, 240) and plan.overlap == 0


def test_plan_rejects_overlap_that_leaves_no_step():
    with pytest.raises(InputError, match="overlap"):
        plan_tiles(640, 480, tile=(32, 32), overlap=16)


def test_auto_tile_fits_budget():
    assert auto_tile(720, 480, bytes_per_pixel=1000, budget=1 << 30) is None
    tile = auto_tile(3840, 2160, bytes_per_pixel=4000, budget=256 << 20, multiple=4)
    assert tile is not None and tile[0] * tile[1] * 4000 <= 256 << 20 and tile[0] % 4 == 0


def test_feathered_tiles_match_whole_frame_but_abutting_tiles_show_seams():
    rng = np.random.default_rng(1)
    x = rng.random((1, 3, 150, 230), dtype=np.float32)
    whole = run_tiled(x, box_blur_2x, plan_tiles(230, 150, tile=None, overlap=0), scale=2)
    feathered = run_tiled(x, box_blur_2x, plan_tiles(230, 150, tile=(64, 64), overlap=8), scale=2)
    abutting = run_tiled(x, box_blur_2x, plan_tiles(230, 150, tile=(64, 64), overlap=0), scale=2)
    assert feathered.shape == whole.shape == (1, 3, 300, 460)
    assert np.abs(feathered - whole).max() < 1e-5  # padding-corrupted tile edges dropped
    assert np.abs(abutting - whole).max() > 0.1  # the failure mode feathering removes


def test_border_is_fed_as_context():
    """A model eating 2 px per side still returns the full frame, tiled or not."""

    def valid_5x5_mean(t: np.ndarray) -> np.ndarray:
        h, w = t.shape[2] - 4, t.shape[3] - 4
        return sum(t[:, :, i : i + h, j : j + w] for i in range(5) for j in range(5)) / 25

    x = np.random.default_rng(2).random((1, 1, 97, 131), dtype=np.float32)
    whole = run_tiled(x, valid_5x5_mean, plan_tiles(131, 97, tile=None, overlap=0), scale=1, border=2)
    tiled = run_tiled(x, valid_5x5_mean, plan_tiles(131, 97, tile=(48, 48), overlap=4), scale=1, border=2)
    assert whole.shape == tiled.shape == (1, 1, 97, 131)
    np.testing.assert_allclose(tiled, whole, atol=1e-5)  # valid convs see real context


def test_cpu_backend_always_available_and_gpu_request_fails_clearly():
    assert Backend.CPU in available_backends()
    assert check_backend("auto") is Backend.AUTO
    if Backend.CUDA not in available_backends():
        with pytest.raises(BackendError, match="not available.*vsremaster\\[gpu\\]"):
            check_backend("cuda")
    with pytest.raises(BackendError, match="unknown backend"):
        check_backend("vulkan")
    found = available_backends()
    assert Backend.NCNN in found and Backend.TORCH in found  # ncnn and torch are dependencies
    assert found.index(Backend.CPU) < found.index(Backend.TORCH)  # auto never picks torch
