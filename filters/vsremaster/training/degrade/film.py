"""Film and tape damage as numpy layers: scratches, fragments, lines, dust, snow, blotches.

The renderers behind :mod:`.damage`'s VapourSynth generators, usable without VapourSynth (the
descratch training draws them on torch-free numpy windows). Every kind is drawn into a
*layer* ``(T, C)`` on the luma grid, applied as ``damaged = clean · T + C`` on the 8-bit
scale, so kinds stack in the order drawn. Models of the damage follow the old-film
restoration literature (A. Kokaram, "Motion Picture Restoration", Springer 1998: line
scratches as persistent, nearly vertical lines with a smooth horizontal profile; dirt and
sparkle as single-frame impulses; blotches as local brightness changes):

- **scratches** (:func:`scratch_events`): thin bright or dark lines that persist for 5-40
  frames, drift sideways (steady drift plus projector weave), fade and break up along their
  length, flicker, and may be **cut into fragments** that are shifted sideways against each
  other (a scratch re-made in a splice or a re-scan);
- **lines**: the same events spanning the whole frame height, straight, long-lived and
  nearly still: the vertical lines a worn telecine or a tape head leaves;
- **dust** (:func:`draw_dust`): single-frame blobs and hairs, sharp or out of focus;
- **snow** (:func:`draw_snow`): single-frame specks and short horizontal streaks;
- **blotches** (:func:`draw_blotches`): single-frame soft regions of changed brightness
  (a stain, a flare in one frame), a gain of 0.75-0.9 or 1.1-1.3.

:class:`FilmDamage` draws a :class:`DamageMix` of all of them for a clip or a training
window, seeded so frame ``n`` is the same in any request order.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import cv2
import numpy as np

__all__ = ["DamageMix", "FilmDamage", "Layer", "draw_blotches", "draw_dust", "draw_snow",
           "layer", "scratch_events"]

Range = tuple[float, float]
Layer = tuple[np.ndarray, np.ndarray]
"""``(T, C)`` float32 on the luma grid: damaged = clean · T + C (8-bit scale)."""


def layer(shape: tuple[int, int]) -> Layer:
    """An empty layer (T = 1, C = 0) of ``shape`` (rows, columns)."""
    return np.ones(shape, np.float32), np.zeros(shape, np.float32)


def _over(t: np.ndarray, c: np.ndarray, alpha: np.ndarray, value: float | np.ndarray,
          y0: int, x0: int) -> None:
    """Composite ``alpha`` (a patch at row y0, column x0, may stick out) over T, C in place."""
    h, w = t.shape
    ph, pw = alpha.shape
    ya, xa, yb, xb = max(y0, 0), max(x0, 0), min(y0 + ph, h), min(x0 + pw, w)
    if ya >= yb or xa >= xb:
        return
    a = alpha[ya - y0 : yb - y0, xa - x0 : xb - x0]
    if isinstance(value, np.ndarray):
        value = value[ya - y0 : yb - y0, xa - x0 : xb - x0]
    t[ya:yb, xa:xb] *= 1 - a
    c[ya:yb, xa:xb] = c[ya:yb, xa:xb] * (1 - a) + a * value


def _uniform(rng: np.random.Generator, r: Range) -> float:
    return float(rng.uniform(r[0], r[1])) if r[1] > r[0] else float(r[0])


def _tone(rng: np.random.Generator, bright: bool) -> float:
    """Target luma of bright (white) or dark (black) damage, 8-bit scale.

    At or beyond the nominal black and white (16/235), so bright damage is brighter and
    dark damage darker than (nearly) any picture content under it, as light through a
    scratch or the shadow of dirt is.
    """
    return float(rng.uniform(235, 255) if bright else rng.uniform(0, 16))


def _horizontal_blur(a: np.ndarray, sigma: float) -> np.ndarray:
    if sigma < 0.2:
        return a
    radius = int(math.ceil(3 * sigma))
    k = cv2.getGaussianKernel(2 * radius + 1, sigma, cv2.CV_32F)
    return cv2.sepFilter2D(a, -1, k, np.ones((1, 1), np.float32), borderType=cv2.BORDER_CONSTANT)


@dataclass(frozen=True, slots=True)
class Scratch:
    """One scratch: where and how it looks, and how it moves over its frames."""

    start: int
    frames: int
    x: np.ndarray  # centre column at the top row, one per frame of its life
    slope: float  # columns per row (tilt)
    top: int
    bottom: int
    width: float
    blur: float
    opacity: float
    tone: float
    strength: np.ndarray  # per-row opacity modulation, bottom - top values in 0-1
    jog: np.ndarray | None = None  # per-row sideways shift of cut-and-merged fragments, px

    def live(self, n: int) -> bool:
        return self.start <= n < self.start + self.frames

    def draw(self, n: int, t: np.ndarray, c: np.ndarray, rng: np.random.Generator) -> None:
        rows = np.arange(self.top, self.bottom, dtype=np.float32)
        xc = self.x[n - self.start] + self.slope * (rows - self.top)
        if self.jog is not None:
            xc = xc + self.jog
        reach = self.width / 2 + 3 * self.blur + 2
        x0 = int(math.floor(float(xc.min()) - reach))
        x1 = int(math.ceil(float(xc.max()) + reach)) + 1
        dx = np.arange(x0, x1, dtype=np.float32)[None, :] - xc[:, None]
        half = self.width / 2
        # Exact coverage of each pixel [x-0.5, x+0.5] by the line [xc-half, xc+half].
        cover = np.clip(np.minimum(dx + 0.5, half) - np.maximum(dx - 0.5, -half), 0, 1)
        cover = _horizontal_blur(cover.astype(np.float32), self.blur)
        flicker = np.float32(self.opacity * rng.uniform(0.75, 1.0))
        alpha = cover * (self.strength[:, None] * flicker)
        _over(t, c, alpha, self.tone, self.top, x0)


def _fragments(rng: np.random.Generator, span: int, strength: np.ndarray,
               width: float) -> tuple[np.ndarray, np.ndarray]:
    """Cut a scratch into 2-5 pieces: gaps of a few rows between them, each piece shifted
    sideways by up to 3 widths (a spliced or re-scanned scratch)."""
    pieces = int(rng.integers(2, 6))
    cuts = np.sort(rng.choice(np.arange(8, max(span - 8, 9)), size=pieces - 1, replace=False)) \
        if span > 16 + pieces else np.array([], int)
    jog = np.zeros(span, np.float32)
    strength = strength.copy()
    for cut in cuts:
        jog[cut:] += rng.uniform(-3, 3) * max(width, 1.0)
        gap = int(rng.integers(0, 12))
        strength[cut : cut + gap] = 0
    return jog, strength


def scratch_events(
    rng: np.random.Generator, shape: tuple[int, int], num_frames: int, *, rate: float,
    duration: tuple[int, int], width: Range, length: Range, opacity: Range, blur: Range,
    drift: float, bright: float, fragments: float = 0.0,
) -> list[Scratch]:
    """Scratches starting as a Poisson process (``rate`` per frame; some already running at
    frame 0), each living ``duration`` frames, with the looks in the ranges given; a share
    ``fragments`` of them cut into shifted pieces. See :func:`.damage.add_scratches`."""
    h, w = shape
    events: list[Scratch] = []
    first = -duration[1]  # scratches already running when the clip starts
    counts = rng.poisson(rate, num_frames - first)
    starts = np.repeat(np.arange(first, num_frames), counts)
    for start in starts:
        frames = int(rng.integers(duration[0], duration[1] + 1))
        if start + frames <= 0:
            continue
        # Sideways motion: a steady drift plus a small random walk (projector weave).
        velocity = rng.uniform(-drift, drift)
        walk = np.cumsum(rng.normal(0, drift / 3 + 0.05, frames))
        x = rng.uniform(0.02 * w, 0.98 * w) + velocity * np.arange(frames) + walk
        span = int(round(_uniform(rng, length) * h))
        span = max(8, min(h, span))
        top = int(rng.integers(0, h - span + 1))
        # Strength varies along the scratch (it fades and breaks up): smooth random profile.
        knots = rng.uniform(0.35, 1.0, span // 24 + 2)
        strength = np.interp(np.linspace(0, len(knots) - 1, span), np.arange(len(knots)), knots)
        taper = np.minimum(1, np.minimum(np.arange(span) + 1, span - np.arange(span)) / 4)
        is_bright = bool(rng.random() < bright)
        scratch_width = _uniform(rng, width)
        strength = (strength * taper).astype(np.float32)
        jog = None
        if fragments and rng.random() < fragments:
            jog, strength = _fragments(rng, span, strength, scratch_width)
        events.append(
            Scratch(
                start=int(start), frames=frames, x=x.astype(np.float32),
                slope=float(rng.normal(0, 0.004)), top=top, bottom=top + span,
                width=scratch_width, blur=_uniform(rng, blur),
                opacity=_uniform(rng, opacity), tone=_tone(rng, is_bright),
                strength=strength, jog=jog,
            )
        )
    return events


def _blob(rng: np.random.Generator, radius: float, hair: bool) -> np.ndarray:
    """Coverage (0-1) of one dust particle or hair, drawn 4× supersampled, antialiased."""
    ss = 4
    if hair:
        steps = int(rng.integers(6, 16))
        angle = rng.uniform(0, 2 * math.pi) + np.cumsum(rng.normal(0, 0.35, steps))
        pts = np.cumsum(np.stack([np.cos(angle), np.sin(angle)], 1) * radius * 0.6, 0)
        pts -= pts.min(0)
        size = int(math.ceil(pts.max())) + 4
        canvas = np.zeros((size * ss, size * ss), np.uint8)
        poly = ((pts + 2) * ss).astype(np.int32).reshape(-1, 1, 2)
        thick = int(round(rng.uniform(0.8, 1.8) * ss))
        cv2.polylines(canvas, [poly], False, 255, thick, cv2.LINE_AA)
    else:
        size = int(math.ceil(2 * radius)) + 4
        canvas = np.zeros((size * ss, size * ss), np.uint8)
        centre = size * ss / 2
        for k in range(int(rng.integers(1, 5))):  # clumps of 1-4 ellipses: irregular shapes
            off = rng.normal(0, radius * 0.3, 2) * ss
            axes = (rng.uniform(0.35, 1.0, 2) * radius * ss * (0.7 if k else 1)).clip(ss / 2)
            cv2.ellipse(
                canvas, (int(centre + off[0]), int(centre + off[1])),
                (int(axes[0]), int(axes[1])), float(rng.uniform(0, 180)), 0, 360, 255, -1,
                cv2.LINE_AA,
            )
    small = cv2.resize(canvas, (size, size), interpolation=cv2.INTER_AREA)
    return small.astype(np.float32) / 255


def draw_dust(t: np.ndarray, c: np.ndarray, rng: np.random.Generator, *, rate: float,
              radius: Range, hair: float, blurred: float, opacity: Range,
              bright: float) -> None:
    """Draw a Poisson number (mean ``rate``) of dust blobs and hairs into one frame's layer.
    See :func:`.damage.add_dust` for the parameters."""
    shape = t.shape
    log_r = (math.log(radius[0]), math.log(radius[1]))
    for _ in range(rng.poisson(rate)):
        r = math.exp(_uniform(rng, log_r))
        cover = _blob(rng, r, bool(rng.random() < hair))
        if rng.random() < blurred:
            cover = cv2.GaussianBlur(cover, (0, 0), rng.uniform(0.5, 2.0))
        alpha = cover * np.float32(_uniform(rng, opacity))
        y0 = int(rng.integers(0, shape[0])) - alpha.shape[0] // 2
        x0 = int(rng.integers(0, shape[1])) - alpha.shape[1] // 2
        _over(t, c, alpha, _tone(rng, bool(rng.random() < bright)), y0, x0)


def draw_snow(t: np.ndarray, c: np.ndarray, rng: np.random.Generator, *, density: float,
              streak: tuple[int, int], opacity: Range, bright: float) -> None:
    """Draw single-frame specks (``density`` per pixel, ``streak`` px long, horizontal) into
    one frame's layer. See :func:`.damage.add_snow` for the parameters."""
    h, w = t.shape
    count = rng.poisson(density * h * w)
    ys = rng.integers(0, h, count)
    xs = rng.integers(0, w, count)
    lengths = rng.integers(streak[0], streak[1] + 1, count)
    alpha = rng.uniform(opacity[0], opacity[1], count).astype(np.float32)
    tone = np.where(rng.random(count) < bright, rng.uniform(235, 255, count),
                    rng.uniform(0, 16, count)).astype(np.float32)
    for k in range(int(lengths.max(initial=0))):
        on = lengths > k
        yy, xx = ys[on], np.minimum(xs[on] + k, w - 1)
        t[yy, xx] = 1 - alpha[on]
        c[yy, xx] = alpha[on] * tone[on]


def draw_blotches(t: np.ndarray, c: np.ndarray, rng: np.random.Generator, *, rate: float,
                  radius: Range = (8.0, 48.0), gain: Range = (0.1, 0.3)) -> None:
    """Draw a Poisson number (mean ``rate``) of single-frame blotches: soft ellipses (radius
    log-uniform in ``radius`` px, Gaussian edge) whose brightness is multiplied by
    ``1 ± g``, ``g`` uniform in ``gain``."""
    h, w = t.shape
    log_r = (math.log(radius[0]), math.log(radius[1]))
    for _ in range(rng.poisson(rate)):
        ry, rx = (math.exp(_uniform(rng, log_r)) for _ in range(2))
        size = (int(2.6 * ry) | 1, int(2.6 * rx) | 1)
        patch = np.zeros(size, np.float32)
        cv2.ellipse(patch, (size[1] // 2, size[0] // 2), (max(int(rx), 1), max(int(ry), 1)),
                    float(rng.uniform(0, 180)), 0, 360, 1.0, -1)
        patch = cv2.GaussianBlur(patch, (0, 0), 0.25 * min(rx, ry) + 1)
        g = _uniform(rng, gain) * (1 if rng.random() < 0.5 else -1)
        y0 = int(rng.integers(0, h)) - size[0] // 2
        x0 = int(rng.integers(0, w)) - size[1] // 2
        ya, xa, yb, xb = max(y0, 0), max(x0, 0), min(y0 + size[0], h), min(x0 + size[1], w)
        if ya >= yb or xa >= xb:
            continue
        factor = 1 + g * patch[ya - y0 : yb - y0, xa - x0 : xb - x0]
        t[ya:yb, xa:xb] *= factor
        c[ya:yb, xa:xb] *= factor


@dataclass(frozen=True, slots=True)
class DamageMix:
    """How much of each kind :class:`FilmDamage` draws (rates per frame; 0 turns a kind off).

    The defaults are the descratch benchmark's damage: on a 720×480 frame about 3-4
    scratches and one frame-high line on screen, 4 dust particles, 700 specks of snow, a
    blotch every third frame.
    """

    scratches: float = 0.15
    fragments: float = 0.3  # share of scratches cut into shifted pieces
    scratch_width: Range = (1.0, 3.0)
    scratch_opacity: Range = (0.35, 1.0)
    scratch_blur: Range = (0.0, 1.0)
    lines: float = 0.02
    line_opacity: Range = (0.2, 0.8)
    dust: float = 4.0
    dust_radius: Range = (1.0, 8.0)
    snow: float = 0.002
    blotches: float = 0.3
    bright: float = 0.5  # share of bright scratches, lines and dust


class FilmDamage:
    """Seeded film damage for a clip (or window) of ``num_frames`` frames of ``shape``.

    ``render(n)`` gives frame ``n``'s layer; the persistent kinds (scratches, lines) are
    planned once for the whole clip, the single-frame kinds drawn per frame from
    ``default_rng((seed, n, kind))``.
    """

    def __init__(self, shape: tuple[int, int], num_frames: int, mix: DamageMix = DamageMix(),
                 seed: int = 0) -> None:
        self.shape, self.mix, self.seed = shape, mix, seed
        rng = np.random.default_rng((seed, 0xF1))
        self.events = scratch_events(
            rng, shape, num_frames, rate=mix.scratches, duration=(5, 40),
            width=mix.scratch_width, length=(0.3, 1.0), opacity=mix.scratch_opacity,
            blur=mix.scratch_blur, drift=0.3, bright=mix.bright, fragments=mix.fragments,
        ) + scratch_events(
            rng, shape, num_frames, rate=mix.lines, duration=(40, 200), width=(0.7, 2.0),
            length=(1.0, 1.0), opacity=mix.line_opacity, blur=(0.0, 0.7), drift=0.02,
            bright=mix.bright,
        )

    def render(self, n: int) -> Layer:
        mix = self.mix
        t, c = layer(self.shape)
        rng = np.random.default_rng((self.seed, n, 0xF1))
        for s in self.events:
            if s.live(n):
                s.draw(n, t, c, rng)
        if mix.blotches:
            draw_blotches(t, c, rng, rate=mix.blotches)
        if mix.dust:
            draw_dust(t, c, rng, rate=mix.dust, radius=mix.dust_radius, hair=0.15,
                      blurred=0.5, opacity=(0.6, 1.0), bright=mix.bright)
        if mix.snow:
            draw_snow(t, c, rng, density=mix.snow, streak=(1, 3), opacity=(0.5, 1.0),
                      bright=0.8)
        return t, c
