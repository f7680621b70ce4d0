"""Denoise benchmark: vsremaster's denoiser vs BM3D, DFTTest, MVTools and Deblock.

Real footage not used in training (``bikes`` 640×272, ``box`` and ``cup`` 640×480, 8-bit
4:2:0; the training clips are listed in ``vsremaster.training.data``), first ``--frames``
frames, degraded four ways:

- ``gauss10`` / ``gauss20``: white Gaussian noise of σ 10 / 20 (8-bit scale) on luma and
  chroma (``vsremaster.training.degrade.noise.add_gaussian_noise``, a fixed seed per clip).
- ``h264``: the clean frames encoded by the bundled FFmpeg's libx264 at constant quality
  ``-crf 46 -preset medium`` (default GOP, B-frames): about 30-36 kb/s, 29-35 dB PSNR-Y.
- ``mpeg2``: mpeg2video at its coarsest quantiser (``-q:v 28`` non-linear, ``-bf 2 -g 12``):
  about 200-320 kb/s, 31-38 dB. These soft clips need constant quantisers: a bitrate target
  (e.g. 300 kb/s H.264, 1.2 Mb/s MPEG-2 at 640×480) leaves them at 36-49 dB.

Both encodes are decoded back to 8-bit 4:2:0 frames in display order (checked frame-exact by
their PSNR). Every method restores the degraded clip and is scored against the clean frames,
the first and last two skipped: PSNR-Y, **ends PSNR-Y** (the first and the last frame alone,
which temporal methods see with neighbours on one side only, as the first and last frame of
every shot), SSIM-Y (Gaussian 11×11, σ 1.5), VMAF (libvmaf
``vmaf_v0.6.1`` through ``vsremaster.encode.vmaf``), the PSNR-Y gain over the degraded input
and **flicker**: the mean luma |frame t − frame t−1| of the output divided by the clean
clip's (1.00: the clean clip's temporal activity; residual noise or added flicker raise it).
Speed: frames per second at 720×480 (box resized with Spline36, σ 10 noise) on this CPU.

Peers, each tuned once by ``--tune`` (cup, 10 frames; noise rules on ``gauss20``,
compression settings by the best mean PSNR-Y gain over ``h264`` and ``mpeg2``, within 0.02 dB
the milder setting) and applied by the same rule to every clip and case:

- **BM3D** (Dabov et al. 2007; ``core.bm3d``, vapoursynth-bm3d), basic + final estimate,
  profile ``np`` (the paper's normal profile). Each plane is filtered as its own grey float
  image (1.0 = 255; the plugin refuses 4:2:0 when chroma is processed) with ``matrix=0``,
  which leaves ``sigma`` unscaled: σ matched exactly to the added noise. **V-BM3D** (Dabov
  et al. 2007, the same with temporal radius 1 and ``VAggregate``) as an extra row.
  Compression: σ grid 4/8/12/16/24/32 → 16 (gains h264/mpeg2 +0.30/+0.80 dB).
- **DFTTest** (Tritical's dfttest, ``dfttest2`` CPU backend; defaults: 16×16×3 blocks,
  Wiener), ``sigma`` a noise power: grid k·σ² for k 2/3/4/6/8 → 4·σ² (+18.4 dB);
  compression: grid 16/32/…/1024 (doubling) → 256 (+0.25/+0.55 dB).
- **MVTools Degrain2** (Manao/Fizick; ``core.mv``): pel 2, 8×8 blocks with overlap 4,
  vectors searched on a 3×3 blurred copy, two frames each way; ``thsad`` (SAD of an 8×8
  block) grid k·σ for k 40/80/160/320 → 160·σ (+7.2 dB, the √5 averaging limit);
  compression: grid 200/400/800/1600 → 800 (+0.08/+0.26 dB).
- **Deblock** (Manao's H.264-style deblocking, ``core.deblock``; compression only): ``quant``
  grid 30/40/45/51/55/60 → 45 (+0.10/+0.36 dB).

    pip install -e '.[bench]'
    python benchmarks/denoise.py [--frames 30] [--cases gauss10,h264] [--clips box]
        [--model denoise.onnx] [--no-vmaf] [--record] [--tune]

On a machine without VapourSynth (the lent GPU machine), ``--torch CKPT`` measures the
network's frames/s through PyTorch at 720×480 4:2:0 instead (luma and both chroma planes per
frame; fp32 and bf16).
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from _common import package_versions, record, render, ssim, torch_speed

CLIPS = {"bikes": 21, "box": 22, "cup": 23}  # clip: noise seed
SIGMA = {"gauss10": 10.0, "gauss20": 20.0}
CODEC = {  # FFmpeg options of the compression cases: constant quantiser, heavy
    "h264": ["-c:v", "libx264", "-preset", "medium", "-crf", "46"],
    "mpeg2": ["-c:v", "mpeg2video", "-bf", "2", "-g", "12", "-non_linear_quant", "1",
              "-qmax", "28", "-q:v", "28"],
}
CASES = (*SIGMA, *CODEC)
SPEED_SIZE = (720, 480)
SKIP = 2
OURS = "vsremaster"
# Peer settings chosen by --tune (see the docstring).
BM3D_C, DFT_K, DFT_C, MV_K, MV_C, DEBLOCK_Q = 16.0, 4.0, 256.0, 160, 800, 45
TUNE_CLIP = "cup"


def bm3d(clip, sigma: float, radius: int = 0, chroma: bool = True):
    """BM3D basic + final (V-BM3D when ``radius``) per plane, ``sigma`` on the 8-bit scale;
    ``chroma=False`` passes the chroma planes through (only for tuning: scores are luma)."""
    import vapoursynth as vs

    core = vs.core
    kw = {"sigma": sigma, "matrix": 0, "profile": "np"}
    planes = [core.std.ShufflePlanes(clip, p, vs.GRAY) for p in range(clip.format.num_planes)]
    for p, plane in enumerate(planes[: None if chroma else 1]):
        x = core.std.Expr(plane, "x 255 /", format=vs.GRAYS)
        if radius:
            agg = lambda c: core.bm3d.VAggregate(c, radius=radius, sample=1)
            ref = agg(core.bm3d.VBasic(x, radius=radius, **kw))
            out = agg(core.bm3d.VFinal(x, ref, radius=radius, **kw))
        else:
            out = core.bm3d.Final(x, core.bm3d.Basic(x, **kw), **kw)
        planes[p] = core.std.Expr(out, "x 255 *", format=vs.GRAY8)
    return core.std.ShufflePlanes(planes, [0] * len(planes), clip.format.color_family)


def dft(clip, sigma: float):
    """DFTTest (dfttest2, CPU), Wiener filter at noise power ``sigma`` on every plane."""
    import dfttest2

    return dfttest2.DFTTest(clip, sigma=sigma, sigma2=sigma, backend=dfttest2.Backend.CPU())


def degrain(clip, thsad: int):
    """MVTools Degrain2 (two frames each way), vectors searched on a 3×3 blurred copy; the
    scene-change SAD threshold raised with ``thsad`` (noise alone would trip the default)."""
    import vapoursynth as vs

    core = vs.core
    search = core.mv.Super(core.std.Convolution(clip, [1, 2, 1, 2, 4, 2, 1, 2, 1]), pel=2)
    kw = {"blksize": 8, "overlap": 4}
    vec = [core.mv.Analyse(search, isb=b, delta=d, **kw) for d in (1, 2) for b in (True, False)]
    return core.mv.Degrain2(clip, core.mv.Super(clip, pel=2, levels=1), *vec, thsad=int(thsad),
                            thscd1=max(400, 2 * int(thsad)))


def methods(group: str, model: str | None, peers_only: bool) -> dict:
    """``name: fn(clip, sigma)`` for the noise or the compression cases (``sigma`` None)."""
    import vapoursynth as vs

    core = vs.core
    if group == "noise":
        todo = {
            "BM3D (basic+final)": lambda c, s: bm3d(c, s),
            "V-BM3D (radius 1)": lambda c, s: bm3d(c, s, radius=1),
            "DFTTest": lambda c, s: dft(c, DFT_K * s * s),
            "MVTools Degrain2": lambda c, s: degrain(c, MV_K * s),
        }
    else:
        todo = {
            "Deblock": lambda c, s: core.deblock.Deblock(c, quant=DEBLOCK_Q),
            "BM3D (basic+final)": lambda c, s: bm3d(c, BM3D_C),
            "DFTTest": lambda c, s: dft(c, DFT_C),
            "MVTools Degrain2": lambda c, s: degrain(c, MV_C),
        }
    if peers_only:
        return todo
    import vsremaster as vsr

    if not hasattr(vsr, "denoise"):
        sys.exit("vsremaster.denoise is missing (run with --peers-only to score the peers)")
    kw = {"model": model} if model else {}
    mode = "noise" if group == "noise" else "compression"
    return {OURS: lambda c, s: vsr.denoise(c, sigma=s, mode=mode, **kw), **todo}


def encode(frames: list[list[np.ndarray]], case: str) -> tuple[list[list[np.ndarray]], float]:
    """Encode 8-bit 4:2:0 frames with the bundled FFmpeg; the decoded frames (display order)
    and the encode's bitrate (kb/s at 25 fps)."""
    import imageio_ffmpeg

    exe = imageio_ffmpeg.get_ffmpeg_exe()
    h, w = frames[0][0].shape
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "enc.mkv"
        subprocess.run(
            [exe, "-v", "error", "-f", "rawvideo", "-pix_fmt", "yuv420p", "-s", f"{w}x{h}",
             "-r", "25", "-i", "-", *CODEC[case], "-y", str(path)],
            input=b"".join(p.tobytes() for f in frames for p in f), check=True)
        kbps = path.stat().st_size * 8 / 1000 / (len(frames) / 25)
        raw = subprocess.run(
            [exe, "-v", "error", "-i", str(path), "-fps_mode", "passthrough", "-f", "rawvideo",
             "-pix_fmt", "yuv420p", "-"], capture_output=True, check=True).stdout
    sizes = [h * w, h * w // 4, h * w // 4]
    shapes = [(h, w), (h // 2, w // 2), (h // 2, w // 2)]
    out = [[p.reshape(s) for p, s in zip(np.split(f, np.cumsum(sizes)[:2]), shapes)]
           for f in np.frombuffer(raw, np.uint8).reshape(-1, sum(sizes))]
    if len(out) != len(frames) or np.mean((out[0][0] - frames[0][0].astype(float)) ** 2) > 650:
        raise RuntimeError(f"{case}: {len(out)} decoded frames do not line up with the clean ones")
    return out, kbps


def to_clip(frames: list[list[np.ndarray]], like):
    """A clip of ``like``'s format and properties holding the given planes."""
    import vapoursynth as vs

    def put(n: int, f):
        out = f.copy()
        for p, plane in enumerate(frames[n]):
            np.copyto(np.asarray(out[p]), plane)
        return out

    return vs.core.std.ModifyFrame(like, like, put)


def psnr_y(got, want, frames=None) -> float:
    """Mean PSNR-Y (dB) over ``frames`` (default: the scored frames)."""
    frames = range(SKIP, len(want) - SKIP) if frames is None else frames
    mse = [np.mean((got[i][0].astype(np.float64) - want[i][0]) ** 2) for i in frames]
    return float(np.mean([10 * np.log10(255**2 / max(m, 1e-10)) for m in mse]))


def psnr_ends(got, want) -> float:
    """Mean PSNR-Y (dB) of the first and the last frame: what a shot's first and last frames
    get from a temporal method, with neighbours on one side only."""
    return psnr_y(got, want, frames=(0, -1))


def ssim_y(got, want) -> float:
    return float(np.mean([ssim(got[i][0], want[i][0]) for i in range(SKIP, len(want) - SKIP)]))


def activity(frames) -> float:
    """Mean luma |frame t − frame t−1| (8-bit codes) over the scored frames."""
    return float(np.mean([np.abs(frames[i][0].astype(np.int16) - frames[i - 1][0]).mean()
                          for i in range(SKIP + 1, len(frames) - SKIP)]))


def num(value: float, spec: str = ".2f") -> str:
    return "—" if np.isnan(value) else format(value, spec)


def write_y4m(path: Path, frames) -> Path:
    h, w = frames[0][0].shape
    with open(path, "wb") as fh:
        fh.write(f"YUV4MPEG2 W{w} H{h} F25:1 Ip A1:1 C420jpeg\n".encode())
        fh.writelines(b"FRAME\n" + b"".join(p.tobytes() for p in f) for f in frames)
    return path


def vmaf(got, ref: Path, tmp: Path) -> float:
    """Mean VMAF of the scored frames against the clean clip's y4m."""
    from vsremaster.encode.vmaf import vmaf_scores

    keep = [(SKIP, len(got) - SKIP)]
    return float(vmaf_scores(write_y4m(tmp / "out.y4m", got), ref, pix_fmt="yuv420p",
                             distorted_frames=keep, reference_frames=keep, log_dir=tmp).mean())


def degrade(clean, want, case: str, seed: int):
    """The degraded clip and its label for the tables."""
    from vsremaster.training.degrade.noise import add_gaussian_noise

    if case in SIGMA:
        return add_gaussian_noise(clean, SIGMA[case], seed=seed), "degraded input"
    frames, kbps = encode(want, case)
    return to_clip(frames, clean), f"degraded input ({kbps:.0f} kb/s)"


def tune(frames: int) -> None:
    """Print each peer's PSNR-Y gain over its grid on the tuning clip (choices: docstring)."""
    import vapoursynth as vs
    from vsremaster.samples import sample_path

    core = vs.core
    clean = core.bs.VideoSource(str(sample_path(TUNE_CLIP)))[:frames]
    want, _ = render(clean)
    comp = ("h264", "mpeg2")
    grids = [
        (("gauss20",), "DFTTest k (sigma = k·σ²)", (2, 3, 4, 6, 8),
         lambda c, k: dft(c, k * 400)),
        (("gauss20",), "Degrain2 k (thsad = k·σ)", (40, 80, 160, 320),
         lambda c, k: degrain(c, k * 20)),
        (comp, "Deblock quant", (30, 40, 45, 51, 55, 60),
         lambda c, q: core.deblock.Deblock(c, quant=q)),
        (comp, "DFTTest sigma", (16, 32, 64, 128, 256, 512, 1024), dft),
        (comp, "Degrain2 thsad", (200, 400, 800, 1600), degrain),
        (comp, "BM3D sigma", (4, 8, 12, 16, 24, 32), lambda c, s: bm3d(c, s, chroma=False)),
    ]
    inputs = {}
    for cases, name, values, fn in grids:
        for case in cases:
            if case not in inputs:
                bad = degrade(clean, want, case, CLIPS[TUNE_CLIP])[0]
                inputs[case] = bad, psnr_y(render(bad)[0], want)
                print(f"{TUNE_CLIP} {case} input: {inputs[case][1]:.2f} dB")
            bad, base = inputs[case]
            gains = [psnr_y(render(fn(bad, v))[0], want) - base for v in values]
            print(f"{TUNE_CLIP} {case} {name}, PSNR-Y gain dB: "
                  + ", ".join(f"{v}: {g:+.2f}" for v, g in zip(values, gains)), flush=True)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--frames", type=int, default=30, help="frames per clip")
    parser.add_argument("--model", default=None, help="ONNX file instead of the shipped model")
    parser.add_argument("--cases", default=",".join(CASES), help="comma list of cases")
    parser.add_argument("--clips", default=",".join(CLIPS), help="comma list of clips")
    parser.add_argument("--no-vmaf", action="store_true", help="skip VMAF (slow on CPU)")
    parser.add_argument("--record", action="store_true", help="append to RESULTS.md")
    parser.add_argument("--tune", action="store_true", help="print the peers' tuning grids")
    parser.add_argument("--peers-only", action="store_true", help="dev: leave vsremaster out")
    parser.add_argument("--no-speed", action="store_true", help="dev: skip the fps table")
    parser.add_argument("--torch", type=Path, default=None, metavar="CKPT",
                        help="only measure PyTorch frames/s on CUDA for this checkpoint")
    args = parser.parse_args()
    if args.torch:
        from vsremaster.training import denoise as recipe

        w, h = SPEED_SIZE
        print(torch_speed(recipe, args.torch, [(1, 7, h, w), (2, 7, h // 2, w // 2)],
                          "frames/s"))
        return 0
    if args.tune:
        tune(args.frames)
        return 0
    cases, clips = args.cases.split(","), args.clips.split(",")
    if bad := sorted(set(cases) - set(CASES)) + sorted(set(clips) - set(CLIPS)):
        parser.error(f"unknown case or clip: {', '.join(bad)}")

    import vapoursynth as vs
    from vsremaster.samples import sample_path
    from vsremaster.training.degrade.noise import add_gaussian_noise

    core = vs.core
    groups = {"noise" if c in SIGMA else "compression" for c in cases}
    todo = {g: methods(g, args.model, args.peers_only) for g in sorted(groups, reverse=True)}
    rows, res = [], {}  # res[case][method] = list of per-clip dicts
    start = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp_dir:
        tmp = Path(tmp_dir)
        for clip_name in clips:
            clean = core.bs.VideoSource(str(sample_path(clip_name)))[: args.frames]
            want, _ = render(clean)
            ref = None if args.no_vmaf else write_y4m(tmp / "ref.y4m", want)
            truth = activity(want)
            for case in cases:
                sigma = SIGMA.get(case)
                bad, label = degrade(clean, want, case, CLIPS[clip_name])
                got, _ = render(bad)
                base = psnr_y(got, want)
                fns = todo["noise" if sigma else "compression"]
                for name, fn in [("degraded input", None), *fns.items()]:
                    out = got if fn is None else render(fn(bad, sigma))[0]
                    r = {"psnr": psnr_y(out, want), "ends": psnr_ends(out, want),
                         "ssim": ssim_y(out, want),
                         "vmaf": np.nan if ref is None else vmaf(out, ref, tmp),
                         "flicker": activity(out) / truth}
                    r["gain"] = r["psnr"] - base
                    res.setdefault(case, {}).setdefault(name, []).append(r)
                    shown = label if name == "degraded input" else name
                    rows.append(f"| {clip_name} | {case} | {shown} | {r['psnr']:.2f} | "
                                f"{r['ends']:.2f} | {r['ssim']:.4f} | {num(r['vmaf'])} | "
                                f"{r['gain']:+.2f} | {r['flicker']:.2f} |")
                    print(rows[-1], flush=True)
    elapsed = time.perf_counter() - start

    box = core.resize.Spline36(core.bs.VideoSource(str(sample_path("box")))[:24], *SPEED_SIZE)
    box = add_gaussian_noise(box, 10, seed=1)
    speed = {} if args.no_speed else {
        (g, n): render(fn(box, 10.0 if g == "noise" else None))[1]
        for g, fns in todo.items() for n, fn in fns.items()}

    bm = "BM3D (basic+final)"
    table = ["| clip | case | method | PSNR-Y dB | ends PSNR-Y dB | SSIM-Y | VMAF | gain dB | "
             "flicker ×truth |", "|---|---|---|---|---|---|---|---|---|", *rows, "",
             "| case | method | mean PSNR-Y | mean ends PSNR-Y | mean SSIM-Y | mean VMAF | "
             "mean gain | worst-clip vs BM3D | max flicker |",
             "|---|---|---|---|---|---|---|---|---|"]
    for case, per in res.items():
        for name, rs in per.items():
            vs_bm = (min(a["psnr"] - b["psnr"] for a, b in zip(rs, per[bm]))
                     if case in SIGMA and name not in (bm, "degraded input") else np.nan)
            mean = {k: np.mean([r[k] for r in rs]) for k in rs[0]}
            table.append(
                f"| {case} | {name} | {mean['psnr']:.2f} | {mean['ends']:.2f} | "
                f"{mean['ssim']:.4f} | "
                f"{num(mean['vmaf'])} | {mean['gain']:+.2f} | {num(vs_bm, '+.2f')} | "
                f"{max(r['flicker'] for r in rs):.2f} |")
    if speed:
        table += ["", f"| mode | method | fps at {SPEED_SIZE[0]}x{SPEED_SIZE[1]} (CPU) |",
                  "|---|---|---|", *(f"| {g} | {n} | {v:.2f} |" for (g, n), v in speed.items())]
    text = "\n".join(table)

    checks = []
    for case, per in res.items():
        if case in SIGMA and OURS in per:
            worst = min(a["psnr"] - b["psnr"] for a, b in zip(per[OURS], per[bm]))
            checks.append(f"target {case}: ours − BM3D ≥ +0.5 dB on every clip: "
                          f"{'PASS' if worst >= 0.5 else 'FAIL'} (worst {worst:+.2f})")
        elif case in CODEC:
            peers = max(np.mean([r["gain"] for r in rs]) for n, rs in per.items()
                        if n not in (OURS, "degraded input"))
            line = f"{case}: best classical mean gain {peers:+.2f} dB (expected ≤ +0.3)"
            if OURS in per:
                worst = min(r["gain"] for r in per[OURS])
                line = (f"target {case}: ours gain ≥ +0.8 dB on every clip: "
                        f"{'PASS' if worst >= 0.8 else 'FAIL'} (worst {worst:+.2f}); " + line)
            checks.append(line)
    if any(OURS in per for per in res.values()):
        worst = max(r["flicker"] for per in res.values() for r in per.get(OURS, []))
        best = min(r["flicker"] for per in res.values() for r in per.get(OURS, []))
        checks.append(f"target flicker: ours within 10 % of the truth's frame-to-frame "
                      f"difference in every clip and case: "
                      f"{'PASS' if 0.9 <= best and worst <= 1.10 else 'FAIL'} "
                      f"(range {best:.2f}–{worst:.2f})")
    notes = "\n".join(f"- {c}" for c in checks)
    print(text + "\n\n" + notes + f"\n\nscoring took {elapsed:.0f} s")
    if args.record:
        versions = package_versions(
            "vapoursynth", "onnxruntime", "vapoursynth-bm3d", "vapoursynth-dfttest2_cpu",
            "dfttest2", "vapoursynth-mvtools", "vapoursynth-deblock")
        record("Denoise: vsremaster vs BM3D, DFTTest, MVTools and Deblock", versions, text,
               f"{args.frames} frames per clip, scored frames {SKIP}…{args.frames - SKIP - 1}; "
               "noise seeds " + ", ".join(f"{k} {v}" for k, v in CLIPS.items()) + ".\n\n"
               + notes)
    return 0


if __name__ == "__main__":
    sys.exit(main())
