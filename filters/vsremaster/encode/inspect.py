"""Describing media files with the bundled FFmpeg only (there is no ffprobe).

:func:`media_info` parses ``ffmpeg -i FILE`` (the stream summary FFmpeg prints to stderr),
decodes the first video frame through the ``showinfo`` filter for the colour signalling
the decoder actually sees, and optionally counts the video frames exactly with a
``-c copy -f null`` pass (packets, no decoding; ``decode=True`` counts decoded frames).
The tests and the CLI use it to check encoder outputs.
"""

from __future__ import annotations

import re
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import InputError
from .tools import ffmpeg_exe, ffmpeg_file

__all__ = ["MediaInfo", "media_info", "parse_ffmpeg_info", "split_top_level"]


@dataclass(slots=True)
class MediaInfo:
    """What FFmpeg reports about a media file (first video and first audio stream).

    Attributes:
        path: The file described.
        container: FFmpeg's demuxer name, e.g. ``"matroska,webm"`` or
            ``"mov,mp4,m4a,3gp,3g2,mj2"``.
        duration_s: Container duration in seconds (None when unknown).
        start_s: Container start time in seconds.
        video_codec: Codec of the first video stream, e.g. ``"hevc"`` (None: no video).
        video_profile: Its profile as FFmpeg names it, e.g. ``"Main 10"``.
        width: Frame width in pixels.
        height: Frame height in pixels.
        pix_fmt: FFmpeg pixel format, e.g. ``"yuv420p10le"``.
        bit_depth: Bits per sample derived from ``pix_fmt`` (8 when it names none).
        fps: Frame rate as FFmpeg prints it (rounded to 2 decimals, e.g. 29.97).
        sar: Sample aspect ratio ``(num, den)`` when FFmpeg prints one.
        frames: Exact number of video frames (packets) when counted, else None.
        video_duration_s: The video stream's own duration (Matroska ``DURATION`` tag) in
            seconds, or the container duration when the stream has none.
        color_range: ``"tv"`` (limited) or ``"pc"`` (full), None when unspecified.
        color_space: Matrix coefficients name (``"bt709"``...), None when unspecified.
        color_primaries: Primaries name, None when unspecified.
        color_transfer: Transfer characteristics name, None when unspecified.
        chroma_location: Chroma sample location the decoder reports (``"left"``...). For
            HEVC without VUI chroma-location info the decoder reports its default, so this
            is not proof of signalling.
        field_order: ``"progressive"``, ``"tt"``, ``"bb"``... when printed.
        first_frame_s: Time of the first decoded video frame in seconds from the file's
            start (``showinfo`` pass); above 0 when audio or a B-frame delay comes first.
        audio_codec: Codec of the first audio stream, None when there is no audio.
        audio_streams: Number of audio streams.
        audio_sample_rate: Sample rate in Hz.
        audio_channels: Channel layout as printed (``"stereo"``, ``"5.1"``...).
        audio_duration_s: The audio stream's own duration (``DURATION`` tag) in seconds, or
            the container duration.
        raw: The full ``ffmpeg -i`` text, for diagnostics.
    """

    path: Path
    container: str | None = None
    duration_s: float | None = None
    start_s: float | None = None
    video_codec: str | None = None
    video_profile: str | None = None
    width: int | None = None
    height: int | None = None
    pix_fmt: str | None = None
    bit_depth: int | None = None
    fps: float | None = None
    sar: tuple[int, int] | None = None
    frames: int | None = None
    video_duration_s: float | None = None
    color_range: str | None = None
    color_space: str | None = None
    color_primaries: str | None = None
    color_transfer: str | None = None
    chroma_location: str | None = None
    field_order: str | None = None
    first_frame_s: float | None = None
    audio_codec: str | None = None
    audio_streams: int = 0
    audio_sample_rate: int | None = None
    audio_channels: str | None = None
    audio_duration_s: float | None = None
    raw: str = field(default="", repr=False)

    @property
    def has_video(self) -> bool:
        """True when the file has a video stream."""
        return self.video_codec is not None

    @property
    def has_audio(self) -> bool:
        """True when the file has at least one audio stream."""
        return self.audio_codec is not None


_UNSPECIFIED = {"unknown", "unspecified", "reserved", "N/A", ""}
_RANGES = {"tv", "pc"}
_FIELD_ORDERS = {
    "progressive",
    "top first",
    "bottom first",
    "top coded first (swapped)",
    "bottom coded first (swapped)",
}
_CHROMA_LOCATIONS = {"left", "center", "topleft", "top", "bottomleft", "bottom"}

_INPUT_RE = re.compile(r"^Input #0, (?P<fmt>[^ ]+), from ")
_DURATION_RE = re.compile(r"^\s*Duration: (?P<dur>N/A|[\d:.]+)(?:, start: (?P<start>-?[\d.]+))?")
_STREAM_RE = re.compile(
    r"^\s*Stream #\d+:\d+\S*: (?P<kind>Video|Audio|Subtitle|Data|Attachment): (?P<rest>.*)$"
)
_TAG_DURATION_RE = re.compile(r"^\s+DURATION\s*: (?P<dur>[\d:.]+)\s*$")
_SIZE_RE = re.compile(r"^(?P<w>\d+)x(?P<h>\d+)(?: \[SAR (?P<sn>\d+):(?P<sd>\d+) DAR \d+:\d+\])?")
_FPS_RE = re.compile(r"^(?P<v>[\d.]+)(?P<k>k?) fps$")
_FRAME_RE = re.compile(r"frame=\s*(\d+)")


def split_top_level(text: str, sep: str = ",") -> list[str]:
    """Split ``text`` at ``sep`` outside parentheses and brackets, stripping each part.

    ``"hevc (Main 10), yuv420p10le(tv, bt709), 176x144"`` gives three parts.
    """
    parts: list[str] = []
    depth = 0
    current: list[str] = []
    for ch in text:
        if ch in "([":
            depth += 1
        elif ch in ")]":
            depth = max(0, depth - 1)
        if ch == sep and depth == 0:
            parts.append("".join(current).strip())
            current = []
        else:
            current.append(ch)
    parts.append("".join(current).strip())
    return [p for p in parts if p]


def _seconds(hms: str) -> float | None:
    if hms in ("N/A", ""):
        return None
    total = 0.0
    for piece in hms.split(":"):
        total = total * 60 + float(piece)
    return total


def _clean(name: str | None) -> str | None:
    return None if name is None or name in _UNSPECIFIED else name


def _bit_depth(pix_fmt: str) -> int:
    match = re.search(r"p(\d+)(?:le|be)?$", pix_fmt) or re.search(r"(\d+)(?:le|be)$", pix_fmt)
    return int(match.group(1)) if match else 8


def _parse_video(info: MediaInfo, rest: str) -> None:
    parts = split_top_level(rest)
    if not parts:
        return
    codec_part = parts[0]
    info.video_codec = codec_part.split()[0]
    profile = re.search(r"\(([^()]*)\)", codec_part)
    if profile and "/ 0x" not in profile.group(1):
        info.video_profile = profile.group(1)
    for part in parts[1:]:
        size = _SIZE_RE.match(part)
        if size and info.width is None:
            info.width, info.height = int(size["w"]), int(size["h"])
            if size["sn"]:
                info.sar = (int(size["sn"]), int(size["sd"]))
            continue
        fps = _FPS_RE.match(part)
        if fps:
            info.fps = float(fps["v"]) * (1000 if fps["k"] else 1)
            continue
        if (
            info.pix_fmt is None
            and re.match(r"^[a-z][a-z0-9_]*(\(|$)", part)
            and "kb/s" not in part
        ):
            name, _, inner = part.partition("(")
            info.pix_fmt = name.strip()
            info.bit_depth = _bit_depth(info.pix_fmt)
            for item in split_top_level(inner.rstrip(")")):
                if item in _RANGES:
                    info.color_range = item
                elif item in _FIELD_ORDERS:
                    info.field_order = item
                elif item in _CHROMA_LOCATIONS:
                    info.chroma_location = item
                elif "/" in item:
                    space, prim, trc = (item.split("/") + [None, None])[:3]
                    info.color_space, info.color_primaries = _clean(space), _clean(prim)
                    info.color_transfer = _clean(trc)
                else:
                    info.color_space = info.color_primaries = info.color_transfer = _clean(item)


def _parse_audio(info: MediaInfo, rest: str) -> None:
    info.audio_streams += 1
    if info.audio_codec is not None:
        return
    parts = split_top_level(rest)
    info.audio_codec = parts[0].split()[0] if parts else "unknown"
    for part in parts[1:]:
        rate = re.match(r"^(\d+) Hz$", part)
        if rate:
            info.audio_sample_rate = int(rate.group(1))
        elif info.audio_channels is None and info.audio_sample_rate is not None:
            info.audio_channels = part


def parse_ffmpeg_info(text: str, path: Path) -> MediaInfo:
    """Parse the stream summary that ``ffmpeg -i FILE`` prints on stderr.

    Only input #0 is read; the first video stream and first audio stream are described.

    Args:
        text: FFmpeg's stderr.
        path: The file it describes (stored in the result).

    Returns:
        A :class:`MediaInfo` without frame count (``frames`` is None).
    """
    info = MediaInfo(path=Path(path), raw=text)
    current: str | None = None  # kind of the stream whose metadata follows
    first_of_kind = False
    for line in text.splitlines():
        if line.startswith(("Output #", "Stream mapping")):
            break
        match = _INPUT_RE.match(line)
        if match:
            info.container = match["fmt"]
            continue
        match = _DURATION_RE.match(line)
        if match:
            info.duration_s = _seconds(match["dur"])
            if match["start"] is not None:
                info.start_s = float(match["start"])
            continue
        match = _STREAM_RE.match(line)
        if match:
            kind = match["kind"]
            first_of_kind = (kind == "Video" and info.video_codec is None) or (
                kind == "Audio" and info.audio_codec is None
            )
            current = kind
            if kind == "Video" and first_of_kind:
                _parse_video(info, match["rest"])
            elif kind == "Audio":
                _parse_audio(info, match["rest"])
            continue
        match = _TAG_DURATION_RE.match(line)
        if match and first_of_kind:
            if current == "Video":
                info.video_duration_s = _seconds(match["dur"])
            elif current == "Audio":
                info.audio_duration_s = _seconds(match["dur"])
    if info.has_video and info.video_duration_s is None:
        info.video_duration_s = info.duration_s
    if info.has_audio and info.audio_duration_s is None:
        info.audio_duration_s = info.duration_s
    return info


def _run(args: list[str], timeout: float | None) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(
        [str(ffmpeg_exe()), "-hide_banner", "-nostdin", *args],
        check=False,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        timeout=timeout,
    )


def _apply_showinfo(info: MediaInfo, text: str) -> None:
    """Take colour signalling and the time of the first decoded frame from showinfo."""
    pts = re.search(r"pts_time:\s*(-?[\d.]+)", text)
    if pts:
        info.first_frame_s = float(pts.group(1))
    fields = dict(
        re.findall(r"\b(color_range|color_space|color_primaries|color_trc|cl):(\S+)", text)
    )
    if "color_range" in fields:
        info.color_range = _clean(fields["color_range"]) or info.color_range
    if "color_space" in fields:
        info.color_space = _clean(fields["color_space"]) or info.color_space
    if "color_primaries" in fields:
        info.color_primaries = _clean(fields["color_primaries"]) or info.color_primaries
    if "color_trc" in fields:
        info.color_transfer = _clean(fields["color_trc"]) or info.color_transfer
    if "cl" in fields:
        info.chroma_location = _clean(fields["cl"]) or info.chroma_location


def media_info(
    path: Path,
    *,
    count_frames: bool = True,
    decode: bool = False,
    colour: bool = True,
    timeout: float | None = None,
) -> MediaInfo:
    """Describe a media file with the bundled FFmpeg.

    Args:
        path: The file.
        count_frames: Count the video frames exactly (a ``-map 0:v:0 -c copy -f null``
            pass: reads the whole file but decodes nothing; about a second per GB).
        decode: Count decoded frames instead of packets (slow; for files where a packet may
            hold several frames).
        colour: Decode the first video frame through ``showinfo`` to read the colour
            range/matrix/primaries/transfer/chroma location the decoder sees and the
            frame's time (fast).
        timeout: Seconds allowed to each FFmpeg run; None for no limit.

    Returns:
        The :class:`MediaInfo`.

    Raises:
        InputError: the file does not exist or FFmpeg cannot read it.
    """
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path} does not exist or is not a file.")
    proc = _run(["-i", ffmpeg_file(path)], timeout)
    text = proc.stderr.decode("utf-8", "replace")
    info = parse_ffmpeg_info(text, path)
    if info.container is None:
        tail = "\n".join(text.strip().splitlines()[-5:])
        raise InputError(f"FFmpeg cannot read {path}:\n{tail}")
    if info.has_video and colour:
        shown = _run(
            [
                "-i",
                ffmpeg_file(path),
                "-map",
                "0:v:0",
                "-frames:v",
                "1",
                "-vf",
                "showinfo",
                "-f",
                "null",
                "-",
            ],
            timeout,
        )
        _apply_showinfo(info, shown.stderr.decode("utf-8", "replace"))
    if info.has_video and count_frames:
        args = ["-i", ffmpeg_file(path), "-map", "0:v:0"]
        if not decode:
            args += ["-c", "copy"]
        counted = _run([*args, "-f", "null", "-"], timeout)
        out = counted.stderr.decode("utf-8", "replace")
        if counted.returncode != 0:
            tail = "\n".join(out.strip().splitlines()[-5:])
            raise InputError(f"FFmpeg could not read all of {path}:\n{tail}")
        found = _FRAME_RE.findall(out)
        info.frames = int(found[-1]) if found else 0
    return info
