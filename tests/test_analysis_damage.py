"""Compression, blur, scratch and dust analysis on real footage with known damage.

Inputs are made from real clips with the generators of ``vsremaster.training.degrade``:
real codec round trips (libx264, MPEG-2) at falling bitrates, Gaussian blur, synthetic
scratches, dust and snow; the clean clip is always measured beside them. Codec tests use
2×-downscaled excerpts so that the sources' own H.264 block grid is gone.

Run ``pytest tests/test_analysis_damage.py -s`` to see the tables.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from functools import partial
from pathlib import Path

import cv2
import numpy as np
import pytest
import vapoursynth as vs

from vsremaster.analysis.annotate import annotate, prop_name
from vsremaster.analysis.base import Frame, Metric
from vsremaster.analysis.compression import Blur, Compression
from vsremaster.analysis.damage import Dust, Scratches, find_dust, find_scratches
from vsremaster.analysis.noise import Noise
from vsremaster.errors import InputError
from vsremaster.training.degrade.damage import add_dust, add_scratches, add_snow, compress
from vsremaster.training.degrade.noise import add_gaussian_noise, map_planes

core = vs.core

CODEC_CLIPS = ("vtest", "box", "bikes", "cup")
DAMAGE_CLIPS = ("vtest", "box", "cup")  # vtest has a thin lamp post and tripod legs
# Bits per pixel: low enough that the encoder is not at its best quality already.
BPP = {"libx264": (0.06, 0.02, 0.007), "mpeg2": (0.15, 0.06, 0.025)}


def _source(path: Path, start: int, length: int, *, half: bool) -> vs.VideoNode:
    clip = core.bs.VideoSource(str(path))[start : start + length]
    if half:
        clip = core.resize.Bilinear(clip, clip.width // 4 * 2, clip.height // 4 * 2)
    return clip


def _series(clip: vs.VideoNode, metric: Metric) -> dict[str, np.ndarray]:
    """Per-frame values of every key of ``metric``, measured through ``annotate``."""
    names = {k: prop_name(metric, k) for k in metric.keys}
    out: dict[str, list[float]] = {k: [] for k in metric.keys}
    for frame in annotate(clip, [metric]).frames(close=True):
        for k, name in names.items():
            out[k].append(float(frame.props[name]))
    return {k: np.asarray(v) for k, v in out.items()}


def _kbps(clip: vs.VideoNode, bpp: float) -> float:
    return bpp * clip.width * clip.height * float(clip.fps) / 1000


def _gaussian_blur(clip: vs.VideoNode, sigma: float) -> vs.VideoNode:
    def blur(n: int, planes: list[np.ndarray]) -> list[np.ndarray]:
        return [cv2.GaussianBlur(p, (0, 0), sigma) for p in planes]

    return map_planes(clip, blur) if sigma else clip


@pytest.fixture(scope="module")
def codec_sources(sample_clip: Callable[[str], Path]) -> dict[str, vs.VideoNode]:
    return {name: _source(sample_clip(name), 40, 24, half=True) for name in CODEC_CLIPS}


def test_blockiness_rises_as_the_bitrate_falls(codec_sources: dict[str, vs.VideoNode]) -> None:
    print("\nclip     codec    bpp     blockiness  blockinessAny  ringing")
    for name, clip in codec_sources.items():
        clean = _series(clip, Compression())
        clean_block = float(np.median(clean["blockiness"]))
        clean_ring = float(np.nanmedian(clean["ringing"]))
        print(f"{name:8s} clean    -      {clean_block:10.3f} "
              f"{np.median(clean['blockinessAny']):14.3f} {clean_ring:8.2f}")
        assert 0.9 < clean_block < 1.15, name  # the frame-anchored grid: no blocking
        for codec, rates in BPP.items():
            values, rings = [clean_block], []
            for bpp in rates:
                got = _series(compress(clip, codec, _kbps(clip, bpp)), Compression())
                values.append(float(np.median(got["blockiness"])))
                rings.append(float(np.nanmedian(got["ringing"])))
                print(f"{name:8s} {codec:8s} {bpp:<6} {values[-1]:10.3f} "
                      f"{np.median(got['blockinessAny']):14.3f} {rings[-1]:8.2f}")
            assert values == sorted(values), (name, codec, values)
            assert values[-1] > clean_block + 0.15, (name, codec, values)
            if codec == "mpeg2":  # mosquito noise beside edges at a middle bitrate
                assert rings[1] > clean_ring + 0.1, (name, rings, clean_ring)


def test_blockiness_any_grid_finds_a_cropped_grid(codec_sources: dict[str, vs.VideoNode]) -> None:
    clip = codec_sources["vtest"]
    blocky = compress(clip, "mpeg2", _kbps(clip, 0.025))
    cropped = core.std.Crop(blocky, left=4, top=2)  # grid no longer at the frame's corner
    got = _series(cropped, Compression())
    assert np.median(got["blockinessAny"]) > 1.5
    assert np.median(got["blockiness"]) < np.median(got["blockinessAny"]) - 0.3


def test_blur_rises_with_gaussian_blur_and_ignores_noise(
    codec_sources: dict[str, vs.VideoNode],
) -> None:
    print("\nclip     added-blur: 0     1     2     3   (blur sigma, px)   noisy(10)")
    for name, clip in codec_sources.items():
        clip = core.resize.Point(clip, format=vs.YUV420PS)
        values = [float(np.nanmedian(_series(_gaussian_blur(clip, s), Blur())["sigma"]))
                  for s in (0, 1, 2, 3)]
        noisy = float(np.nanmedian(_series(add_gaussian_noise(clip, 10, seed=1), Blur())["sigma"]))
        print(f"{name:8s} {'':12s}" + " ".join(f"{v:5.2f}" for v in values) + f"   {noisy:14.2f}")
        assert values == sorted(values), (name, values)
        assert values[3] > values[0] + 1.2, (name, values)
        # A blur of 2 px on top of the source's own reads about sqrt(own² + 4).
        assert values[2] == pytest.approx(np.hypot(values[0], 2), rel=0.2), (name, values)
        assert abs(noisy - values[0]) < 0.25, (name, noisy, values[0])


@pytest.fixture(scope="module")
def damage_sources(sample_clip: Callable[[str], Path]) -> dict[str, vs.VideoNode]:
    return {name: _source(sample_clip(name), 60, 24, half=False) for name in DAMAGE_CLIPS}


def test_scratches_are_found_and_real_structure_is_not(
    damage_sources: dict[str, vs.VideoNode], sample_clip: Callable[[str], Path]
) -> None:
    print("\nclip     frames-with(clean) length(clean)  frames-with(scratched) length(scr.)")
    for name, clip in damage_sources.items():
        clean = _series(clip, Scratches())
        scratched, mask = add_scratches(clip, seed=7)
        dirty = _series(scratched, Scratches())
        print(f"{name:8s} {np.mean(clean['count'] > 0):18.2f} {clean['length'].mean():13.3f}"
              f" {np.mean(dirty['count'] > 0):22.2f} {dirty['length'].mean():13.3f}")
        assert clean["length"].mean() <= 0.02, name
        assert dirty["length"].mean() >= 0.5, name
        assert np.mean(dirty["count"] > 0) >= 0.6, name
        # What is found is on the scratches: detected columns fall on the damage mask.
        hits = total = 0
        for n in range(1, clip.num_frames - 1, 4):
            ys = [np.asarray(scratched.get_frame(i)[0], np.float32) for i in (n - 1, n, n + 1)]
            m = np.asarray(mask.get_frame(n)[0])
            for line in find_scratches(ys[1], ys[0], ys[2]):
                x = int(round(line.x))
                total += 1
                hits += bool(m[line.top : line.bottom + 1, max(x - 2, 0) : x + 3].max() > 0.1)
        assert total and hits / total >= 0.9, (name, hits, total)
    # Another stretch of vtest: its lamp post and tripod legs are never taken for scratches.
    vtest = core.bs.VideoSource(str(sample_clip("vtest")))
    whole = _series(vtest[300:340], Scratches())
    assert whole["count"].max() == 0


def test_dust_and_snow_are_found_and_clean_footage_stays_clean(
    damage_sources: dict[str, vs.VideoNode],
) -> None:
    print("\nclip     coverage‰ clean   dust (truth)    snow (truth)   dust recall")
    for name, clip in damage_sources.items():
        clean = _series(clip, Dust())
        dusty, dust_mask = add_dust(clip, seed=5)
        snowy, snow_mask = add_snow(clip, seed=5)
        dust = _series(dusty, Dust())
        snow = _series(snowy, Dust())
        truth_dust = np.mean([np.mean(np.asarray(f[0]) > 0.3) for f in dust_mask.frames()])
        truth_snow = np.mean([np.mean(np.asarray(f[0]) > 0.3) for f in snow_mask.frames()])
        # Recall: share of clearly damaged pixels (opacity > 0.3) inside found spots.
        found = hit = 0
        for n in range(1, clip.num_frames - 1, 3):
            ys = [np.asarray(dusty.get_frame(i)[0], np.float32) for i in (n - 1, n, n + 1)]
            _, _, spots = find_dust(*ys, with_mask=True)
            truth = np.asarray(dust_mask.get_frame(n)[0]) > 0.3
            found += int(truth.sum())
            hit += int((spots[truth] > 0).sum())
        recall = hit / max(found, 1)
        print(f"{name:8s} {clean['coverage'].mean() * 1e3:15.4f} "
              f"{dust['coverage'].mean() * 1e3:6.3f} ({truth_dust * 1e3:.3f})  "
              f"{snow['coverage'].mean() * 1e3:6.3f} ({truth_snow * 1e3:.3f})  {recall:8.2f}")
        assert clean["coverage"].mean() < 2e-5, name
        assert clean["count"].mean() < 0.5, name
        assert dust["coverage"].mean() > 20 * max(clean["coverage"].mean(), 1e-6), name
        assert dust["count"].mean() >= 2, name  # about 4 particles per frame drawn
        assert snow["coverage"].mean() > 0.4 * truth_snow, name
        assert recall >= 0.6, (name, recall)


def test_summaries_are_json_ready_and_nan_aware() -> None:
    nan = np.nan
    scr = Scratches().summarize({"count": np.array([0, nan, 2, nan, 0.0]),
                                 "length": np.array([0, nan, 1.5, nan, 0.0])})
    assert scr == {"length": 0.5, "length_p90": pytest.approx(1.2), "frames_with": 0.3333,
                   "count": 0.0}
    dust = Dust().summarize({"count": np.full(4, nan), "coverage": np.full(4, nan)})
    assert dust["coverage"] is None and dust["frames_with"] is None
    comp = Compression().summarize({"blockiness": np.array([1.0, 1.2, nan]),
                                    "blockinessAny": np.array([1.1, 1.3, nan]),
                                    "ringing": np.full(3, nan)})
    assert comp["blockiness"] == pytest.approx(1.1) and comp["ringing"] is None


def test_all_sampled_metrics_run_together_on_every_kth_frame(
    damage_sources: dict[str, vs.VideoNode],
) -> None:
    metrics: list[Metric] = [Noise(), Compression(), Blur(), Scratches(), Dust()]
    clip = damage_sources["cup"][:9]
    gray = core.std.ShufflePlanes(clip, 0, vs.GRAY)
    for source in (clip, gray):
        names = [prop_name(m, k) for m in metrics for k in m.keys]
        for n, frame in enumerate(annotate(source, metrics, every=4).frames(close=True)):
            present = [name in frame.props for name in names]
            assert all(present) if n % 4 == 0 else not any(present), (n, present)
            if n % 4 == 0:
                values = {name: frame.props[name] for name in names}
                assert np.isfinite(values["VSR_NoiseSigmaY"]), values
                assert np.isnan(values["VSR_NoiseSigmaU"]) == (source is gray)


# --------------------------------------------------------------------------------------------
# The damage generators themselves


def test_compress_keeps_format_length_and_props(codec_sources: dict[str, vs.VideoNode]) -> None:
    clip = core.std.SetFrameProps(codec_sources["cup"], _Matrix=6, VSRTag=7)  # 26.78 fps
    for fmt in (vs.YUV420P8, vs.YUV420P10, vs.YUV444PS):
        src = core.resize.Bicubic(clip, format=fmt)
        for codec in ("libx264", "mpeg2"):
            out = compress(src, codec, 300)
            assert (out.format.id, out.num_frames, out.fps) == (fmt, src.num_frames, src.fps)
            f = out.get_frame(5)
            assert f.props["VSRTag"] == 7 and f.props["_Matrix"] == 6
    low, high = (compress(clip, "mpeg2", kbps) for kbps in (60, 1500))
    ref = np.asarray(clip.get_frame(8)[0], np.float64)
    err = [np.abs(np.asarray(c.get_frame(8)[0], np.float64) - ref).mean() for c in (low, high)]
    assert err[0] > err[1] > 0  # really lossy, and worse at the lower bitrate


def test_compress_rejects_what_a_codec_cannot_take() -> None:
    with pytest.raises(InputError, match="YUV"):
        compress(core.std.BlankClip(format=vs.RGB24, length=2), "libx264", 100)
    with pytest.raises(InputError, match="odd"):
        compress(core.std.BlankClip(format=vs.YUV444P8, width=33, height=32, length=2))
    with pytest.raises(InputError, match="codec"):
        blank = core.std.BlankClip(format=vs.YUV420P8, length=2)
        compress(blank, "vp9", 100)  # type: ignore[arg-type]


def test_overlay_damage_masks_tell_exactly_what_changed(
    damage_sources: dict[str, vs.VideoNode],
) -> None:
    clip = damage_sources["box"]
    for make in (partial(add_scratches, rate=0.5), partial(add_dust, rate=8), add_snow):
        damaged, mask = make(clip, seed=11)
        assert damaged.format.id == clip.format.id and damaged.num_frames == clip.num_frames
        assert mask.format.id == vs.GRAYS and (mask.width, mask.height) == (clip.width, clip.height)
        a = np.asarray(clip.get_frame(3)[0], np.int16)
        b = np.asarray(damaged.get_frame(3)[0], np.int16)
        m = np.asarray(mask.get_frame(3)[0])
        assert m.max() > 0.5
        assert np.array_equal(a[m == 0], b[m == 0])  # untouched outside the mask
        assert np.abs(a - b)[m > 0.5].mean() > 20  # clearly visible under it
        again = np.asarray(make(clip, seed=11)[0].get_frame(3)[0], np.int16)
        assert np.array_equal(b, again)  # seeded


def test_scratches_persist_and_drift_while_dust_lives_one_frame(
    damage_sources: dict[str, vs.VideoNode],
) -> None:
    clip = damage_sources["cup"]
    _, scratch_mask = add_scratches(clip, rate=0.3, seed=2)
    _, dust_mask = add_dust(clip, rate=10, seed=2)

    def columns(mask: vs.VideoNode, n: int) -> np.ndarray:
        return np.asarray(mask.get_frame(n)[0]).max(0) > 0.3

    overlap_scratch = [np.mean(columns(scratch_mask, n)[columns(scratch_mask, n + 1)])
                       for n in range(10)]
    assert np.mean(overlap_scratch) > 0.6  # most scratch columns are there next frame too
    m0, m1 = (np.asarray(dust_mask.get_frame(n)[0]) > 0.3 for n in (4, 5))
    assert m0.any() and m1.any()
    assert (m0 & m1).sum() < 0.05 * min(m0.sum(), m1.sum())  # only chance overlaps


# --------------------------------------------------------------------------------------------
# Speed


def test_sampled_metrics_fit_the_per_frame_budget(sample_clip: Callable[[str], Path]) -> None:
    """Noise + Compression + Blur + Scratches + Dust on 720×480 frames, one core each.

    The budget is 40 ms per measured frame for all of them together; the assertion
    allows 2× for other work sharing the machine.
    """
    clip = core.resize.Bicubic(core.bs.VideoSource(str(sample_clip("vtest"))), 720, 480)
    clip = add_scratches(add_gaussian_noise(clip, 4.0, seed=1), seed=1)[0]

    def window(n: int) -> list[Frame]:
        return [Frame(i, tuple(np.asarray(f[p], np.float32) for p in range(3)))
                for i, f in ((i, clip.get_frame(i)) for i in (n - 1, n, n + 1))]

    windows = [window(n) for n in (100, 400, 700)]
    metrics: Sequence[Metric] = (Noise(), Compression(), Blur(), Scratches(), Dust())
    cv2_threads = cv2.getNumThreads()
    cv2.setNumThreads(1)
    try:
        per_metric = {}
        for metric in metrics:
            best = float("inf")
            for _ in range(5):
                start = time.perf_counter()
                for fs in windows:
                    metric.measure(fs if metric.before else fs[1:2])
                best = min(best, (time.perf_counter() - start) / len(windows))
            per_metric[metric.name] = best * 1000
    finally:
        cv2.setNumThreads(cv2_threads)
    total = sum(per_metric.values())
    print("\nms per 720x480 frame: " + ", ".join(f"{k} {v:.1f}" for k, v in per_metric.items())
          + f"; total {total:.1f}")
    assert total < 80
