"""Synthetic flashes and strobes, and real clips joined at known cuts.

Test and training inputs with a known truth for scene-change detection (and for any stage
that must not be upset by flashes, such as a motion-compensated denoiser):

- :func:`add_flashes` lights chosen frames the way a camera flash, a coloured stage light or
  a strobe train does, in linear light, leaving every other frame bit-exact;
- :func:`flash_schedule` says which frames :func:`add_flashes` alters, and how strongly;
- :func:`concat_scenes` joins real excerpts into one clip and returns the frames where the
  new shots start (the true cuts).

Everything is deterministic: the same arguments (and ``seed``) give the same frames.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from enum import StrEnum
from fractions import Fraction

import numpy as np
import vapoursynth as vs

from ...errors import InputError
from ...runtime.frames import check_clip, from_model, to_model

__all__ = ["FlashKind", "add_flashes", "flash_schedule", "concat_scenes"]

core = vs.core

_GAMMA = 2.2
"""Power law used to go to linear light and back (an approximation of BT.709/sRGB)."""

_CAMERA_DECAY = (1.0, 0.45)
"""Relative intensity of a 2-frame camera flash: the flash, then its afterglow."""

_STAGE_COLOURS = np.array(
    [
        (1.0, 0.1, 0.8),  # magenta
        (0.15, 0.25, 1.0),  # deep blue
        (1.0, 0.12, 0.05),  # red
        (0.1, 1.0, 0.2),  # green
        (1.0, 0.55, 0.05),  # amber
        (0.05, 0.9, 1.0),  # cyan
    ],
    dtype=np.float32,
)
"""Linear-light RGB of saturated stage-light gels (brightest channel 1)."""


class FlashKind(StrEnum):
    """What lights the frames.

    Attributes:
        CAMERA: a photographer's flash: the whole frame brightens for ``duration`` (1-2)
            frames, up to about 3 stops at ``strength=1``, clipping the highlights; the
            second frame of a 2-frame flash is its weaker afterglow.
        STAGE: a coloured stage light (magenta, blue, red, green, amber or cyan gel, drawn
            from ``seed``) throwing a soft elliptical beam (Gaussian, FWHM 30-70 % of the
            frame width, at a random place) over part of the frame for ``duration`` frames:
            a strong colour cast and haze glow there, the rest of the frame as it was.
        STROBE: a strobe train: ``count`` one-frame white flashes ``period`` frames apart,
            starting at each given frame.
    """

    CAMERA = "camera"
    STAGE = "stage"
    STROBE = "strobe"


@dataclass(frozen=True, slots=True)
class _Light:
    """One lit frame: relative intensity and, for stage light, colour and beam."""

    intensity: float
    colour: tuple[float, float, float] = (1.0, 1.0, 1.0)
    beam: tuple[float, float, float, float] | None = None  # cx, cy, sx, sy: frame fractions


def flash_schedule(
    frames: Iterable[int],
    *,
    kind: FlashKind | str = FlashKind.CAMERA,
    duration: int = 1,
    count: int = 4,
    period: int = 3,
) -> dict[int, float]:
    """Frames that :func:`add_flashes` alters with these arguments, and how strongly.

    Args:
        frames: first frame of each flash (of each train for ``STROBE``).
        kind: see :class:`FlashKind`.
        duration: frames per flash for ``CAMERA`` and ``STAGE``, 1 or 2.
        count: flashes per train (``STROBE``), >= 1.
        period: frames from one flash of a train to the next (``STROBE``), >= 2.

    Returns:
        ``{frame: intensity}``, intensity in (0, 1] relative to ``strength``; where flashes
        overlap the stronger one wins.

    Raises:
        InputError: ``duration``, ``count`` or ``period`` out of range, or a negative frame.
    """
    return {n: light.intensity for n, light in _lights(frames, FlashKind(kind), duration,
                                                      count, period, seed=0).items()}


def _lights(
    frames: Iterable[int], kind: FlashKind, duration: int, count: int, period: int, seed: int
) -> dict[int, _Light]:
    if duration not in (1, 2):
        raise InputError(f"add_flashes: duration must be 1 or 2 frames, got {duration}")
    if count < 1:
        raise InputError(f"add_flashes: count must be >= 1, got {count}")
    if period < 2:
        raise InputError(f"add_flashes: period must be >= 2 frames, got {period}")
    rng = np.random.default_rng(seed)
    out: dict[int, _Light] = {}
    for start in sorted(frames):
        if start < 0:
            raise InputError(f"add_flashes: frame numbers must be >= 0, got {start}")
        if kind == FlashKind.STROBE:
            lit = [(start + k * period, 1.0) for k in range(count)]
        elif kind == FlashKind.CAMERA:
            lit = [(start + k, _CAMERA_DECAY[k]) for k in range(duration)]
        else:
            lit = [(start + k, 1.0) for k in range(duration)]
        colour: tuple[float, float, float] = (1.0, 1.0, 1.0)
        beam = None
        if kind == FlashKind.STAGE:
            colour = tuple(float(c) for c in _STAGE_COLOURS[rng.integers(len(_STAGE_COLOURS))])
            cx, cy = rng.uniform(0.2, 0.8), rng.uniform(0.2, 0.8)
            sx = rng.uniform(0.12, 0.3)  # Gaussian sigma: beam FWHM 30-70 % of the width
            beam = (float(cx), float(cy), float(sx), float(sx * rng.uniform(0.8, 1.6)))
        for n, intensity in lit:
            if n not in out or out[n].intensity < intensity:
                out[n] = _Light(intensity, colour, beam)
    return out


def add_flashes(
    clip: vs.VideoNode,
    frames: Iterable[int],
    *,
    strength: float = 0.7,
    kind: FlashKind | str = FlashKind.CAMERA,
    duration: int = 1,
    count: int = 4,
    period: int = 3,
    seed: int = 0,
) -> vs.VideoNode:
    """Light the given frames with a camera flash, a coloured stage light or a strobe train.

    The light is added in linear light (gamma 2.2 approximation): a lit pixel becomes
    ``L * (1 + g*m*c) + v*m*c`` clipped to 1, where ``L`` is its linear RGB, ``c`` the
    light's colour, ``m`` its beam (1 over the whole frame for ``CAMERA`` and ``STROBE``, a
    soft elliptical Gaussian for ``STAGE``), ``g`` the exposure gain (``7*strength*i`` for
    white light, i.e. up to 3 stops; ``6*strength*i`` for stage light) and ``v`` a haze
    veil (``0.05*strength*i`` white, ``0.25*strength*i`` stage), with ``i`` the frame's
    intensity from :func:`flash_schedule`. This follows the physics of added illumination
    (reflected light scales with the light falling on the scene) rather than any
    particular paper. Frames outside the schedule are returned untouched (bit-exact);
    frame numbers past the clip's end are ignored. Lit frames are converted to RGB and
    back with :func:`vsremaster.runtime.frames.to_model` / ``from_model`` (the frames' own
    ``_Matrix``, resolution default when absent), so they carry a little dither noise.

    Args:
        clip: constant-format YUV/RGB/GRAY clip, 8-16 bit integer or 16/32 bit float.
        frames: first frame of each flash (of each train for ``STROBE``).
        strength: 0-1, how bright the light is (1: +3 stops, large areas clip to white).
        kind: see :class:`FlashKind`.
        duration: frames per flash for ``CAMERA`` and ``STAGE``, 1 or 2.
        count: flashes per train (``STROBE``).
        period: frames between flashes of a train (``STROBE``), >= 2.
        seed: draws the stage-light colours and beam positions.

    Returns:
        A clip of the same format, size, length and frame properties.

    Raises:
        InputError: unsupported clip, ``strength`` outside (0, 1], or bad schedule arguments.
    """
    check_clip(clip, "add_flashes")
    if not 0 < strength <= 1:
        raise InputError(f"add_flashes: strength must be in (0, 1], got {strength}")
    kind = FlashKind(kind)
    lights = {
        n: light
        for n, light in _lights(frames, kind, duration, count, period, seed).items()
        if n < clip.num_frames
    }
    if not lights:
        return clip
    rgb, prepared = to_model(clip, 3, "add_flashes", progressive=False)
    w, h = clip.width, clip.height
    ys = ((np.arange(h, dtype=np.float32) + 0.5) / h)[:, None]
    xs = ((np.arange(w, dtype=np.float32) + 0.5) / w)[None, :]
    white = kind != FlashKind.STAGE
    gain, veil = (7.0, 0.05) if white else (6.0, 0.25)

    def light_frame(n: int, f: vs.VideoFrame) -> vs.VideoFrame:
        light = lights.get(n)
        if light is None:
            return f
        i = strength * light.intensity
        if light.beam is None:
            mask: np.ndarray | float = 1.0
        else:
            cx, cy, sx, sy = light.beam
            mask = np.exp(-0.5 * (((xs - cx) / sx) ** 2 + ((ys - cy) / sy) ** 2))
        out = f.copy()
        for p, c in enumerate(light.colour):
            lin = np.clip(np.asarray(f[p]), 0.0, 1.0) ** _GAMMA
            lin = lin * (1.0 + gain * i * c * mask) + veil * i * c * mask
            np.asarray(out[p])[:] = np.minimum(lin, 1.0) ** (1.0 / _GAMMA)
        return out

    lit = from_model(core.std.ModifyFrame(rgb, rgb, light_frame), prepared)
    return core.std.FrameEval(clip, lambda n: lit if n in lights else clip, clip_src=[clip, lit])


def concat_scenes(
    excerpts: Sequence[vs.VideoNode],
    *,
    width: int | None = None,
    height: int | None = None,
    format: int | None = None,  # noqa: A002 - the VapourSynth argument name
    fps: Fraction | None = None,
) -> tuple[vs.VideoNode, list[int]]:
    """Join excerpts of real footage into one clip whose cuts are known.

    Each excerpt is scaled to cover ``width``×``height`` and centre-cropped (aspect kept, no
    borders: borders would make different shots look alike), converted to ``format``
    (Bicubic) and retimed to ``fps`` (frames are kept, not dropped or repeated). The first
    frame of each joined excerpt gets ``_SceneChangePrev=1`` and the last ``_SceneChangeNext=1``
    (the VapourSynth scene-change props), all other frames 0 — the truth a detector is scored
    against. Cuts inside an excerpt (a multi-shot source) are the caller's to add.

    Args:
        excerpts: clips (e.g. ``clip[100:160]``) of one colour family, constant format.
        width, height: output size (default: the first excerpt's).
        format: output format id, same colour family (default: the first excerpt's).
        fps: output frame rate (default: the first excerpt's).

    Returns:
        ``(clip, cuts)``: the joined clip, and the first frame of every excerpt after the
        first (ascending, excluding 0).

    Raises:
        InputError: no excerpts, a variable-format excerpt, or mixed colour families.
    """
    if not excerpts:
        raise InputError("concat_scenes: give at least one excerpt")
    first = excerpts[0]
    check_clip(first, "concat_scenes")
    width, height = width or first.width, height or first.height
    fmt = core.get_video_format(format if format is not None else first.format.id)
    fps = Fraction(fps) if fps is not None else Fraction(first.fps_num, first.fps_den)
    parts: list[vs.VideoNode] = []
    cuts: list[int] = []
    start = 0
    for k, clip in enumerate(excerpts):
        src = check_clip(clip, "concat_scenes")
        if src.color_family != fmt.color_family:
            raise InputError(
                f"concat_scenes: excerpt {k} is {src.name} but the output is {fmt.name}; "
                "convert every excerpt to one colour family first"
            )
        scale = max(width / clip.width, height / clip.height)
        cw, ch = width / scale, height / scale  # source window that covers the output
        clip = core.resize.Bicubic(
            clip, width, height, format=fmt.id,
            src_left=(clip.width - cw) / 2, src_top=(clip.height - ch) / 2,
            src_width=cw, src_height=ch,
        )
        parts.append(core.std.AssumeFPS(clip, fpsnum=fps.numerator, fpsden=fps.denominator))
        if k:
            cuts.append(start)
        start += clip.num_frames
    joined = core.std.Splice(parts)
    starts = frozenset(cuts)

    def mark(n: int, f: vs.VideoFrame) -> vs.VideoFrame:
        f = f.copy()
        f.props["_SceneChangePrev"] = int(n in starts)
        f.props["_SceneChangeNext"] = int(n + 1 in starts)
        return f

    return core.std.ModifyFrame(joined, joined, mark), cuts
