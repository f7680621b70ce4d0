"""vsremaster.deinterlace on real footage interlaced the MSU way: source match, field order,
rates, scene changes, errors, and quality against bwdif."""

from __future__ import annotations

import numpy as np
import pytest
import vapoursynth as vs

import vsremaster as vsr
from vsremaster.errors import InputError
from vsremaster.training.degrade.interlace import interlace

core = vs.core


@pytest.fixture(scope="module")
def progressive(sample_clip):
    """16 progressive frames of real footage (a hand-held cup), cropped to 256x128."""
    clip = core.bs.VideoSource(str(sample_clip("cup")))[60:76]
    return core.std.SetFieldBased(core.std.Crop(clip, 200, 184, 180, 172), 0)


def luma(clip, n):
    return np.asarray(clip.get_frame(n)[0], dtype=np.float64)


def psnr(a, b):
    return 10 * np.log10(255**2 / np.mean((a - b) ** 2))


@pytest.mark.parametrize("tff", [True, False])
def test_bob_keeps_each_fields_lines_and_restores_the_frames(progressive, tff):
    il = interlace(progressive, tff=tff)  # _FieldBased 2 or 1: the order comes from the props
    out = vsr.deinterlace(il)
    assert (out.num_frames, out.fps) == (16, progressive.fps)  # double rate = the source's
    for n in range(out.num_frames):
        kept = (0 if tff else 1) if n % 2 == 0 else (1 if tff else 0)
        src = core.std.SeparateFields(il, tff=tff)
        for p in range(3):
            assert np.array_equal(np.asarray(out.get_frame(n)[p])[kept::2],
                                  np.asarray(src.get_frame(n)[p])), (n, p)
        props = out.get_frame(n).props
        assert props["_FieldBased"] == 0 and "_Field" not in props
        assert props["_DurationNum"] / props["_DurationDen"] == pytest.approx(
            out.fps.denominator / out.fps.numerator)
    scores = [psnr(luma(out, n), luma(progressive, n)) for n in range(2, 14)]
    assert min(scores) > 33


def test_a_single_interlaced_frame_is_bobbed_too(progressive):
    """A clip shorter than the five-field window (one frame: a still, a title card) gives its
    two fields, each with its own lines kept (it used to fail in a Trim inside the stage)."""
    il = interlace(progressive, tff=True)[:1]
    out = vsr.deinterlace(il)
    src = core.std.SeparateFields(il, tff=True)
    assert out.num_frames == 2
    for n, kept in ((0, 0), (1, 1)):
        assert np.array_equal(np.asarray(out.get_frame(n)[0])[kept::2],
                              np.asarray(src.get_frame(n)[0]))
    assert psnr(luma(out, 0), luma(progressive, 0)) > 24  # 26.0 alone, 39.2 with neighbours


def test_wrong_field_order_is_worse_and_the_argument_wins_over_props(progressive):
    il = interlace(progressive, tff=True)
    right, wrong = vsr.deinterlace(il), vsr.deinterlace(il, tff=False)
    forced = vsr.deinterlace(core.std.SetFieldBased(il, 1), tff=True)
    good = np.mean([psnr(luma(right, n), luma(progressive, n)) for n in range(2, 14)])
    bad = np.mean([psnr(luma(wrong, n), luma(progressive, n)) for n in range(2, 14)])
    assert good > bad + 3
    assert np.array_equal(luma(forced, 7), luma(right, 7))


def test_single_rate_keeps_frame_count_rate_and_durations(progressive):
    il = interlace(progressive, tff=True)
    single, double = vsr.deinterlace(il, rate="single"), vsr.deinterlace(il)
    assert (single.num_frames, single.fps) == (il.num_frames, il.fps)
    f = single.get_frame(3)
    assert f.props["_DurationNum"] / f.props["_DurationDen"] == pytest.approx(
        il.fps.denominator / il.fps.numerator)
    assert np.array_equal(luma(single, 3), luma(double, 6))


def test_other_depths_and_float_give_the_same_picture(progressive):
    il = interlace(progressive, tff=True)
    ref = luma(vsr.deinterlace(il), 5)
    for fmt in (vs.YUV420P16, vs.YUV444PS):
        clip = core.resize.Point(il, format=fmt)
        out = core.resize.Point(vsr.deinterlace(clip), format=vs.YUV420P8)
        assert out.format.id == vs.YUV420P8
        assert np.abs(luma(out, 5) - ref).mean() < 0.6, fmt


def test_scene_change_stops_the_temporal_window(progressive, sample_clip):
    other = core.bs.VideoSource(str(sample_clip("box")))[100:108]
    other = core.std.SetFieldBased(core.std.Crop(other, 200, 184, 180, 172), 0)
    first = interlace(progressive[:8], tff=True)
    second = core.std.SetFrameProps(interlace(other, tff=True)[0], _SceneChangePrev=1)
    cut_here = core.std.SetFrameProps(first[-1], _SceneChangeNext=1)
    joined = first[:-1] + cut_here + second + interlace(other, tff=True)[1:]
    alone = vsr.deinterlace(first)
    both = vsr.deinterlace(joined)
    # The last fields before the cut see only their own scene, as at the end of a clip.
    for n in (6, 7):
        assert np.array_equal(luma(both, n), luma(alone, n)), n
    unflagged = vsr.deinterlace(first + interlace(other, tff=True))
    assert not np.array_equal(luma(unflagged, 7), luma(alone, 7))
    # The cut lies between output frames 7 and 8 only: the stages after this one (denoise,
    # descratch) must not cut a frame from the other field of its own picture.
    flags = [(n, key) for n in range(4, 12) for key in ("_SceneChangePrev", "_SceneChangeNext")
             if both.get_frame(n).props.get(key, 0)]
    assert flags == [(7, "_SceneChangeNext"), (8, "_SceneChangePrev")]
    single = vsr.deinterlace(core.std.AssumeFPS(joined, fpsnum=25), rate="single")
    assert single.get_frame(3).props["_SceneChangeNext"] == 1
    assert single.get_frame(4).props["_SceneChangePrev"] == 1


def test_progressive_input_passes_through_with_a_warning(progressive, caplog):
    out = vsr.deinterlace(progressive)
    assert out is progressive
    assert "progressive" in caplog.text


def test_bad_input_gets_clear_errors(progressive):
    il = interlace(progressive, tff=True)
    with pytest.raises(InputError, match="height 126"):
        vsr.deinterlace(core.std.Crop(il, 0, 0, 0, 2))
    with pytest.raises(InputError, match="rate must be"):
        vsr.deinterlace(il, rate="triple")
    varying = core.std.Splice([il, core.resize.Point(il, 128, 64)], mismatch=True)
    with pytest.raises(InputError, match="variable format"):
        vsr.deinterlace(varying)
    with pytest.raises(InputError, match="not a deinterlace model"):
        vsr.deinterlace(il, model="waifu2x-photo-x2")


def test_unknown_field_order_is_measured_or_refused(progressive):
    il = interlace(progressive, tff=True)
    unflagged = core.std.RemoveFrameProps(il, "_FieldBased")
    measured = vsr.deinterlace(unflagged)
    assert np.array_equal(luma(measured, 5), luma(vsr.deinterlace(il), 5))
    still = core.std.RemoveFrameProps(core.std.BlankClip(il, length=8), "_FieldBased")
    with pytest.raises(InputError, match="pass tff=True or tff=False"):
        vsr.deinterlace(still)


@pytest.mark.skipif(not hasattr(core, "bwdif"), reason="vapoursynth-bwdif not installed")
def test_beats_bwdif_on_real_footage(progressive):
    il = interlace(progressive, tff=True)
    ours, peer = vsr.deinterlace(il), core.bwdif.Bwdif(il, field=3)
    a = np.mean([psnr(luma(ours, n), luma(progressive, n)) for n in range(2, 14)])
    b = np.mean([psnr(luma(peer, n), luma(progressive, n)) for n in range(2, 14)])
    assert a > b + 0.5, (a, b)
