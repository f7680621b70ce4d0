"""Locating the external programs the encoder runs: vspipe, x265, mkvmerge and FFmpeg.

Nothing here encodes anything; these functions only find the programs (and, for vspipe,
check that it can start) so that :mod:`vsremaster.encode.pipeline` can build its command
lines and the CLI can tell the user what is missing before any work is done.
"""

from __future__ import annotations

import functools
import importlib.util
import os
import shutil
import subprocess
import sys
from pathlib import Path

from ..errors import EncodeError

__all__ = [
    "VSPIPE_CONFIG_HINT", "ffmpeg_exe", "ffmpeg_file", "mkvmerge_exe", "vspipe_exe", "x265_exe",
]

#: What vspipe prints when VSScript cannot find the Python it should embed.
_UNCONFIGURED = "Python executable and library path couldn't be determined"

VSPIPE_CONFIG_HINT = (
    "VapourSynth is not configured for this Python: run `vapoursynth config` "
    f"(with the Python that has vapoursynth installed: {sys.executable}) and try again."
)


def _exe_name(name: str) -> str:
    return f"{name}.exe" if os.name == "nt" else name


def _is_python_wrapper(path: Path) -> bool:
    """True when ``path`` is the pip console-script that merely re-runs the real vspipe."""
    try:
        with path.open("rb") as f:
            head = f.read(4096)
    except OSError:
        return False
    return head.startswith(b"#!") and b"vapoursynth" in head and b"vspipe" in head


def _bundled_vspipe() -> Path | None:
    """The vspipe binary shipped inside the ``vapoursynth`` wheel, if any."""
    spec = importlib.util.find_spec("vapoursynth")
    if spec is None or not spec.submodule_search_locations:
        return None
    for location in spec.submodule_search_locations:
        candidate = Path(location) / _exe_name("vspipe")
        if candidate.is_file() and os.access(candidate, os.X_OK):
            return candidate
    return None


def _candidates() -> list[Path]:
    found: list[Path] = []
    beside = Path(sys.executable).parent / _exe_name("vspipe")
    if beside.is_file() and os.access(beside, os.X_OK):
        found.append(beside)
    on_path = shutil.which("vspipe")
    if on_path:
        found.append(Path(on_path))
    return found


@functools.cache
def vspipe_exe() -> Path:
    """Return the vspipe program to run, checked to start correctly.

    Looks next to ``sys.executable`` first (the virtual environment's ``bin/``), then on
    ``PATH``. The ``vspipe`` that pip installs there is a small Python script that runs the
    real binary in a subprocess (and does not pass signals on); when that script is found,
    the real binary inside the ``vapoursynth`` package is returned instead, so that stopping
    vspipe really stops it. The program is run once with ``--version`` (about 50 ms; the
    result is cached for the process).

    Returns:
        Absolute path of the vspipe executable.

    Raises:
        EncodeError: vspipe is not installed, cannot be started, or VapourSynth has not been
            configured for this Python (the message then tells the user to run
            ``vapoursynth config``).
    """
    candidates = _candidates()
    if not candidates:
        raise EncodeError(
            "vspipe was not found next to the Python interpreter "
            f"({Path(sys.executable).parent}) nor on PATH; install VapourSynth "
            "(`pip install vapoursynth`) in this environment."
        )
    exe = candidates[0]
    if _is_python_wrapper(exe):
        exe = _bundled_vspipe() or exe
    try:
        proc = subprocess.run(
            [str(exe), "--version"],
            check=False,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            timeout=60,
        )
    except (OSError, subprocess.TimeoutExpired) as err:
        raise EncodeError(f"vspipe ({exe}) could not be started: {err}") from err
    text = (proc.stdout + proc.stderr).decode("utf-8", "replace")
    if _UNCONFIGURED in text:
        raise EncodeError(VSPIPE_CONFIG_HINT)
    if proc.returncode != 0:
        tail = "\n".join(text.strip().splitlines()[-10:])
        raise EncodeError(f"vspipe ({exe}) failed to start (exit code {proc.returncode}):\n{tail}")
    return exe.absolute()


def x265_exe() -> Path | None:
    """Return the x265 command-line encoder found on ``PATH``, or None.

    Returns:
        Absolute path of ``x265``, or None when it is not installed (the encoder then falls
        back to FFmpeg's libx265 when ``encoder="auto"``).
    """
    found = shutil.which("x265")
    return Path(found).absolute() if found else None


def mkvmerge_exe() -> Path | None:
    """Return mkvmerge (MKVToolNix) found on ``PATH``, or None.

    x265 writes a raw HEVC stream without timestamps; mkvmerge muxes it into Matroska with
    exact ones from the frame rate (FFmpeg 9 refuses raw HEVC with B-frames: "Can't write
    packet with unknown timestamp"). Without mkvmerge, ``encoder="auto"`` uses FFmpeg's
    libx265, which writes Matroska itself.
    """
    found = shutil.which("mkvmerge")
    return Path(found).absolute() if found else None


@functools.cache
def ffmpeg_exe() -> Path:
    """Return the FFmpeg binary bundled with ``imageio-ffmpeg``.

    ``IMAGEIO_FFMPEG_EXE`` overrides it, as documented by imageio-ffmpeg. This FFmpeg is
    used for the libx265 fallback, for muxing, audio extraction and :func:`media_info`.

    Returns:
        Absolute path of the ffmpeg executable.

    Raises:
        EncodeError: imageio-ffmpeg is not installed or its binary is missing.
    """
    try:
        import imageio_ffmpeg
    except ImportError as err:  # pragma: no cover - dependency of the package
        raise EncodeError(
            "imageio-ffmpeg is not installed; `pip install imageio-ffmpeg` provides FFmpeg."
        ) from err
    try:
        exe = Path(imageio_ffmpeg.get_ffmpeg_exe())
    except RuntimeError as err:
        raise EncodeError(f"imageio-ffmpeg has no FFmpeg binary for this platform: {err}") from err
    if not exe.is_file():
        raise EncodeError(f"FFmpeg binary {exe} does not exist; reinstall imageio-ffmpeg.")
    return exe.absolute()


def ffmpeg_file(path: Path | str) -> str:
    """``path`` as an FFmpeg input/output URL that is always read as a plain file.

    FFmpeg takes ``name:rest`` as a protocol when ``name`` looks like one, so a file called
    ``take:2.mkv`` would not open; the ``file:`` prefix rules that out.
    """
    return "file:" + os.fspath(path)
