"""Noise analysis and the noise generators, on real footage with known added noise.

Ground truth: the real clips are first downscaled 2× (zimg bilinear, which when shrinking
is a triangle filter two output pixels wide: it divides white noise by about 3.2), so the
source's own noise drops far below the smallest sigma added; the estimator reads 0.1-0.2
on these clean excerpts (texture and codec residue included). Assertions compare against
the added sigma alone, with no correction; in quadrature the clean reading would move the
truth by under 2 % at sigma 2. Frames are YUV420PS so nothing is clipped.

Run ``pytest tests/test_analysis_noise.py -s`` to see the accuracy tables.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from pathlib import Path

import cv2
import numpy as np
import pytest
import vapoursynth as vs

from vsremaster.analysis.annotate import annotate, prop_name
from vsremaster.analysis.noise import Noise, estimate_noise, immerkaer_sigma
from vsremaster.errors import InputError
from vsremaster.training.degrade.noise import (
    add_film_grain,
    add_gaussian_noise,
    add_poisson_gaussian_noise,
)

core = vs.core

CLIPS = ("vtest", "box", "bikes", "cup")  # outdoor texture, printed box, motion, flat wall
SIGMAS = (2.0, 5.0, 10.0, 20.0)


def _excerpt(path: Path, count: int = 5) -> vs.VideoNode:
    """``count`` frames spread over the clip, downscaled 2×, as YUV420PS."""
    clip = core.bs.VideoSource(str(path))
    picks = np.linspace(10, clip.num_frames - 10, count).astype(int)
    clip = core.std.Splice([clip[int(i)] for i in picks])
    return core.resize.Bilinear(
        clip, clip.width // 4 * 2, clip.height // 4 * 2, format=vs.YUV420PS
    )


def _series(clip: vs.VideoNode, *keys: str) -> dict[str, np.ndarray]:
    """Per-frame values of Noise ``keys`` measured through ``annotate``."""
    names = {k: prop_name(Noise, k) for k in keys}
    out: dict[str, list[float]] = {k: [] for k in keys}
    for frame in annotate(clip, [Noise()]).frames(close=True):
        for k, name in names.items():
            out[k].append(float(frame.props[name]))
    return {k: np.asarray(v) for k, v in out.items()}


def _flat_luma(clip: vs.VideoNode) -> tuple[np.ndarray, np.ndarray]:
    """All luma pixels of ``clip`` (8-bit scale) and whether their 5×5 surround is flat."""
    ys, flats = [], []
    for f in clip.frames(close=True):
        y = np.asarray(f[0], np.float32) * 255
        mean = cv2.blur(y, (5, 5))
        spread = np.sqrt(np.maximum(cv2.blur(y * y, (5, 5)) - mean * mean, 0))
        ys.append(y.ravel())
        flats.append(spread.ravel() < 1.5)
    return np.concatenate(ys), np.concatenate(flats)


@pytest.fixture(scope="module")
def clean(sample_clip: Callable[[str], Path]) -> dict[str, vs.VideoNode]:
    return {name: _excerpt(sample_clip(name)) for name in CLIPS}


def test_sigma_within_10_percent_on_textured_footage(clean: dict[str, vs.VideoNode]) -> None:
    rows = []
    for name, clip in clean.items():
        base = _series(clip, "sigmaY", "naiveY")
        for sigma in SIGMAS:
            noisy = add_gaussian_noise(clip, sigma, sigma * 0.6, seed=int(sigma))
            got = _series(noisy, "sigmaY", "sigmaU", "sigmaV", "naiveY")
            est, naive = float(np.median(got["sigmaY"])), float(np.median(got["naiveY"]))
            truth_q = math.hypot(sigma, float(np.median(base["sigmaY"])))
            rows.append((name, sigma, est, naive, truth_q))
            worst = float(np.max(np.abs(got["sigmaY"] / sigma - 1)))
            assert abs(est / sigma - 1) <= 0.10, (name, sigma, est)
            assert worst <= 0.15, (name, sigma, got["sigmaY"])  # every single frame
            for plane in ("sigmaU", "sigmaV"):
                chroma = float(np.median(got[plane]))
                assert abs(chroma / (0.6 * sigma) - 1) <= 0.10, (name, sigma, plane, chroma)
        rows.append((name, 0.0, float(np.median(base["sigmaY"])),
                     float(np.median(base["naiveY"])), 0.0))
    print("\nclip      added  robust  err%  naive  naive-err%  (truth incl. source, quadrature)")
    for name, sigma, est, naive, truth_q in rows:
        if sigma:
            print(f"{name:8s} {sigma:5.1f} {est:7.2f} {100 * (est / sigma - 1):+5.1f} "
                  f"{naive:6.2f} {100 * (naive / sigma - 1):+9.1f}  ({truth_q:.2f})")
        else:
            print(f"{name:8s} clean {est:7.2f}        {naive:6.2f}")
    # The naive whole-frame estimator reads texture as noise: at sigma 2 the robust one is
    # closer on every clip, and the naive one overshoots by more than 10 % on the textured ones.
    for name in CLIPS:
        est, naive = next((e, n) for c, s, e, n, _ in rows if c == name and s == 2.0)
        assert abs(est - 2) < abs(naive - 2)
    assert sum(naive > 2.2 for c, s, _, naive, _ in rows if s == 2.0) >= 3


def test_sigma_per_luma_band_follows_signal_dependent_noise(
    clean: dict[str, vs.VideoNode],
) -> None:
    gain, read = 0.12, 1.0  # variance = 0.12·y + 1: sigma 1.7 at y=16 … 5.4 at y=235
    print("\nclip     band    measured  expected")
    for name in ("vtest", "box"):
        clip = clean[name]
        noisy = add_poisson_gaussian_noise(clip, gain, read, seed=3)
        got = _series(noisy, "sigmaDark", "sigmaMid", "sigmaBright")
        # Expected per band: the noise std at the flat pixels of that band (where a noise
        # estimator looks), from the clean frames' luma and the known variance law.
        y, flat = _flat_luma(clip)
        edges = (16 + 219 / 3, 16 + 2 * 219 / 3)
        bands = (y < edges[0], (y >= edges[0]) & (y < edges[1]), y >= edges[1])
        measured = []
        for key, band in zip(("sigmaDark", "sigmaMid", "sigmaBright"), bands):
            value = float(np.nanmedian(got[key]))
            if (band & flat).mean() < 0.005 or not math.isfinite(value):
                continue  # too little flat picture in this band to judge
            expected = math.sqrt(gain * float(y[band & flat].mean()) + read**2)
            print(f"{name:8s} {key[5:]:7s} {value:8.2f} {expected:9.2f}")
            assert abs(value / expected - 1) <= 0.15, (name, key, value, expected)
            measured.append(value)
        assert measured == sorted(measured), (name, measured)  # brighter is noisier
        assert len(measured) >= 2


def test_clean_footage_reads_low_and_naive_reads_texture(
    clean: dict[str, vs.VideoNode],
) -> None:
    for name, clip in clean.items():
        got = _series(clip, "sigmaY", "naiveY", "flat")
        assert float(np.median(got["sigmaY"])) < 0.6, name
        assert np.median(got["naiveY"]) > np.median(got["sigmaY"]), name
        assert np.all((got["flat"] >= 0) & (got["flat"] <= 1)), name


def test_integer_clip_is_measured_on_the_8bit_scale(clean: dict[str, vs.VideoNode]) -> None:
    clip10 = core.resize.Point(clean["box"], format=vs.YUV420P10)
    noisy = add_gaussian_noise(clip10, 6.0, 3.0, seed=9)
    got = _series(noisy, "sigmaY", "sigmaU")
    assert abs(float(np.median(got["sigmaY"])) / 6 - 1) <= 0.10
    assert abs(float(np.median(got["sigmaU"])) / 3 - 1) <= 0.10


def test_summarize_gives_robust_span_statistics() -> None:
    series = {k: np.full(20, np.nan) for k in Noise.keys}
    series["sigmaY"][::2] = np.linspace(2, 4, 10)
    series["sigmaU"][::2] = 1.0
    out = Noise().summarize(series)
    assert out["sigma_y"] == pytest.approx(3.0, abs=0.01)
    assert out["sigma_y_p10"] < out["sigma_y"] < out["sigma_y_p90"]
    assert out["sigma_u"] == 1.0 and out["sigma_v"] is None  # no measured frame
    assert out["sigma_dark"] is None


# --------------------------------------------------------------------------------------------
# The generators themselves


def _flat(fmt: int = vs.YUV420PS, length: int = 3) -> vs.VideoNode:
    if fmt in (vs.YUV420PS, vs.YUV444PS):
        color = [0.5, 0.0, 0.0]
    else:
        depth = vs.core.get_video_format(fmt).bits_per_sample
        color = [128 << (depth - 8)] * 3
    return core.std.BlankClip(format=fmt, width=320, height=240, length=length, color=color)


def _planes8(frame: vs.VideoFrame) -> list[np.ndarray]:
    fmt = frame.format
    if fmt.sample_type == vs.FLOAT:
        return [np.asarray(frame[p], np.float64) * 255 for p in range(fmt.num_planes)]
    scale = 1 / (1 << (fmt.bits_per_sample - 8))
    return [np.asarray(frame[p], np.float64) * scale for p in range(fmt.num_planes)]


@pytest.mark.parametrize("fmt", [vs.YUV420P8, vs.YUV420P10, vs.YUV420PS])
def test_gaussian_noise_has_the_asked_sigma_at_any_depth(fmt: int) -> None:
    noisy = add_gaussian_noise(_flat(fmt), 5.0, 2.0, seed=1)
    assert noisy.format.id == fmt
    y, u, v = _planes8(noisy.get_frame(1))
    assert y.std() == pytest.approx(5.0, rel=0.02)
    assert u.std() == pytest.approx(2.0, rel=0.03) and v.std() == pytest.approx(2.0, rel=0.03)
    assert abs(y.mean() - (127.5 if fmt == vs.YUV420PS else 128)) < 0.1


def test_noise_is_seeded_and_new_on_every_frame() -> None:
    a = add_gaussian_noise(_flat(), 5.0, seed=1)
    b = add_gaussian_noise(_flat(), 5.0, seed=1)
    c = add_gaussian_noise(_flat(), 5.0, seed=2)
    fa1, fb1, fc1, fa2 = (
        np.asarray(x.get_frame(n)[0]) for x, n in ((a, 1), (b, 1), (c, 1), (a, 2))
    )
    assert np.array_equal(fa1, fb1)
    assert not np.array_equal(fa1, fc1) and not np.array_equal(fa1, fa2)


def test_poisson_gaussian_variance_follows_the_signal() -> None:
    dark = core.std.BlankClip(format=vs.GRAYS, width=320, height=240, length=2, color=40 / 255)
    bright = core.std.BlankClip(format=vs.GRAYS, width=320, height=240, length=2, color=200 / 255)
    for clip, level in ((dark, 40), (bright, 200)):
        y = _planes8(add_poisson_gaussian_noise(clip, 0.2, 1.5, seed=4).get_frame(0))[0]
        assert y.std() == pytest.approx(math.sqrt(0.2 * level + 1.5**2), rel=0.03)
        assert y.mean() == pytest.approx(level, abs=0.1)


def test_film_grain_is_correlated_with_the_asked_per_pixel_sigma() -> None:
    y = _planes8(add_film_grain(_flat(), 6.0, size=1.5, seed=5).get_frame(0))[0]
    grain = y - y.mean()
    assert grain.std() == pytest.approx(6.0, rel=0.04)
    neighbour = np.corrcoef(grain[:, :-1].ravel(), grain[:, 1:].ravel())[0, 1]
    assert neighbour > 0.7  # white noise would be ~0
    # A white-noise estimator reads correlated grain low: the documented limitation.
    assert immerkaer_sigma(y.astype(np.float32)) < 3.0
    assert estimate_noise(y.astype(np.float32)).sigma < 6.0


def test_generators_reject_rgb_and_bad_arguments() -> None:
    rgb = core.std.BlankClip(format=vs.RGB24, width=64, height=64, length=1)
    with pytest.raises(InputError, match="YUV or GRAY"):
        add_gaussian_noise(rgb, 2.0)
    with pytest.raises(InputError, match="sigmas"):
        add_gaussian_noise(_flat(), -1.0)
    with pytest.raises(InputError, match="gain"):
        add_poisson_gaussian_noise(_flat(), 0.0)
    with pytest.raises(InputError, match="size"):
        add_film_grain(_flat(), 2.0, size=0)
