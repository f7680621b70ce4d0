"""Descratch benchmark: vsremaster's network vs the DeScratch plugin and an MC temporal median.

Real footage not used in training (``bikes``, ``box``, ``cup``; the training clips are listed
in ``vsremaster.training.data``), damaged by ``vsremaster.training.degrade.damage.
add_film_damage`` with its default mix and a fixed seed per clip: persistent drifting
scratches (a third cut into shifted fragments), frame-high vertical lines, blotches, dust,
hairs and snow. Each method restores the damaged clip and is scored against the clean
frames (the first and last two skipped): PSNR-Y and SSIM-Y (Gaussian 11×11, σ 1.5), and the
gain in PSNR-Y over the damaged input. **Clean preservation**: the clean clip goes through
each method too, and PSNR(clean in, out) says how much it changed undamaged footage. Speed:
frames per second at 720×480 (box resized with Spline36) on this machine's CPU.

Peers, in the same run:

- **DeScratch** (``core.descratch.DeScratch``, vapoursynth-descratch): its documented
  defaults (``modey=1``: dark scratches only, ``mindif=5``, ``maxwidth=3``, ``minlen=100``),
  and the best setting of a grid searched on this damage (12 frames of cup and bikes;
  ``mindif`` 2/3/5 × ``maxwidth`` 3/5/7 × ``minlen`` 30/60/100 × ``blurlen`` 15/41, both
  polarities, ``maxangle=2``), which is the defaults with both polarities: ``modey=3``.
- **MC temporal median** (SpotLess-style): MVTools (``core.mv``) compensates the previous and
  next frames onto the current one (pel 2, 8×8 blocks with overlap 4, truemotion) and each
  pixel takes the median of the three, which removes single-frame spots, not persistent
  scratches.

    pip install -e '.[bench]'
    python benchmarks/descratch.py [--frames 40] [--record] [--crops benchmarks/descratch_crops.png]

On a machine without VapourSynth (the lent GPU machine), ``--torch CKPT`` measures the
network's frames/s through PyTorch at 720×480 instead (fp32 and bf16).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
from _common import package_versions, record, render, ssim, torch_speed

CLIPS = {"bikes": 11, "box": 12, "cup": 13}  # clip: damage seed
SPEED_SIZE = (720, 480)
SKIP = 2


def mc_median(clip):
    """Median of the current frame and its motion-compensated neighbours (MVTools)."""
    import vapoursynth as vs

    core = vs.core
    sup = core.mv.Super(clip, pel=2, sharp=2)
    kw = {"blksize": 8, "overlap": 4, "truemotion": True, "delta": 1}
    back = core.mv.Compensate(clip, sup, core.mv.Analyse(sup, isb=True, **kw), thsad=10000)
    fwd = core.mv.Compensate(clip, sup, core.mv.Analyse(sup, isb=False, **kw), thsad=10000)
    return core.std.Expr([clip, back, fwd], "x y min x y max z min max")


def descratch_tuned(clip):
    import vapoursynth as vs

    return vs.core.descratch.DeScratch(clip, modey=3)


def methods(model: str | None):
    import vapoursynth as vs

    import vsremaster as vsr

    ours = {"model": model} if model else {}
    return {
        "vsremaster": lambda c: vsr.descratch(c, **ours),
        "DeScratch (defaults)": lambda c: vs.core.descratch.DeScratch(c),
        "DeScratch (tuned)": descratch_tuned,
        "MC temporal median": mc_median,
    }


def psnr_y(got: list[list[np.ndarray]], want: list[list[np.ndarray]]) -> float:
    """Mean PSNR-Y (dB) over the scored frames."""
    idx = range(SKIP, len(want) - SKIP)
    return float(np.mean([10 * np.log10(255**2 / max(np.mean(
        (got[i][0].astype(np.float64) - want[i][0]) ** 2), 1e-10)) for i in idx]))


def ssim_y(got, want) -> float:
    return float(np.mean([ssim(got[i][0], want[i][0]) for i in range(SKIP, len(want) - SKIP)]))


def _tile(img: np.ndarray, label: str) -> np.ndarray:
    import cv2

    tile = cv2.resize(img, None, fx=2, fy=2, interpolation=cv2.INTER_NEAREST)
    tile = cv2.copyMakeBorder(tile, 22, 2, 2, 2, cv2.BORDER_CONSTANT, value=255)
    cv2.putText(tile, label, (4, 16), cv2.FONT_HERSHEY_SIMPLEX, 0.45, 0, 1, cv2.LINE_AA)
    return tile


def crops(rows: list[dict[str, np.ndarray]], path: Path) -> None:
    """Rows of labelled 2× crops (8-bit luma), written as one PNG."""
    import cv2

    lines = [np.hstack([_tile(img, name) for name, img in row.items()]) for row in rows]
    width = max(line.shape[1] for line in lines)
    lines = [cv2.copyMakeBorder(line, 0, 0, 0, width - line.shape[1], cv2.BORDER_CONSTANT,
                                value=255) for line in lines]
    cv2.imwrite(str(path), np.vstack(lines))


def _worst_spot(mask: np.ndarray, size: int) -> tuple[int, int]:
    """Top-left corner of the ``size``² window holding the most damage."""
    import cv2

    h, w = mask.shape
    density = cv2.boxFilter(mask.astype(np.float32), -1, (size, size), normalize=True)
    half = size // 2
    inner = density[half:h - half, half:w - half]
    y, x = np.unravel_index(int(np.argmax(inner)), inner.shape)
    return int(y), int(x)


def structure_row(ours, sample_path) -> dict[str, np.ndarray]:
    """Clean footage with real vertical structure through the model: bikes (the table's long
    straight edges; a benchmark clip) and vtest (a thin, still lamp post, the look of a
    scratch; a training clip), with the difference amplified 8×."""
    import vapoursynth as vs

    core = vs.core
    row = {}
    for name, n, (y0, x0) in (("bikes edge", 20, (60, 140)), ("vtest post", 100, (180, 364))):
        clip = core.bs.VideoSource(str(sample_path(name.split()[0])))[n - 2 : n + 3]
        got, _ = render(ours(clip))
        want, _ = render(clip)
        a, b = want[2][0][y0:y0 + 128, x0:x0 + 128], got[2][0][y0:y0 + 128, x0:x0 + 128]
        diff = np.clip(np.abs(a.astype(np.int16) - b) * 8, 0, 255).astype(np.uint8)
        row.update({f"{name}: clean in": a, f"{name}: out": b, f"{name}: |diff| x8": diff})
    return row


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--frames", type=int, default=40, help="frames per clip")
    parser.add_argument("--model", default=None, help="ONNX file instead of the shipped model")
    parser.add_argument("--record", action="store_true", help="append to RESULTS.md")
    parser.add_argument("--crops", type=Path, default=None,
                        help="write crops (damage removed; real vertical structure kept)")
    parser.add_argument("--torch", type=Path, default=None, metavar="CKPT",
                        help="only measure PyTorch frames/s on CUDA for this checkpoint")
    args = parser.parse_args()
    if args.torch:
        from vsremaster.training import descratch as recipe

        print(torch_speed(recipe, args.torch, [(1, 5, SPEED_SIZE[1], SPEED_SIZE[0])],
                          "frames/s"))
        return 0

    import vapoursynth as vs

    from vsremaster.samples import sample_path
    from vsremaster.training.degrade.damage import add_film_damage

    core = vs.core
    todo = methods(args.model)
    rows, totals = [], {name: [] for name in todo}
    shots: dict[str, np.ndarray] = {}
    for clip_name, seed in CLIPS.items():
        clean = core.bs.VideoSource(str(sample_path(clip_name)))[: args.frames]
        damaged, truth_mask = add_film_damage(clean, seed=seed)
        want, _ = render(clean)
        broken, _ = render(damaged)
        base = psnr_y(broken, want)
        rows.append(f"| {clip_name} | damaged input | {base:.2f} | {ssim_y(broken, want):.4f} "
                    "| 0 | — |")
        for name, fn in todo.items():
            got, _ = render(fn(damaged))
            kept, _ = render(fn(clean))
            res = {"psnr": psnr_y(got, want), "ssim": ssim_y(got, want),
                   "clean": psnr_y(kept, want)}
            res["gain"] = res["psnr"] - base
            totals[name].append(res)
            rows.append(f"| {clip_name} | {name} | {res['psnr']:.2f} | {res['ssim']:.4f} | "
                        f"{res['gain']:+.2f} | {res['clean']:.2f} |")
            if clip_name == "box" and name != "DeScratch (defaults)":
                shots.setdefault("clean", want[20][0])
                shots.setdefault("damaged", broken[20][0])
                shots[name] = got[20][0]
            print(rows[-1], flush=True)
        if clip_name == "box":
            mask = render(truth_mask)[0][20][0]
    if args.crops:
        y0, x0 = _worst_spot(mask, 128)
        crops([{k: v[y0:y0 + 128, x0:x0 + 128] for k, v in shots.items()},
               structure_row(todo["vsremaster"], sample_path)], args.crops)

    box = core.resize.Spline36(core.bs.VideoSource(str(sample_path("box")))[:24], *SPEED_SIZE)
    box = add_film_damage(box, seed=1)[0]
    speed = {name: render(fn(box))[1] for name, fn in todo.items()}

    table = ["| clip | method | PSNR-Y dB | SSIM-Y | gain over damaged | PSNR clean in→out |",
             "|---|---|---|---|---|---|", *rows, "",
             "| method | mean gain dB | worst-clip gain | mean SSIM-Y | clean in→out (worst) | "
             f"fps at {SPEED_SIZE[0]}x{SPEED_SIZE[1]} (CPU) |", "|---|---|---|---|---|---|"]
    for name, res in totals.items():
        table.append(
            f"| {name} | {np.mean([r['gain'] for r in res]):+.2f} | "
            f"{min(r['gain'] for r in res):+.2f} | {np.mean([r['ssim'] for r in res]):.4f} | "
            f"{min(r['clean'] for r in res):.2f} | {speed[name]:.2f} |")
    text = "\n".join(table)
    print(text)
    if args.record:
        versions = package_versions(
            "vapoursynth", "onnxruntime", "vapoursynth-descratch", "vapoursynth-mvtools")
        record("Descratch: vsremaster vs DeScratch and an MC temporal median", versions, text,
               f"{args.frames} frames per clip, scored frames {SKIP}…{args.frames - SKIP - 1}; "
               "damage: `add_film_damage` default mix, seeds " + ", ".join(
                   f"{k} {v}" for k, v in CLIPS.items()) + ".")
    return 0


if __name__ == "__main__":
    sys.exit(main())
