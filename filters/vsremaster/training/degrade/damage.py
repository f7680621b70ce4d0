"""Synthetic damage with known truth: codec damage, film scratches, dust and "snow".

* :func:`compress` really encodes the clip with the bundled FFmpeg (libx264, or MPEG-2 as on
  DVDs) at a given bitrate and decodes it again, so blocking, ringing and smearing are the
  codec's own.
* :func:`add_scratches` draws vertical line scratches as a film projector or a scanner
  leaves them: thin (1-4 px), long, bright or dark, sharp or soft, often semi-transparent,
  of varying strength along their length, persisting over several frames while drifting
  sideways. :func:`add_dust` draws single-frame dust blobs and hairs (bright or dark, sharp or
  blurred); :func:`add_snow` draws single-frame speckle ("snow", drop-outs). These follow
  the film-damage models of the old-film restoration literature (e.g. Kokaram, "Motion
  Picture Restoration", Springer 1998: line scratches as persistent, nearly vertical lines
  with a smooth horizontal profile; dirt and sparkle as single-frame impulses), and each returns
  a **mask** clip, the per-pixel blend weight of the damage (GRAYS 0-1, at luma size), which
  descratch/despot training needs as its target. :func:`add_film_damage` draws every kind
  of :mod:`.film` at once (adding fragmented scratches, frame-high lines and blotches).

All generators take a YUV or GRAY clip of any depth and return one of the same format,
length and properties; damage is drawn on the 8-bit scale, in luma (chroma is pulled towards
neutral under the damage, as a scratch through the emulsion loses its colour). They are
seeded: the same seed gives the same damage on every frame, in any request order.
"""

from __future__ import annotations

import functools
import subprocess
import tempfile
from collections.abc import Callable
from fractions import Fraction
from pathlib import Path
from typing import Any, Literal

import cv2
import numpy as np
import vapoursynth as vs

from ...encode.tools import ffmpeg_exe
from ...errors import EncodeError, InputError
from ...runtime.frames import check_clip
from .film import (
    DamageMix, FilmDamage, Layer, Range, draw_dust, draw_snow, layer, scratch_events,
)
from .noise import map_planes

__all__ = ["Codec", "add_dust", "add_film_damage", "add_scratches", "add_snow", "compress"]

core = vs.core

Codec = Literal["libx264", "mpeg2"]
"""Codecs :func:`compress` can damage a clip with."""

_MPEG2_RATES = tuple(
    Fraction(n, d) for n, d in ((24000, 1001), (24, 1), (25, 1), (30000, 1001), (30, 1), (50, 1),
                                (60000, 1001), (60, 1))
)


# --------------------------------------------------------------------------------------------
# Codec damage


def _encoder_args(codec: Codec, bitrate: float, preset: str, gop: int | None) -> list[str]:
    kbps = f"{bitrate:g}k"
    if codec == "libx264":
        return ["-c:v", "libx264", "-preset", preset, "-b:v", kbps, "-g", str(gop or 250),
                "-f", "h264"]
    if codec == "mpeg2":
        # DVD-like VBR: 12-frame GOP with two B-frames, peaks up to twice the average rate
        # (maxrate equal to the average is what FFmpeg calls impossible constraints).
        peak = f"{2 * bitrate:g}k"
        return ["-c:v", "mpeg2video", "-b:v", kbps, "-maxrate", peak, "-bufsize", peak,
                "-g", str(gop or 12), "-bf", "2", "-f", "mpeg2video"]
    raise InputError(f"compress: codec must be 'libx264' or 'mpeg2', got {codec!r}")


def _run_ffmpeg(argv: list[str], what: str, log: Path, **kwargs: Any) -> subprocess.Popen[bytes]:
    """Start FFmpeg with its messages going to ``log`` (a pipe could fill up and stall it)."""
    try:
        with log.open("wb") as messages:
            return subprocess.Popen(argv, stderr=messages, **kwargs)
    except OSError as err:
        raise EncodeError(f"compress: cannot start FFmpeg to {what}: {err}") from err


def _fail(proc: subprocess.Popen[bytes], what: str, log: Path) -> EncodeError:
    err = log.read_text(errors="replace").strip() if log.is_file() else ""
    tail = " | ".join(err.splitlines()[-5:])
    return EncodeError(f"compress: FFmpeg failed to {what} (exit {proc.returncode}): {tail}")


def compress(
    clip: vs.VideoNode,
    codec: Codec = "libx264",
    bitrate: float = 500,
    *,
    preset: str = "medium",
    gop: int | None = None,
) -> vs.VideoNode:
    """Encode the clip with a real codec at a low bitrate and return the decoded frames.

    The clip is rendered to FFmpeg as 8-bit 4:2:0 (converted first if needed), encoded to
    an elementary stream in a temporary folder (libx264 single-pass ABR; or MPEG-2 with a
    12-frame GOP, two B-frames and peaks up to twice the average, as on DVD), decoded to raw
    frames in an anonymous temporary file that is memory-mapped (so the decoded clip costs
    disk, not memory, and the file disappears with the clip), and converted back to the
    input's format. The work happens when this function is called (it renders every frame
    of ``clip``); the encoded stream is deleted before it returns.

    Args:
        clip: YUV clip (any subsampling/depth; encoded as YUV420P8, so width and height must
            be even).
        codec: ``"libx264"`` (H.264) or ``"mpeg2"`` (MPEG-2 video).
        bitrate: target bitrate in kbit/s. Blocking grows as the bits per pixel fall: at
            720×480 30 fps, MPEG-2 at 600 kbit/s (0.06 bit/px) and H.264 at 200 kbit/s
            (0.02 bit/px) are clearly blocky, a third of that heavily so. For MPEG-2 at a
            frame rate it does not allow, the nearest legal rate is used and the bitrate
            scaled to keep the bits per frame.
        preset: x264 preset (libx264 only).
        gop: keyframe interval in frames (default 250 for H.264, 12 for MPEG-2).

    Returns:
        The decoded clip: same format, size, length, frame rate and frame properties as
        ``clip``.

    Raises:
        InputError: RGB/GRAY or odd-sized clip, unknown codec, bitrate <= 0.
        EncodeError: FFmpeg failed or returned a different number of frames.
    """
    fmt = check_clip(clip, "compress")
    if fmt.color_family != vs.YUV:
        raise InputError(f"compress: the clip is {fmt.name}; codecs need a YUV clip")
    if clip.width % 2 or clip.height % 2:
        raise InputError(f"compress: {clip.width}x{clip.height} is odd-sized; 4:2:0 needs even")
    if bitrate <= 0:
        raise InputError(f"compress: bitrate must be > 0 kbit/s, got {bitrate}")
    args = _encoder_args(codec, bitrate, preset, gop)
    src = clip
    if fmt.id != vs.YUV420P8:
        src = core.resize.Bicubic(clip, format=vs.YUV420P8, dither_type="error_diffusion")
    fps = Fraction(clip.fps.numerator, clip.fps.denominator) if clip.fps.numerator else None
    rate = fps or Fraction(25)
    if codec == "mpeg2" and rate not in _MPEG2_RATES:
        # MPEG-2 allows only a few frame rates (FFmpeg would drop or repeat frames to meet
        # one): encode at the nearest, with the bitrate scaled to keep the bits per frame.
        legal = min(_MPEG2_RATES, key=lambda r: abs(r - rate))
        args = _encoder_args(codec, bitrate * float(legal / rate), preset, gop)
        rate = legal
    src = core.std.AssumeFPS(src, fpsnum=rate.numerator, fpsden=rate.denominator)
    ffmpeg = str(ffmpeg_exe())
    quiet = ["-hide_banner", "-nostdin", "-loglevel", "error"]

    with tempfile.TemporaryDirectory(prefix="vsr-compress-") as tmp:
        stream, log = Path(tmp) / "stream.es", Path(tmp) / "ffmpeg.log"
        enc = _run_ffmpeg(
            [ffmpeg, *quiet, "-f", "yuv4mpegpipe", "-i", "pipe:0", *args, "-threads", "2",
             "-fps_mode", "passthrough", "-y", str(stream)],
            "encode", log, stdin=subprocess.PIPE,
        )
        assert enc.stdin is not None
        try:
            src.output(enc.stdin, y4m=True)
            enc.stdin.close()
        except (BrokenPipeError, OSError):
            enc.wait()
            raise _fail(enc, f"encode {codec}", log) from None
        except BaseException:
            enc.kill()
            enc.wait()
            raise
        if enc.wait() != 0:
            raise _fail(enc, f"encode {codec}", log)
        raw = tempfile.TemporaryFile(prefix="vsr-compress-")
        with raw:
            demuxer = "h264" if codec == "libx264" else "mpegvideo"
            dec = _run_ffmpeg(
                [ffmpeg, *quiet, "-f", demuxer, "-i", str(stream), "-fps_mode", "passthrough",
                 "-f", "rawvideo", "-pix_fmt", "yuv420p", "pipe:1"],
                "decode", log, stdout=raw,
            )
            if dec.wait() != 0:
                raise _fail(dec, f"decode the {codec} stream", log)
            frame_bytes = clip.width * clip.height * 3 // 2
            size = raw.seek(0, 2)
            if size != frame_bytes * clip.num_frames:
                raise EncodeError(
                    f"compress: {codec} round trip gave {size / frame_bytes:g} frames, "
                    f"expected {clip.num_frames}"
                )
            frames = np.memmap(raw, np.uint8, "r", shape=(clip.num_frames, frame_bytes))

    w, h = clip.width, clip.height
    cuts = (0, w * h, w * h * 5 // 4, frame_bytes)
    shapes = ((h, w), (h // 2, w // 2), (h // 2, w // 2))

    def fill(n: int, f: vs.VideoFrame) -> vs.VideoFrame:
        out = f.copy()
        data = frames[n]
        for p in range(3):
            np.copyto(np.asarray(out[p]), data[cuts[p] : cuts[p + 1]].reshape(shapes[p]))
        return out

    blank = core.std.BlankClip(src, keep=True)
    decoded = core.std.ModifyFrame(blank, blank, fill)
    if fmt.id != vs.YUV420P8:
        kwargs = {"dither_type": "error_diffusion"} if fmt.sample_type == vs.INTEGER else {}
        decoded = core.resize.Bicubic(decoded, format=fmt.id, **kwargs)
    decoded = core.std.AssumeFPS(decoded, src=clip) if fps else decoded
    # The source's picture types say nothing about the codec's; drop them.
    return core.std.RemoveFrameProps(core.std.CopyFrameProps(decoded, clip), "_PictType")


# --------------------------------------------------------------------------------------------
# Overlay damage: scratches, dust, snow (drawn by .film)


_Render = Callable[[int], Layer]
"""``render(n) -> (T, C)`` on the luma grid: output luma = input · T + C (8-bit scale)."""


def _composite(clip: vs.VideoNode, render: _Render, name: str) -> tuple[vs.VideoNode, vs.VideoNode]:
    """Apply a rendered damage layer to luma (and pull chroma to neutral); also its mask."""
    cached = functools.lru_cache(maxsize=8)(render)

    def damage(n: int, planes: list[np.ndarray]) -> list[np.ndarray]:
        t, c = cached(n)
        planes[0] = planes[0] * t + c
        for p in range(1, len(planes)):
            h, w = planes[p].shape
            tc = t if t.shape == (h, w) else cv2.resize(t, (w, h), interpolation=cv2.INTER_AREA)
            planes[p] = planes[p] * tc + np.float32(128) * (1 - tc)
        return planes

    damaged = map_planes(clip, damage, name=name)
    blank = core.std.BlankClip(clip, format=vs.GRAYS, keep=True)

    def mask(n: int, f: vs.VideoFrame) -> vs.VideoFrame:
        out = f.copy()
        np.copyto(np.asarray(out[0]), np.clip(np.abs(1 - cached(n)[0]), 0, 1))
        return out

    masks = core.std.CopyFrameProps(core.std.ModifyFrame(blank, blank, mask), clip)
    return damaged, masks


def add_scratches(
    clip: vs.VideoNode,
    rate: float = 0.15,
    *,
    duration: tuple[int, int] = (5, 40),
    width: Range = (1.0, 3.0),
    length: Range = (0.3, 1.0),
    opacity: Range = (0.35, 1.0),
    blur: Range = (0.0, 1.0),
    drift: float = 0.3,
    bright: float = 0.5,
    fragments: float = 0.0,
    seed: int = 0,
) -> tuple[vs.VideoNode, vs.VideoNode]:
    """Draw vertical line scratches that persist over frames and drift sideways.

    Scratches start at random frames (a Poisson process, ``rate`` new ones per frame on
    average; some are already running at frame 0) and each lives ``duration`` frames. Each
    has a random column, a slight tilt, a steady sideways drift plus a small random walk
    (``drift`` px/frame), a random vertical extent (``length`` × height), a width
    (``width`` px, exact pixel coverage, so sub-pixel widths are faint), a horizontal
    Gaussian blur (``blur`` px std; 0 = sharp), an opacity (1 = opaque, less =
    semi-transparent) that also varies smoothly along the scratch and flickers from frame
    to frame, and is bright (white, 235-255) or dark (black, 0-16).

    Args:
        clip: YUV or GRAY clip, any supported depth.
        rate: expected number of new scratches per frame (0.15 with 5-40 frames of life
            keeps about 3-4 on screen).
        duration: (min, max) frames a scratch persists.
        width: (min, max) width in pixels.
        length: (min, max) vertical extent as a fraction of the frame height.
        opacity: (min, max) peak opacity, 0-1.
        blur: (min, max) horizontal blur std in pixels.
        drift: maximum steady sideways drift in px/frame.
        bright: share of bright (white) scratches; the others are dark.
        fragments: share of scratches cut into 2-5 pieces shifted sideways against each
            other, with short gaps between them (spliced or re-scanned scratches).
        seed: random seed.

    Returns:
        ``(damaged, mask)``: the damaged clip (same format/properties) and a GRAYS clip at
        luma size holding each pixel's damage opacity (0 = untouched, 1 = replaced).

    Raises:
        InputError: RGB/variable-format clip, or a negative rate.
    """
    if rate < 0:
        raise InputError(f"add_scratches: rate must be >= 0, got {rate}")
    check_clip(clip, "add_scratches")
    shape = (clip.height, clip.width)
    events = scratch_events(
        np.random.default_rng((seed, 0x5C)), shape, clip.num_frames, rate=rate,
        duration=duration, width=width, length=length, opacity=opacity, blur=blur,
        drift=drift, bright=bright, fragments=fragments,
    )

    def render(n: int) -> Layer:
        t, c = layer(shape)
        rng = np.random.default_rng((seed, n, 0x5C))
        for s in events:
            if s.live(n):
                s.draw(n, t, c, rng)
        return t, c

    return _composite(clip, render, "add_scratches")


def add_dust(
    clip: vs.VideoNode,
    rate: float = 4.0,
    *,
    radius: Range = (1.0, 8.0),
    hair: float = 0.15,
    blurred: float = 0.5,
    opacity: Range = (0.6, 1.0),
    bright: float = 0.5,
    seed: int = 0,
) -> tuple[vs.VideoNode, vs.VideoNode]:
    """Draw single-frame dust blobs and hairs (each appears on one frame only).

    Each frame gets a Poisson number (mean ``rate``) of particles at uniform random places:
    irregular blobs (clumps of 1-4 ellipses, radius log-uniform in ``radius``) or, with
    probability ``hair``, thin curved hairs about 6-16 × 0.6 × radius long. A share
    ``blurred`` are out of focus (Gaussian blur, std 0.5-2 px), the rest sharp (antialiased
    edges). Each is bright (white) or dark (black) with the given opacity.

    Args:
        clip: YUV or GRAY clip, any supported depth.
        rate: mean number of particles per frame.
        radius: (min, max) blob radius in pixels.
        hair: share of hairs among the particles.
        blurred: share of out-of-focus particles.
        opacity: (min, max) opacity, 0-1.
        bright: share of bright particles.
        seed: random seed.

    Returns:
        ``(damaged, mask)`` as for :func:`add_scratches`.

    Raises:
        InputError: RGB/variable-format clip, or a negative rate.
    """
    if rate < 0:
        raise InputError(f"add_dust: rate must be >= 0, got {rate}")
    check_clip(clip, "add_dust")
    shape = (clip.height, clip.width)

    def render(n: int) -> Layer:
        t, c = layer(shape)
        draw_dust(t, c, np.random.default_rng((seed, n, 0xD5)), rate=rate, radius=radius,
                  hair=hair, blurred=blurred, opacity=opacity, bright=bright)
        return t, c

    return _composite(clip, render, "add_dust")


def add_snow(
    clip: vs.VideoNode,
    density: float = 0.002,
    *,
    streak: tuple[int, int] = (1, 3),
    opacity: Range = (0.5, 1.0),
    bright: float = 0.8,
    seed: int = 0,
) -> tuple[vs.VideoNode, vs.VideoNode]:
    """Draw single-frame speckle ("snow"): isolated specks, short horizontal streaks.

    Like the sparkle of a worn print or the "snow" of a weak tape signal: each frame gets a
    Poisson number (mean ``density`` × pixels) of specks at random places, each 1 pixel
    tall and ``streak`` pixels long, mostly bright.

    Args:
        clip: YUV or GRAY clip, any supported depth.
        density: specks per pixel per frame (0.002 = about 700 on a 720×480 frame).
        streak: (min, max) speck length in pixels, horizontal.
        opacity: (min, max) opacity, 0-1.
        bright: share of bright specks.
        seed: random seed.

    Returns:
        ``(damaged, mask)`` as for :func:`add_scratches`.

    Raises:
        InputError: RGB/variable-format clip, or a negative density.
    """
    if density < 0:
        raise InputError(f"add_snow: density must be >= 0, got {density}")
    check_clip(clip, "add_snow")
    h, w = clip.height, clip.width

    def render(n: int) -> Layer:
        t, c = layer((h, w))
        draw_snow(t, c, np.random.default_rng((seed, n, 0x54)), density=density, streak=streak,
                  opacity=opacity, bright=bright)
        return t, c

    return _composite(clip, render, "add_snow")


def add_film_damage(
    clip: vs.VideoNode, mix: DamageMix = DamageMix(), *, seed: int = 0,
) -> tuple[vs.VideoNode, vs.VideoNode]:
    """Draw every kind of :mod:`.film` damage at once: scratches (some cut into shifted
    fragments), frame-high vertical lines, blotches, dust and snow, in the amounts of ``mix``
    (:class:`~.film.DamageMix`; its defaults are the descratch benchmark's damage).

    Returns:
        ``(damaged, mask)`` as for :func:`add_scratches`; a blotch's mask is its relative
        brightness change.

    Raises:
        InputError: RGB/variable-format clip.
    """
    check_clip(clip, "add_film_damage")
    film = FilmDamage((clip.height, clip.width), clip.num_frames, mix, seed)
    return _composite(clip, film.render, "add_film_damage")
