"""vsremaster.descratch on real footage with synthetic film damage: damage removed, clean
footage and real vertical structure kept, formats, mask output, scene resets, errors."""

from __future__ import annotations

import numpy as np
import pytest
import vapoursynth as vs

import vsremaster as vsr
from vsremaster.errors import InputError
from vsremaster.stages.descratch import DAMAGE_AREA_PROP
from vsremaster.training.degrade.damage import add_film_damage

core = vs.core


@pytest.fixture(scope="module")
def clean(cup_crop):
    return cup_crop


@pytest.fixture(scope="module")
def damaged(clean):
    return add_film_damage(clean, seed=4)


def plane(clip, n, p=0):
    return np.asarray(clip.get_frame(n)[p], dtype=np.float64)


def psnr(a, b, peak=255.0):
    return 10 * np.log10(peak**2 / max(np.mean((a - b) ** 2), 1e-12))


def test_damage_is_removed_and_found(clean, damaged):
    broken, truth_mask = damaged
    out = vsr.descratch(broken)
    found = vsr.descratch(broken, mask=True)
    gains, recalls = [], []
    for n in range(2, 10):
        want = plane(clean, n)
        gains.append(psnr(plane(out, n), want) - psnr(plane(broken, n), want))
        damage = plane(truth_mask, n) > 0.5
        recalls.append((plane(found, n)[damage] > 127).mean())
        assert out.get_frame(n).props[DAMAGE_AREA_PROP] > 0
    assert np.mean(gains) > 3 and min(gains) > 1, gains
    assert np.mean(recalls) > 0.6, recalls
    # chroma under the damage comes back towards the clean colour
    err = [np.abs(plane(x, 5, 1) - plane(clean, 5, 1)).mean() for x in (out, broken)]
    assert err[0] < err[1]


def test_clean_footage_passes_almost_untouched(clean):
    out = vsr.descratch(clean)
    scores = [psnr(plane(out, n), plane(clean, n)) for n in range(12)]
    assert min(scores) > 45, scores
    for p in (1, 2):
        assert psnr(plane(out, 6, p), plane(clean, 6, p)) > 45


def test_mask_output_and_strength(clean, damaged):
    broken, _ = damaged
    full = vsr.descratch(broken, mask=True)
    half = vsr.descratch(broken, strength=0.5, mask=True)
    assert (full.format.id, full.width, full.height) == (vs.GRAY8, 256, 160)
    assert full.num_frames == broken.num_frames
    a, b = plane(full, 4), plane(half, 4)
    on = a > 100
    assert on.any() and np.allclose(b[on], a[on] / 2, atol=1)
    off = vsr.descratch(broken, strength=0.0)
    assert all(np.array_equal(plane(off, 4, p), plane(broken, 4, p)) for p in range(3))
    hbd = vsr.descratch(core.resize.Point(broken, format=vs.YUV420P16), mask=True)
    assert hbd.format.id == vs.GRAY16
    assert np.abs(plane(hbd, 4) / 257 - a).mean() < 1.0


@pytest.mark.parametrize("fmt", [vs.YUV420P16, vs.YUV444PS, vs.GRAY8, vs.RGB24])
def test_other_formats_give_the_same_luma(damaged, fmt):
    broken, _ = damaged
    ref = plane(vsr.descratch(broken), 5)
    kwargs = {"matrix_in_s": "470bg"} if fmt == vs.RGB24 else {}
    back = {"matrix_s": "470bg"} if fmt == vs.RGB24 else {}
    clip = core.resize.Point(broken, format=fmt, **kwargs)
    out = vsr.descratch(clip)
    assert (out.format.id, out.num_frames) == (fmt, broken.num_frames)
    if fmt == vs.GRAY8:
        y = plane(out, 5)
    else:
        y = plane(core.resize.Point(out, format=vs.YUV420P8, **back), 5)
    tolerance = 2.0 if fmt == vs.RGB24 else 0.6  # RGB: its own luma, 8-bit rounding twice
    assert np.abs(y - ref).mean() < tolerance


def test_scene_change_resets_the_window(clean, damaged):
    broken, _ = damaged
    other = core.std.FlipHorizontal(broken)  # another "shot"
    cut = core.std.SetFrameProp(broken[5], "_SceneChangeNext", 1)
    after = core.std.SetFrameProp(other[6], "_SceneChangePrev", 1)
    joined = broken[:5] + cut + after + other[7:]
    alone = broken[:6]
    out_joined, out_alone = vsr.descratch(joined), vsr.descratch(alone)
    for n in (4, 5):  # both look ahead across the cut
        for p in range(3):
            assert np.array_equal(plane(out_joined, n, p), plane(out_alone, n, p)), (n, p)
    # without the flag the next shot leaks into frame 5
    unflagged = vsr.descratch(broken[:6] + other[6:])
    assert not np.array_equal(plane(unflagged, 5), plane(out_alone, 5))


def test_errors_are_clear(clean):
    with pytest.raises(InputError, match="interlaced.*deinterlace first"):
        vsr.descratch(core.std.SetFieldBased(clean, 2))
    with pytest.raises(InputError, match="strength"):
        vsr.descratch(clean, strength=1.5)
    with pytest.raises(InputError, match="not a descratch model"):
        vsr.descratch(clean, model="vsr-deinterlace-v1")
    variable = core.std.Splice([clean[:2], core.resize.Point(clean[:2], 128, 80)],
                               mismatch=True)
    with pytest.raises(InputError, match="variable"):
        vsr.descratch(variable)


def test_real_vertical_structure_is_kept(sample_clip):
    """vtest's lamp post: a thin, still, bright line over dark grass, the look of a scratch."""
    vtest = core.bs.VideoSource(str(sample_clip("vtest")))[100:106]
    pole = core.std.Crop(vtest, left=364, right=768 - 364 - 128, top=96, bottom=576 - 96 - 288)
    out = vsr.descratch(pole)
    found = vsr.descratch(pole, mask=True)
    for n in range(6):
        before, after = plane(pole, n), plane(out, n)
        post = slice(60, 68)  # the post's columns; walking people cross the rest
        assert np.abs(after - before)[:200, post].mean() < 1.0
        # the post alone (above row 150: below it a walker's foot crosses it in frame 3,
        # fast and small enough to be partly taken for a spot)
        assert (plane(found, n)[:150, post] > 127).mean() < 0.02


def test_script_gets_descratch_when_the_analysis_finds_damage(tmp_path, sample_clip, model):
    import subprocess
    import sys
    from pathlib import Path

    from vsremaster.chain import plan_chain, probe_source
    from vsremaster.render import render_script

    model("waifu2x-photo-x2-noise1")
    info = probe_source(sample_clip("carphone"))
    report = {"recommendation": [{"stage": "descratch", "params": {}, "available": True,
                                  "reason": "vertical scratches on 40% of analysed frames"}],
              "cuts": [11, 40], "first_source_frame": 0}
    chain = plan_chain(info, report=report, preset="fast", first_frame=10)
    assert [s.function for s in chain.steps] == ["mark_scene_changes", "descratch", "upscale"]
    assert chain.steps[0].kwargs == {"cuts": [1, 30]}  # in the trimmed script's frames
    assert "40% of analysed frames" in chain.steps[1].reason
    assert [s.function for s in plan_chain(info, preset="fast").steps] == ["upscale"]
    # --backend ncnn reaches the upscale only (the ncnn backend runs the upscalers' files)
    on_ncnn = plan_chain(info, report=report, preset="fast", backend="ncnn").steps
    assert [s.kwargs.get("backend") for s in on_ncnn] == [None, None, "ncnn"]
    on_torch = plan_chain(info, report=report, preset="fast", backend="torch").steps
    assert [s.kwargs.get("backend") for s in on_torch] == [None, "torch", "torch"]
    script = tmp_path / "scratched.vpy"
    script.write_text(render_script(info, chain, preset="fast", trim=(10, 13)), encoding="utf-8")
    assert "vsr.descratch(" in script.read_text(encoding="utf-8")
    vspipe = Path(sys.executable).with_name("vspipe")
    run = subprocess.run([str(vspipe), "-c", "y4m", str(script), str(tmp_path / "out.y4m")],
                         capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr
    assert (tmp_path / "out.y4m").stat().st_size > 3 * 352 * 288 * 3 // 2
