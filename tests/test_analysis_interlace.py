"""Interlacing analysis on real footage with a known truth.

Progressive sample clips are interlaced (MSU protocol) or telecined by
``vsremaster.training.degrade.interlace``; the ``Interlace`` metric must then tell TFF, BFF,
progressive and 3:2 pulldown apart, see a ``_FieldBased`` that lies, and give combing scores
that separate moving interlaced frames from progressive ones.

Run as a script (``python tests/test_analysis_interlace.py``) it prints the accuracy table
and the per-frame cost of ``Interlace.measure`` at 720×480.
"""

from __future__ import annotations

import functools
import sys
import time
from fractions import Fraction

import numpy as np
import pytest
import vapoursynth as vs

from vsremaster.analysis.annotate import annotate, prop_name
from vsremaster.analysis.base import Frame
from vsremaster.analysis.interlace import FIELD_ORDERS, Interlace
from vsremaster.errors import InputError
from vsremaster.samples import sample_path
from vsremaster.training.degrade.interlace import PULLDOWN_FIELDS, interlace, telecine

core = vs.core

CLIPS = ("bikes", "vtest", "box")
EXCERPT = slice(20, 120)  # 100 progressive frames -> 50 interlaced frames per decision
VARIANTS = ("TFF", "BFF", "progressive")


# ---------------------------------------------------------------- helpers
@functools.cache
def _source(name: str) -> vs.VideoNode:
    """A 100-frame progressive excerpt of a sample clip, 8-bit 4:2:0."""
    clip = core.bs.VideoSource(str(sample_path(name)))[EXCERPT]
    if clip.format.id != vs.YUV420P8:
        clip = core.resize.Bicubic(clip, format=vs.YUV420P8)
    return clip


def _variant(name: str, variant: str) -> vs.VideoNode:
    """The excerpt as TFF / BFF interlaced (50 frames), progressive (every 2nd frame),
    or telecined (3:2 pulldown of its first 48 frames: 60 frames)."""
    src = _source(name)
    if variant == "TFF":
        return interlace(src, tff=True)
    if variant == "BFF":
        return interlace(src, tff=False)
    if variant == "telecined":
        return telecine(src[:48])
    return src[::2]


def _series(clip: vs.VideoNode, metric: Interlace | None = None) -> dict[str, np.ndarray]:
    """Per-frame values of every key, read back from the ``VSR_Interlace*`` frame props."""
    metric = metric or Interlace()
    values: dict[str, list[float]] = {key: [] for key in metric.keys}
    for frame in annotate(clip, [metric]).frames(close=True):
        for key in metric.keys:
            values[key].append(frame.props[prop_name(metric, key)])
    return {key: np.asarray(v) for key, v in values.items()}


@functools.cache
def _summary(name: str, variant: str) -> dict:
    return Interlace().summarize(_series(_variant(name, variant)))


def _luma(clip: vs.VideoNode) -> list[np.ndarray]:
    return [np.asarray(f[0], dtype=np.float32) for f in clip.frames(close=True)]


# ---------------------------------------------------------------- degradations
def test_interlace_weaves_fields_of_consecutive_frames() -> None:
    src = _source("bikes")[:21]
    progressive = _luma(src)
    for tff, first, second in ((True, 0, 1), (False, 1, 0)):
        clip = interlace(core.std.SetFieldBased(src, 2), tff=tff)  # a stale flag is ignored
        assert clip.num_frames == 10  # odd trailing frame dropped
        assert clip.fps == src.fps / 2
        props = clip.get_frame(3).props
        assert props["_FieldBased"] == (2 if tff else 1)
        assert props["_DurationNum"] / props["_DurationDen"] == pytest.approx(2 / 25)
        for k, y in enumerate(_luma(clip)):
            # first field (in time) from frame 2k, second field from frame 2k+1
            np.testing.assert_array_equal(y[first::2], progressive[2 * k][first::2])
            np.testing.assert_array_equal(y[second::2], progressive[2 * k + 1][second::2])


def test_telecine_is_3_2_pulldown() -> None:
    src = core.std.AssumeFPS(_source("bikes")[:12], fpsnum=24000, fpsden=1001)
    progressive = _luma(src)
    clip = telecine(src)
    assert clip.num_frames == 15
    assert clip.fps == Fraction(30000, 1001)
    assert clip.get_frame(0).props["_FieldBased"] == 2
    # A B C D -> [At Ab] [Bt Bb] [Bt Cb] [Ct Db] [Dt Db]
    cadence = [(0, 0), (1, 1), (1, 2), (2, 3), (3, 3)]
    for k, y in enumerate(_luma(clip)):
        cycle, phase = divmod(k, 5)
        top, bottom = (4 * cycle + i for i in cadence[phase])
        np.testing.assert_array_equal(y[0::2], progressive[top][0::2])
        np.testing.assert_array_equal(y[1::2], progressive[bottom][1::2])
    assert telecine(src, tff=False).get_frame(0).props["_FieldBased"] == 1
    assert len(PULLDOWN_FIELDS) == 10


def test_degradations_reject_what_they_cannot_split() -> None:
    odd = core.std.BlankClip(width=64, height=50, format=vs.YUV420P8, length=8)
    with pytest.raises(InputError, match="height 50"):
        interlace(odd)
    ok = core.std.BlankClip(width=64, height=48, format=vs.YUV420P8, length=8)
    with pytest.raises(InputError, match="pattern"):
        telecine(ok, pattern=(1, 0))
    with pytest.raises(InputError, match="at least 2 frames"):
        interlace(ok[:1])


# ---------------------------------------------------------------- decisions
@pytest.mark.parametrize("variant", VARIANTS)
@pytest.mark.parametrize("name", CLIPS)
def test_field_order_is_measured(name: str, variant: str) -> None:
    summary = _summary(name, variant)
    assert summary["field_order"] == variant, summary
    assert summary["confidence"] >= 0.7, summary
    assert summary["field_based"] == {"progressive": 0, "BFF": 1, "TFF": 2}[variant]
    assert summary["declared"] == variant
    assert summary["mislabelled"] is False
    if variant == "progressive":
        assert summary["combed_share"] == 0.0
    else:
        assert summary["combed_share"] >= 0.7


@pytest.mark.parametrize("name", ("bikes", "vtest"))
def test_telecined_clip_is_flagged(name: str) -> None:
    for clip in (_variant(name, "telecined"), _variant(name, "telecined")[3:],
                 telecine(_source(name)[:48], tff=False)):
        summary = Interlace().summarize(_series(clip))
        assert summary["field_order"] == "telecined", summary
        assert summary["confidence"] >= 0.6
        assert 0.3 <= summary["combed_share"] <= 0.45  # 2 combed frames in 5
        assert summary["field_based"] == clip.get_frame(0).props["_FieldBased"]
        assert summary["mislabelled"] is False


def test_high_bit_depth_gives_the_same_decision() -> None:
    clip = core.resize.Point(_variant("box", "BFF"), format=vs.YUV422P10)
    summary = Interlace().summarize(_series(clip))
    assert summary["field_order"] == "BFF"
    assert summary["confidence"] >= 0.7


def test_wrong_field_based_is_reported_as_mislabelled() -> None:
    cases = [  # (clip, declared, measured)
        (core.std.SetFieldBased(_variant("vtest", "TFF"), 0), "progressive", 2),
        (core.std.SetFieldBased(_variant("bikes", "progressive"), 2), "TFF", 0),
        (core.std.SetFieldBased(_variant("box", "TFF"), 1), "BFF", 2),
        (core.std.SetFieldBased(_variant("bikes", "telecined"), 0), "progressive", 2),
    ]
    for clip, declared, measured in cases:
        series = _series(clip)
        assert set(series["declaredFieldBased"]) == {clip.get_frame(0).props["_FieldBased"]}
        summary = Interlace().summarize(series)
        assert summary["declared"] == declared
        assert summary["field_based"] == measured, summary
        assert summary["mislabelled"] is True, summary


def test_still_picture_is_undetermined_not_mislabelled() -> None:
    still = interlace(_source("vtest")[0] * 30)  # every field the same picture
    summary = Interlace().summarize(_series(still))
    assert summary["field_order"] == "undetermined"
    assert summary["field_based"] is None
    assert summary["confidence"] == 0.0
    assert summary["mislabelled"] is False
    assert summary["field_order"] in FIELD_ORDERS


# ---------------------------------------------------------------- per-frame combing
@pytest.mark.parametrize("name", ("bikes", "vtest", "box"))
def test_combing_separates_moving_interlaced_frames_from_progressive(name: str) -> None:
    progressive = _luma(_source(name))
    # truth: how much the picture changes between the two fields' source frames
    motion = np.array([np.abs(progressive[2 * k] - progressive[2 * k + 1]).mean()
                       for k in range(len(progressive) // 2)])
    woven = _series(_variant(name, "TFF"))
    clean = _series(_variant(name, "progressive"))
    metric = Interlace()
    moving = motion >= 1.0
    assert moving.sum() >= 30
    # every moving interlaced frame counts as combed, no progressive frame does
    assert np.all(woven["combedBlock"][moving] > metric.mi)
    assert np.all(clean["combedBlock"] <= metric.mi)
    # and the combed share of clearly moving frames is well above any progressive frame's
    clear = motion >= 2.0
    if clear.any():
        assert woven["combed"][clear].min() > 2.5 * clean["combed"].max()
    assert np.all((woven["combed"] >= 0) & (woven["combed"] <= 1))


def test_per_frame_votes_follow_field_order() -> None:
    tff = _series(_variant("cup", "TFF"))
    bff = _series(_variant("cup", "BFF"))
    assert np.mean(tff["order"] == 2) >= 0.9
    assert np.mean(bff["order"] == 1) >= 0.9
    # the wrong weave combs more than the right one
    assert np.median(tff["weaveBff"] / tff["weaveTff"]) > 1.2
    assert np.median(bff["weaveTff"] / bff["weaveBff"]) > 1.2


def test_measure_handles_tiny_frames() -> None:
    y = np.zeros((6, 10), np.float32)
    values = Interlace().measure([Frame(n, (y,), 2) for n in range(3)])
    assert set(values) == set(Interlace.keys)
    assert values["order"] == -1 and values["declaredFieldBased"] == 2
    assert np.isnan(values["combed"])


# ---------------------------------------------------------------- script: table and timing
def _accuracy_table(names: tuple[str, ...]) -> None:
    print(f"{'clip':10s} {'truth':12s} {'decided':12s} {'conf':>5s} {'combed':>6s}  votes")
    for name in names:
        for variant in (*VARIANTS, "telecined"):
            s = _summary(name, variant)
            v = s["votes"]
            print(f"{name:10s} {variant:12s} {s['field_order']:12s} {s['confidence']:5.2f} "
                  f"{s['combed_share']:6.2f}  T{v['TFF']} B{v['BFF']} P{v['progressive']} "
                  f"U{v['undetermined']}")


def _timing(repeats: int = 7) -> None:
    """CPU time of ``measure`` on one core (OpenCV held to one thread) at 720×480."""
    import cv2

    cv2.setNumThreads(1)
    src = core.resize.Bicubic(_source("vtest"), 720, 480)
    for label, clip in (("progressive", src[:40]), ("interlaced", interlace(src)[:40])):
        frames = [Frame(n, (y,), 0) for n, y in enumerate(_luma(clip))]
        metric, best = Interlace(), float("inf")
        for _ in range(repeats):
            start = time.process_time()
            for k in range(1, len(frames) - 1):
                metric.measure(frames[k - 1 : k + 2])
            best = min(best, (time.process_time() - start) / (len(frames) - 2))
        print(f"Interlace.measure, {label} 720x480: {best * 1e3:.2f} ms/frame "
              f"(one core, best of {repeats})")


if __name__ == "__main__":
    _accuracy_table(tuple(sys.argv[1:]) or ("bikes", "vtest", "box", "cup", "carphone", "bbb"))
    _timing()
