"""The analysis pass, its report files, the recommendations and their use by `script`."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
import vapoursynth as vs

from vsremaster.analysis import analyze, annotate, default_metrics, prop_name
from vsremaster.analysis.recommend import recommend
from vsremaster.analysis.report import write_report
from vsremaster.training.degrade.damage import add_scratches
from vsremaster.training.degrade.interlace import interlace
from vsremaster.training.degrade.noise import add_gaussian_noise

core = vs.core
CLI = [sys.executable, "-m", "vsremaster"]


@pytest.fixture(scope="module")
def vtest(sample_clip) -> vs.VideoNode:
    clip = core.bs.VideoSource(str(sample_clip("vtest")))[200:280]
    return core.std.CropAbs(clip, 720, 480, 24, 48)


def stages(recs: list[dict]) -> dict[str, dict]:
    return {r["stage"]: r for r in recs}


def test_annotate_attaches_documented_props_and_samples_costly_metrics(vtest):
    clip = annotate(vtest[:6], every=3)
    frames = list(clip.frames())
    names = {prop_name(m, k) for m in default_metrics() for k in m.keys}
    assert names <= set(frames[0].props)  # frame 0: every metric
    assert "VSR_NoiseSigmaY" not in frames[1].props  # costly: every 3rd frame only
    assert "VSR_InterlaceCombed" in frames[1].props and "VSR_NoiseSigmaY" in frames[3].props
    assert frames[2].props["_Matrix"] == vtest.get_frame(2).props.get("_Matrix")  # props kept


def test_recommendations_follow_what_is_wrong(vtest):
    clean = stages(recommend(analyze(vtest, every=5).title))
    assert list(clean) == ["upscale"]
    il = stages(recommend(analyze(interlace(vtest, tff=False), every=5).title))
    assert il["deinterlace"]["params"] == {"tff": False} and "BFF" in il["deinterlace"]["reason"]
    noisy = stages(recommend(analyze(add_gaussian_noise(vtest, 8, 5, seed=3), every=5).title))
    sigma = noisy["denoise"]["params"]["sigma"]  # per plane: luma 8, chroma 5
    assert sigma == pytest.approx([8.0, 5.0, 5.0], abs=0.8)
    assert noisy["denoise"]["params"]["mode"] == "noise" and noisy["denoise"]["available"]
    scratched = stages(recommend(analyze(add_scratches(vtest, seed=3)[0], every=5).title))
    assert "descratch" in scratched


def test_report_files_are_complete_and_self_contained(vtest, tmp_path):
    clip = vtest[:40]
    analysis = analyze(clip, every=10)
    data = write_report(analysis, clip, tmp_path, source={"path": "vtest.avi", "name": "vtest.avi"},
                        recommendation=recommend(analysis.title))
    saved = json.loads((tmp_path / "report.json").read_text())
    assert saved == json.loads(json.dumps(data))
    assert saved["clip"]["num_frames"] == 40 and len(saved["frames"]["VSR_SceneDist1"]) == 40
    assert saved["frames"]["VSR_NoiseSigmaY"][1] is None  # not sampled: null, not a fake 0
    assert {"Interlace", "Noise", "Scene"} <= set(saved["title"])
    html = (tmp_path / "report.html").read_text()
    plots = re.findall(r'<img src="data:image/png;base64,', html)
    assert len(plots) == len(default_metrics())
    assert "data:image/jpeg;base64," in html  # thumbnails
    assert "<script" not in html and not re.search(r'(src|href)="https?:', html)


def test_analysis_finds_the_cuts_of_a_real_clip(sample_clip):
    clip = core.bs.VideoSource(str(sample_clip("bikes")))
    analysis = analyze(clip, every=25)
    assert analysis.cuts == [30, 76, 137, 187, 242]  # the clip's five shot changes
    assert [(s["start"], s["end"]) for s in analysis.scenes][:2] == [(0, 30), (30, 76)]


def test_script_uses_the_analysis_and_can_be_overridden(tmp_path, sample_clip, model):
    model("waifu2x-photo-x2-noise1")
    # A real clip interlaced TFF but flagged progressive, as badly authored files are.
    src = tmp_path / "interlaced.mkv"
    script = tmp_path / "box.vpy"
    enc = tmp_path / "make.vpy"
    enc.write_text(
        "import vapoursynth as vs\n"
        "from vsremaster.training.degrade.interlace import interlace\n"
        f"c = vs.core.bs.VideoSource({str(sample_clip('box'))!r})[100:200]\n"
        "interlace(c).std.SetFrameProps(_FieldBased=0).set_output()\n"
    )
    from vsremaster.encode import encode

    encode(enc, src, crf=8, preset="ultrafast", progress=False, encoder="ffmpeg")
    run = subprocess.run([*CLI, "script", str(src), "-o", str(script), "--no-progress"],
                         capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr
    assert (tmp_path / "box.analysis" / "report.html").is_file()
    text = script.read_text()
    assert "# Field order: tff (analysis:" in text
    assert "clip = vsr.deinterlace(\n    clip,\n    tff=True,\n)" in text
    vspipe = Path(sys.executable).with_name("vspipe")
    info = subprocess.run([str(vspipe), "--info", str(script)], capture_output=True, text=True,
                          timeout=300)
    assert info.returncode == 0, info.stderr
    assert "Frames: 100" in info.stdout  # 50 interlaced frames bobbed to double rate
    forced = subprocess.run(
        [*CLI, "script", str(src), "-o", str(script), "--field-order", "progressive",
         "--report", str(tmp_path / "box.analysis" / "report.json")],
        capture_output=True, text=True, timeout=300)
    assert forced.returncode == 0, forced.stderr
    text = script.read_text()
    assert "# Field order: progressive (--field-order progressive)." in text
    assert "vsr.deinterlace" not in text
