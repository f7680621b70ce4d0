"""The descratcher's network, its training data and its recipe.

**Task.** Given five frames ``t-2 … t+2`` of luma with film or tape damage, find the damage
in frame ``t`` and replace it, leaving every undamaged pixel as it is.

**Network** (``DescratchNet``, made by :func:`build`): the shared U-Net (:mod:`.nets`) on the
five frames plus two per-pixel temporal medians (of ``t-1, t, t+1`` and of ``t-2, t, t+2``:
where nothing moves they already remove single-frame spots, and the network learns where to
trust them), with two outputs per pixel: a damage probability ``a`` (sigmoid; the tail's bias
starts at -4, so an untrained network finds no damage) and a replacement value ``r`` (the
current frame plus a learned correction). The filter outputs ``cur + strength · a · (r -
cur)``, so a pixel the network does not flag is passed through, and ``a`` is the mask users
can inspect.

**Data** (:class:`DamageSampler`): clean five-frame windows of real footage
(:class:`~.data.WindowSampler`: real clips and photographs moved along camera paths of up to
16 px/frame), to which, before any damage and so part of the truth:

- *real vertical structure*: with probability 0.6, one to three vertical objects (poles,
  strings: 1-5 px wide; or, one in three, bars 12-60 px wide whose sides are long straight
  edges; tilted up to 2°, opaque or nearly, tones a moderate step from their surroundings,
  some with a shadow line beside them), still or moving sideways with the scene up to
  3 px/frame;
- *global brightness changes* (flicker): with probability 0.3 each frame's gain varies by a
  few per cent;
- mild sensor noise (Gaussian, σ up to 3 on the 8-bit scale) with probability 0.5,

then the damage of :class:`~.degrade.film.FilmDamage` with a random mix per window (each
kind's rate drawn uniformly from zero to about twice the benchmark's density for the crop's
area; a tenth of the windows stay clean): persistent drifting scratches, a third of them cut
into shifted fragments, frame-high vertical lines, blotches (local brightness changes), dust
and hairs, snow.

**Loss**: Charbonnier (ε = 1e-3) of the output against the clean frame, damaged pixels
weighted 10× (they are a few per cent of the pixels); plus the Charbonnier of the
replacement ``r`` itself over the damaged pixels (so the fill learns without waiting for the
detector); plus 0.2 × binary cross-entropy of ``a`` against the visible damage
(``|damaged - clean|`` over 4 levels, clipped to 1).

**Recipe**: ``python -m vsremaster.training descratch footage|train|export`` (see ``--help``).
"""

from __future__ import annotations

import math

import numpy as np

from .degrade.film import DamageMix, FilmDamage, Scratch, layer

__all__ = [
    "FRAMES", "RECIPE", "DamageSampler", "build", "export", "loss", "make_sampler", "random_mix",
]

FRAMES = 5
"""Frames the network sees: ``t-2 … t+2``."""

RECIPE = {
    "model_id": "vsr-descratch-v1",
    "widths": (24, 48, 64),
    "blocks": (1, 2, 2),
    "size": (96, 128),
    "max_motion": 16.0,
    "batch": 16,
    "steps": 25000,
    "warmup": 300,
    "lr": 1e-3,
    "seed": 0,
}
"""The configuration that produced ``onnx/vsr-descratch-v1.onnx``."""

_VISIBLE = 4.0  # levels (8-bit scale) of change at which damage counts as fully visible
_BCE_WEIGHT = 0.2
_DAMAGE_WEIGHT = 9.0  # damaged pixels weigh 10× in the Charbonnier term (they are few)


def _torch():
    import torch

    return torch


def _net():
    from .nets import unet

    torch = _torch()

    class DescratchNet(unet()):
        """Five frames ``(N, 5, H, W)`` in 0–1 (``H``, ``W`` multiples of 4) -> ``(N, 2, H,
        W)``: damage probability of frame 2 (0–1) and its replacement value."""

        def __init__(self, widths=(24, 48, 64), blocks=(1, 2, 2)) -> None:
            super().__init__(FRAMES + 2, 2, widths, blocks)
            torch.nn.init.constant_(self.tail.bias[:1], -4.0)

        def forward(self, frames):
            cur = frames[:, 2:3]
            near = _median3(frames[:, 1:2], cur, frames[:, 3:4])
            far = _median3(frames[:, 0:1], cur, frames[:, 4:5])
            y = self.tail(self.features(torch.cat((frames, near, far), 1)))
            return torch.cat((torch.sigmoid(y[:, :1]), cur + y[:, 1:]), 1)

    return DescratchNet


def _median3(a, b, c):
    """Per-pixel median of three tensors (min/max only, so it exports to any ONNX opset)."""
    torch = _torch()
    return torch.maximum(torch.minimum(a, b), torch.minimum(torch.maximum(a, b), c))


def build(recipe: dict = RECIPE):
    """A fresh ``DescratchNet`` (a ``torch.nn.Module``) with the recipe's widths and blocks."""
    return _net()(recipe["widths"], recipe["blocks"])


def random_mix(rng: np.random.Generator, shape: tuple[int, int]) -> DamageMix:
    """A damage mix for one training window: every kind's rate uniform in [0, about twice
    the benchmark's density for a ``shape`` crop]; one window in ten gets no damage."""
    if rng.random() < 0.1:
        return DamageMix(scratches=0, lines=0, dust=0, snow=0, blotches=0)
    bench = DamageMix()
    area = shape[0] * shape[1] / (720 * 480)
    across = shape[1] / 720  # scratches and lines are spread over the width
    u = rng.random(5)
    return DamageMix(
        scratches=float(u[0] * 2 * max(bench.scratches * across, 0.06)),
        lines=float(u[1] * 2 * max(bench.lines * across, 0.01)),
        dust=float(u[2] * 2 * max(bench.dust * area, 0.8)),
        snow=float(u[3] * 2 * bench.snow),
        blotches=float(u[4] * 2 * max(bench.blotches * area, 0.15)),
    )


def _structure(rng: np.random.Generator, frames: np.ndarray) -> np.ndarray:
    """Draw 1-3 thin vertical objects into clean frames ``(F, H, W)`` (8-bit scale), moving
    with a sideways velocity of their own: real content the network must keep."""
    f, h, w = frames.shape
    out = frames.copy()
    mid = (f - 1) / 2
    for _ in range(int(rng.integers(1, 4))):
        velocity = 0.0 if rng.random() < 0.4 else rng.uniform(-3, 3)
        x = rng.uniform(4, w - 4) + velocity * (np.arange(f) - mid)
        span = int(h if rng.random() < 0.6 else rng.integers(h // 3, h + 1))
        top = int(rng.integers(0, h - span + 1))
        width = rng.uniform(12.0, 60.0) if rng.random() < 0.3 else rng.uniform(1.0, 5.0)
        slope = math.tan(math.radians(rng.uniform(-2, 2)))
        level = float(np.median(frames[f // 2]))
        step = rng.uniform(25, 90) * (1 if rng.random() < 0.5 else -1)
        tone = float(np.clip(level + step, 20, 230))
        obj = Scratch(start=0, frames=f, x=x.astype(np.float32), slope=slope, top=top,
                      bottom=top + span, width=width, blur=rng.uniform(0, 0.8),
                      opacity=rng.uniform(0.85, 1.0), tone=tone,
                      strength=np.ones(span, np.float32))
        parts = [obj]
        if rng.random() < 0.3:  # a shadow line beside it
            parts.append(Scratch(start=0, frames=f, x=obj.x + width + 1.5, slope=slope, top=top,
                                 bottom=top + span, width=1.5, blur=0.7, opacity=0.5,
                                 tone=float(np.clip(level - abs(step), 10, 200)),
                                 strength=obj.strength))
        for n in range(f):
            t, c = layer((h, w))
            steady = np.random.default_rng(0)  # no frame-to-frame flicker: it is an object
            for part in parts:
                part.draw(n, t, c, steady)
            out[n] = out[n] * t + c
    return out


class DamageSampler:
    """Training batches ``(damaged (B, 5, H, W), clean (B, 1, H, W), visible (B, 1, H, W))``
    in 0–1, from a clean-window sampler (``sample(batch) -> (B, 5, H, W)`` torch tensor, e.g.
    :class:`~.data.WindowSampler`); see the module docstring for what is drawn."""

    def __init__(self, windows, *, seed: int = 0) -> None:
        self.windows, self.seed = windows, seed
        self.rng = np.random.default_rng((seed, 0xDE5))

    def reseed(self, stream: int) -> None:
        """Start random stream ``stream`` (one per data-loading worker) here and in the
        window sampler."""
        self.rng = np.random.default_rng((self.seed, 0xDE5, stream))
        self.windows.reseed(stream)

    def window(self, clean: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Damage one clean window ``(F, H, W)`` in 0–1: returns ``(damaged, clean)``, the
        clean one with its structure, flicker and noise (all part of the truth)."""
        rng = self.rng
        x = clean.astype(np.float32) * 255
        if rng.random() < 0.6:
            x = _structure(rng, x)
        if rng.random() < 0.3:
            x = x * (1 + rng.normal(0, 0.03, (len(x), 1, 1))).astype(np.float32)
        if rng.random() < 0.5:
            x = x + rng.normal(0, rng.uniform(0, 3), x.shape).astype(np.float32)
        x = np.clip(x, 0, 255)
        film = FilmDamage(x.shape[1:], len(x), random_mix(rng, x.shape[1:]),
                          seed=int(rng.integers(1 << 31)))
        damaged = np.empty_like(x)
        for n in range(len(x)):
            t, c = film.render(n)
            damaged[n] = x[n] * t + c
        return np.clip(damaged, 0, 255) / 255, x / 255

    def __call__(self, batch: int):
        torch = _torch()
        clean = self.windows(batch).cpu().numpy()
        pairs = [self.window(w) for w in clean]
        damaged = np.stack([d for d, _ in pairs]).astype(np.float32)
        truth = np.stack([c[FRAMES // 2 : FRAMES // 2 + 1] for _, c in pairs])
        visible = np.clip(np.abs(damaged[:, 2:3] - truth) * (255 / _VISIBLE), 0, 1)
        as_tensor = lambda a: torch.from_numpy(np.ascontiguousarray(a, np.float32))  # noqa: E731
        return as_tensor(damaged), as_tensor(truth), as_tensor(visible)


def make_sampler(footage, device: str = "cpu", recipe: dict = RECIPE) -> DamageSampler:
    """The recipe's training batches from the ``footage`` directory (damage drawn on the
    CPU)."""
    from .data import WindowSampler, load_luma

    return DamageSampler(WindowSampler(load_luma(footage), size=recipe["size"], seed=recipe["seed"],
                                       max_motion=recipe["max_motion"]), seed=recipe["seed"])


def loss(model, batch):
    """Charbonnier (ε = 1e-3) of the output against the truth, damaged pixels weighted 10×,
    + Charbonnier of the replacement on the damaged pixels alone + 0.2 × BCE of the damage
    probability against the visible damage."""
    torch = _torch()
    damaged, truth, visible = (b.to(next(model.parameters()).device) for b in batch)
    a, r = model(damaged).float().split(1, 1)
    cur = damaged[:, 2:3]
    diff = cur + a * (r - cur) - truth
    a = a.clamp(1e-6, 1 - 1e-6)  # BCE written out: torch refuses its BCE under autocast
    bce = -(visible * torch.log(a) + (1 - visible) * torch.log(1 - a)).mean()
    weight = 1 + _DAMAGE_WEIGHT * visible
    charbonnier = (torch.sqrt(diff * diff + 1e-6) * weight).sum() / weight.sum()
    fill = r - truth  # the replacement, learned directly where the damage is
    fill = (torch.sqrt(fill * fill + 1e-6) * visible).sum() / (visible.sum() + 1.0)
    return charbonnier + fill + _BCE_WEIGHT * bce


def export(checkpoint, onnx_path, metrics: str = "") -> dict:
    """Export ``checkpoint`` to ``onnx_path`` (input ``frames``, output ``damage``) and write
    its model card beside it (``.md``); ``metrics``: the benchmark's table."""
    from .data import TRAINING_CLIPS, TRAINING_PHOTOS
    from .export import export_recipe

    return export_recipe(
        build(), RECIPE, checkpoint, onnx_path, stage="descratch", channels=FRAMES,
        input_name="frames", output_name="damage", device="cuda", workers=13, scratch="ds.pt",
        metrics=metrics,
        loss=("Charbonnier (ε 1e-3) on frame t, damaged pixels weighted 10×, + Charbonnier "
              "of the replacement on the damaged pixels + 0.2 × BCE of the damage probability "
              "against the visible damage"),
        summary=(
            "vsremaster's descratcher (`vsremaster.descratch`): from five frames of luma, "
            "t-2 … t+2, it finds film and tape damage in frame t (scratches, fragments, "
            "vertical lines, dust, hairs, snow, blotches) and predicts what lies under it. "
            "Input `frames` `(N, 5, H, W)` float 0–1; output `damage` `(N, 2, H, W)`: channel "
            "0 the damage probability (0–1, the filter's mask), channel 1 the replacement "
            "value; the filter blends `cur + strength · a · (r - cur)`. `H`, `W` multiples "
            "of 4. Architecture and training: `vsremaster.training.descratch`."),
        data=(
            f"Real footage only: the clips {', '.join(TRAINING_CLIPS)} and "
            f"{len(TRAINING_PHOTOS)} opencv-doc photographs moved along random camera paths "
            "(the deinterlacer's sampler, `vsremaster.training.data`, pans up to 16 px/frame), "
            f"each file checked by sha256; crops of {RECIPE['size'][0]}×{RECIPE['size'][1]}. "
            "Real vertical structure is added to 60 % of the clean windows (thin opaque poles "
            "and strings, and bars with long straight edges, moderate contrast, some with a "
            "shadow line, still or moving with the scene) and kept in the truth, so the "
            "network learns to leave it. The benchmark "
            "clips (bikes, box, cup) are not used."),
        degradations=(
            "`vsremaster.training.degrade.film` with a random mix per window: persistent, "
            "drifting, flickering line scratches (1–3 px, bright or dark, sharp or blurred, "
            "semi-transparent, a third cut into shifted fragments), frame-high vertical lines "
            "(faint to strong, nearly still), blotches (soft local brightness changes of "
            "10–30 %), dust and hairs (radius 1–8 px), snow (single-pixel specks and short "
            "streaks). Content (part of the truth): flicker of a few per cent per frame, "
            "mild Gaussian noise (σ ≤ 3)."),
        limitations=(
            f"Trained on one NVIDIA H100 ({RECIPE['steps']} steps of {RECIPE['batch']} crops, "
            "about 7 minutes, the damage drawn by 13 CPU worker processes). "
            "Luma only: the filter fills chroma under the mask from the surroundings. Damage "
            "wider than about 8 px that stays put for many frames (a wide static line) is "
            "outside its data; heavy noise and compression are too. A still, thin, "
            "high-contrast real line can look like a scratch."),
    )
