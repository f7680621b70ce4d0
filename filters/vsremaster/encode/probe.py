"""Reading what a ``.vpy`` script outputs, before encoding it.

:func:`probe_script` runs ``python -m vsremaster.encode.probe SCRIPT`` in a subprocess with
the same interpreter. The child evaluates the script the way vspipe does: ``runpy`` with
``__name__ == "__vapoursynth__"``, ``__file__`` set to the script's absolute path (the path
the encoder gives vspipe), ``sys.argv == [""]``, and, as vspipe (R81) does, the working
directory set to the script's folder while the script is evaluated and restored afterwards
(so a relative source path in a script means the same thing to the probe and to vspipe).
It then takes output 0, reads frame 0's properties and prints one JSON object on stdout.
Running the script in a child keeps its side effects (VapourSynth core, loaded plugins,
threads, prints) out of the encoding process.

Anything the script prints goes to the child's stderr, so it cannot corrupt the JSON.

:func:`script_scene_cuts` runs the same child in ``--scenes`` mode: it renders output 0 and
finds its scene cuts with :mod:`vsremaster.analysis` (for scripts that name no analysis
report).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import Any

from ..errors import EncodeError

__all__ = ["FRAME_PROPS", "ScriptInfo", "probe_script", "script_scene_cuts"]

#: Frame properties of frame 0 that the encoder turns into bitstream signalling.
FRAME_PROPS = (
    "_Matrix",
    "_Primaries",
    "_Transfer",
    "_Range",
    "_ColorRange",
    "_ChromaLocation",
    "_SARNum",
    "_SARDen",
    "_FieldBased",
)

_TAIL_LINES = 15


@dataclass(frozen=True, slots=True)
class ScriptInfo:
    """What output 0 of a script delivers, as vspipe will see it.

    Attributes:
        script: Absolute path of the script.
        width: Frame width in pixels.
        height: Frame height in pixels.
        num_frames: Number of frames.
        fps_num: Frame rate numerator (frames per ``fps_den`` seconds).
        fps_den: Frame rate denominator.
        format_name: VapourSynth format name, e.g. ``"YUV420P10"``.
        color_family: ``"YUV"``, ``"GRAY"`` or ``"RGB"``.
        sample_type: ``"INTEGER"`` or ``"FLOAT"``.
        bits: Bits per sample.
        subsampling_w: log2 horizontal chroma subsampling (1 for 4:2:0 and 4:2:2).
        subsampling_h: log2 vertical chroma subsampling (1 for 4:2:0).
        props: Frame 0's ``_Matrix``, ``_Primaries``, ``_Transfer``, ``_Range`` (or the
            pre-API-4.2 ``_ColorRange``), ``_ChromaLocation``, ``_SARNum``, ``_SARDen``,
            ``_FieldBased`` (absent ones omitted), as integers.
        vsremaster: The script's global ``VSREMASTER`` dict (audio source and span), or None.
    """

    script: Path
    width: int
    height: int
    num_frames: int
    fps_num: int
    fps_den: int
    format_name: str
    color_family: str
    sample_type: str
    bits: int
    subsampling_w: int
    subsampling_h: int
    props: dict[str, int] = field(default_factory=dict)
    vsremaster: dict[str, Any] | None = None

    @property
    def fps(self) -> Fraction:
        """Frame rate in frames per second, exact."""
        return Fraction(self.fps_num, self.fps_den)

    @property
    def duration_s(self) -> float:
        """Duration of the clip in seconds (``num_frames / fps``)."""
        return float(self.num_frames / self.fps)

    def prop(self, name: str) -> int | None:
        """Return frame property ``name`` of frame 0, or None when the script did not set it."""
        return self.props.get(name)

    @property
    def color_range(self) -> str | None:
        """``"limited"``, ``"full"`` or None (unspecified), from frame 0.

        VapourSynth R74+ (API 4.2) writes ``_Range`` with 0 = limited, 1 = full (the values
        of H.273's ``video_full_range_flag``); older plugins write ``_ColorRange`` with the
        opposite values (0 = full, 1 = limited). ``_Range`` wins when both are present.
        """
        value = self.props.get("_Range")
        if value is not None:
            return {0: "limited", 1: "full"}.get(value)
        value = self.props.get("_ColorRange")
        if value is not None:
            return {0: "full", 1: "limited"}.get(value)
        return None

    @property
    def sar(self) -> tuple[int, int] | None:
        """Sample (pixel) aspect ratio ``(num, den)`` from frame 0, or None when unset/invalid."""
        num, den = self.props.get("_SARNum"), self.props.get("_SARDen")
        if num is None or den is None or num <= 0 or den <= 0:
            return None
        return num, den

    @classmethod
    def from_json(cls, script: Path, data: dict[str, Any]) -> ScriptInfo:
        """Build from the JSON object printed by the probe subprocess."""
        fmt = data["format"]
        return cls(
            script=script,
            width=int(data["width"]),
            height=int(data["height"]),
            num_frames=int(data["num_frames"]),
            fps_num=int(data["fps_num"]),
            fps_den=int(data["fps_den"]),
            format_name=str(fmt["name"]),
            color_family=str(fmt["color_family"]),
            sample_type=str(fmt["sample_type"]),
            bits=int(fmt["bits"]),
            subsampling_w=int(fmt["subsampling_w"]),
            subsampling_h=int(fmt["subsampling_h"]),
            props={k: int(v) for k, v in data.get("props", {}).items()},
            vsremaster=data.get("vsremaster"),
        )


def _package_root() -> Path:
    """The folder that contains the ``vsremaster`` package (for the child's PYTHONPATH)."""
    return Path(__file__).resolve().parent.parent.parent


def probe_script(script: Path, *, timeout: float | None = None) -> ScriptInfo:
    """Evaluate ``script`` in a subprocess and describe its output 0.

    Args:
        script: Path of the ``.vpy`` (or ``.py``) script.
        timeout: Seconds to wait for the script to load and deliver frame 0; None waits as
            long as it takes (a source filter may index a long file first).

    Returns:
        The clip's size, length, frame rate, format, frame-0 colour properties and the
        script's ``VSREMASTER`` dict.

    Raises:
        EncodeError: the script does not exist, raises while loading or while producing
            frame 0, sets no output 0, outputs audio, or has a variable format, size or frame
            rate. The message quotes the script's own error (the end of its traceback).
    """
    data = _run_child(Path(script), "--describe", timeout=timeout)
    return ScriptInfo.from_json(Path(os.path.abspath(script)), data)


def script_scene_cuts(
    script: Path, *, on_progress: Callable[[str], None] | None = None
) -> tuple[list[int], int]:
    """Scene cuts of a script's output 0, found by evaluating it (every frame is rendered).

    Args:
        script: The ``.vpy``.
        on_progress: Called with each vspipe-style ``Frame: N/TOTAL`` line.

    Returns:
        (first frames of new scenes, frame count of output 0).

    Raises:
        EncodeError: as :func:`probe_script`, or a frame fails to render.
    """
    data = _run_child(Path(script), "--scenes", on_line=on_progress)
    return [int(c) for c in data["cuts"]], int(data["num_frames"])


def _run_child(
    script: Path,
    mode: str,
    *,
    timeout: float | None = None,
    on_line: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    """Run ``python -m vsremaster.encode.probe MODE SCRIPT`` and return its JSON answer."""
    if not script.is_file():
        raise EncodeError(f"Script {script} does not exist.")
    script = Path(os.path.abspath(script))
    env = dict(os.environ)
    root = str(_package_root())
    env["PYTHONPATH"] = os.pathsep.join(p for p in (root, env.get("PYTHONPATH", "")) if p)
    cmd = [sys.executable, "-m", "vsremaster.encode.probe", mode, str(script)]
    proc = subprocess.Popen(
        cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env
    )
    lines: list[str] = []

    def drain() -> None:
        assert proc.stderr is not None
        for raw in iter(proc.stderr.readline, b""):
            line = raw.decode("utf-8", "replace").rstrip("\n")
            lines.append(line)
            del lines[:-200]
            if on_line is not None:
                on_line(line)

    answer: list[bytes] = []

    def read_answer() -> None:  # stdout in its own thread: communicate() would race `drain`
        assert proc.stdout is not None
        answer.append(proc.stdout.read())

    reader = threading.Thread(target=drain, daemon=True)
    reader.start()
    answer_reader = threading.Thread(target=read_answer, daemon=True)
    answer_reader.start()
    try:
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired as err:
        proc.kill()
        proc.wait()
        raise EncodeError(
            f"Script {script} did not deliver its first frame within {timeout} s."
        ) from err
    except BaseException:
        proc.kill()
        proc.wait()
        raise
    answer_reader.join()
    reader.join(timeout=5)
    stdout = answer[0] if answer else b""
    try:
        data = json.loads(stdout.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError):
        tail = "\n".join(_meaningful("\n".join(lines))[-_TAIL_LINES:])
        raise EncodeError(
            f"Probing script {script} failed (python exit code {proc.returncode}):\n{tail}"
        ) from None
    if "error" in data:
        raise EncodeError(f"Script {script} failed: {data['error']}")
    return data


def _meaningful(text: str) -> list[str]:
    return [line for line in text.replace("\r", "\n").splitlines() if line.strip()]


# --------------------------------------------------------------------------- child side


def _script_traceback(exc: BaseException, script: str) -> str:
    """Format ``exc`` from the first frame that belongs to the script, our frames left out.

    vsremaster's own errors already say what is wrong and what to do: they are given as
    their message alone, with the script line that raised them.
    """
    from ..errors import VSRemasterError

    if isinstance(exc, VSRemasterError):
        tb, line = exc.__traceback__, None
        while tb is not None:
            if os.path.abspath(tb.tb_frame.f_code.co_filename) == script:
                line = tb.tb_lineno
            tb = tb.tb_next
        where = f" (line {line})" if line else ""
        return f"{exc}{where}"
    tb = exc.__traceback__
    while tb is not None and os.path.abspath(tb.tb_frame.f_code.co_filename) != script:
        tb = tb.tb_next
    if tb is None:
        lines = traceback.format_exception_only(type(exc), exc)
    else:
        lines = traceback.format_exception(type(exc), exc, tb)
    text = "".join(lines).rstrip()
    return "\n".join(text.splitlines()[-_TAIL_LINES:])


class _ScriptFailed(Exception):
    """The script cannot give a usable output 0; the message says why (for the parent)."""


def load_output(script: str) -> tuple[Any, dict[str, Any]]:
    """Evaluate ``script`` as vspipe would and return (output 0's clip, its namespace).

    Raises:
        _ScriptFailed: it raises, sets no output 0, or output 0 is audio or has a variable
            format, size or frame rate, or no frames.
    """
    import runpy

    import vapoursynth as vs

    sys.argv = [""]  # what the interpreter embedded by vspipe has
    cwd = os.getcwd()
    os.chdir(os.path.dirname(script))  # vspipe evaluates in the script's folder
    try:
        namespace = runpy.run_path(script, run_name="__vapoursynth__")
    except BaseException as exc:  # noqa: BLE001 - the script's error is the result
        raise _ScriptFailed("it raised while loading: " + _script_traceback(exc, script)) from None
    finally:
        os.chdir(cwd)  # and requests frames from where it was started
    outputs = vs.get_outputs()
    if 0 not in outputs:
        raise _ScriptFailed("it sets no output 0 (call clip.set_output() in the script).")
    out = outputs[0]
    if isinstance(out, vs.AudioNode):
        raise _ScriptFailed("its output 0 is audio; the encoder needs a video clip.")
    clip = out.clip
    if clip.format is None or clip.format.id == vs.PresetVideoFormat.NONE:
        raise _ScriptFailed(
            "output 0 has a variable format; convert it to one format "
            "(e.g. with core.resize.Bicubic(format=...))."
        )
    if clip.width == 0 or clip.height == 0:
        raise _ScriptFailed("output 0 has a variable frame size; resize it to one size.")
    if clip.fps.numerator == 0:
        raise _ScriptFailed(
            "output 0 has a variable frame rate; set one with core.std.AssumeFPS(...)."
        )
    if clip.num_frames == 0:
        raise _ScriptFailed("output 0 has no frames.")
    return clip, namespace


def _describe(script: str) -> dict[str, Any]:
    clip, namespace = load_output(script)
    try:
        frame = clip.get_frame(0)
    except BaseException as exc:  # noqa: BLE001
        return {"error": "it failed to produce frame 0: " + _script_traceback(exc, script)}
    props = {}
    for name in FRAME_PROPS:
        value = frame.props.get(name)
        if isinstance(value, int) and not isinstance(value, bool):
            props[name] = value
    fmt = clip.format
    extra = namespace.get("VSREMASTER")
    return {
        "width": clip.width,
        "height": clip.height,
        "num_frames": clip.num_frames,
        "fps_num": clip.fps.numerator,
        "fps_den": clip.fps.denominator,
        "format": {
            "name": fmt.name,
            "color_family": fmt.color_family.name.removeprefix("ColorFamily."),
            "sample_type": fmt.sample_type.name.removeprefix("SampleType."),
            "bits": fmt.bits_per_sample,
            "subsampling_w": fmt.subsampling_w,
            "subsampling_h": fmt.subsampling_h,
        },
        "props": props,
        "vsremaster": extra if isinstance(extra, dict) else None,
    }


def _scenes(script: str) -> dict[str, Any]:
    """Scene cuts of output 0 (:mod:`vsremaster.analysis` scene-change metric), with
    vspipe-style ``Frame: N/TOTAL`` progress on stderr."""
    from ..analysis import SceneChange
    from ..analysis.run import analyze

    clip, _ = load_output(script)
    step = max(1, clip.num_frames // 200)

    def progress(done: int, total: int) -> None:
        if done % step == 0 or done == total:
            print(f"Frame: {done}/{total}", file=sys.stderr, flush=True)

    result = analyze(clip, metrics=[SceneChange()], progress=progress)
    return {"num_frames": clip.num_frames, "cuts": [int(c) for c in result.cuts]}


_MODES = {"--describe": _describe, "--scenes": _scenes}


def _main(argv: list[str]) -> int:
    """Child entry point: print the JSON result of one mode for one script.

    ``python -m vsremaster.encode.probe [--describe|--scenes] SCRIPT``: ``--describe``
    (default) describes output 0, ``--scenes`` finds its scene cuts.
    """
    mode = _describe
    if argv and argv[0] in _MODES:
        mode = _MODES[argv[0]]
        argv = argv[1:]
    if len(argv) != 1:
        print("usage: python -m vsremaster.encode.probe [--describe|--scenes] SCRIPT",
              file=sys.stderr)
        return 2
    script = os.path.abspath(argv[0])
    # Whatever the script (or a plugin) prints must not reach our JSON: point fd 1 at stderr.
    sys.stdout.flush()
    json_fd = os.dup(1)
    os.dup2(2, 1)
    try:
        result = mode(script)
    except _ScriptFailed as failed:
        result = {"error": str(failed)}
    except BaseException as exc:  # noqa: BLE001 - report, never a traceback of ours
        result = {"error": f"probing failed: {type(exc).__name__}: {exc}"}
    payload = json.dumps(result, default=str).encode("utf-8") + b"\n"
    os.write(json_fd, payload)
    sys.stdout.flush()
    sys.stderr.flush()
    # Skip interpreter teardown: a script's threads or the core must not delay the answer.
    os._exit(1 if "error" in result else 0)


if __name__ == "__main__":
    sys.exit(_main(sys.argv[1:]))
