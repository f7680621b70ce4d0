"""Encoding a ``.vpy`` script to HEVC in Matroska: vspipe | x265 (or FFmpeg's libx265).

:func:`encode` runs these steps; the command lines of steps 2 to 5 end up in
:attr:`EncodeResult.commands`:

1. probe the script (:func:`~vsremaster.encode.probe.probe_script`): size, length, frame
   rate, format, colour properties, the ``VSREMASTER`` dict;
2. audio (before the long video encode, so a bad source fails fast): the first audio
   stream of the source is stream-copied, cut to the script's span, into ``audio.mka``
   (re-encoded to FLAC only when Matroska cannot hold the codec);
3. video: ``vspipe -c y4m -p SCRIPT - | x265 --y4m --input - ...`` writing raw HEVC, or
   ``vspipe ... | ffmpeg -f yuv4mpegpipe -i - -c:v libx265 ...`` writing Matroska; a
   progress bar follows vspipe's ``-p`` output;
4. mux video + audio into ``.NAME.partial-PID.mkv`` next to the output: for x265 with
   ``mkvmerge --default-duration`` (raw HEVC has no timestamps and FFmpeg 9 cannot time it
   when it has B-frames), for FFmpeg with ``ffmpeg -copyts ... -c copy``; then a check that
   it has exactly the script's frame count and duration;
5. ``os.replace`` onto the final name.

Intermediate files live in a temporary folder next to the output (raw HEVC can be large)
which is always removed. On any failure, including Ctrl-C, every program still running is
killed, the partial file is removed, nothing is left under (or replaces) the final name,
and :class:`~vsremaster.errors.EncodeError` names the program that failed, its exit status
and its last messages.
"""

from __future__ import annotations

import logging
import os
import re
import shlex
import shutil
import signal
import subprocess
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import Any

from ..errors import EncodeError, InputError
from .inspect import media_info
from .probe import ScriptInfo, probe_script
from .process import Program, command_line, describe_exit
from .progress import FrameProgress, ProgressBar, is_vspipe_progress, parse_vspipe_progress
from .tools import ffmpeg_exe, ffmpeg_file, mkvmerge_exe, vspipe_exe, x265_exe

__all__ = [
    "X265_PRESETS",
    "EncodeInterrupted",
    "EncodeResult",
    "encode",
    "ffmpeg_x265_params",
    "parse_x265_params",
    "x265_cli_args",
]

log = logging.getLogger("vsremaster.encode")

#: Presets understood by both x265 and FFmpeg's libx265.
X265_PRESETS = (
    "ultrafast",
    "superfast",
    "veryfast",
    "faster",
    "fast",
    "medium",
    "slow",
    "slower",
    "veryslow",
    "placebo",
)

_TAIL = 15
_X265_CLI_MIN_SIZE = 64
_FATAL_GRACE_S = 3.0

# H.273 code points each encoder accepts (2 = unspecified is never signalled).
_X265_PRIMARIES = {1, *range(4, 13)}
_X265_TRANSFER = {1, *range(4, 19)}
_X265_MATRIX = {0, 1, *range(4, 15)}
_FF_PRIMARIES = {1, *range(4, 13), 22}
_FF_TRANSFER = {1, *range(4, 19)}
_FF_MATRIX = {0, 1, *range(4, 15)}
_FF_CHROMA_LOC = ("left", "center", "topleft", "top", "bottomleft", "bottom")


class EncodeInterrupted(EncodeError, KeyboardInterrupt):
    """The encode was interrupted (Ctrl-C or SIGTERM); everything it started was cleaned up.

    It is both an :class:`~vsremaster.errors.EncodeError` and a :class:`KeyboardInterrupt`,
    so ``except KeyboardInterrupt`` still sees the user's interrupt.
    """


@dataclass(frozen=True, slots=True)
class EncodeResult:
    """What :func:`encode` produced.

    Attributes:
        output: The finished ``.mkv``.
        frames: Number of video frames encoded (checked in the output).
        seconds: Wall-clock time the whole encode took, in seconds.
        fps: Encoding speed, ``frames / seconds``.
        encoder: ``"x265"`` (the x265 program) or ``"ffmpeg"`` (FFmpeg's libx265).
        commands: Every external command run, shell-quoted, in order (a pipeline is one
            line joined with ``|``).
        frame_rate: The video's frame rate (frames per second, exact).
        duration_s: The video's duration in seconds.
        audio: Description of the audio track included, or None.
    """

    output: Path
    frames: int
    seconds: float
    fps: float
    encoder: str
    commands: list[str] = field(default_factory=list)
    frame_rate: Fraction = Fraction(0)
    duration_s: float = 0.0
    audio: str | None = None


# --------------------------------------------------------------------------- x265 params


def parse_x265_params(text: str) -> list[tuple[str, str | None]]:
    """Parse extra x265 options into ``(name, value)`` pairs.

    Two spellings are accepted:

    * x265 command-line style, split like a shell would (:func:`shlex.split`):
      ``"--aq-mode 3 --no-sao --psy-rd=2.0"``;
    * FFmpeg ``-x265-params`` style: ``"aq-mode=3:no-sao=1"``.

    Args:
        text: The options; empty for none.

    Returns:
        Option names without dashes, with their value or None for a bare flag.

    Raises:
        InputError: the text cannot be split or has a token that is not an option.
    """
    text = text.strip()
    if not text:
        return []
    if not text.startswith("-"):
        pairs: list[tuple[str, str | None]] = []
        for item in re.split(r"(?<!\\):", text):
            if not item:
                continue
            name, sep, value = item.partition("=")
            if not name:
                raise InputError(f"x265_params: empty option name in {text!r}.")
            pairs.append((name.strip(), value.replace("\\:", ":") if sep else None))
        return pairs
    try:
        tokens = shlex.split(text)
    except ValueError as err:
        raise InputError(f"x265_params cannot be split like a shell would: {err}") from err
    pairs = []
    i = 0
    while i < len(tokens):
        token = tokens[i]
        if not token.startswith("--") or len(token) == 2:
            raise InputError(
                f"x265_params: {token!r} is not an option; write long options such as "
                "'--aq-mode 3 --no-sao'."
            )
        name, sep, value = token[2:].partition("=")
        if sep:
            pairs.append((name, value))
        elif i + 1 < len(tokens) and not tokens[i + 1].startswith("--"):
            pairs.append((name, tokens[i + 1]))
            i += 1
        else:
            pairs.append((name, None))
        i += 1
    return pairs


def x265_cli_args(text: str) -> list[str]:
    """Arguments for the x265 program from :func:`parse_x265_params` syntax.

    Command-line style is passed through exactly as :func:`shlex.split` splits it.
    """
    stripped = text.strip()
    if stripped.startswith("-"):
        parse_x265_params(stripped)  # validate
        return shlex.split(stripped)
    args: list[str] = []
    for name, value in parse_x265_params(stripped):
        args.append(f"--{name}")
        if value is not None:
            args.append(value)
    return args


def ffmpeg_x265_params(text: str) -> str:
    """The same options as FFmpeg's ``-x265-params`` value (``name=value:...``).

    Bare flags become ``name=1`` (libx265 reads ``no-sao=1`` as "sao off"); colons inside
    values are escaped.
    """
    items = []
    for name, value in parse_x265_params(text):
        value = "1" if value is None else value.replace(":", "\\:")
        items.append(f"{name}={value}")
    return ":".join(items)


# --------------------------------------------------------------------------- video args


def _check_format(info: ScriptInfo) -> None:
    if info.color_family not in ("YUV", "GRAY"):
        raise EncodeError(
            f"Script {info.script} outputs {info.format_name} ({info.color_family}); the "
            "encoder needs YUV or GRAY. Convert at the end of the script, e.g. "
            "core.resize.Bicubic(clip, format=vs.YUV420P10, matrix_s='709')."
        )
    if info.sample_type != "INTEGER" or not 8 <= info.bits <= 16:
        raise EncodeError(
            f"Script {info.script} outputs {info.format_name}; the encoder needs integer "
            "samples of 8 to 16 bits (e.g. format=vs.YUV420P10)."
        )
    if info.color_family == "YUV" and (info.subsampling_w, info.subsampling_h) not in (
        (1, 1),
        (1, 0),
        (0, 0),
    ):
        raise EncodeError(
            f"Script {info.script} outputs {info.format_name}; HEVC supports 4:2:0, 4:2:2 "
            "and 4:4:4 chroma only."
        )


def _pix_fmt(info: ScriptInfo, depth: int) -> str:
    suffix = "" if depth == 8 else f"{depth}le"
    if info.color_family == "GRAY":
        return f"gray{suffix}"
    base = {(1, 1): "yuv420p", (1, 0): "yuv422p", (0, 0): "yuv444p"}[
        (info.subsampling_w, info.subsampling_h)
    ]
    return base + suffix


def _signalled(info: ScriptInfo, name: str, allowed: set[int]) -> int | None:
    value = info.prop(name)
    if value is None or value == 2:
        return None
    if value not in allowed:
        log.warning("%s=%d cannot be signalled by this encoder; left unspecified", name, value)
        return None
    return value


def _is_420(info: ScriptInfo) -> bool:
    return info.color_family == "YUV" and (info.subsampling_w, info.subsampling_h) == (1, 1)


def _x265_colour_args(info: ScriptInfo) -> list[str]:
    args: list[str] = []
    for option, prop, allowed in (
        ("--colorprim", "_Primaries", _X265_PRIMARIES),
        ("--transfer", "_Transfer", _X265_TRANSFER),
        ("--colormatrix", "_Matrix", _X265_MATRIX),
    ):
        value = _signalled(info, prop, allowed)
        if value is not None:
            args += [option, str(value)]
    if info.color_range is not None:
        args += ["--range", info.color_range]
    chroma = info.prop("_ChromaLocation")
    if chroma is not None and 0 <= chroma <= 5 and _is_420(info):
        args += ["--chromaloc", str(chroma)]
    if info.sar is not None:
        args += ["--sar", f"{info.sar[0]}:{info.sar[1]}"]
    return args


def _ffmpeg_colour_args(info: ScriptInfo) -> list[str]:
    """Filters and encoder options that make libx265 signal the script's colour props.

    FFmpeg 7+ takes primaries/transfer/matrix/range from the frames, so they are set with
    the ``setparams`` filter (``-color_primaries`` as an output option is ignored); the
    sample aspect ratio with ``setsar`` (``max`` raised so 128:117 is kept exactly), and the
    chroma location with ``-chroma_sample_location``.
    """
    params = []
    for option, prop, allowed in (
        ("color_primaries", "_Primaries", _FF_PRIMARIES),
        ("color_trc", "_Transfer", _FF_TRANSFER),
        ("colorspace", "_Matrix", _FF_MATRIX),
    ):
        value = _signalled(info, prop, allowed)
        if value is not None:
            params.append(f"{option}={value}")
    if info.color_range is not None:
        params.append("range=" + ("tv" if info.color_range == "limited" else "pc"))
    filters = []
    if params:
        filters.append("setparams=" + ":".join(params))
    if info.sar is not None:
        filters.append(f"setsar=r={info.sar[0]}/{info.sar[1]}:max={max(info.sar) + 1}")
    args = ["-vf", ",".join(filters)] if filters else []
    chroma = info.prop("_ChromaLocation")
    if chroma is not None and 0 <= chroma <= 5 and _is_420(info):
        args += ["-chroma_sample_location", _FF_CHROMA_LOC[chroma]]
    return args


# --------------------------------------------------------------------------- audio


@dataclass(frozen=True, slots=True)
class _AudioPlan:
    source: Path
    seek_s: float  # position in the source (sync offset included)
    duration_s: float | None
    description: str


def _number(meta: dict[str, Any], key: str, script: Path) -> float | None:
    value = meta.get(key)
    if value is None:
        return None
    try:
        return float(value)
    except (TypeError, ValueError):
        raise EncodeError(f"VSREMASTER[{key!r}] in {script} is not a number: {value!r}") from None


def _plan_audio(audio: Path | str | None, info: ScriptInfo) -> _AudioPlan | None:
    if audio is None:
        return None
    if isinstance(audio, str) and audio == "auto":
        meta = info.vsremaster
        if not meta or not meta.get("source"):
            return None
        source = Path(str(meta["source"]))
        if not source.is_absolute():
            source = info.script.parent / source
        if not source.is_file():
            log.warning(
                "audio source %s (VSREMASTER in %s) not found; no audio", source, info.script
            )
            return None
        described = media_info(source, count_frames=False)
        if not described.has_audio:
            log.info("%s has no audio stream; the output will have no audio", source)
            return None
        start = _number(meta, "audio_start_s", info.script) or 0.0
        end = _number(meta, "audio_end_s", info.script)
        if start < 0 or (end is not None and end <= start):
            raise EncodeError(
                f"VSREMASTER in {info.script} has an empty or negative audio span "
                f"({start} to {end} s)."
            )
        # bestsource's frame 0 is the first decoded frame, which may start after the file's
        # start time (audio first, B-frame delay, MPEG-TS): shift the cut to stay in sync.
        # (FFmpeg reports that frame's time counted from the file's start.)
        offset = max(0.0, described.first_frame_s or 0.0)
        span = f"{start:g}-{end:g} s" if end is not None else f"from {start:g} s"
        return _AudioPlan(
            source,
            start + offset,
            None if end is None else end - start,
            f"{described.audio_codec} from {source.name} ({span})",
        )
    source = Path(audio)
    if not source.is_file():
        raise InputError(f"Audio source {source} does not exist.")
    described = media_info(source, count_frames=False, colour=False)
    if not described.has_audio:
        raise InputError(f"Audio source {source} has no audio stream.")
    return _AudioPlan(source, 0.0, None, f"{described.audio_codec} from {source.name}")


# --------------------------------------------------------------------------- helpers


def _ffmpeg_noise(line: str) -> bool:
    s = line.strip()
    return not s or s.startswith(("frame=", "size=", "Press [q]"))


def _x265_noise(line: str) -> bool:
    s = line.strip()
    return (
        not s
        or bool(re.match(r"^\[?[\d.]+%?\]?\s*\d+/?\d* frames", s))
        or bool(re.match(r"^\d+ frames: ", s))
    )


def _is_broken_pipe(program: Program) -> bool:
    rc = program.returncode
    sigpipe = getattr(signal, "SIGPIPE", None)
    return (sigpipe is not None and rc == -sigpipe) or program.contains(
        "Broken pipe", "errno: 32", "fwrite() call failed", "EPIPE"
    )


def _failure(program: Program, what: str, complaints: list[str] | None = None) -> EncodeError:
    """EncodeError naming ``program``, its exit status and its last meaningful messages.

    ``complaints`` (the lines that showed the encoder rejecting its parameters) are quoted
    first, since FFmpeg prints them long before it stops.
    """
    lines = program.tail(_TAIL)
    quoted = "\n".join(f"  {line}" for line in lines) if lines else "  (no messages)"
    head = f"{program.name} failed ({describe_exit(program.returncode)}) {what}.\n"
    if complaints:
        head = (
            f"{program.name} rejected its parameters ({describe_exit(program.returncode)}) "
            f"{what}:\n" + "\n".join(f"  {line.strip()}" for line in complaints) + "\n"
        )
    return EncodeError(
        f"{head}Last messages from {program.name}:\n{quoted}\nCommand: {program.command}"
    )


@contextmanager
def _sigterm_as_interrupt() -> Iterator[None]:
    """Turn SIGTERM into KeyboardInterrupt while encoding (main thread only)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum: int, frame: object) -> None:
        raise KeyboardInterrupt(f"signal {signal.Signals(signum).name}")

    previous = signal.signal(signal.SIGTERM, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


class _Run:
    """Bookkeeping for one encode: programs started, commands, temp paths."""

    def __init__(self, tmp: Path) -> None:
        self.tmp = tmp
        self.programs: list[Program] = []
        self.commands: list[str] = []

    def start(self, name: str, argv: list[str], **kwargs: Any) -> Program:
        log.debug("running %s", command_line(argv))
        try:
            program = Program(name, argv, log_path=self.tmp / f"{name}.log", **kwargs)
        except OSError as err:
            raise EncodeError(f"{name} could not be started ({argv[0]}): {err}") from err
        self.programs.append(program)
        return program

    def kill_all(self) -> None:
        for program in self.programs:
            program.kill()
        for program in self.programs:
            program.finish(timeout=5)

    def run(self, name: str, argv: list[str], what: str, ok: tuple[int, ...] = (0,)) -> Program:
        """Run one program to completion; EncodeError when its exit status is not in ``ok``."""
        self.commands.append(command_line(argv))
        program = self.start(name, argv, is_noise=_ffmpeg_noise)
        program.finish(timeout=None)
        if program.returncode not in ok:
            raise _failure(program, what)
        return program


# --------------------------------------------------------------------------- steps


def _extract_audio(run: _Run, ffmpeg: Path, plan: _AudioPlan) -> Path:
    target = run.tmp / "audio.mka"
    base = [str(ffmpeg), "-hide_banner", "-nostdin", "-nostats", "-y"]
    if plan.seek_s > 0:
        # Input -ss seeks (to a video keyframe before the point, with stream copy the
        # packets in between are kept); output -ss 0 then drops everything before the
        # point, so the first audio packet is the one at the point, with its offset kept.
        base += ["-ss", f"{plan.seek_s:.6f}", "-i", ffmpeg_file(plan.source), "-ss", "0"]
    else:
        base += ["-i", ffmpeg_file(plan.source)]
    if plan.duration_s is not None:
        base += ["-t", f"{plan.duration_s:.6f}"]
    base += ["-map", "0:a:0", "-vn", "-sn", "-dn", "-map_chapters", "-1"]
    copy = [*base, "-c:a", "copy", "-f", "matroska", ffmpeg_file(target)]
    try:
        run.run("ffmpeg", copy, f"extracting audio from {plan.source}")
    except EncodeError as copy_error:
        log.warning("audio cannot be stream-copied into Matroska; re-encoding it to FLAC")
        flac = [*base, "-c:a", "flac", "-f", "matroska", ffmpeg_file(target)]
        try:
            run.run("ffmpeg", flac, f"re-encoding audio from {plan.source} to FLAC")
        except EncodeError:
            raise copy_error from None
    return target


def _pipeline(
    run: _Run,
    vspipe_argv: list[str],
    encoder_name: str,
    encoder_argv: list[str],
    info: ScriptInfo,
    *,
    progress: bool,
) -> None:
    """Run ``vspipe | encoder`` with a progress bar; EncodeError naming the culprit."""
    run.commands.append(f"{command_line(vspipe_argv)} | {command_line(encoder_argv)}")
    state: dict[str, Any] = {
        "last_progress": time.monotonic(),
        "fatal_at": None,
        "immediate": False,
    }
    complaints: list[str] = []

    with ProgressBar(info.num_frames, f"encoding ({encoder_name})", enabled=progress) as bar:

        def vspipe_line(line: str) -> None:
            for report in parse_vspipe_progress(line):
                state["last_progress"] = time.monotonic()
                bar.update(report)

        def encoder_line(line: str) -> None:
            if "[libx265 @" in line and ("Unknown option" in line or "Invalid value" in line):
                # FFmpeg only warns and encodes without the option: treat as rejected.
                state["immediate"] = True
            elif not ("x265 [error]" in line or "unrecognized option" in line):
                return
            if len(complaints) < 10:
                complaints.append(line)
            if state["fatal_at"] is None:
                state["fatal_at"] = time.monotonic()

        vspipe = run.start(
            "vspipe",
            vspipe_argv,
            stdout=subprocess.PIPE,
            is_noise=is_vspipe_progress,
            on_line=vspipe_line,
        )
        try:
            # x265 prints its --help on stdout when it rejects an option: keep it out of ours.
            with (run.tmp / f"{encoder_name}.stdout.log").open("wb") as encoder_stdout:
                encoder = run.start(
                    encoder_name,
                    encoder_argv,
                    stdin=vspipe.popen.stdout,
                    stdout=encoder_stdout,
                    is_noise=_x265_noise if encoder_name == "x265" else _ffmpeg_noise,
                    on_line=encoder_line,
                )
        finally:
            # Only the two children hold the pipe now: when the encoder dies, vspipe gets
            # EPIPE/SIGPIPE instead of blocking forever on a pipe we keep open.
            assert vspipe.popen.stdout is not None
            vspipe.popen.stdout.close()

        while True:
            vs_rc, enc_rc = vspipe.poll(), encoder.poll()
            if vs_rc is not None and enc_rc is not None:
                break
            if (vs_rc not in (None, 0)) or (enc_rc not in (None, 0)):
                break  # one failed: stop the other below
            fatal_at = state["fatal_at"]
            if fatal_at is not None and enc_rc is None:
                now = time.monotonic()
                stalled = now - state["last_progress"] > _FATAL_GRACE_S
                if state["immediate"] or (now - fatal_at > _FATAL_GRACE_S and stalled):
                    break
            time.sleep(0.05)
        failed = (
            vspipe.returncode not in (None, 0)
            or encoder.returncode not in (None, 0)
            or state["fatal_at"] is not None
        )
        if failed:
            # Give the other side a moment to finish on its own (an encoder that got EOF
            # after vspipe failed), so its exit status is real, then stop everything.
            for program in (vspipe, encoder):
                try:
                    program.wait(0.5 if program.returncode is None else 0)
                except subprocess.TimeoutExpired:
                    program.kill()
        vspipe.finish()
        encoder.finish()
        if not failed and vspipe.returncode == 0 and encoder.returncode == 0:
            bar.update(FrameProgress(info.num_frames, info.num_frames))

    what = f"while encoding {info.script.name}"
    if state["fatal_at"] is not None:
        raise _failure(encoder, what, complaints)
    vs_failed = vspipe.returncode != 0 and not vspipe.killed
    enc_failed = encoder.returncode != 0 and not encoder.killed
    if vs_failed and not _is_broken_pipe(vspipe):
        raise _failure(vspipe, what)
    if enc_failed:
        raise _failure(encoder, what)
    if vs_failed and encoder.returncode == 0:
        raise _failure(
            vspipe,
            f"because {encoder_name} stopped reading before the end of {info.script.name} "
            "(an option in x265_params that limits the frame count?)",
        )
    if vs_failed:
        raise _failure(vspipe, what)
    if vspipe.returncode != 0:
        raise _failure(vspipe, what)
    if encoder.returncode != 0:
        raise _failure(encoder, what)


def _verify(path: Path, info: ScriptInfo, muxer: Program | None) -> None:
    """Check frame count and duration of the muxed file; EncodeError when they differ."""
    described = media_info(path, count_frames=True, colour=False)
    expected = info.duration_s
    tolerance = 1.5 / float(info.fps)
    problems = []
    if described.video_codec != "hevc":
        problems.append(f"video codec is {described.video_codec}, not hevc")
    if described.frames != info.num_frames:
        problems.append(f"{described.frames} frames instead of {info.num_frames}")
    duration = described.video_duration_s
    if duration is None or abs(duration - expected) > tolerance:
        problems.append(f"video lasts {duration} s instead of {expected:.3f} s")
    if problems:
        where = f"\nCommand: {muxer.command}" if muxer is not None else ""
        raise EncodeError(
            f"The muxed file is wrong: {'; '.join(problems)}. Nothing was written.{where}"
        )


def _remove(path: Path) -> None:
    try:
        path.unlink()
    except FileNotFoundError:
        pass
    except OSError as err:  # pragma: no cover - permissions changed under us
        log.warning("could not remove %s: %s", path, err)


# --------------------------------------------------------------------------- encode


def encode(
    script: Path,
    output: Path,
    *,
    crf: float = 18,
    preset: str = "slow",
    x265_params: str = "",
    encoder: str = "auto",
    depth: int = 10,
    audio: Path | str | None = "auto",
    progress: bool = True,
) -> EncodeResult:
    """Encode a VapourSynth script to HEVC (x265) in a Matroska file, with audio.

    Args:
        script: The ``.vpy`` script; its output 0 is encoded.
        output: The ``.mkv`` to write. Its folder must exist. An existing file is replaced
            only when the encode succeeds.
        crf: x265 constant rate factor (0-51; lower is better quality, 18 is visually
            near-transparent).
        preset: x265 preset, one of :data:`X265_PRESETS`.
        x265_params: Extra x265 options, either command-line style
            (``"--aq-mode 3 --no-sao"``, split like a shell would) or FFmpeg style
            (``"aq-mode=3:no-sao=1"``); passed to whichever encoder runs. They come after
            the options built here, so they override them.
        encoder: ``"auto"`` (the x265 program when it is on PATH, else FFmpeg's libx265),
            ``"x265"`` or ``"ffmpeg"``.
        depth: Output bit depth: 8, 10 (default) or 12. Chroma subsampling follows the
            clip (4:2:0, 4:2:2, 4:4:4 or gray).
        audio: ``"auto"``: the first audio stream of ``VSREMASTER["source"]`` when the
            script defines it and the source has audio, cut to ``audio_start_s`` ..
            ``audio_end_s`` (seconds of the source) so that it matches a trimmed script;
            a path: the first audio stream of that file, whole; None: no audio. Audio is
            stream-copied, or re-encoded to FLAC when Matroska cannot hold its codec.
        progress: Draw a progress bar (frames, fps, ETA, elapsed) on stderr.

    Returns:
        An :class:`EncodeResult` describing the output and the commands run.

    Raises:
        InputError: an argument is invalid (unknown preset/encoder, crf out of range, output
            not ``.mkv``, folder missing, output is the script or a source, bad
            ``x265_params`` syntax, explicit audio file missing or without audio).
        EncodeError: the script cannot be probed, a program is missing or fails (vspipe,
            x265, FFmpeg), or the output does not have the script's frame count/duration.
            The message names the program, its exit status and its last messages.
        EncodeInterrupted: Ctrl-C or SIGTERM (also a KeyboardInterrupt); everything was
            cleaned up.
    """
    started = time.monotonic()
    script = Path(script)
    output = Path(output)
    if encoder not in ("auto", "x265", "ffmpeg"):
        raise InputError(f"encoder must be 'auto', 'x265' or 'ffmpeg', not {encoder!r}.")
    if preset not in X265_PRESETS:
        raise InputError(f"preset must be one of {', '.join(X265_PRESETS)}; got {preset!r}.")
    if not 0 <= float(crf) <= 51:
        raise InputError(f"crf must be between 0 and 51; got {crf}.")
    if depth not in (8, 10, 12):
        raise InputError(f"depth must be 8, 10 or 12; got {depth}.")
    if output.suffix.lower() != ".mkv":
        raise InputError(f"The output is a Matroska file and must end in .mkv: {output}")
    if not output.parent.is_dir():
        raise InputError(f"The output folder {output.parent} does not exist.")
    if output.is_dir():
        raise InputError(f"The output {output} is a folder.")
    if not script.is_file():
        raise InputError(f"Script {script} does not exist.")
    script = Path(os.path.abspath(script))
    output = Path(os.path.abspath(output))
    x265_args = x265_cli_args(x265_params)
    ff_params = ffmpeg_x265_params(x265_params)

    vspipe = vspipe_exe()
    ffmpeg = ffmpeg_exe()
    x265 = x265_exe()
    mkvmerge = mkvmerge_exe()
    if encoder == "x265" and (x265 is None or mkvmerge is None):
        missing = "x265" if x265 is None else "mkvmerge (to mux x265's raw HEVC)"
        raise EncodeError(
            f"encoder='x265' was asked for but {missing} is not on PATH; install it "
            "(`apt install x265 mkvtoolnix`) or use encoder='ffmpeg' (FFmpeg's libx265)."
        )
    info = probe_script(script)
    _check_format(info)
    # x265's y4m reader refuses frames under 64 pixels in either direction ("unable to open
    # input file <->"); FFmpeg's libx265 takes them.
    too_small = min(info.width, info.height) < _X265_CLI_MIN_SIZE
    if encoder == "x265" and too_small:
        raise EncodeError(
            f"The x265 program cannot read frames smaller than {_X265_CLI_MIN_SIZE} pixels "
            f"({script.name} outputs {info.width}x{info.height}); use encoder='ffmpeg'."
        )
    use_x265 = encoder == "x265" or (
        encoder == "auto" and x265 is not None and mkvmerge is not None and not too_small
    )
    encoder_name = "x265" if use_x265 else "ffmpeg"
    if info.prop("_FieldBased") in (1, 2):
        log.warning(
            "%s is marked interlaced (_FieldBased=%d); it is encoded as progressive frames",
            script.name,
            info.prop("_FieldBased"),
        )
    resolved_out = output.resolve()
    inputs = [script]
    if audio is not None and not (isinstance(audio, str) and audio == "auto"):
        inputs.append(Path(audio))
    meta_source = (info.vsremaster or {}).get("source")
    if meta_source:
        source = Path(str(meta_source))
        inputs.append(source if source.is_absolute() else script.parent / source)
    for other in inputs:
        if other.resolve() == resolved_out:
            raise InputError(f"The output {output} would overwrite the source {other}.")
    plan = _plan_audio(audio, info)

    partial = output.parent / f".{output.stem}.partial-{os.getpid()}.mkv"
    try:
        tmp = Path(tempfile.mkdtemp(prefix=f".{output.stem}.vsremaster-", dir=output.parent))
    except OSError as err:
        raise EncodeError(f"Cannot write in {output.parent}: {err}") from err
    run = _Run(tmp)
    try:
        with _sigterm_as_interrupt():
            audio_file = _extract_audio(run, ffmpeg, plan) if plan else None

            vspipe_argv = [str(vspipe), "-c", "y4m", "-p", str(script), "-"]
            if use_x265:
                assert x265 is not None
                hevc = tmp / "video.hevc"
                encoder_argv = [
                    str(x265), "--input", "-", "--y4m",
                    "--preset", preset, "--crf", f"{float(crf):g}",
                    "--output-depth", str(depth),
                    *(["--dither"] if info.bits > depth else []),
                    *_x265_colour_args(info),
                    *x265_args,
                    "--no-progress", "--output", str(hevc),
                ]  # fmt: skip
            else:
                video_mkv = tmp / "video.mkv"
                encoder_argv = [
                    str(ffmpeg), "-hide_banner", "-nostdin", "-nostats", "-y",
                    "-f", "yuv4mpegpipe", "-i", "-", "-map", "0:v:0",
                    *_ffmpeg_colour_args(info),
                    "-c:v", "libx265", "-preset", preset, "-crf", f"{float(crf):g}",
                    "-pix_fmt", _pix_fmt(info, depth),
                    *(["-x265-params", ff_params] if ff_params else []),
                    "-f", "matroska", ffmpeg_file(video_mkv),
                ]  # fmt: skip
            _pipeline(run, vspipe_argv, encoder_name, encoder_argv, info, progress=progress)

            if use_x265:
                assert mkvmerge is not None
                rate = f"{info.fps.numerator}/{info.fps.denominator}fps"
                mux = [str(mkvmerge), "--quiet", "--output", str(partial),
                       "--default-duration", f"0:{rate}", str(hevc)]
                if audio_file is not None:
                    mux += ["--no-video", str(audio_file)]
                muxer = run.run("mkvmerge", mux, f"muxing {output.name}", ok=(0, 1))
            else:
                mux = [str(ffmpeg), "-hide_banner", "-nostdin", "-nostats", "-y", "-copyts",
                       "-i", ffmpeg_file(video_mkv)]
                if audio_file is not None:
                    mux += ["-i", ffmpeg_file(audio_file), "-map", "0:v:0", "-map", "1:a:0"]
                else:
                    mux += ["-map", "0:v:0"]
                mux += ["-c", "copy", "-f", "matroska", ffmpeg_file(partial)]
                muxer = run.run("ffmpeg", mux, f"muxing {output.name}")
            _verify(partial, info, muxer)
            os.replace(partial, output)
    except KeyboardInterrupt as interrupt:
        run.kill_all()
        _remove(partial)
        raise EncodeInterrupted(
            f"Encoding {script.name} was interrupted; {output.name} was not written."
        ) from interrupt
    except BaseException:
        run.kill_all()
        _remove(partial)
        raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)

    seconds = time.monotonic() - started
    return EncodeResult(
        output=output,
        frames=info.num_frames,
        seconds=seconds,
        fps=info.num_frames / seconds if seconds > 0 else 0.0,
        encoder=encoder_name,
        commands=run.commands,
        frame_rate=info.fps,
        duration_s=info.duration_s,
        audio=plan.description if plan else None,
    )
