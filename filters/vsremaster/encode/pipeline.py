"""Encoding a ``.vpy`` script to HEVC in Matroska: vspipe | x265 (or FFmpeg's libx265).

:func:`encode` runs these steps; the command lines of steps 2 to 5 end up in
:attr:`EncodeResult.commands`:

1. probe the script (:func:`~vsremaster.encode.probe.probe_script`): size, length, frame
   rate, format, colour properties, the ``VSREMASTER`` dict; for a scene-based encode
   (target quality or chunks) find the scenes and, with a target, decide each scene's CRF
   from VMAF probes (:mod:`~vsremaster.encode.probes`);
2. audio (before the long video encode, so a bad source fails fast): the first audio
   stream of the source is stream-copied, cut to the script's span, into ``audio.mka``
   (re-encoded to FLAC only when Matroska cannot hold the codec);
3. video: ``vspipe -c y4m -p SCRIPT - | x265 --y4m --input - ...`` writing raw HEVC, or
   ``vspipe ... | ffmpeg -f yuv4mpegpipe -i - -c:v libx265 ...`` writing Matroska; a
   progress bar follows vspipe's ``-p`` output. Scene-based: per-scene CRFs as x265 zones,
   in one pass or in scene-aligned chunks (``vspipe -s FIRST -e LAST``) joined byte-wise
   (each chunk starts with an IDR frame and its own parameter sets);
4. mux video + audio into ``.NAME.partial-PID.mkv`` next to the output: for x265 with
   ``mkvmerge --default-duration`` (raw HEVC has no timestamps and FFmpeg 9 cannot time it
   when it has B-frames), for FFmpeg with ``ffmpeg -copyts ... -c copy``; then a check that
   it has exactly the script's frame count and duration;
5. ``os.replace`` onto the final name.

Intermediate files live in a temporary folder next to the output (raw HEVC can be large)
which is always removed (by the next encode of the same output when a kill left it); a
scene-based encode keeps its work folder (:mod:`~vsremaster.encode.workdir`) until the
output is finished, so a rerun resumes. On any failure, including Ctrl-C, every program
still running is killed, the partial file is removed, nothing is left under (or replaces)
the final name, and :class:`~vsremaster.errors.EncodeError` names the program that failed,
its exit status and its last messages.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import Any

from ..analysis.scenes import scene_spans
from ..errors import EncodeError, InputError
from .inspect import media_info
from .probe import ScriptInfo, probe_script, script_scene_cuts
from .probes import METHOD, measure_scenes, probe_scenes, scene_bits
from .process import (
    Program,
    Runner,
    command_line,
    failure,
    ffmpeg_noise,
    is_broken_pipe,
    sigterm_as_interrupt,
    x265_noise,
)
from .progress import (
    FrameProgress,
    ProgressBar,
    TitleClock,
    format_seconds,
    is_vspipe_progress,
    parse_vspipe_progress,
)
from .target import (
    Scene,
    TargetQuality,
    base_crf,
    check_cuts,
    merge_short,
    read_cuts,
    sample_spans,
    title_summary,
    zones_arg,
)
from .tools import ffmpeg_exe, ffmpeg_file, mkvmerge_exe, vspipe_exe, x265_exe
from .workdir import (
    OutputLock,
    WorkDir,
    fingerprint,
    partial_path,
    remove_leftovers,
    script_inputs,
    temp_prefix,
)
from .x265 import (
    X265_DEFAULTS,
    X265_PRESETS,
    VideoEncoder,
    check_format,
    check_settings,
    ffmpeg_x265_params,
    parse_x265_params,
    x265_cli_args,
)

__all__ = [
    "X265_DEFAULTS",
    "X265_PRESETS",
    "EncodeInterrupted",
    "EncodeResult",
    "encode",
    "ffmpeg_x265_params",
    "parse_x265_params",
    "x265_cli_args",
]

log = logging.getLogger("vsremaster.encode")

_X265_CLI_MIN_SIZE = 64
_FATAL_GRACE_S = 3.0
_MIN_SCENE_S = 1.0  # shorter scenes are merged into a neighbour

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
        scenes: Scene-based encodes: every scene with its CRF, probes, predicted and
            measured VMAF and bits (see :class:`~vsremaster.encode.target.Scene`).
        log: Scene-based encodes: the JSON log of the decisions (``OUT.encode.json``).
        timing: Seconds per phase (``scenes_s``: finding the scenes, which renders the
            script once when neither an analysis report nor ``scenes`` names the cuts;
            ``probe_s``, ``encode_s``, ``verify_s``), and ``encode_estimate_s``: the final
            encode's time as estimated when it began, from the speeds of rendering and
            encoding the probes measured (:class:`~vsremaster.encode.progress.TitleClock`).
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
    scenes: list[Scene] = field(default_factory=list)
    log: Path | None = None
    timing: dict[str, float] = field(default_factory=dict)


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
    return _audio_file(Path(audio))


def _audio_file(source: Path) -> _AudioPlan:
    """The first audio stream of ``source``, whole.

    Raises:
        InputError: ``source`` does not exist or has no audio stream.
    """
    if not source.is_file():
        raise InputError(f"Audio source {source} does not exist.")
    described = media_info(source, count_frames=False, colour=False)
    if not described.has_audio:
        raise InputError(f"Audio source {source} has no audio stream.")
    return _AudioPlan(source, 0.0, None, f"{described.audio_codec} from {source.name}")


# --------------------------------------------------------------------------- steps


def _extract_audio(run: Runner, ffmpeg: Path, plan: _AudioPlan) -> Path:
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
    run: Runner,
    vspipe_argv: list[str],
    encoder_name: str,
    encoder_argv: list[str],
    script_name: str,
    *,
    on_frames: Callable[[int], None],
) -> None:
    """Run ``vspipe | encoder``, reporting frames piped; EncodeError naming the culprit."""
    run.commands.append(f"{command_line(vspipe_argv)} | {command_line(encoder_argv)}")
    state: dict[str, Any] = {
        "last_progress": time.monotonic(),
        "fatal_at": None,
        "immediate": False,
    }
    complaints: list[str] = []

    def vspipe_line(line: str) -> None:
        for report in parse_vspipe_progress(line):
            state["last_progress"] = time.monotonic()
            on_frames(report.done)

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
        stdout_log = run.log_file(f"{encoder_name}.stdout.log")
        with stdout_log.open("wb") as encoder_stdout:
            encoder = run.start(
                encoder_name,
                encoder_argv,
                stdin=vspipe.popen.stdout,
                stdout=encoder_stdout,
                is_noise=x265_noise if encoder_name == "x265" else ffmpeg_noise,
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

    what = f"while encoding {script_name}"
    if state["fatal_at"] is not None:
        raise failure(encoder, what, complaints)
    vs_failed = vspipe.returncode != 0 and not vspipe.killed
    enc_failed = encoder.returncode != 0 and not encoder.killed
    if vs_failed and not is_broken_pipe(vspipe):
        raise failure(vspipe, what)
    if enc_failed:
        raise failure(encoder, what)
    if vs_failed and encoder.returncode == 0:
        raise failure(
            vspipe,
            f"because {encoder_name} stopped reading before the end of {script_name} "
            "(an option in x265_params that limits the frame count?)",
        )
    if vs_failed:
        raise failure(vspipe, what)
    if vspipe.returncode != 0:
        raise failure(vspipe, what)
    if encoder.returncode != 0:
        raise failure(encoder, what)


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


DEFAULT_CRF = 18.0
"""The fixed CRF of an encode that names neither a CRF nor a target quality."""


def check_arguments(
    output: Path, *, crf: float, preset: str, x265_params: str, defaults: str, encoder: str,
    depth: int, audio: Path | str | None, target: TargetQuality | None, chunks: int,
) -> None:
    """The checks of :func:`encode`'s arguments that need no script (same names, meanings
    and defaults: :func:`encode`'s), so that ``remaster`` can run them before its analysis.

    Raises:
        InputError: an unknown encoder, preset or parameter set, a CRF out of 0-51, negative
            ``chunks``, bad target settings or x265 parameters, an audio file that does not
            exist or has no audio, or an output that does not end in ``.mkv`` or is a folder.
    """
    output = Path(output)
    if encoder not in ("auto", "x265", "ffmpeg"):
        raise InputError(f"encoder must be 'auto', 'x265' or 'ffmpeg', not {encoder!r}.")
    if not 0 <= float(crf) <= 51:
        raise InputError(f"crf must be between 0 and 51; got {crf}.")
    if chunks < 0:
        raise InputError(f"chunks must be 0 (one pass) or a number of workers; got {chunks}.")
    if target is not None:
        target.check()
    if output.suffix.lower() != ".mkv":
        raise InputError(f"The output is a Matroska file and must end in .mkv: {output}")
    if output.is_dir():
        raise InputError(f"The output {output} is a folder.")
    if audio is not None and not (isinstance(audio, str) and audio == "auto"):
        _audio_file(Path(audio))
    check_settings(preset, defaults, depth, x265_params)


def encode(
    script: Path,
    output: Path,
    *,
    crf: float = DEFAULT_CRF,
    preset: str = "slow",
    x265_params: str = "",
    defaults: str = "restored",
    encoder: str = "auto",
    depth: int = 10,
    audio: Path | str | None = "auto",
    progress: bool = True,
    target: TargetQuality | None = None,
    chunks: int = 0,
    scenes: Path | str | None = None,
    chunk_seconds: float = 10.0,
    fresh: bool = False,
) -> EncodeResult:
    """Encode a VapourSynth script to HEVC (x265) in a Matroska file, with audio.

    Two modes:

    * fixed CRF (``target=None``, ``chunks=0``): one ``vspipe | x265`` pass at ``crf``;
    * scene-based (``target`` given and/or ``chunks >= 1``): the title is split at its scene
      cuts (``scenes``); with ``target`` each scene gets the CRF that its VMAF probes say
      meets the target (:mod:`vsremaster.encode.target`), otherwise ``crf``. Then one pass
      with x265 zones (``chunks=0``) or scene-aligned chunks of at least ``chunk_seconds``
      encoded by ``chunks`` parallel workers and joined losslessly. This mode works in
      ``.OUT.vsremaster-work/`` next to the output and is **resumable**: rerun the same
      command after a failure or a kill and decided scenes and finished chunks (checked by
      SHA-256 and frame count) are reused. A JSON log of the decisions per scene (probes,
      CRF, predicted and measured VMAF, bits) is written to ``OUT.encode.json``.

    Args:
        script: The ``.vpy`` script; its output 0 is encoded.
        output: The ``.mkv`` to write. Its folder must exist. An existing file is replaced
            only when the encode succeeds.
        crf: x265 constant rate factor (0-51; lower is better quality, 18 is visually
            near-transparent); the CRF of every scene when ``target`` is None.
        preset: x265 preset, one of :data:`X265_PRESETS`.
        x265_params: Extra x265 options, either command-line style
            (``"--aq-mode 3 --no-sao"``, split like a shell would) or FFmpeg style
            (``"aq-mode=3:no-sao=1"``); passed to whichever encoder runs. They come after
            the ``defaults`` set, so they override it.
        defaults: Parameter set for restored footage, a key of :data:`X265_DEFAULTS`
            (``"restored"``, ``"grain"``, ``"animation"``, or ``"x265"`` for none).
        encoder: ``"auto"`` (the x265 program when it is on PATH, else FFmpeg's libx265),
            ``"x265"`` or ``"ffmpeg"``.
        depth: Output bit depth: 8, 10 (default) or 12. Chroma subsampling follows the
            clip (4:2:0, 4:2:2, 4:4:4 or gray).
        audio: ``"auto"``: the first audio stream of ``VSREMASTER["source"]`` when the
            script defines it and the source has audio, cut to ``audio_start_s`` ..
            ``audio_end_s`` (seconds of the source) so that it matches a trimmed script;
            a path: the first audio stream of that file, whole; None: no audio. Audio is
            stream-copied, or re-encoded to FLAC when Matroska cannot hold its codec.
        progress: Draw progress bars (frames, fps, ETA, elapsed) on stderr.
        target: Target quality (VMAF) settings; None encodes at ``crf``.
        chunks: 0: one encoder pass; N >= 1: scene chunks, N encoded at a time.
        scenes: Where the scene cuts come from: None (the analysis report the script names
            in ``VSREMASTER["analysis"]`` when it matches the script, else found by
            rendering the script once), a file (:func:`~vsremaster.encode.target.read_cuts`)
            or ``"none"`` (the whole title is one scene).
        chunk_seconds: Minimum chunk length in seconds (consecutive scenes are grouped).
        fresh: Ignore what an interrupted run left and start over.

    Returns:
        An :class:`EncodeResult` describing the output and the commands run.

    Raises:
        InputError: an argument is invalid (unknown preset/encoder/defaults, crf out of
            range, output not ``.mkv``, folder missing, output is the script or a source,
            bad ``x265_params`` syntax, explicit audio file missing or without audio, bad
            target settings or scene file).
        EncodeError: another encode of ``output`` is running
            (:class:`~vsremaster.encode.workdir.OutputLock`), the script cannot be probed,
            a program is missing or fails (vspipe, x265, FFmpeg, mkvmerge), or the output
            does not have the script's frame count/duration. The message names the
            program, its exit status and its last messages.
        EncodeInterrupted: Ctrl-C or SIGTERM (also a KeyboardInterrupt); everything was
            cleaned up (a scene-based encode keeps its work folder for the rerun).
    """
    started = time.monotonic()
    script = Path(script)
    output = Path(output)
    check_arguments(output, crf=crf, preset=preset, x265_params=x265_params,
                    defaults=defaults, encoder=encoder, depth=depth, audio=audio,
                    target=target, chunks=chunks)  # before anything runs
    if not output.parent.is_dir():
        raise InputError(f"The output folder {output.parent} does not exist.")
    if not script.is_file():
        raise InputError(f"Script {script} does not exist.")
    script = Path(os.path.abspath(script))
    output = Path(os.path.abspath(output))
    scene_based = target is not None or chunks > 0

    vspipe_exe()  # a clear error now when it is missing
    ffmpeg = ffmpeg_exe()
    x265 = x265_exe()
    mkvmerge = mkvmerge_exe()
    if encoder == "x265" and (x265 is None or mkvmerge is None):
        missing = "x265" if x265 is None else "mkvmerge (to mux x265's raw HEVC)"
        raise EncodeError(
            f"encoder='x265' was asked for but {missing} is not on PATH; install it "
            "(`apt install x265 mkvtoolnix`) or use encoder='ffmpeg' (FFmpeg's libx265)."
        )
    if scene_based and mkvmerge is None:
        raise EncodeError(
            "Target-quality and chunked encodes join raw HEVC with mkvmerge, which is not on "
            "PATH; install it (`apt install mkvtoolnix`) or encode at a fixed CRF."
        )
    info = probe_script(script)
    check_format(info)
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
    name, exe = ("x265", x265) if use_x265 else ("ffmpeg", ffmpeg)
    assert exe is not None
    video = VideoEncoder.create(name, exe, info, preset=preset, depth=depth, defaults=defaults,
                                x265_params=x265_params)
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

    with OutputLock(output):  # a second encode of output stops here
        remove_leftovers(output)
        work: WorkDir | None = None
        if scene_based:
            settings = {
                "frames": info.num_frames, "size": [info.width, info.height],
                "fps": str(info.fps), "format": info.format_name, "encoder": video.name,
                "preset": preset, "depth": depth, "params": video.params, "crf": float(crf),
                "target": {**target.as_dict(), "method": METHOD} if target else None,
                "scenes": str(scenes),
                "chunks": chunks > 0, "chunk_seconds": chunk_seconds,
            }  # fmt: skip
            named = script_inputs(script)
            work = WorkDir(output, fingerprint(script, settings, named), inputs=named, fresh=fresh)
            tmp = work.temp_folder()
        else:
            try:
                tmp = Path(tempfile.mkdtemp(prefix=temp_prefix(output), dir=output.parent))
            except OSError as err:
                raise EncodeError(f"Cannot write in {output.parent}: {err}") from err
        partial = partial_path(output)
        run = Runner(tmp)
        timing: dict[str, float] = {}
        title: list[Scene] = []
        clock: TitleClock | None = None
        try:
            with sigterm_as_interrupt():
                audio_file = _extract_audio(run, ffmpeg, plan) if plan else None
                if work is not None:
                    clock = TitleClock(info.num_frames, 0, phases=(
                        "scenes", *(("probes",) if target else ()), "encode",
                        *(("verify",) if target and target.verify else ())),
                        work=work.state.get("speeds"))  # fmt: skip
                    t0 = time.monotonic()
                    title = _title_scenes(run, work, info, target, scenes, crf, progress, clock)
                    timing["scenes_s"] = time.monotonic() - t0  # a render when no cuts are named
                    clock.samples = sum(s.frames_sampled for s in title)
                    if target is not None:
                        timing["probe_s"] = probe_scenes(
                            run, video, title, target,
                            save=lambda: _save_scenes(work, title, clock),
                            progress=progress, clock=clock)  # fmt: skip
                    estimate = clock.estimate("encode")
                    if estimate is not None:
                        timing["encode_estimate_s"] = round(estimate, 1)
                        log.info("title %s so far; the final encode should take about %s",
                                 format_seconds(clock.elapsed()), format_seconds(estimate))
                    t0 = time.monotonic()
                    hevc = _encode_chunks(run, work, video, title, chunks, chunk_seconds, progress,
                                          clock)
                    timing["encode_s"] = time.monotonic() - t0
                elif use_x265:
                    hevc = tmp / "video.hevc"
                    _encode_pass(run, video, hevc, crf, progress)
                else:
                    hevc = tmp / "video.mkv"
                    _encode_pass(run, video, hevc, crf, progress)

                if hevc.suffix == ".hevc":
                    assert mkvmerge is not None
                    rate = f"{info.fps.numerator}/{info.fps.denominator}fps"
                    mux = [str(mkvmerge), "--quiet", "--output", str(partial),
                           "--default-duration", f"0:{rate}", str(hevc)]
                    if audio_file is not None:
                        mux += ["--no-video", str(audio_file)]
                    muxer = run.run("mkvmerge", mux, f"muxing {output.name}", ok=(0, 1))
                else:
                    mux = [str(ffmpeg), "-hide_banner", "-nostdin", "-nostats", "-y", "-copyts",
                           "-i", ffmpeg_file(hevc)]
                    if audio_file is not None:
                        mux += ["-i", ffmpeg_file(audio_file), "-map", "0:v:0", "-map", "1:a:0"]
                    else:
                        mux += ["-map", "0:v:0"]
                    mux += ["-c", "copy", "-f", "matroska", ffmpeg_file(partial)]
                    muxer = run.run("ffmpeg", mux, f"muxing {output.name}")
                _verify(partial, info, muxer)
                if target is not None and target.verify:
                    timing["verify_s"] = measure_scenes(run, video, partial, title, target,
                                                        progress=progress, clock=clock)
                log_path = None
                if work is not None:
                    log_path = _write_log(output, info, video, target, title, timing)
                os.replace(partial, output)
        except KeyboardInterrupt as interrupt:
            run.kill_all()
            _remove(partial)
            kept = f" Rerun the same command to resume from {work.path}." if work else ""
            raise EncodeInterrupted(
                f"Encoding {script.name} was interrupted; {output.name} was not written.{kept}"
            ) from interrupt
        except BaseException:
            run.kill_all()
            _remove(partial)
            raise
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
        if work is not None:
            work.remove()

    seconds = time.monotonic() - started
    return EncodeResult(
        output=output,
        frames=info.num_frames,
        seconds=seconds,
        fps=info.num_frames / seconds if seconds > 0 else 0.0,
        encoder=video.name,
        commands=run.commands,
        frame_rate=info.fps,
        duration_s=info.duration_s,
        audio=plan.description if plan else None,
        scenes=title,
        log=log_path,
        timing=timing,
    )


def _encode_pass(run: Runner, video: VideoEncoder, out: Path, crf: float, progress: bool) -> None:
    """Fixed CRF: the whole script through one ``vspipe | encoder``."""
    info = video.info
    vspipe_argv = [str(vspipe_exe()), "-c", "y4m", "-p", str(info.script), "-"]
    with ProgressBar(info.num_frames, f"encoding ({video.name})", enabled=progress) as bar:
        _pipeline(run, vspipe_argv, video.name, video.argv(out, crf=crf), info.script.name,
                  on_frames=lambda n: bar.update(FrameProgress(n, info.num_frames)))
        bar.update(FrameProgress(info.num_frames, info.num_frames))


# --------------------------------------------------------------------------- scene mode


def _save_scenes(work: WorkDir, scenes: list[Scene], clock: TitleClock) -> None:
    """Save the scenes and the speeds measured so far (a resumed run's time left)."""
    work.state["scenes"] = [s.to_dict() for s in scenes]
    work.state["speeds"] = clock.work
    work.save()


def _title_scenes(
    run: Runner,
    work: WorkDir,
    info: ScriptInfo,
    target: TargetQuality | None,
    scenes: Path | str | None,
    crf: float,
    progress: bool,
    clock: TitleClock,
) -> list[Scene]:
    """The title's scenes: from an earlier run's state, else cut and sampled now."""
    if work.state.get("scenes"):
        restored = [Scene.from_dict(d) for d in work.state["scenes"]]
        decided = sum(s.crf is not None for s in restored)
        log.info("resuming: %d scenes known, %d decided (%s)", len(restored), decided, work.path)
        return restored
    n = info.num_frames
    if isinstance(scenes, str) and scenes == "none":
        cuts, where = [], "--scenes none"
    elif scenes is not None:
        cuts, where = read_cuts(Path(scenes)), str(scenes)
    else:
        cuts, where = _report_cuts(info), "the analysis report"
        if cuts is None:
            log.info("finding scene cuts in %s (renders it once)", info.script.name)
            with ProgressBar(n, "finding scenes", enabled=progress, clock=clock,
                             phase="scenes") as bar:

                def line(text: str) -> None:
                    for report in parse_vspipe_progress(text):
                        bar.update(FrameProgress(report.done, n))

                t0 = time.monotonic()
                cuts, _ = script_scene_cuts(info.script, on_progress=line)
                clock.measured("render", n, time.monotonic() - t0)
            where = "the script's frames"
    cuts = check_cuts(cuts, n, where)
    fps = float(info.fps)
    spans = merge_short(scene_spans(cuts, n), max(1, round(fps * _MIN_SCENE_S)))
    share = target.probe_share if target else 0.0
    title = [
        Scene(index=i, start=a, end=b,
              samples=sample_spans(a, b, fps, share) if target else [],
              crf=None if target else float(crf))
        for i, (a, b) in enumerate(spans)
    ]  # fmt: skip
    log.info("%d scenes (cuts from %s)", len(title), where)
    _save_scenes(work, title, clock)
    return title


def _report_cuts(info: ScriptInfo) -> list[int] | None:
    """Cuts of the analysis report named in ``VSREMASTER["analysis"]``, mapped to output 0's
    frames, when the report covers exactly the script's span (same first frame, and output 0
    has the same or a whole multiple of its frames: a double-rate bob); None otherwise."""
    from ..analysis.report import read_report

    meta = info.vsremaster or {}
    name = meta.get("analysis")
    if not name:
        return None
    path = Path(str(name))
    path = path if path.is_absolute() else info.script.parent / path
    try:
        report = read_report(path)
    except (OSError, ValueError) as err:
        log.info("analysis report %s not usable (%s); finding cuts in the script", path, err)
        return None
    clip = report.get("clip", {})
    frames, first = int(clip.get("num_frames", 0)), int(clip.get("first_source_frame", 0))
    trim = meta.get("trim")
    want_first = int(trim[0]) if trim else 0
    if frames <= 0 or info.num_frames % frames or first != want_first:
        log.info("analysis report %s covers another span; finding cuts in the script", path)
        return None
    ratio = info.num_frames // frames
    return [int(c) * ratio for c in report.get("cuts", [])]


def _chunk_plan(scenes: list[Scene], chunks: int, min_frames: int) -> list[list[Scene]]:
    """Consecutive scenes grouped into chunks of at least ``min_frames`` (one chunk when
    ``chunks`` is 0)."""
    if chunks == 0:
        return [scenes]
    groups: list[list[Scene]] = []
    for scene in scenes:
        if groups and sum(s.frames for s in groups[-1]) < min_frames:
            groups[-1].append(scene)
        else:
            groups.append([scene])
    if len(groups) > 1 and sum(s.frames for s in groups[-1]) < min_frames:
        groups[-2].extend(groups.pop())
    return groups


def _encode_chunks(
    run: Runner,
    work: WorkDir,
    video: VideoEncoder,
    scenes: list[Scene],
    chunks: int,
    chunk_seconds: float,
    progress: bool,
    clock: TitleClock,
) -> Path:
    """Encode the scenes (each at its CRF, through zones) in chunks; skip chunks finished by
    an earlier run; join them into one raw HEVC stream. Returns its path."""
    info = video.info
    groups = _chunk_plan(scenes, chunks, max(1, round(float(info.fps) * chunk_seconds)))
    jobs = []
    for i, group in enumerate(groups):
        name = f"{i:05d}"
        record = {"start": group[0].start, "end": group[-1].end,
                  "crfs": [s.crf for s in group]}
        jobs.append((name, group, record))
    for scene in scenes:
        scene.bits = None
    total = info.num_frames
    counts: dict[str, int] = {}
    lock = threading.Lock()
    skipped = 0
    pending = []
    for name, group, record in jobs:
        if work.finished_chunk(name, record):
            counts[name] = record["end"] - record["start"]
            skipped += 1
            csv = work.chunk_path(name, ".csv")
            if csv.is_file():
                scene_bits(csv, record["start"], group)
        else:
            pending.append((name, group, record))
    if skipped:
        log.info("resuming: %d of %d chunks already encoded", skipped, len(jobs))
    elif chunks > 0:
        log.info("encoding %d chunk(s) of whole scenes, %d at a time (a rerun after a kill "
                 "resumes at the first unfinished one)", len(jobs), min(chunks, len(jobs)))
    workers = max(1, min(chunks, len(pending))) if pending else 1
    with ProgressBar(total, f"encoding ({video.name})", enabled=progress, clock=clock,
                     phase="encode") as bar:
        bar.update(FrameProgress(sum(counts.values()), total))

        def one(name: str, group: list[Scene], record: dict[str, Any]) -> None:
            start, end = record["start"], record["end"]
            out, csv = work.chunk_path(name), work.chunk_path(name, ".csv")
            for stale in (out, csv):  # a killed run's: x265 appends to an existing --csv
                stale.unlink(missing_ok=True)
            base = base_crf(group)
            argv = video.argv(out, crf=base, zones=zones_arg(group, start, base), csv=csv)
            vspipe_argv = [str(vspipe_exe()), "-c", "y4m", "-p", "-s", str(start),
                           "-e", str(end - 1), str(info.script), "-"]

            def frames(n: int) -> None:
                with lock:
                    counts[name] = n
                    bar.update(FrameProgress(sum(counts.values()), total))

            _pipeline(run, vspipe_argv, video.name, argv, info.script.name, on_frames=frames)
            got = media_info(out, count_frames=True, colour=False).frames
            if got != end - start:
                raise EncodeError(f"chunk {name} has {got} frames instead of {end - start}")
            with lock:
                scene_bits(csv, start, group)
                work.mark_chunk(name, record, got)
                counts[name] = end - start

        if workers == 1:
            for job in pending:
                one(*job)
        else:
            with ThreadPoolExecutor(max_workers=workers) as pool:
                futures = [pool.submit(one, *job) for job in pending]
                try:
                    for future in as_completed(futures):
                        future.result()
                except BaseException:
                    for future in futures:
                        future.cancel()
                    run.kill_all()
                    raise
        bar.update(FrameProgress(total, total))
    if len(jobs) == 1:
        return work.chunk_path(jobs[0][0])
    joined = run.tmp / "video.hevc"
    with joined.open("wb") as sink:
        for name, _, _ in jobs:
            with work.chunk_path(name).open("rb") as part:
                shutil.copyfileobj(part, sink, 1 << 22)
    return joined


def _write_log(
    output: Path,
    info: ScriptInfo,
    video: VideoEncoder,
    target: TargetQuality | None,
    scenes: list[Scene],
    timing: dict[str, float],
) -> Path:
    """``OUT.encode.json``: settings and the decision of every scene (atomic write)."""
    path = output.with_suffix(".encode.json")
    data = {
        "script": str(info.script),
        "output": str(output),
        "encoder": video.name,
        "preset": video.preset,
        "params": [[k, v] for k, v in video.params],
        "target": {**target.as_dict(), "method": METHOD} if target else None,
        "title": title_summary(scenes, float(info.fps)),
        "timing_s": {k: round(v, 2) for k, v in timing.items()},
        "scenes": [s.to_dict() for s in scenes],
    }
    partial = path.with_name(f".{path.name}.partial")
    partial.write_text(json.dumps(data, indent=1), encoding="utf-8")
    os.replace(partial, path)
    return path
