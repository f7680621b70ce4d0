"""Tests of vsremaster.encode: vspipe | x265 / FFmpeg libx265 into Matroska, with audio.

Encodes are tiny (a few dozen frames, ``--preset ultrafast``) so the whole file runs in well
under a minute on two cores. Outputs are checked the way a user would notice problems:
with :func:`media_info` (the bundled FFmpeg), never with the encoder's own claims.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import textwrap
import time
from fractions import Fraction
from pathlib import Path

import pytest

from vsremaster.encode import (
    EncodeResult,
    encode,
    ffmpeg_exe,
    ffmpeg_x265_params,
    media_info,
    parse_vspipe_progress,
    parse_x265_params,
    probe_script,
    x265_cli_args,
    x265_exe,
)
from vsremaster.encode.tools import mkvmerge_exe
from vsremaster.encode.progress import (
    FrameProgress,
    ProgressBar,
    StderrLines,
    TitleClock,
    is_vspipe_progress,
)
from vsremaster.errors import EncodeError, InputError

HAVE_X265 = x265_exe() is not None and mkvmerge_exe() is not None
ENCODERS = [
    pytest.param(
        "x265", marks=pytest.mark.skipif(not HAVE_X265, reason="x265/mkvmerge not on PATH")
    ),
    "ffmpeg",
]
FAST = {"preset": "ultrafast", "progress": False}


def write_script(folder: Path, body: str, name: str = "script.vpy") -> Path:
    """Write a .vpy whose body is dedented; ``vs`` and ``core`` are imported first."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    path.write_text(
        "import vapoursynth as vs\nfrom vapoursynth import core\n" + textwrap.dedent(body),
        encoding="utf-8",
    )
    return path


def write_slow_script(folder: Path, frames: int) -> Path:
    """A 96x64 script of ``frames`` frames, each taking 30 ms to render: an encode of it
    can be caught running."""
    return write_script(
        folder,
        f"""
        import time
        clip = core.std.BlankClip(width=96, height=64, length={frames}, format=vs.YUV420P8)
        def slow(n, f):
            time.sleep(0.03)
            return f
        clip.std.ModifyFrame(clip, slow).set_output()
        """,
    )


def leftovers(folder: Path, *keep: Path) -> list[str]:
    """Names in ``folder`` other than ``keep`` (partial files, temp folders...)."""
    kept = {p.name for p in keep}
    return sorted(p.name for p in folder.iterdir() if p.name not in kept)


def assert_video(out: Path, *, width: int, height: int, frames: int, fps: Fraction) -> None:
    info = media_info(out)
    assert info.container is not None and info.container.startswith("matroska")
    assert info.video_codec == "hevc"
    assert info.bit_depth == 10 and info.pix_fmt == "yuv420p10le"
    assert (info.width, info.height) == (width, height)
    assert info.frames == frames
    expected = frames / fps
    assert info.video_duration_s == pytest.approx(float(expected), abs=float(1 / fps))
    assert info.fps == pytest.approx(float(fps), abs=0.01)


def decoded_times(path: Path) -> list[float]:
    """Presentation time (s) of every decoded video frame, in output order."""
    proc = subprocess.run(
        [str(ffmpeg_exe()), "-hide_banner", "-i", str(path), "-map", "0:v:0", "-vf",
         "showinfo", "-f", "null", "-"],
        check=True, capture_output=True, text=True,
    )  # fmt: skip
    return [float(t) for t in re.findall(r"pts_time:\s*([-\d.]+)", proc.stderr)]


# --------------------------------------------------------------------------- encoders


@pytest.mark.skipif(not HAVE_X265, reason="x265 not on PATH")
def test_x265_cli_encodes_real_clip(tmp_path, sample_clip):
    script = write_script(
        tmp_path, f"core.bs.VideoSource({str(sample_clip('bikes'))!r})[:24].set_output()\n"
    )
    out = tmp_path / "bikes.mkv"
    # several GOPs with B-pyramids: every frame must still get its exact presentation time
    result = encode(script, out, x265_params="--keyint 10 --bframes 4 --b-pyramid", **FAST)
    assert isinstance(result, EncodeResult)
    assert result.output == out and result.encoder == "x265" and result.frames == 24
    assert result.frame_rate == 25 and result.duration_s == pytest.approx(0.96)
    assert any("| " in c and "x265" in c and "--output-depth 10" in c for c in result.commands)
    assert_video(out, width=640, height=272, frames=24, fps=Fraction(25))
    assert decoded_times(out) == pytest.approx([n / 25 for n in range(24)], abs=0.0015)
    info = media_info(out)
    # bikes carries _Matrix/_Primaries/_Transfer = 2 (unspecified): nothing is signalled.
    assert info.color_primaries is None and info.color_space is None
    assert info.audio_codec is None
    assert leftovers(tmp_path, script, out) == []


def test_ffmpeg_libx265_encodes_real_clip(tmp_path, sample_clip):
    script = write_script(
        tmp_path,
        f"core.bs.VideoSource({str(sample_clip('carphone'))!r})[:30].set_output()\n",
    )
    out = tmp_path / "carphone.mkv"
    result = encode(script, out, encoder="ffmpeg", **FAST)
    assert result.encoder == "ffmpeg"
    assert "libx265" in result.commands[0] and "yuv420p10le" in result.commands[0]
    # 29.97 fps: 30 frames last 1.001 s
    assert_video(out, width=176, height=144, frames=30, fps=Fraction(30000, 1001))
    assert decoded_times(out) == pytest.approx([n * 1.001 / 30 for n in range(30)], abs=0.0015)
    assert leftovers(tmp_path, script, out) == []


@pytest.mark.parametrize("encoder", ENCODERS)
@pytest.mark.parametrize(
    ("props", "expected"),
    [
        (
            "_Matrix=1, _Primaries=1, _Transfer=1, _Range=0, _SARNum=128, _SARDen=117",
            {
                "color_space": "bt709",
                "color_primaries": "bt709",
                "color_transfer": "bt709",
                "color_range": "tv",
                "sar": (128, 117),
            },
        ),
        (
            "_Matrix=9, _Primaries=9, _Transfer=16, _Range=1",
            {
                "color_space": "bt2020nc",
                "color_primaries": "bt2020",
                "color_transfer": "smpte2084",
                "color_range": "pc",
                "sar": None,
            },
        ),
    ],
    ids=["bt709-limited-sar", "bt2020-pq-full"],
)
def test_colour_props_are_signalled(tmp_path, encoder, props, expected):
    script = write_script(
        tmp_path,
        f"""
        clip = core.std.BlankClip(width=176, height=144, length=6, format=vs.YUV420P8,
                                  color=[40, 100, 160])
        clip.std.SetFrameProps({props}).set_output()
        """,
    )
    out = tmp_path / "colour.mkv"
    encode(script, out, encoder=encoder, **FAST)
    info = media_info(out)
    for name, value in expected.items():
        assert getattr(info, name) == value, name
    # FFmpeg's own summary line shows the same signalling
    if expected["sar"]:
        assert "SAR 128:117" in info.raw
        assert "bt709" in info.raw


# --------------------------------------------------------------------------- audio


def test_audio_is_cut_to_the_script_span_and_stays_in_sync(tmp_path, sample_clip):
    bbb = sample_clip("bbb")
    script = write_script(
        tmp_path,
        f"""
        VSREMASTER = {{"source": {str(bbb)!r}, "audio_start_s": 1.0, "audio_end_s": 2.0}}
        core.bs.VideoSource(VSREMASTER["source"])[25:50].set_output()
        """,
    )
    out = tmp_path / "bbb.mkv"
    result = encode(script, out, **FAST)
    assert result.audio is not None and "aac" in result.audio
    info = media_info(out)
    assert info.frames == 25 and info.video_duration_s == pytest.approx(1.0, abs=0.04)
    assert info.audio_codec == "aac" and info.audio_streams == 1
    assert info.audio_duration_s == pytest.approx(1.0, abs=0.05)

    # Stream copy: the first output audio packet is the source packet at ~1.0 s, and it sits
    # at (its source time - 1.0 s) in the output, so audio and video stay in sync.
    def packets(path: Path) -> list[tuple[float, str]]:
        """(presentation time in s, crc) of each audio packet, timestamps as stored."""
        proc = subprocess.run(
            [
                str(ffmpeg_exe()),
                "-v",
                "error",
                "-copyts",
                "-i",
                str(path),
                "-map",
                "0:a:0",
                "-c",
                "copy",
                "-f",
                "framecrc",
                "-",
            ],
            capture_output=True,
            text=True,
            check=True,
        )
        num, den = re.search(r"^#tb 0: (\d+)/(\d+)$", proc.stdout, re.MULTILINE).groups()
        rows = [r.split(",") for r in proc.stdout.splitlines() if not r.startswith("#")]
        return [(int(r[2]) * int(num) / int(den), r[5].strip()) for r in rows]

    src = packets(bbb)
    dst = packets(out)
    first_time, first_crc = dst[0]
    match = [t for t, crc in src if crc == first_crc]
    assert match, "the first output audio packet is not a copied source packet"
    assert match[0] == pytest.approx(1.0, abs=0.025)
    assert first_time == pytest.approx(match[0] - 1.0, abs=0.0015)


def test_source_without_audio_gives_no_audio_stream(tmp_path, sample_clip):
    bikes = sample_clip("bikes")
    script = write_script(
        tmp_path,
        f"""
        VSREMASTER = {{"source": {str(bikes)!r}, "audio_start_s": 0.0, "audio_end_s": None}}
        core.bs.VideoSource(VSREMASTER["source"])[:8].set_output()
        """,
    )
    out = tmp_path / "silent.mkv"
    result = encode(script, out, **FAST)
    assert result.audio is None
    info = media_info(out)
    assert info.audio_codec is None and info.audio_streams == 0 and info.frames == 8


def test_audio_none_and_explicit_audio_path(tmp_path, sample_clip):
    bbb = sample_clip("bbb")
    script = write_script(
        tmp_path,
        f"""
        VSREMASTER = {{"source": {str(bbb)!r}, "audio_start_s": 0.0, "audio_end_s": 0.4}}
        core.std.BlankClip(width=128, height=96, length=10, format=vs.YUV420P8).set_output()
        """,
    )
    none = encode(script, tmp_path / "none.mkv", audio=None, **FAST)
    assert none.audio is None and media_info(none.output).audio_codec is None
    whole = encode(script, tmp_path / "whole.mkv", audio=bbb, **FAST)
    info = media_info(whole.output)
    assert info.audio_codec == "aac"
    assert info.audio_duration_s == pytest.approx(5.3, abs=0.1)  # a path: its whole audio
    with pytest.raises(InputError, match="no audio"):
        encode(script, tmp_path / "x.mkv", audio=sample_clip("bikes"), **FAST)


def test_audio_that_matroska_cannot_copy_is_reencoded_to_flac(tmp_path):
    # IMA ADPCM (QuickTime flavour) has no Matroska codec id: stream copy fails.
    source = tmp_path / "adpcm.mov"
    subprocess.run(
        [
            str(ffmpeg_exe()),
            "-v",
            "error",
            "-f",
            "lavfi",
            "-i",
            "sine=d=1:r=22050",
            "-c:a",
            "adpcm_ima_qt",
            str(source),
        ],
        check=True,
    )
    script = write_script(
        tmp_path,
        "core.std.BlankClip(width=96, height=64, length=10, format=vs.YUV420P8).set_output()\n",
    )
    out = tmp_path / "flac.mkv"
    encode(script, out, audio=source, **FAST)
    info = media_info(out)
    assert info.audio_codec == "flac" and info.audio_duration_s == pytest.approx(1.0, abs=0.05)
    assert leftovers(tmp_path, script, source, out) == []


# --------------------------------------------------------------------------- failures


RAISE_AT_10 = """
clip = core.std.BlankClip(width=96, height=64, length=40, format=vs.YUV420P8)
def bad(n, f):
    if n == 10:
        raise RuntimeError("boom at frame ten: überfail")
    return f
clip.std.ModifyFrame(clip, bad).set_output()
"""


@pytest.mark.parametrize("encoder", ENCODERS)
def test_script_raising_mid_encode_leaves_nothing(tmp_path, encoder):
    script = write_script(tmp_path, RAISE_AT_10)
    out = tmp_path / "out.mkv"
    out.write_bytes(b"precious earlier encode")
    with pytest.raises(EncodeError) as caught:
        encode(script, out, encoder=encoder, **FAST)
    message = str(caught.value)
    assert message.startswith("vspipe failed (exit code 1)")
    assert "boom at frame ten: überfail" in message and "frame 10" in message
    assert out.read_bytes() == b"precious earlier encode"
    assert leftovers(tmp_path, script, out) == []


@pytest.mark.parametrize("encoder", ENCODERS)
def test_bad_x265_parameter_is_reported(tmp_path, encoder):
    script = write_script(
        tmp_path,
        "core.std.BlankClip(width=64, height=64, length=30, format=vs.YUV420P8).set_output()\n",
    )
    out = tmp_path / "out.mkv"
    with pytest.raises(EncodeError) as caught:
        encode(script, out, encoder=encoder, x265_params="--this-is-not-an-option", **FAST)
    message = str(caught.value)
    assert "x265" in message
    assert "rejected its parameters" in message
    assert "this-is-not-an-option" in message
    if encoder == "x265":
        assert "unrecognized option" in message
    else:
        assert "Unknown option" in message
    assert not out.exists()
    assert leftovers(tmp_path, script) == []


@pytest.mark.skipif(not HAVE_X265, reason="x265 not on PATH")
def test_x265_hanging_after_error_is_stopped(tmp_path):
    # x265 3.5 logs "x265_encoder_open() failed" for an out-of-range crf (here --crf-max:
    # vsremaster refuses --crf itself in x265_params) and then hangs instead of exiting; the
    # encoder must notice, stop it and say why.
    script = write_script(
        tmp_path,
        "core.std.BlankClip(width=64, height=64, length=30, format=vs.YUV420P8).set_output()\n",
    )
    started = time.monotonic()
    with pytest.raises(EncodeError, match=r"(?s)x265 rejected its parameters.*Valid quality"):
        encode(script, tmp_path / "out.mkv", x265_params="--crf-max 99", encoder="x265", **FAST)
    assert time.monotonic() - started < 30
    assert leftovers(tmp_path, script) == []


def test_script_failing_to_load(tmp_path):
    script = write_script(tmp_path, 'raise ValueError("cannot load: no such title")\n')
    with pytest.raises(EncodeError) as caught:
        probe_script(script)
    message = str(caught.value)
    assert "ValueError: cannot load: no such title" in message
    assert f'File "{script}", line 3' in message
    assert "runpy" not in message and "vsremaster" not in message.replace(str(script), "")
    with pytest.raises(EncodeError, match="cannot load: no such title"):
        encode(script, tmp_path / "out.mkv", **FAST)
    assert leftovers(tmp_path, script) == []


def test_probe_rejections(tmp_path):
    no_output = write_script(tmp_path, "clip = core.std.BlankClip()\n", "none.vpy")
    with pytest.raises(EncodeError, match="no output 0"):
        probe_script(no_output)
    variable = write_script(
        tmp_path,
        """
        a = core.std.BlankClip(width=64, height=64, length=2, format=vs.YUV420P8)
        b = core.std.BlankClip(width=32, height=64, length=2, format=vs.YUV420P8)
        core.std.Splice([a, b], mismatch=True).set_output()
        """,
        "variable.vpy",
    )
    with pytest.raises(EncodeError, match="variable frame size"):
        probe_script(variable)
    rgb = write_script(tmp_path, "core.std.BlankClip(length=2).set_output()\n", "rgb.vpy")
    assert probe_script(rgb).color_family == "RGB"
    with pytest.raises(EncodeError, match="needs YUV or GRAY"):
        encode(rgb, tmp_path / "rgb.mkv", **FAST)


def test_probe_reads_props_and_vsremaster(tmp_path, sample_clip):
    carphone = sample_clip("carphone")
    script = write_script(
        tmp_path,
        f"""
        print("scripts may print; it must not break the probe")
        VSREMASTER = {{"source": {str(carphone)!r}, "audio_start_s": 0.5, "audio_end_s": None}}
        clip = core.bs.VideoSource(VSREMASTER["source"])[2:12]
        clip.std.SetFrameProps(_Range=1, _FieldBased=0).set_output()
        """,
    )
    info = probe_script(script)
    assert (info.width, info.height, info.num_frames) == (176, 144, 10)
    assert info.fps == Fraction(30000, 1001)
    assert info.format_name == "YUV420P8" and info.bits == 8
    assert info.sar == (128, 117) and info.color_range == "full"
    assert info.vsremaster == {"source": str(carphone), "audio_start_s": 0.5, "audio_end_s": None}


def test_script_is_evaluated_in_its_folder_like_vspipe(tmp_path, monkeypatch):
    # vspipe changes to the script's folder while evaluating it: relative paths in a
    # script must mean the same thing to the probe and to vspipe.
    folder = tmp_path / "project"
    folder.mkdir()
    (folder / "length.txt").write_text("7")
    write_script(
        folder,
        """
        length = int(open("length.txt").read())
        core.std.BlankClip(width=96, height=64, length=length, format=vs.YUV420P8).set_output()
        """,
    )
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    assert probe_script(Path("../project/script.vpy")).num_frames == 7
    result = encode(Path("../project/script.vpy"), Path("out.mkv"), **FAST)
    assert result.output == elsewhere / "out.mkv" and media_info(result.output).frames == 7


def test_paths_with_spaces_quotes_and_unicode(tmp_path, sample_clip):
    folder = tmp_path / "my clips 'quoted' \"double\" ünïcødé"
    script = write_script(
        folder,
        f"core.bs.VideoSource({str(sample_clip('bikes'))!r})[:8].set_output()\n",
        name="take 1 'final' ü.vpy",
    )
    out = folder / "résultat \"v2\" 'x' : $HOME.mkv"
    result = encode(script, out, **FAST)
    assert out.is_file() and result.frames == 8
    assert media_info(out).frames == 8
    assert leftovers(folder, script, out) == []


def test_invalid_arguments(tmp_path):
    script = write_script(tmp_path, "core.std.BlankClip(format=vs.YUV420P8).set_output()\n")
    with pytest.raises(InputError, match=r"\.mkv"):
        encode(script, tmp_path / "out.mp4", **FAST)
    with pytest.raises(InputError, match="preset"):
        encode(script, tmp_path / "out.mkv", preset="warp", progress=False)
    with pytest.raises(InputError, match="encoder"):
        encode(script, tmp_path / "out.mkv", encoder="nvenc", **FAST)
    with pytest.raises(InputError, match="folder"):
        encode(script, tmp_path / "missing" / "out.mkv", **FAST)
    with pytest.raises(InputError, match="x265_params"):
        encode(script, tmp_path / "out.mkv", x265_params="--aq-mode 3 stray", **FAST)
    film = tmp_path / "film.mkv"
    film.write_bytes(b"the user's source film")
    remaster = write_script(
        tmp_path,
        f"""
        VSREMASTER = {{"source": {str(film)!r}, "audio_start_s": 0.0, "audio_end_s": None}}
        core.std.BlankClip(format=vs.YUV420P8, length=2).set_output()
        """,
        "remaster.vpy",
    )
    with pytest.raises(InputError, match="overwrite the source"):
        encode(remaster, film, **FAST)
    assert film.read_bytes() == b"the user's source film"
    assert leftovers(tmp_path, script, remaster, film) == []


def test_frames_under_64_pixels_go_to_ffmpeg(tmp_path):
    # x265's y4m reader refuses them ("unable to open input file <->"). (FFmpeg's libx265
    # 4.3 has its own trouble with some tiny sizes: 48x48 aborts in free().)
    script = write_script(
        tmp_path,
        "core.std.BlankClip(width=64, height=48, length=5, format=vs.YUV420P8).set_output()\n",
    )
    result = encode(script, tmp_path / "small.mkv", **FAST)
    assert result.encoder == "ffmpeg" and media_info(result.output).frames == 5
    if HAVE_X265:
        with pytest.raises(EncodeError, match="smaller than 64"):
            encode(script, tmp_path / "x.mkv", encoder="x265", **FAST)


@pytest.mark.parametrize(
    "tool, message",
    [("x265_exe", "x265 is not on PATH"), ("mkvmerge_exe", "mkvmerge .*is not on PATH")],
)
def test_missing_x265_or_mkvmerge_falls_back_or_fails(tmp_path, monkeypatch, tool, message):
    """x265 writes raw HEVC that only mkvmerge can time: without either, auto uses FFmpeg."""
    from vsremaster.encode import pipeline

    monkeypatch.setattr(pipeline, tool, lambda: None)
    script = write_script(
        tmp_path,
        "core.std.BlankClip(width=64, height=64, length=5, format=vs.YUV420P8).set_output()\n",
    )
    with pytest.raises(EncodeError, match=f"{message}.*apt install x265 mkvtoolnix"):
        encode(script, tmp_path / "a.mkv", encoder="x265", **FAST)
    result = encode(script, tmp_path / "b.mkv", encoder="auto", **FAST)
    assert result.encoder == "ffmpeg" and media_info(result.output).frames == 5


def test_interrupt_kills_everything_and_cleans_up(tmp_path):
    script = write_slow_script(tmp_path, 400)
    out = tmp_path / "out.mkv"
    child = textwrap.dedent(
        f"""
        import signal, sys
        signal.signal(signal.SIGINT, signal.default_int_handler)
        from pathlib import Path
        from vsremaster.encode import encode, EncodeInterrupted
        try:
            encode(Path({str(script)!r}), Path({str(out)!r}), preset="ultrafast", progress=False)
        except EncodeInterrupted as e:
            print("INTERRUPTED", isinstance(e, KeyboardInterrupt), flush=True)
            sys.exit(3)
        """
    )
    proc = subprocess.Popen([sys.executable, "-c", child], stdout=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 30
    while not any(".vsremaster-" in p.name for p in tmp_path.iterdir()):
        assert time.monotonic() < deadline and proc.poll() is None
        time.sleep(0.05)
    time.sleep(1.0)  # vspipe | encoder running
    proc.send_signal(signal.SIGINT)
    stdout, _ = proc.communicate(timeout=30)
    assert proc.returncode == 3 and "INTERRUPTED True" in stdout
    assert leftovers(tmp_path, script) == []
    assert not out.exists()
    stray = subprocess.run(
        ["pgrep", "-f", str(script)], check=False, capture_output=True, text=True
    )
    assert stray.stdout.strip() == ""


@pytest.mark.skipif(not HAVE_X265, reason="x265 not on PATH")
def test_a_second_encode_of_the_same_output_stops_while_the_first_runs(tmp_path):
    # a user starting the same command twice: the second would share the first one's
    # partial file and work folder; it must stop at once and leave the first one's work be
    script = write_slow_script(tmp_path, 100)
    out = tmp_path / "out.mkv"
    cmd = [sys.executable, "-m", "vsremaster", "encode", str(script), "-o", str(out),
           "--crf", "30", "--preset", "ultrafast", "--audio", "none", "--no-progress"]
    first = subprocess.Popen(cmd, stderr=subprocess.PIPE, text=True)
    lock = tmp_path / ".out.vsremaster-lock"
    deadline = time.monotonic() + 30
    while not (lock.exists() and lock.read_text().strip()):
        assert time.monotonic() < deadline and first.poll() is None
        time.sleep(0.02)
    second = subprocess.run(cmd, capture_output=True, text=True)
    assert second.returncode == 1
    assert f"Another encode of out.mkv is running (process {first.pid})" in second.stderr
    _, err = first.communicate(timeout=60)
    assert first.returncode == 0, err
    assert media_info(out).frames == 100
    assert leftovers(tmp_path, script, out) == []  # the lock file goes with the run
    # once the first is done, the same command runs again
    third = subprocess.run(cmd, capture_output=True, text=True)
    assert third.returncode == 0, third.stderr


def test_a_killed_runs_lock_does_not_block_the_next_encode(tmp_path, output_lock_holder):
    from vsremaster.encode.workdir import OutputLock

    out = tmp_path / "out.mkv"
    holder = output_lock_holder(out)
    with pytest.raises(EncodeError, match=rf"out.mkv is running \(process {holder.pid}\)"):
        with OutputLock(out):
            pass
    holder.kill()  # SIGKILL: no chance to remove its lock file
    holder.wait()
    lock = tmp_path / ".out.vsremaster-lock"
    assert lock.exists()
    with OutputLock(out):
        assert lock.read_text() == f"{os.getpid()}\n"
        with OutputLock(out):  # re-entered by the same process (remaster, then its encode)
            pass
        assert lock.exists()
    assert not lock.exists()


def test_vspipe_unconfigured_tells_user_to_run_vapoursynth_config(tmp_path):
    env = dict(os.environ, HOME=str(tmp_path), XDG_CONFIG_HOME=str(tmp_path / "config"))
    code = textwrap.dedent(
        """
        from vsremaster.encode.tools import vspipe_exe
        from vsremaster.errors import EncodeError
        try:
            vspipe_exe()
        except EncodeError as e:
            print("ERR", e)
        """
    )
    proc = subprocess.run(
        [sys.executable, "-c", code],
        check=False,
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
    )
    if "ERR" not in proc.stdout:
        pytest.skip("VapourSynth needs no per-user configuration here")
    assert "vapoursynth config" in proc.stdout


# --------------------------------------------------------------------------- units


# Captured from `vspipe -c y4m -p script.vpy -` (VapourSynth R81): \r between updates.
VSPIPE_STDERR = (
    b"Information: VideoSource track #0 index progress 10%\n"
    b"Script evaluation done in 0.20 seconds\n"
    b"Frame: 1/132\rFrame: 21/132\rFrame: 43/132\rFrame: 66/132\rFrame: 92/132\r"
    b"Frame: 120/132\rOutput 132 frames in 2.80 seconds (47.16 fps)\n"
)


def test_progress_parser_on_captured_vspipe_output():
    reports = parse_vspipe_progress(VSPIPE_STDERR.decode())
    assert [r.done for r in reports] == [1, 21, 43, 66, 92, 120, 132]
    assert all(r.total == 132 for r in reports)
    assert reports[0].fps is None
    assert reports[-1] == FrameProgress(132, 132, 47.16, final=True)
    # older vspipe releases append the speed
    assert parse_vspipe_progress("Frame: 12/250 (3.45 fps)\rFrame: 13/250 (3.50 fps)\r") == [
        FrameProgress(12, 250, 3.45),
        FrameProgress(13, 250, 3.5),
    ]
    assert is_vspipe_progress("Frame: 3/40") and is_vspipe_progress("")
    assert not is_vspipe_progress("RuntimeError: boom")


def test_progress_shows_the_time_left_in_the_whole_title(capsys, monkeypatch):
    """Each phase's bar also shows the whole title's time left: its own, plus the phases
    after it at the speeds measured so far; unknown until they are measured."""
    monkeypatch.setenv("COLUMNS", "200")  # a wide terminal: rich would shorten the row
    clock = TitleClock(1000, 100, phases=("scenes", "probes", "encode", "verify"))
    with ProgressBar(1000, "finding scenes", clock=clock, phase="scenes") as bar:
        bar.update(FrameProgress(500, 1000, fps=100.0))
    assert "title: time left unknown yet" in capsys.readouterr().err
    # the probes measure rendering at 100 fps, the encoder at 20 fps, VMAF at 100 fps
    for kind, frames, seconds in [("render", 100, 1.0), ("encode", 150, 5.0),
                                  ("encode", 50, 5.0), ("vmaf", 100, 1.0)]:
        clock.measured(kind, frames, seconds)  # the encoder: 200 frames in 10 s in all
    assert clock.estimate("encode") == pytest.approx(60.0)  # 1000 / (1/100 + 1/20)^-1
    assert clock.after("probes") == pytest.approx(61.0)  # + 100 samples at 100 fps
    with ProgressBar(300, "probing (VMAF)", clock=clock, phase="probes") as bar:
        bar.update(FrameProgress(250, 300, fps=5.0))  # 10 s left in this phase
    assert "title ~0:01:11 left" in capsys.readouterr().err
    with ProgressBar(1000, "encoding (x265)", clock=clock, phase="encode") as bar:
        bar.update(FrameProgress(100, 1000, fps=30.0))  # the encode's own speed now rules
    assert "title ~0:00:31 left" in capsys.readouterr().err


def test_stderr_splitter_handles_arbitrary_chunks():
    data = VSPIPE_STDERR + "Error: ü frame 10\n".encode()
    for size in (1, 2, 3, 7, 64):
        splitter = StderrLines()
        lines = []
        for i in range(0, len(data), size):
            lines += splitter.feed(data[i : i + size])
        lines += splitter.flush()
        assert lines[-1] == "Error: ü frame 10"
        assert sum(1 for line in lines if line.startswith("Frame:")) == 6


def test_x265_params_parsing():
    assert parse_x265_params("") == []
    assert parse_x265_params("--aq-mode 3 --no-sao --psy-rd=2.0 --qpoffs -2") == [
        ("aq-mode", "3"),
        ("no-sao", None),
        ("psy-rd", "2.0"),
        ("qpoffs", "-2"),
    ]
    assert x265_cli_args("--aq-mode 3 --no-sao") == ["--aq-mode", "3", "--no-sao"]
    assert x265_cli_args("--master-display 'G(1,2)B(3,4)'") == [
        "--master-display",
        "G(1,2)B(3,4)",
    ]
    assert ffmpeg_x265_params("--aq-mode 3 --no-sao --sar 1:1") == "aq-mode=3:no-sao=1:sar=1\\:1"
    assert parse_x265_params("aq-mode=3:no-sao=1") == [("aq-mode", "3"), ("no-sao", "1")]
    assert x265_cli_args("aq-mode=3:no-sao") == ["--aq-mode", "3", "--no-sao"]
    with pytest.raises(InputError):
        parse_x265_params("--aq-mode 3 stray")
    with pytest.raises(InputError):
        parse_x265_params("--x 'unclosed")


def test_media_info_on_source(sample_clip):
    info = media_info(sample_clip("bbb"))
    assert info.video_codec == "h264" and (info.width, info.height) == (1280, 720)
    assert info.frames == 132 and info.fps == 25 and info.bit_depth == 8
    assert info.audio_codec == "aac" and info.audio_sample_rate == 48000
    assert info.audio_channels == "5.1"
    with pytest.raises(InputError):
        media_info(Path(__file__))  # not a media file
