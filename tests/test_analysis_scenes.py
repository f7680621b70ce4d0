"""Scene cuts robust to flashes and strobes; SI/TI and motion (analysis.scenes, .complexity).

Ground truth comes from real footage: excerpts of the sample clips joined at known frames
(``concat_scenes``), bikes' own five shot boundaries, and synthetic camera flashes, coloured
stage lights and strobe trains inside the shots (``add_flashes``), which must not count as
cuts. Each case prints precision/recall/F1 (``pytest -s`` shows them).
"""

from __future__ import annotations

import json
import subprocess
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import pytest
import vapoursynth as vs
from vsremaster.analysis.annotate import annotate, prop_name
from vsremaster.analysis.base import Metric
from vsremaster.analysis.complexity import Complexity
from vsremaster.analysis.scenes import (
    SceneChange,
    detect_changes,
    find_cuts,
    mark_scene_changes,
    scene_spans,
)
from vsremaster.encode.tools import ffmpeg_exe
from vsremaster.errors import InputError
from vsremaster.training.degrade.flash import (
    FlashKind,
    add_flashes,
    concat_scenes,
    flash_schedule,
)

core = vs.core

BIKES_CUTS = [30, 76, 137, 187, 242]
"""bikes.mp4's own shot boundaries (checked frame by frame)."""


# ---------------------------------------------------------------- helpers


def _series(clip: vs.VideoNode, *metrics: Metric) -> dict[str, dict[str, np.ndarray]]:
    """Run ``annotate`` and collect each metric's per-frame values from the frame props."""
    values: dict[str, dict[str, list[float]]] = {m.name: {k: [] for k in m.keys} for m in metrics}
    for frame in annotate(clip, list(metrics)).frames(close=True):
        for m in metrics:
            for key in m.keys:
                values[m.name][key].append(frame.props[prop_name(m, key)])
    return {name: {k: np.array(v) for k, v in d.items()} for name, d in values.items()}


def _prf(found: Sequence[int], truth: Sequence[int]) -> tuple[float, float, float]:
    """Precision, recall, F1 of detected cut frames against the true ones (exact frame)."""
    hits = len(set(found) & set(truth))
    precision = hits / len(found) if found else 1.0
    recall = hits / len(truth) if truth else 1.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return precision, recall, f1


def _flash(clip: vs.VideoNode, events: Sequence[tuple[str, int]], strength: float) -> tuple[
    vs.VideoNode, set[int]
]:
    """Insert flashes ``(kind, first frame)``; return the clip and every lit frame."""
    lit: set[int] = set()
    for i, (kind, start) in enumerate(events):
        args = {"camera": dict(kind=FlashKind.CAMERA, duration=2),
                "stage": dict(kind=FlashKind.STAGE, duration=2),
                "strobe": dict(kind=FlashKind.STROBE, count=4, period=3),
                "fast": dict(kind=FlashKind.STROBE, count=5, period=2)}[kind]
        clip = add_flashes(clip, [start], strength=strength, seed=i, **args)
        lit |= set(flash_schedule([start], **args))
    return clip, lit


@pytest.fixture(scope="module")
def src(sample_clip: Callable[[str], Path]) -> Callable[[str], vs.VideoNode]:
    cache: dict[str, vs.VideoNode] = {}

    def get(name: str) -> vs.VideoNode:
        if name not in cache:
            cache[name] = core.bs.VideoSource(str(sample_clip(name)))
        return cache[name]

    return get


# (excerpts as (clip, first, end), flashes as (kind, frame), strength)
CASES = {
    # six different shots, SD size, flashes of every kind inside shots
    "different shots": (
        [("box", 0, 36), ("cup", 0, 36), ("vtest", 100, 136), ("bikes", 80, 116),
         ("carphone", 0, 36), ("box", 300, 336)],
        [("camera", 14), ("stage", 50), ("strobe", 80), ("camera", 160), ("stage", 196)],
        0.8,
    ),
    # jump cuts between similar-looking shots of one hand-held camera, and between two
    # moments of a hand with a cup against the same wall
    "similar shots": (
        [("box", 0, 36), ("box", 250, 286), ("box", 120, 156), ("cup", 0, 36),
         ("cup", 120, 156), ("cup", 60, 96)],
        [("camera", 18), ("stage", 52), ("fast", 80), ("stage", 125), ("strobe", 186)],
        0.9,
    ),
    # fast motion (bikes' pan, cup swung, car interior) and full-strength light
    "motion, strong light": (
        [("bikes", 36, 76), ("cup", 60, 100), ("carphone", 40, 80), ("bikes", 90, 137)],
        [("strobe", 10), ("camera", 60), ("stage", 95), ("fast", 130)],
        1.0,
    ),
}


def _build(
    src: Callable[[str], vs.VideoNode], case: str
) -> tuple[vs.VideoNode, list[int], set[int]]:
    excerpts, events, strength = CASES[case]
    clip, cuts = concat_scenes([src(name)[a:b] for name, a, b in excerpts], width=720,
                               height=480)
    clip, lit = _flash(clip, events, strength)
    return clip, cuts, lit


# ---------------------------------------------------------------- scene cuts


@pytest.mark.parametrize("case", list(CASES))
def test_cuts_on_joined_real_footage(src: Callable[[str], vs.VideoNode], case: str) -> None:
    clip, truth, lit = _build(src, case)
    series = _series(clip, SceneChange())["Scene"]
    found = find_cuts(series)
    precision, recall, f1 = _prf(found, truth)
    print(f"\n[{case}] {clip.num_frames} frames, cuts {truth}, found {found}: "
          f"P={precision:.3f} R={recall:.3f} F1={f1:.3f}")
    assert f1 >= 0.9
    # no flash frame, nor the frame after one, is taken for a cut
    assert not set(found) & (lit | {n + 1 for n in lit}), (found, sorted(lit))
    # the flashes were noticed as jumps that came back, not silently ignored
    assert detect_changes(series).flashes


def test_cuts_in_multishot_source_with_pan_and_flashes(
    src: Callable[[str], vs.VideoNode],
) -> None:
    """bikes.mp4: five real cuts (one right after a fast pan) plus flashes in four shots."""
    clip, lit = _flash(src("bikes"), [("strobe", 40), ("camera", 100), ("stage", 160),
                                       ("fast", 212)], 0.8)
    found = find_cuts(_series(clip, SceneChange())["Scene"])
    precision, recall, f1 = _prf(found, BIKES_CUTS)
    print(f"\n[bikes] cuts {BIKES_CUTS}, found {found}: P={precision:.3f} R={recall:.3f} "
          f"F1={f1:.3f}")
    assert f1 >= 0.9
    assert not set(found) & (lit | {n + 1 for n in lit})


def test_without_flash_test_flashes_would_be_cuts(src: Callable[[str], vs.VideoNode]) -> None:
    """The return test is what rejects the flashes: turned off, they become false cuts."""
    clip, truth, lit = _build(src, "different shots")
    series = _series(clip, SceneChange())["Scene"]
    naive = find_cuts(series, return_frac=0.0, same_picture=0.0)
    assert set(naive) & lit, "the synthetic flashes are too weak to test anything"
    assert _prf(naive, truth)[0] < _prf(find_cuts(series), truth)[0]


def test_scene_distance_ignores_global_brightness(src: Callable[[str], vs.VideoNode]) -> None:
    """A uniformly brighter/contrastier copy of a frame is the same picture; a new shot is not."""
    a = src("vtest")[200] * 4
    brighter = core.std.Expr(a, ["x 1.3 * 10 +", ""])
    other = core.resize.Bicubic(src("box")[0] * 4, 768, 576)
    d_bright = _series(a + brighter, SceneChange())["Scene"]["dist1"][4]
    d_cut = _series(a + other, SceneChange())["Scene"]["dist1"][4]
    assert d_bright < 0.01 < 0.5 < d_cut


def test_scene_summary_and_spans(src: Callable[[str], vs.VideoNode]) -> None:
    # a still shot, then another from frame 20: one cut; frame 10 is a 1-frame flash
    first = core.resize.Bicubic(src("vtest")[200], 160, 120) * 20
    second = core.resize.Bicubic(src("box")[0], 160, 120) * 20
    flash = core.std.Expr(first[10], ["x 2 * 20 +", ""])
    clip = first[:10] + flash + first[11:] + second
    series = _series(clip, SceneChange())["Scene"]
    summary = SceneChange().summarize(series)
    assert summary["cuts"] == [20] and summary["scenes"] == 2
    assert summary["luma_mean"] > 0
    assert scene_spans(summary["cuts"], 40) == [(0, 20), (20, 40)]
    assert scene_spans([], 5) == [(0, 5)]
    with pytest.raises(InputError):
        scene_spans([50], 40)
    marked = mark_scene_changes(clip, summary["cuts"])
    assert [marked.get_frame(n).props["_SceneChangePrev"] for n in (19, 20, 21)] == [0, 1, 0]
    assert [marked.get_frame(n).props["_SceneChangeNext"] for n in (18, 19, 20)] == [0, 1, 0]
    with pytest.raises(InputError):
        find_cuts({"dist1": np.zeros(3)})


# ---------------------------------------------------------------- degradations


def test_add_flashes_lights_only_the_scheduled_frames(src: Callable[[str], vs.VideoNode]) -> None:
    clip = core.resize.Bicubic(src("box")[0:12], 320, 240)
    camera = add_flashes(clip, [3], kind="camera", duration=2, strength=0.7)
    stage = add_flashes(clip, [3], kind="stage", duration=1, strength=0.9, seed=4)
    assert flash_schedule([3], kind="camera", duration=2) == {3: 1.0, 4: 0.45}
    assert flash_schedule([2], kind="strobe", count=3, period=4) == {2: 1.0, 6: 1.0, 10: 1.0}

    def planes(c: vs.VideoNode, n: int) -> list[np.ndarray]:
        f = c.get_frame(n)
        return [np.asarray(f[p], dtype=np.float64) for p in range(3)]

    for n in (0, 2, 5, 11):  # unlit frames are bit-exact
        assert all(
            np.array_equal(a, b) for a, b in zip(planes(camera, n), planes(clip, n), strict=True)
        )
    y0, y3, y4 = (planes(clip, 3)[0], planes(camera, 3)[0], planes(camera, 4)[0])
    assert y3.mean() > y4.mean() + 5 > y0.mean() + 10  # flash, weaker afterglow
    # the stage light is coloured and covers part of the frame only
    base, lit = planes(clip, 3), planes(stage, 3)
    chroma_shift = max(abs((lit[p] - base[p]).mean()) for p in (1, 2))
    assert chroma_shift > 3
    changed = np.abs(lit[0] - base[0]) > 4
    assert 0.05 < changed.mean() < 0.95
    # reproducible, and the seed moves the light
    again = add_flashes(clip, [3], kind="stage", duration=1, strength=0.9, seed=4)
    moved = add_flashes(clip, [3], kind="stage", duration=1, strength=0.9, seed=5)
    assert np.array_equal(planes(again, 3)[0], lit[0])
    assert not np.array_equal(planes(moved, 3)[0], lit[0])
    with pytest.raises(InputError):
        add_flashes(clip, [3], strength=0)
    with pytest.raises(InputError):
        add_flashes(clip, [3], kind="strobe", period=1)


def test_concat_scenes_normalises_and_marks_cuts(src: Callable[[str], vs.VideoNode]) -> None:
    clip, cuts = concat_scenes([src("bikes")[0:5], src("carphone")[0:4], src("cup")[0:3]],
                               width=320, height=240)
    assert cuts == [5, 9]
    assert (clip.width, clip.height, clip.num_frames) == (320, 240, 12)
    assert clip.format.id == src("bikes").format.id
    assert clip.fps == src("bikes").fps
    prev = [clip.get_frame(n).props["_SceneChangePrev"] for n in range(12)]
    assert [n for n, p in enumerate(prev) if p] == cuts
    with pytest.raises(InputError):
        concat_scenes([src("bikes")[0:2], core.std.BlankClip(format=vs.RGB24, length=2)])


# ---------------------------------------------------------------- SI / TI / motion


def _complexity(clip: vs.VideoNode) -> dict[str, object]:
    return Complexity().summarize(_series(clip, Complexity())["Complexity"])


def test_ti_and_motion_higher_for_moving_scene(src: Callable[[str], vs.VideoNode]) -> None:
    size = dict(width=640, height=480)
    pan = _complexity(core.resize.Bicubic(src("bikes")[40:70], **size))  # fast camera pan
    still = _complexity(core.resize.Bicubic(src("vtest")[300:330], **size))  # fixed camera
    frozen = _complexity(core.resize.Bicubic(src("vtest")[300] * 10, **size))
    print(f"\npan {pan}\nstill {still}")
    assert pan["ti_mean"] > 2 * still["ti_mean"]
    assert pan["motion_mean"] > 3 * still["motion_mean"]
    assert pan["pan_mean"] > 3 * still["pan_mean"]
    assert frozen["ti_max"] == pytest.approx(0, abs=1e-6)
    assert frozen["motion_max"] < 0.05


@pytest.mark.parametrize("step", [2, 6, 12])
def test_motion_measures_a_known_pan(src: Callable[[str], vs.VideoNode], step: int) -> None:
    """A 720×480 window sliding over a real frame by ``step`` px per frame."""
    still = core.resize.Bicubic(src("vtest")[10], 968, 676, format=vs.YUV444P8)
    clip = core.std.Splice(
        [core.std.CropAbs(still, 720, 480, left=8 + step * i, top=20) for i in range(6)]
    )
    summary = _complexity(clip)
    assert summary["motion_mean"] == pytest.approx(step, rel=0.1)
    assert summary["pan_mean"] == pytest.approx(step, rel=0.1)


def test_si_higher_for_textured_scene(src: Callable[[str], vs.VideoNode]) -> None:
    size = dict(width=640, height=480)
    grass = core.resize.Bicubic(src("vtest")[0:8], **size)  # lawn, building, people
    wall = core.resize.Bicubic(src("cup")[0:8], **size)  # plain wall and a cup
    textured, plain = _complexity(grass), _complexity(wall)
    blurred = _complexity(core.std.Convolution(grass, [1] * 25, planes=[0]))
    print(f"\ntextured SI {textured['si_mean']:.1f}, plain {plain['si_mean']:.1f}, "
          f"blurred {blurred['si_mean']:.1f}")
    assert textured["si_mean"] > 1.5 * plain["si_mean"]
    assert blurred["si_max"] < 0.7 * textured["si_max"]


def test_si_ti_agree_with_ffmpeg_siti(src: Callable[[str], vs.VideoNode], tmp_path: Path) -> None:
    """FFmpeg's ``siti`` filter (P.910 on limited-range luma stretched to full range)."""
    clip = src("bikes")[40:52]  # limited range, as FFmpeg assumes
    ours = _series(clip, Complexity())["Complexity"]
    y4m = tmp_path / "clip.y4m"
    with y4m.open("wb") as f:
        clip.output(f, y4m=True)
    log = tmp_path / "siti.txt"
    subprocess.run(
        [ffmpeg_exe(), "-v", "error", "-color_range", "tv", "-i", str(y4m), "-vf",
         f"siti,metadata=print:file={log.name}", "-f", "null", "-"],
        check=True, cwd=tmp_path,
    )
    theirs: dict[str, list[float]] = {"si": [], "ti": []}
    for line in log.read_text().splitlines():
        for key in theirs:
            if line.startswith(f"lavfi.siti.{key}="):
                theirs[key].append(float(line.split("=", 1)[1]))
    stretch = 255 / 219
    si_ratio = np.array(theirs["si"]) / (ours["si"] * stretch)
    ti_ratio = np.array(theirs["ti"][1:]) / (ours["ti"][1:] * stretch)
    print(json.dumps({"si_ratio": si_ratio.round(3).tolist(),
                      "ti_ratio": ti_ratio.round(3).tolist()}))
    assert np.allclose(si_ratio, 1, atol=0.03)
    assert np.allclose(ti_ratio, 1, atol=0.03)
