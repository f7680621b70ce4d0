"""Deinterlace benchmark, MSU protocol: vsremaster's network vs bwdif, znedi3 and QTGMC.

Ground truth from real progressive footage not used in training (``bikes``, ``box``,
``cup``; the training clips are listed in ``vsremaster.training.data``): progressive frames
``p0, p1, …`` become interlaced frame ``k`` = top field of ``p(2k)`` + bottom field of
``p(2k+1)`` (TFF, ``vsremaster.training.degrade.interlace``), every method bobs it back to
double rate, and each output frame is scored against ``p0, p1, …`` skipping the first and
last two: PSNR-Y and SSIM-Y (Gaussian 11×11, σ 1.5; Wang et al. 2004) here, VMAF
(vmaf_v0.6.1) with the bundled FFmpeg. "flicker" is the mean absolute frame-to-frame luma
difference of the output divided by the truth's (1.00 = no added shimmer). Speed: output
frames (= fields) per second at 720×480 (box resized with Spline36), on this machine's CPU.

Peers, in the same run: ``bwdif`` (``core.bwdif.Bwdif``, field=3), ``znedi3``
(``core.znedi3.nnedi3``, field=3, defaults), and QTGMC (vsjetpack's ``QTempGaussMC().bob``
with its defaults, which follow the "Slower" preset: NNEDI3 bobber, temporal radius 2/2/1,
MVTools analysis). Plugin versions that work together are pinned in the ``bench`` extra
of ``pyproject.toml`` (``scripts/setup`` installs it).

    pip install -e '.[bench]'
    python benchmarks/deinterlace.py [--frames 60] [--record] \
        [--crops benchmarks/deinterlace_crops.png]

On a machine without VapourSynth (the lent GPU machine), ``--torch CKPT`` measures the
network's fields/s through PyTorch at 720×480 instead (fp32 and bf16).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import numpy as np
from _common import package_versions, record, render, ssim, torch_speed

CLIPS = ("bikes", "box", "cup")
SPEED_SIZE = (720, 480)
SKIP = 2


def methods(model: str | None):
    import vapoursynth as vs
    from vsdeinterlace import QTempGaussMC

    import vsremaster as vsr

    core = vs.core
    ours = {"model": model} if model else {}
    return {
        "vsremaster": lambda c: vsr.deinterlace(c, tff=True, **ours),
        "bwdif": lambda c: core.bwdif.Bwdif(c, field=3),
        "znedi3": lambda c: core.znedi3.nnedi3(c, field=3),
        "QTGMC": lambda c: QTempGaussMC().bob(c, tff=True),
    }


def write_y4m(frames: list[list[np.ndarray]], path: Path, fps: tuple[int, int]) -> None:
    h, w = frames[0][0].shape
    with path.open("wb") as fh:
        fh.write(f"YUV4MPEG2 W{w} H{h} F{fps[0]}:{fps[1]} Ip A1:1 C420jpeg\n".encode())
        for planes in frames:
            fh.write(b"FRAME\n")
            for plane in planes:
                fh.write(np.ascontiguousarray(plane).tobytes())


def score(name: str, out, want: list[list[np.ndarray]], rate: tuple[int, int],
          tmp: Path) -> dict[str, float]:
    """Scores of ``out`` against the truth's frames ``want`` (rendered once per clip, and
    written to ``tmp/truth.y4m`` by :func:`truth`); ``rate``: fps as (num, den)."""
    from vsremaster.encode.vmaf import vmaf_scores

    got, fps = render(out)
    n = min(len(got), len(want))
    idx = range(SKIP, n - SKIP)
    psnr = [10 * np.log10(255**2 / max(np.mean((got[i][0].astype(np.float64)
                                                 - want[i][0]) ** 2), 1e-10)) for i in idx]
    ssims = [ssim(got[i][0], want[i][0]) for i in idx]
    write_y4m(got[SKIP:n - SKIP], tmp / f"{name}.y4m", rate)
    vmaf = vmaf_scores(tmp / f"{name}.y4m", tmp / "truth.y4m", pix_fmt="yuv420p", log_dir=tmp)

    def motion(frames):
        return np.mean([np.abs(frames[i][0].astype(np.float64) - frames[i - 1][0]).mean()
                        for i in range(SKIP + 1, n - SKIP)])

    return {"psnr": float(np.mean(psnr)), "ssim": float(np.mean(ssims)),
            "vmaf": float(np.mean(vmaf)), "flicker": motion(got) / motion(want), "fps": fps,
            "frames": got, "truth": want}


def truth(clip, tmp: Path) -> list[list[np.ndarray]]:
    """The progressive frames, rendered once; scored frames written to ``tmp/truth.y4m``."""
    want, _ = render(clip)
    rate = (clip.fps.numerator, clip.fps.denominator)
    write_y4m(want[SKIP:len(want) - SKIP], tmp / "truth.y4m", rate)
    return want


def crops(results: dict[str, dict], clip: str, path: Path) -> None:
    """A labelled 3× crop of static detail: truth and each method, side by side."""
    import cv2

    frame = len(results["bwdif"]["truth"]) // 2 | 1  # an odd frame: its lines from field 2
    y0, x0, h, w = 150, 250, 100, 120
    tiles = []
    for name, res in [("truth", None), *results.items()]:
        plane = (res or results["bwdif"])["truth" if res is None else "frames"][frame][0]
        tile = cv2.resize(plane[y0:y0 + h, x0:x0 + w], (w * 3, h * 3),
                          interpolation=cv2.INTER_NEAREST)
        tile = cv2.copyMakeBorder(tile, 28, 4, 4, 4, cv2.BORDER_CONSTANT, value=255)
        cv2.putText(tile, name, (6, 21), cv2.FONT_HERSHEY_SIMPLEX, 0.7, 0, 2)
        tiles.append(tile)
    cv2.imwrite(str(path), np.concatenate(tiles, 1))
    print(f"crop comparison ({clip}, frame {frame}, rows {y0}-{y0 + h}, cols {x0}-{x0 + w}) "
          f"written to {path}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--frames", type=int, default=60, help="progressive frames per clip")
    parser.add_argument("--model", default=None, help="ONNX file instead of the shipped model")
    parser.add_argument("--record", action="store_true", help="append to RESULTS.md")
    parser.add_argument("--crops", type=Path, default=None, help="write a crop comparison PNG")
    parser.add_argument("--torch", type=Path, default=None, metavar="CKPT",
                        help="only measure PyTorch fields/s on CUDA for this checkpoint")
    args = parser.parse_args()
    if args.torch:
        from vsremaster.training import deinterlace as recipe

        print(torch_speed(recipe, args.torch, [(1, 5, SPEED_SIZE[1] // 2, SPEED_SIZE[0])],
                          "fields/s"))
        return 0

    import vapoursynth as vs

    from vsremaster.samples import sample_path
    from vsremaster.training.degrade.interlace import interlace

    core = vs.core
    todo = methods(args.model)
    rows, totals = [], {m: [] for m in todo}
    box_results = {}
    with tempfile.TemporaryDirectory() as tmpdir:
        tmp = Path(tmpdir)
        for clip_name in CLIPS:
            src = core.bs.VideoSource(str(sample_path(clip_name)))[: args.frames]
            src = core.std.SetFieldBased(src, 0)
            il = interlace(src, tff=True)
            want = truth(src, tmp)
            rate = (src.fps.numerator, src.fps.denominator)
            for name, fn in todo.items():
                res = score(name, fn(il), want, rate, tmp)
                totals[name].append(res)
                rows.append(f"| {clip_name} | {name} | {res['psnr']:.2f} | {res['ssim']:.4f} | "
                            f"{res['vmaf']:.2f} | {res['flicker']:.3f} |")
                print(rows[-1], flush=True)
                if clip_name == "box":
                    box_results[name] = res
                else:
                    res.pop("frames"), res.pop("truth")
        if args.crops:
            crops(box_results, "box", args.crops)

        box = core.bs.VideoSource(str(sample_path("box")))[:24]
        box = core.resize.Spline36(box, *SPEED_SIZE)
        il = interlace(core.std.SetFieldBased(box, 0), tff=True)
        speed = {name: render(fn(il))[1] for name, fn in todo.items()}

    bw = np.mean([r["psnr"] for r in totals["bwdif"]])
    table = ["| clip | method | PSNR-Y dB | SSIM-Y | VMAF | flicker |", "|---|---|---|---|---|---|",
             *rows, "", "| method | mean PSNR-Y | vs bwdif | mean SSIM | mean VMAF | "
             f"fields/s at {SPEED_SIZE[0]}x{SPEED_SIZE[1]} (CPU) |", "|---|---|---|---|---|---|"]
    for name, res in totals.items():
        p = np.mean([r["psnr"] for r in res])
        table.append(f"| {name} | {p:.2f} | {p - bw:+.2f} dB | "
                     f"{np.mean([r['ssim'] for r in res]):.4f} | "
                     f"{np.mean([r['vmaf'] for r in res]):.2f} | {speed[name]:.2f} |")
    text = "\n".join(table)
    print(text)
    if args.record:
        versions = package_versions(
            "vapoursynth", "onnxruntime", "vsjetpack", "vapoursynth-bwdif", "vapoursynth-znedi3",
            "vapoursynth-mvtools", "vapoursynth-mvutensils")
        record("Deinterlace (MSU protocol): vsremaster vs bwdif, znedi3, QTGMC", versions, text,
               f"{args.frames} progressive frames per clip, TFF; clips not used in training. "
               "vsremaster runs ONNX Runtime on the CPU.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
