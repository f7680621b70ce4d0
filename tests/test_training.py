"""The training package the stage recipes share: windows of real footage, the field split
the deinterlacer learns from, a resumable loop and a checked ONNX export."""

from __future__ import annotations

import numpy as np
import pytest
import vapoursynth as vs

torch = pytest.importorskip("torch")

from vsremaster.training import deinterlace as recipe  # noqa: E402
from vsremaster.training.data import WindowSampler  # noqa: E402
from vsremaster.training.export import export_onnx  # noqa: E402
from vsremaster.training.loop import TrainConfig, load_weights, train  # noqa: E402


@pytest.fixture(scope="module")
def footage(sample_clip):
    clip = vs.core.bs.VideoSource(str(sample_clip("cup")))[:40]
    frames = np.stack([np.asarray(f[0]).copy() for f in clip.frames()])
    return {"clip/cup": frames, "photo/cup": frames[20:21]}


def test_windows_are_real_frames_in_range_with_motion(footage):
    sampler = WindowSampler(footage, size=(64, 96), seed=1)
    x = sampler(8)
    assert x.shape == (8, 5, 64, 96) and x.dtype == torch.float32
    assert 0 <= float(x.min()) and float(x.max()) <= 1
    moving = (x[:, 1:] - x[:, :-1]).abs().mean((1, 2, 3))
    assert (moving > 1e-3).sum() >= 4  # most windows move (a few photo windows are static)
    again = WindowSampler(footage, size=(64, 96), seed=1)(8)
    assert torch.equal(x, again)  # the seed reproduces the data


def test_fields_follow_the_msu_split():
    frames = torch.arange(5 * 4 * 3, dtype=torch.float32).reshape(1, 5, 4, 3)
    fields, target = recipe.split_window(frames)
    assert torch.equal(fields[0, 1], frames[0, 1, 1::2])  # t-1: the other parity
    assert torch.equal(fields[0, 2], frames[0, 2, 0::2])  # t: the current (even) rows
    assert torch.equal(target[0, 0], frames[0, 2, 1::2])  # the missing rows of frame t


def test_loop_resumes_and_export_matches_pytorch(footage, tmp_path):
    sampler = WindowSampler(footage, size=(32, 48), seed=0)
    small = {**recipe.RECIPE, "widths": (8, 8, 8), "blocks": (1, 1, 1)}
    cfg = TrainConfig(steps=4, batch=2, warmup=1, log_every=2, save_every=2)
    ckpt = tmp_path / "ck.pt"
    lines = []
    assert train(recipe.build(small), sampler, recipe.loss, cfg, ckpt, seconds=0.0,
                 log=lines.append) == 0
    assert train(recipe.build(small), sampler, recipe.loss, cfg, ckpt, log=lines.append) == 4
    assert any("resumed" in line for line in lines) and any("ETA" in line for line in lines)
    model = recipe.build(small)
    assert load_weights(model, ckpt) == 4
    result = export_onnx(model, torch.rand(1, 5, 16, 24), tmp_path / "m.onnx",
                         input_name="fields", output_name="missing",
                         dynamic={0: "n", 2: "h", 3: "w"})
    assert result["max_abs_error"] < 1e-4 and len(result["sha256"]) == 64


def test_descratch_data_damages_only_what_its_mask_says(footage):
    from vsremaster.training import descratch

    sampler = descratch.DamageSampler(WindowSampler(footage, size=(64, 96), seed=2), seed=3)
    damaged, truth, visible = sampler(16)
    assert damaged.shape == (16, 5, 64, 96) and truth.shape == visible.shape == (16, 1, 64, 96)
    changed = (damaged[:, 2:3] - truth).abs() * 255
    assert float(changed[visible == 0].max()) < 1e-3  # every change is in the mask
    assert float((visible > 0.5).float().mean()) > 0.005  # and there is damage to find
    again = descratch.DamageSampler(WindowSampler(footage, size=(64, 96), seed=2), seed=3)(16)
    assert torch.equal(damaged, again[0])  # seeded: the data reproduces


def test_descratch_structure_is_content_with_its_own_motion():
    from vsremaster.training.descratch import _structure

    flat = np.full((5, 64, 96), 60.0, np.float32)
    rng = np.random.default_rng(5)
    drawn = [_structure(rng, flat) for _ in range(12)]
    assert all((d != 60).any() for d in drawn)
    # still objects stay put; moving ones shift from frame to frame; tones stay in 20-230
    moving = [not np.allclose(d[0], d[4]) for d in drawn]
    assert any(moving) and not all(moving)
    assert all(20 - 1e-3 <= d[d != 60].min() and d.max() <= 230 + 1e-3 for d in drawn)


def test_denoise_data_has_the_noise_level_its_map_says(footage):
    from vsremaster.training import denoise

    windows = WindowSampler(footage, size=(64, 96), seed=2)
    pool = denoise.codec_pool(WindowSampler(footage, frames=8, size=(96, 128), seed=3), 6)
    clean, coded, sigma = pool
    assert coded.shape == clean.shape == (6, 8, 96, 128)
    errors = np.sqrt(((coded.astype(float) - clean) ** 2).mean((1, 2, 3)))
    assert (errors > 0.3).all() and (errors < 20).all()  # damaged, not destroyed
    sampler = denoise.NoiseSampler(windows, pool, size=(64, 96), compressed=0.25, seed=0)
    x, truth = sampler(16)
    assert x.shape == (16, 7, 64, 96) and truth.shape == (16, 1, 64, 96)
    frames = x[:, :5] * 255
    assert torch.allclose(frames, frames.round(), atol=1e-3)  # 8-bit like a source
    noise_sigma, coded_flag = x[:, 5, 0, 0] * denoise.SIGMA_SCALE, x[:, 6, 0, 0]
    assert coded_flag.tolist() == [0.0] * 12 + [1.0] * 4
    for i in range(12):  # the map is the noise's RMS (clipping at black/white lowers it)
        rms = float(((x[i, 2] - truth[i, 0]) * 255).pow(2).mean().sqrt())
        assert rms == pytest.approx(float(noise_sigma[i]), abs=0.35 + 0.12 * float(noise_sigma[i]))
    model = denoise.build({**denoise.RECIPE, "widths": (8, 8, 8), "blocks": (1, 1, 1)})
    assert torch.equal(model(x), x[:, 2:3])  # untrained: the identity


def test_training_with_worker_processes_is_reproducible(footage, tmp_path):
    sampler = WindowSampler(footage, size=(32, 48), seed=0)
    small = {**recipe.RECIPE, "widths": (8, 8, 8), "blocks": (1, 1, 1)}
    cfg = TrainConfig(steps=3, batch=2, warmup=1)

    def weights(workers: int, name: str):
        torch.manual_seed(0)
        model = recipe.build(small)
        train(model, sampler, recipe.loss, cfg, tmp_path / name, workers=workers,
              log=lambda line: None)
        return torch.cat([p.detach().flatten() for p in model.parameters()])

    two = weights(2, "a.pt")
    assert torch.equal(two, weights(2, "b.pt"))  # same seed, same worker count: same run
    assert not torch.equal(two, weights(0, "c.pt"))  # each worker has its own stream


def _ffmpeg_luma(stream: bytes, shape) -> np.ndarray:
    import subprocess

    import imageio_ffmpeg

    out = subprocess.run([imageio_ffmpeg.get_ffmpeg_exe(), "-v", "error", "-i", "-", "-f",
                          "rawvideo", "-pix_fmt", "yuv420p", "-"], input=stream,
                         capture_output=True, check=True).stdout
    t, h, w = shape
    return np.frombuffer(out, np.uint8).reshape(t, -1)[:, : h * w].reshape(shape)


@pytest.mark.parametrize("codec, quality, nonlinear", [("h264", 44, False),
                                                       ("mpeg2", 28, True),
                                                       ("mpeg2", 31, False)])
def test_codec_damage_decodes_bit_exact_without_ffmpeg(footage, codec, quality, nonlinear):
    from vsremaster.training import denoise

    frames = footage["clip/cup"][:6, :96, :128]
    stream = denoise.encode(frames, codec, quality, nonlinear=nonlinear)
    luma = denoise.decode(stream, codec, frames.shape)  # OpenCV: what a training machine has
    assert np.array_equal(luma, _ffmpeg_luma(stream, frames.shape))
    assert 0.1 < np.abs(luma.astype(float) - frames).mean() < 30  # damaged, not destroyed


def test_codec_pool_is_kept_as_streams_and_checked_when_loaded(footage, tmp_path):
    import json

    import cv2

    from vsremaster.training import denoise

    cv2.imwrite(str(tmp_path / "cup.png"), footage["photo/cup"][0])
    (tmp_path / "footage.json").write_text(json.dumps([{"key": "photo/cup.png",
                                                        "file": "cup.png"}]))
    small = {**denoise.RECIPE, "pool": 4, "pool_size": (64, 96), "pool_frames": 6}
    path = denoise.pool_file(tmp_path, small)
    made = path.stat().st_mtime_ns
    clean, damaged, sigma = denoise.load_pool(tmp_path, small)
    assert clean.shape == damaged.shape == (4, 6, 64, 96) and sigma.shape == (4,)
    assert (np.abs(damaged.astype(float) - clean).mean((1, 2, 3)) > 0.3).all()
    assert denoise.pool_file(tmp_path, small).stat().st_mtime_ns == made  # reused
    assert denoise.pool_file(tmp_path, {**small, "crf": (30.0, 31.0)}) != path  # settings differ
    with np.load(path) as z:
        tampered = {k: z[k] for k in z.files}
    tampered["damaged_sum"] = tampered["damaged_sum"] + 1
    np.savez(path, **tampered)
    with pytest.raises(RuntimeError, match="decodes the pool's streams differently"):
        denoise.load_pool(tmp_path, small)
