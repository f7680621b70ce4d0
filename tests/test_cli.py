"""The main job through the real command line, on real footage."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from vsremaster.encode import media_info

CLI = [sys.executable, "-m", "vsremaster"]


def run(*args: str, env: dict[str, str] | None = None, cwd: Path | None = None):
    return subprocess.run([*CLI, *args], capture_output=True, text=True, timeout=900,
                          env=env, cwd=cwd)


def test_remaster_writes_script_and_a_playable_hevc_of_the_real_clip(tmp_path, sample_clip, model):
    model("waifu2x-photo-x2-noise1")
    out = tmp_path / "my bikes (remaster).mkv"
    proc = run("remaster", str(sample_clip("bikes")), "-o", str(out), "--preset", "fast",
               "--trim", "25:37", "--x265-preset", "ultrafast", "--no-progress")
    assert proc.returncode == 0, proc.stderr
    info = media_info(out)
    assert info.container.startswith("matroska") and info.video_codec == "hevc"
    assert (info.width, info.height) == (1280, 544)  # 2x of 640x272
    assert info.bit_depth == 10 and info.frames == 12
    assert info.video_duration_s == pytest.approx(12 / 25, abs=0.041)
    script = out.with_suffix(".vpy")
    text = script.read_text()
    assert "waifu2x-photo-x2-noise1" in text and "TRIM = [25, 37]" in text
    assert "done" in proc.stderr and str(out) in proc.stderr
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no partials left
    # target quality by default, split at the analysis report's cuts (named in the script)
    assert "my bikes (remaster).analysis/report.json" in text
    decisions = json.loads(out.with_suffix(".encode.json").read_text())
    assert decisions["target"]["vmaf"] == 95.0
    said = proc.stderr.replace("\n", " ")
    assert "cuts from the analysis report" in said
    assert "encoding 1 chunk(s) of whole scenes" in said  # resumable by default
    scene = decisions["scenes"][0]
    assert scene["crf"] is not None and len(scene["probes"]) >= 2
    assert scene["measured_mean"] is not None and scene["bits"] > 0


def test_a_rerun_reuses_the_analysis_of_the_same_source_file(tmp_path, sample_clip):
    """A rerun (after a failed or interrupted remaster, or for another preset) does not
    analyse again what it analysed already; a changed file or setting, or --fresh, does."""
    import shutil

    src = tmp_path / "car.mp4"
    shutil.copy(sample_clip("carphone"), src)
    args = ["script", str(src), "-o", str(tmp_path / "car.vpy"), "--trim", "0:20",
            "--every", "4", "--no-progress"]
    report = tmp_path / "car.analysis" / "report.json"
    assert run(*args).returncode == 0
    made, text = report.stat().st_mtime_ns, (tmp_path / "car.vpy").read_text()
    again = run(*args)
    assert again.returncode == 0, again.stderr
    assert "analysis: reusing" in again.stderr
    assert report.stat().st_mtime_ns == made and (tmp_path / "car.vpy").read_text() == text
    changed = [args[:-3] + ["--every", "5", "--no-progress"], [*args, "--fresh"]]
    for other in changed:
        proc = run(*other)
        assert proc.returncode == 0 and "reusing" not in proc.stderr, other
    stat = src.stat()  # the same name, other bytes: touched, as a re-capture would be
    os.utime(src, ns=(stat.st_atime_ns, stat.st_mtime_ns + 10**9))
    proc = run(*args)
    assert proc.returncode == 0 and "reusing" not in proc.stderr


def test_script_command_and_help(tmp_path, sample_clip):
    proc = run("script", str(sample_clip("carphone")), "--preset", "anime", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    text = (tmp_path / "carphone_pristine.vpy").read_text()
    assert "realesr-animevideov3-x4" in text and "704x576" in text
    helped = run("remaster", "--help")
    assert helped.returncode == 0
    for option in ("--preset", "--trim", "--crf", "--x265-preset", "--backend", "--tile"):
        assert option in helped.stdout


@pytest.mark.parametrize("command", ["remaster", "encode", "faces track"])
def test_help_paragraphs_fill_an_80_column_terminal(command):
    """A command's description wraps once, at the terminal's width: no line of a paragraph
    but its last stops short of the margin (the docstring's own breaks are not kept)."""
    helped = run(*command.split(), "--help", env={**os.environ, "COLUMNS": "80"})
    assert helped.returncode == 0, helped.stderr
    description = helped.stdout.split("Usage:", 1)[1].split("╭", 1)[0].splitlines()[1:]
    paragraphs = "\n".join(line.rstrip() for line in description).strip().split("\n\n")
    assert len(paragraphs) >= 2
    for paragraph in paragraphs:
        lines = paragraph.splitlines()
        assert all(len(line) >= 60 for line in lines[:-1]), lines


# case: (extra arguments, what the error says)
BAD_INPUT = {
    "corrupt": ([], "cannot open"),
    "missing-model": (["--preset", "fast"], "vsremaster models fetch waifu2x-photo-x2-noise1"),
    "bad-trim": (["--trim", "0:500"], "past the last frame"),
    "bad-preset": (["--preset", "ultra"], "unknown preset"),
    "bad-field-order": (["--field-order", "top"], "unknown field order 'top'"),
    "bad-backend": (["--backend", "gpu"], "unknown backend 'gpu'"),
    "bad-every": (["--every", "0"], "Invalid value for '--every'"),
    # options the chosen rate control would ignore
    "crf-and-target": (["--crf", "20", "--target-vmaf", "93"], "exclude each other"),
    "floor-with-crf": (["--crf", "20", "--min-vmaf-percentile", "90"], "needs --target-vmaf"),
    "x265-crf": (["--x265-params", "--crf 40"], "--crf is set by vsremaster"),
    # wrong encode settings
    "bad-target": (["--target-vmaf", "150"], "target VMAF must be in (0, 100]"),
    "bad-chunks": (["--chunks", "-1"], "chunks must be 0 (one pass) or a number"),
    "bad-encoder": (["--encoder", "nvenc"], "encoder must be 'auto', 'x265' or 'ffmpeg'"),
    "missing-audio": (["--audio", "no such.flac"], "Audio source no such.flac does not exist"),
    "not-mkv": ([], "must end in .mkv"),
    # the same command started again while the first one runs
    "running": ([], "Another encode of out.mkv is running (process"),
}


@pytest.mark.parametrize("case", list(BAD_INPUT))
def test_bad_input_fails_clearly_and_writes_nothing(tmp_path, sample_clip, output_lock_holder,
                                                    case):
    # each is refused before the analysis (minutes on a real title), except a missing model,
    # which the analysis' measurements choose
    out = tmp_path / ("out.mp4" if case == "not-mkv" else "out.mkv")
    src = str(sample_clip("carphone"))
    extra, expect = BAD_INPUT[case]
    env = None
    args = ["remaster", src, "-o", str(out), "--no-progress", *extra]
    if case == "corrupt":
        bad = tmp_path / "corrupt.mkv"
        bad.write_bytes(os.urandom(50_000))
        args[1] = str(bad)
    elif case == "missing-model":
        env = {**os.environ, "VSREMASTER_MODELS": str(tmp_path / "empty")}
    elif case == "running":
        output_lock_holder(out)
    proc = run(*args, env=env, cwd=tmp_path)
    assert proc.returncode != 0
    assert expect in " ".join(proc.stderr.replace("│", " ").split())
    assert "Traceback" not in proc.stderr
    assert not out.exists()
    if case != "missing-model":
        assert sorted(p.name for p in tmp_path.iterdir()) == (
            ["corrupt.mkv"] if case == "corrupt" else [".out.vsremaster-lock"] if case == "running"
            else [])
