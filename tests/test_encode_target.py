"""Target-quality and chunked encoding: CRF search, zones, scene cuts, resume after a kill.

The integration tests encode a small two-shot edit of real footage (bikes + cup, 320x176)
with ``--preset ultrafast`` and check what a user would: the VMAF of the whole output
against the script's frames lands near the target, the scenes follow the shots, the log
holds the decisions, and a killed run resumes without redoing finished chunks.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time

import pytest
from vsremaster.encode import TargetQuality, encode, media_info
from vsremaster.encode.probes import scene_bits
from vsremaster.encode.target import (
    Probe,
    Scene,
    choose_crf,
    merge_short,
    next_crf,
    predict,
    read_cuts,
    sample_spans,
    zones_arg,
)
from vsremaster.encode.tools import mkvmerge_exe, vspipe_exe, x265_exe
from vsremaster.encode.vmaf import pool, vmaf_scores
from vsremaster.errors import EncodeError, InputError

HAVE_X265 = x265_exe() is not None and mkvmerge_exe() is not None
needs_x265 = pytest.mark.skipif(not HAVE_X265, reason="x265/mkvmerge not on PATH")


def linear(crf: float, slope: float = 1.0, gap: float = 4.0) -> Probe:
    """A probe of a scene whose VMAF falls ``slope`` per CRF: 100 at CRF 10."""
    mean = 100 - slope * (crf - 10)
    return Probe(crf=crf, mean=mean, low=mean - gap, kbps=1000 / crf, frames=24)


# --------------------------------------------------------------------------- decisions


def test_crf_search_converges_on_the_target_in_few_probes():
    target = TargetQuality(vmaf=95, start_crf=24)
    probes: list[Probe] = []
    while (crf := next_crf(probes, target, 24)) is not None:
        probes.append(linear(crf))
    crf, reason = choose_crf(probes, target)
    assert crf == pytest.approx(15.0, abs=0.1) and reason == "mean"
    assert len(probes) <= target.max_probes
    assert predict(probes, crf) == pytest.approx(95, abs=0.1)


def test_low_percentile_floor_lowers_the_crf_when_it_binds():
    probes = [linear(20, gap=8), linear(24, gap=8)]
    mean_only = choose_crf(probes, TargetQuality(vmaf=88))
    with_floor = choose_crf(probes, TargetQuality(vmaf=88, min_low=84))
    assert mean_only == (pytest.approx(22.0), "mean")
    assert with_floor == (pytest.approx(18.0), "low")


def test_unreachable_target_is_clamped_and_reported(caplog):
    from vsremaster.encode.probes import _warn_unreachable

    probes = [linear(10, slope=3), linear(14, slope=3)]  # 100 at CRF 10, 88 at 14
    hard = TargetQuality(vmaf=100.5 - 1, min_crf=12)
    assert choose_crf(probes, hard) == (12.0, "min-crf")
    scene = Scene(index=3, start=0, end=50, probes=probes, crf=12.0, limited_by="min-crf",
                  predicted_mean=predict(probes, 12.0))
    _warn_unreachable([scene, Scene(index=4, start=50, end=90, crf=20.0, limited_by="mean",
                                    predicted_mean=99.6)], hard)
    assert "1 of 2 scenes cannot reach VMAF 99.5" in caplog.text
    assert "scene 3: CRF 12, predicted 94.0" in caplog.text
    easy = [linear(36, slope=0.1), linear(40, slope=0.1)]
    assert choose_crf(easy, TargetQuality(vmaf=90)) == (40.0, "max-crf")
    assert next_crf(easy, TargetQuality(vmaf=90), 24) is None


def test_noisy_probes_never_predict_quality_rising_with_crf():
    probes = [Probe(20, 96, 92, 900, 24), Probe(24, 96.5, 92.5, 600, 24)]
    assert predict(probes, 24) <= predict(probes, 20)


def test_samples_are_spread_over_the_scene_and_about_the_share():
    for start, end in [(5, 15), (5, 29), (0, 50), (100, 400), (0, 3000)]:
        spans = sample_spans(start, end, 25.0, 0.1)
        length, frames = end - start, sum(b - a for a, b in spans)
        assert all(start <= a < b <= end for a, b in spans)
        assert all(b0 <= a1 for (_, b0), (a1, _) in zip(spans, spans[1:], strict=False))
        if length <= 12:
            assert spans == [(start, end)]
            continue
        assert all(b - a == 12 for a, b in spans)
        assert len(spans) == max(1, round(0.1 * length / 12))
        assert frames <= max(12, 0.1 * length + 6)
        # one segment in each n-th of the scene
        part = length / len(spans)
        assert [int((a + 6 - start) // part) for a, _ in spans] == list(range(len(spans)))


def test_probe_samples_are_cut_from_the_rendered_frames(tmp_path):
    from vsremaster.encode.probes import _y4m_select

    header = b"YUV4MPEG2 W4 H2 F25:1 Ip A1:1 C420jpeg\n"
    frames = [bytes([i]) * 12 for i in range(10)]  # 4x2 luma + 2 chroma planes of 2x1
    src, dst = tmp_path / "all.y4m", tmp_path / "some.y4m"
    src.write_bytes(header + b"".join(b"FRAME\n" + f for f in frames))
    _y4m_select(src, dst, [1, 2, 7, 8, 7], 12)
    assert dst.read_bytes() == header + b"".join(b"FRAME\n" + frames[i] for i in (1, 2, 7, 8, 7))
    with pytest.raises(EncodeError, match="no frame 10"):
        _y4m_select(src, dst, [9, 10], 12)
    src.write_bytes(src.read_bytes()[:-5])
    with pytest.raises(EncodeError, match="truncated"):
        _y4m_select(src, dst, [0, 1], 12)


def test_probe_segments_get_a_reversed_tail_that_stays_inside_them():
    from vsremaster.encode.probes import TAIL, probe_frames

    frames = probe_frames(100, 112)
    assert frames[:12] == list(range(100, 112))
    assert frames[12:] == list(range(110, 110 - TAIL, -1))
    assert min(frames) >= 100
    assert probe_frames(5, 9) == [5, 6, 7, 8, 7, 6, 5]  # a short segment: all of it, reversed
    assert probe_frames(3, 4) == [3]


def test_balance_holds_the_title_mean_and_moves_bits_toward_the_worst_frames():
    # scene 0 has a wide mean-low gap (its worst frames are much worse than its mean)
    wide = [linear(20, gap=8), linear(24, gap=8)]
    narrow = [linear(20, gap=2), linear(24, gap=2)]
    from vsremaster.encode.target import _SHRINK, balance

    def title(shrink: float) -> list[Scene]:
        scenes = [Scene(0, 0, 100, probes=wide), Scene(1, 100, 200, probes=narrow)]
        with pytest.MonkeyPatch.context() as mp:
            mp.setattr("vsremaster.encode.target._SHRINK", shrink)
            balance(scenes, TargetQuality(vmaf=88))
        return scenes

    flat, ours, equal = titles = [title(0.0), title(_SHRINK), title(1.0)]
    for scenes in titles:
        mean = (scenes[0].predicted_mean + scenes[1].predicted_mean) / 2
        assert mean == pytest.approx(88, abs=0.1)
        assert {s.limited_by for s in scenes} == {"balanced"}
    assert flat[0].crf == flat[1].crf
    lows = [s.predicted_low for s in equal]
    assert lows[0] == pytest.approx(lows[1], abs=0.1)  # full equalisation
    gap = ours[1].crf - ours[0].crf  # bits go where the worst frames are, part of the way
    assert 0 < gap < equal[1].crf - equal[0].crf
    assert gap == pytest.approx(_SHRINK * (equal[1].crf - equal[0].crf), abs=0.2)


def test_short_scenes_merge_and_zones_reproduce_each_crf():
    assert merge_short([(0, 3), (3, 50), (50, 52), (52, 100)], 10) == [(0, 52), (52, 100)]
    scenes = [Scene(0, 100, 150, crf=20.0), Scene(1, 150, 200, crf=26.0),
              Scene(2, 200, 260, crf=23.0)]
    zones = zones_arg(scenes, offset=100, base=20.0)
    # b = 2 ** ((base - crf) / 6): +6 CRF halves the bitrate factor
    assert zones == "50,99,b=0.500000/100,159,b=0.707107"


def test_cut_files_in_every_accepted_form(tmp_path):
    (tmp_path / "report.json").write_text(json.dumps({"cuts": [40, 10]}))
    (tmp_path / "list.json").write_text("[5, 9, 5]")
    (tmp_path / "cuts.txt").write_text("# shots\n12\n\n30  # flash after\n")
    assert read_cuts(tmp_path / "report.json") == [10, 40]
    assert read_cuts(tmp_path / "list.json") == [5, 9]
    assert read_cuts(tmp_path / "cuts.txt") == [12, 30]
    (tmp_path / "bad.txt").write_text("12\nseven\n")
    with pytest.raises(InputError, match="one frame number per line"):
        read_cuts(tmp_path / "bad.txt")
    with pytest.raises(InputError, match="Cannot read"):
        read_cuts(tmp_path / "missing.txt")


def test_bits_per_scene_follow_poc_across_idr_frames(tmp_path):
    csv = tmp_path / "x.csv"
    rows = ["Encode Order, Type, POC, QP, Bits, Scenecut",
            "0, I-SLICE, 0, 20, 1000, 0", "1, P-SLICE, 2, 22, 100, 0",
            "2, B-SLICE, 1, 24, 10, 0",
            "3, I-SLICE, 0, 20, 2000, 1", "4, P-SLICE, 1, 22, 200, 0",
            "", "Summary, , , , ,"]  # fmt: skip
    csv.write_text("\n".join(rows))
    scenes = [Scene(0, 50, 53), Scene(1, 53, 55)]
    scene_bits(csv, 50, scenes)
    assert [s.bits for s in scenes] == [1110, 2200]


def test_bad_target_settings_are_refused_before_anything_runs(tmp_path):
    script = tmp_path / "s.vpy"
    script.write_text("raise SystemExit('must not run')\n")
    for bad, words in [(TargetQuality(vmaf=120), "target VMAF"),
                       (TargetQuality(min_crf=30, max_crf=20), "min CRF"),
                       (TargetQuality(probe_share=0), "probe share")]:
        with pytest.raises(InputError, match=words):
            encode(script, tmp_path / "o.mkv", target=bad, progress=False)
    with pytest.raises(InputError, match="chunks"):
        encode(script, tmp_path / "o.mkv", chunks=-1, progress=False)
    # x265 options that would override the rate control or the pipeline's own files
    for params, name in [("--crf 40", "crf"), ("zones=0,10,b=2", "zones"),
                         ("--aq-mode 3 --bitrate 900", "bitrate"), ("--preset fast", "preset")]:
        with pytest.raises(InputError, match=f"--{name} is set by vsremaster"):
            encode(script, tmp_path / "o.mkv", target=TargetQuality(), x265_params=params,
                   progress=False)


# --------------------------------------------------------------------------- real encodes


@pytest.fixture(scope="module")
def two_shots(tmp_path_factory, sample_clip):
    """A 320x176 script: 60 frames of bikes (one shot) then 60 of cup; cut at 60."""
    folder = tmp_path_factory.mktemp("two shots")
    script = folder / "two shots.vpy"
    parts = [(str(sample_clip("bikes")), 76, 136), (str(sample_clip("cup")), 0, 60)]
    script.write_text(
        "import vapoursynth as vs\ncore = vs.core\nclips = []\n"
        f"for path, a, b in {parts!r}:\n"
        "    c = core.resize.Spline36(core.bs.VideoSource(path)[a:b], 320, 176,"
        " format=vs.YUV420P10)\n"
        "    clips.append(core.std.AssumeFPS(c, fpsnum=25, fpsden=1))\n"
        "(clips[0] + clips[1]).set_output()\n",
        encoding="utf-8",
    )
    reference = folder / "reference.y4m"
    subprocess.run([str(vspipe_exe()), "-c", "y4m", str(script), str(reference)],
                   check=True, capture_output=True)
    return script, reference


@needs_x265
def test_target_quality_lands_on_the_target_against_the_script(tmp_path, two_shots):
    script, reference = two_shots
    out = tmp_path / "out.mkv"
    result = encode(script, out, preset="ultrafast", progress=False, audio=None,
                    target=TargetQuality(vmaf=92))
    assert media_info(out).frames == 120
    # the shots were found in the script's frames, each decided by its own probes
    assert [(s.start, s.end) for s in result.scenes] == [(0, 60), (60, 120)]
    assert all(s.crf is not None and len(s.probes) >= 2 for s in result.scenes)
    # each probe round encodes the samples of every undecided scene in one run
    probe_runs = [c for c in result.commands if "probe.hevc" in c]
    assert 2 <= len(probe_runs) <= TargetQuality().max_probes
    # the sample frames were rendered from the script once; the VMAF check reused them
    assert sum("frames.vpy" in c for c in result.commands) == 1
    scores = vmaf_scores(out, reference, pix_fmt="yuv420p10le", log_dir=tmp_path)
    assert abs(pool(scores).mean - 92) <= 1.5
    log = json.loads(result.log.read_text())
    assert log["title"]["scenes"] == 2 and log["target"]["vmaf"] == 92
    # the whole title's time left was estimated when the final encode began
    assert log["timing_s"]["encode_estimate_s"] > 0
    assert all(s["bits"] > 0 and s["measured_mean"] is not None for s in log["scenes"])
    # a tighter target costs bits: the CRFs it picks are lower
    tighter = encode(script, tmp_path / "tight.mkv", preset="ultrafast", progress=False,
                     audio=None, target=TargetQuality(vmaf=97, verify=False))
    assert all(t.crf < s.crf for t, s in zip(tighter.scenes, result.scenes, strict=True))
    assert (tmp_path / "tight.mkv").stat().st_size > out.stat().st_size
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(".")) == []


@needs_x265
def test_ntsc_frame_rate_is_scored_frame_by_frame(tmp_path, two_shots):
    # 29.97 fps, the rate of the NTSC masters this project is for: the Matroska file's
    # timestamps (1 ms) and the y4m reference's (1001/30000 s) do not line up, and VMAF
    # must still pair frame n with frame n (it paired them by time: the verify step failed
    # on "13 frames where 12 were expected", a whole-file score came out 25 points low)
    script = tmp_path / "ntsc.vpy"
    script.write_text(two_shots[0].read_text(encoding="utf-8").replace(
        "fpsnum=25, fpsden=1", "fpsnum=30000, fpsden=1001"), encoding="utf-8")
    reference = tmp_path / "ntsc.y4m"
    subprocess.run([str(vspipe_exe()), "-c", "y4m", str(script), str(reference)],
                   check=True, capture_output=True)
    out = tmp_path / "out.mkv"
    result = encode(script, out, preset="ultrafast", progress=False, audio=None,
                    target=TargetQuality(vmaf=92))
    info = media_info(out)
    assert info.frames == 120 and info.fps == pytest.approx(29.97)
    for scene in result.scenes:  # the finished file, scored on each scene's sample frames
        assert abs(scene.measured_mean - scene.predicted_mean) <= 1.5
    scores = vmaf_scores(out, reference, pix_fmt="yuv420p10le", log_dir=tmp_path)
    assert scores.size == 120 and abs(pool(scores).mean - 92) <= 1.5


@needs_x265
def test_cut_outside_the_script_is_a_clear_error(tmp_path, two_shots):
    script, _ = two_shots
    cuts = tmp_path / "cuts.txt"
    cuts.write_text("500\n")
    with pytest.raises(EncodeError, match="outside the script's 120 frames"):
        encode(script, tmp_path / "o.mkv", scenes=cuts, chunks=1, progress=False, audio=None)
    assert not (tmp_path / "o.mkv").exists()


@needs_x265
def test_killed_chunked_encode_resumes_without_redoing_chunks(tmp_path, sample_clip):
    # 4 chunks of 25 frames; each frame takes >= 20 ms (read from a file the script names),
    # so the run can be killed mid-way
    delay = tmp_path / "delay.txt"
    delay.write_text("0.02")
    script = tmp_path / "slow.vpy"
    script.write_text(
        "import time\nimport vapoursynth as vs\ncore = vs.core\n"
        f"c = core.bs.VideoSource({str(sample_clip('bikes'))!r})[:100]\n"
        "c = core.resize.Bilinear(c, 320, 136, format=vs.YUV420P10)\n"
        "DELAY = float(open('delay.txt').read())\n"
        "def slow(n, f):\n    time.sleep(DELAY)\n    return f\n"
        "core.std.ModifyFrame(c, c, slow).set_output()\n",
        encoding="utf-8",
    )
    cuts = tmp_path / "cuts.txt"
    cuts.write_text("25\n50\n75\n")
    out = tmp_path / "out.mkv"
    cmd = [sys.executable, "-m", "vsremaster", "encode", str(script), "-o", str(out),
           "--scenes", str(cuts), "--chunks", "1", "--chunk-seconds", "1", "--crf", "30",
           "--preset", "ultrafast", "--audio", "none", "--no-progress"]
    state = tmp_path / ".out.vsremaster-work" / "state.json"
    first = subprocess.Popen(cmd, stderr=subprocess.DEVNULL, start_new_session=True)
    deadline = time.monotonic() + 120
    done: dict = {}
    while time.monotonic() < deadline and first.poll() is None:
        try:
            done = json.loads(state.read_text())["chunks"]
        except (OSError, ValueError, KeyError):
            done = {}
        if len(done) >= 2:
            break
        time.sleep(0.05)
    os.killpg(first.pid, signal.SIGKILL)  # no chance to clean up: like a crash or power cut
    first.wait()
    assert 2 <= len(done) < 4, "the run was not killed mid-way"
    assert not out.exists()
    # what a kill leaves of the chunk in progress: its bitstream and x265's --csv log, here
    # an empty one (killed before x265's first write)
    work = tmp_path / ".out.vsremaster-work" / "chunks"
    (work / f"{len(done):05d}.csv").write_text("")
    # and its temporary folder; a kill while muxing would also leave the partial file, a
    # single-pass encode its own temporary folder: the rerun removes what the dead process
    # left, and keeps what a live one (this test) is using
    left = [tmp_path / ".out.vsremaster-work" / f"tmp-{first.pid}",
            tmp_path / f".out.partial-{first.pid}.mkv",
            tmp_path / f".out.vsremaster-{first.pid}-k2v_9xq0"]
    assert left[0].is_dir()
    left[1].write_bytes(b"\0" * 1000)
    left[2].mkdir()
    (left[2] / "video.hevc").write_bytes(b"\0" * 1000)
    alive = tmp_path / f".out.partial-{os.getpid()}.mkv"
    alive.write_bytes(b"")

    # an edited comment (or a regenerated header) does not change the frames: still resumed
    script.write_text("# edited between the runs\n" + script.read_text(), encoding="utf-8")
    second = subprocess.run(cmd, capture_output=True, text=True)
    assert second.returncode == 0, second.stderr
    assert f"resuming: {len(done)} of 4 chunks already encoded" in second.stderr.replace("\n", " ")
    assert "left by an interrupted encode of out.mkv" in second.stderr
    assert not any(p.exists() for p in left) and alive.exists()
    alive.unlink()
    info = media_info(out)
    assert info.frames == 100 and info.video_codec == "hevc"
    assert not (tmp_path / ".out.vsremaster-work").exists()
    # the resumed file decodes to the same pictures as one never interrupted, here encoded
    # two chunks at a time
    whole = tmp_path / "whole.mkv"
    cmd2 = [*cmd]
    cmd2[cmd2.index(str(out))] = str(whole)
    cmd2[cmd2.index("--chunks") + 1] = "2"
    parallel = subprocess.run(cmd2, capture_output=True, text=True)
    assert parallel.returncode == 0, parallel.stderr
    assert "resuming" not in parallel.stderr
    assert frame_md5s(out) == frame_md5s(whole) and len(frame_md5s(whole)) == 100
    # and its log counts each scene's bits once (x265 appends to a --csv the killed run left)
    bits = [[s["bits"] for s in json.loads(path.with_suffix(".encode.json").read_text())["scenes"]]
            for path in (out, whole)]
    assert bits[0] == bits[1] and all(b > 0 for b in bits[0])

    # a corrupted chunk (same size, one byte changed) is not trusted: it is encoded again
    third_out = tmp_path / "again.mkv"
    cmd3 = [*cmd]
    cmd3[cmd3.index(str(out))] = str(third_out)
    run3 = subprocess.Popen(cmd3, stderr=subprocess.DEVNULL, start_new_session=True)
    state3 = tmp_path / ".again.vsremaster-work" / "state.json"
    finished: dict = {}
    while run3.poll() is None and not finished:
        try:
            finished = json.loads(state3.read_text())["chunks"]
        except (OSError, ValueError, KeyError):
            pass
        time.sleep(0.05)
    os.killpg(run3.pid, signal.SIGKILL)
    run3.wait()
    finished = json.loads(state3.read_text())["chunks"]
    assert 1 <= len(finished) < 4
    shutil.copytree(state3.parent, tmp_path / ".touched.vsremaster-work")  # for the last case
    chunk = tmp_path / ".again.vsremaster-work" / "chunks" / "00000.hevc"
    data = bytearray(chunk.read_bytes())
    data[len(data) // 2] ^= 0xFF
    chunk.write_bytes(bytes(data))
    rerun = subprocess.run(cmd3, capture_output=True, text=True)
    assert rerun.returncode == 0, rerun.stderr
    trusted = len(finished) - 1
    said = rerun.stderr.replace("\n", " ")
    assert (f"resuming: {trusted} of 4" in said) if trusted else ("already encoded" not in said)
    assert frame_md5s(third_out) == frame_md5s(whole)

    # a file the script reads changed since the kill (same bytes, newer time, as a re-captured
    # source or a new sidecar would): the chunks may hold other frames, so it starts over
    stat = delay.stat()
    os.utime(delay, ns=(stat.st_atime_ns, stat.st_mtime_ns + 10**9))
    cmd4 = [*cmd]
    cmd4[cmd4.index(str(out))] = str(tmp_path / "touched.mkv")
    touched = subprocess.run(cmd4, capture_output=True, text=True)
    assert touched.returncode == 0, touched.stderr
    said = touched.stderr.replace("\n", " ")
    assert "starting over" in said and "delay.txt changed" in said and "resuming" not in said


def frame_md5s(path) -> list[str]:
    """MD5 of every decoded video frame (FFmpeg's framemd5), in order."""
    from vsremaster.encode.tools import ffmpeg_exe

    run = subprocess.run([str(ffmpeg_exe()), "-v", "error", "-i", str(path), "-map", "0:v:0",
                          "-f", "framemd5", "-"], capture_output=True, text=True, check=True)
    return [line.rsplit(",", 1)[-1].strip() for line in run.stdout.splitlines()
            if line and not line.startswith("#")]


@needs_x265
def test_killed_probing_resumes_from_the_saved_probe_rounds(tmp_path, two_shots):
    script, _ = two_shots
    cmd = [sys.executable, "-m", "vsremaster", "encode", str(script), "-o", "",
           "--target-vmaf", "92", "--preset", "slow", "--audio", "none", "--no-progress",
           "--no-verify"]

    def run(name: str) -> subprocess.CompletedProcess:
        cmd[cmd.index("-o") + 1] = str(tmp_path / name)
        return subprocess.run(cmd, capture_output=True, text=True)

    assert run("whole.mkv").returncode == 0
    cmd[cmd.index("-o") + 1] = str(tmp_path / "out.mkv")
    state = tmp_path / ".out.vsremaster-work" / "state.json"
    first = subprocess.Popen(cmd, stderr=subprocess.DEVNULL, start_new_session=True)
    seen: list = []
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and first.poll() is None:
        try:
            scenes = json.loads(state.read_text())["scenes"]
        except (OSError, ValueError, KeyError):
            scenes = []
        if scenes and all(s["probes"] and s["crf"] is None for s in scenes):
            seen = scenes  # the first round is saved, the second is running
            break
        time.sleep(0.02)
    os.killpg(first.pid, signal.SIGKILL)
    first.wait()
    assert seen, "the run was not killed between two probe rounds"
    assert not (tmp_path / "out.mkv").exists()
    # mark a saved probe (its bitrate decides nothing): a rerun that probed again would lose it
    saved = json.loads(state.read_text())
    saved["scenes"][0]["probes"][0]["kbps"] = -1.0
    state.write_text(json.dumps(saved))
    # a newer vsremaster that takes its probes differently must not reuse these
    shutil.copytree(state.parent, tmp_path / ".newer.vsremaster-work")
    newer = subprocess.run(
        [sys.executable, "-c", "import runpy, vsremaster.encode.pipeline as p; p.METHOD += 1; "
         "runpy.run_module('vsremaster', run_name='__main__')",
         *cmd[3:cmd.index("-o") + 1], str(tmp_path / "newer.mkv"), *cmd[cmd.index("-o") + 2:]],
        capture_output=True, text=True,
    )  # fmt: skip
    assert newer.returncode == 0, newer.stderr
    assert "resuming" not in newer.stderr
    probed = json.loads((tmp_path / "newer.encode.json").read_text())["scenes"]
    assert probed[0]["probes"][0]["kbps"] > 0  # probed again

    # killed after the probes decided every scene: the rerun probes nothing, yet still knows
    # how long its final encode should take (the speeds the killed run measured are saved)
    assert {"render", "encode", "vmaf"} <= set(saved["speeds"])
    decided = tmp_path / ".decided.vsremaster-work"
    shutil.copytree(state.parent, decided)
    final = json.loads((tmp_path / "whole.encode.json").read_text())["scenes"]
    for scene, reference in zip(saved["scenes"], final, strict=True):
        for key in ("crf", "limited_by", "predicted_mean", "predicted_low"):
            scene[key] = reference[key]
    (decided / "state.json").write_text(json.dumps(saved))
    rerun = run("decided.mkv")
    assert rerun.returncode == 0, rerun.stderr
    assert "resuming: 2 scenes known, 2 decided" in rerun.stderr.replace("\n", " ")
    timing = json.loads((tmp_path / "decided.encode.json").read_text())["timing_s"]
    assert timing["probe_s"] == 0 and timing["encode_estimate_s"] > 0

    second = run("out.mkv")
    assert second.returncode == 0, second.stderr
    assert "resuming: 2 scenes known, 0 decided" in second.stderr.replace("\n", " ")
    resumed = json.loads((tmp_path / "out.encode.json").read_text())["scenes"]
    whole = json.loads((tmp_path / "whole.encode.json").read_text())["scenes"]
    assert resumed[0]["probes"][0]["kbps"] == -1.0  # the first round was kept, not redone
    resumed[0]["probes"][0]["kbps"] = whole[0]["probes"][0]["kbps"]
    for after, reference in zip(resumed, whole, strict=True):
        assert after["probes"] == reference["probes"] and after["crf"] == reference["crf"]
    assert media_info(tmp_path / "out.mkv").frames == 120


def test_ffmpeg_encoder_target_quality_in_a_hostile_folder(tmp_path, two_shots):
    script, _ = two_shots
    folder = tmp_path / "it's: a=b \\ c"
    folder.mkdir()
    out = folder / "out; rm -rf ~.mkv"
    if mkvmerge_exe() is None:
        pytest.skip("mkvmerge not on PATH")
    result = encode(script, out, encoder="ffmpeg", preset="ultrafast", progress=False,
                    audio=None, target=TargetQuality(vmaf=90, verify=False), chunks=1,
                    chunk_seconds=2)
    assert result.encoder == "ffmpeg" and media_info(out).frames == 120
    # the per-frame log reached libx265 through -x265-params with its path intact
    assert all(s.bits and s.bits > 0 for s in result.scenes)
    assert sorted(p.name for p in folder.iterdir()) == ["out; rm -rf ~.encode.json", "out; rm -rf ~.mkv"]
