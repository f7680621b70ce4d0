"""Benchmark: vsremaster.upscale vs vs-mlrt's core.ort.Model on the same ONNX and input.

Both run the same ONNX file from the model cache on the same real footage (a 320×240 crop
of the "bikes" sample, RGBS, clamped to 0-1 so both see identical input), whole frames (no
tiling), the same number of VapourSynth threads and ONNX Runtime streams. Reported per
model: fps of each (first frame, which builds the sessions, excluded), the ratio, and the
max abs difference between the two outputs over all frames.

    python benchmarks/upscale_vs_mlrt.py                       # the two models of issue #2
    python benchmarks/upscale_vs_mlrt.py --models realesr-animevideov3-x4 --frames 16 --record

Needs the 'bench' extra (vapoursynth-mlrt-ort) and the models (`vsremaster models fetch`).
"""

from __future__ import annotations

import argparse
import os
import time

import numpy as np
import onnxruntime
import vapoursynth as vs

import vsremaster as vsr
from vsremaster.models.store import resolve_model
from vsremaster.samples import sample_path

from _common import record

core = vs.core


def source(frames: int, width: int, height: int) -> vs.VideoNode:
    clip = core.bs.VideoSource(str(sample_path("bikes")))
    clip = core.std.CropAbs(clip, width, height, (clip.width - width) // 2, 16)
    clip = clip[: frames + 1].std.SetFrameProps(_Matrix=6)
    return core.std.Limiter(core.resize.Bicubic(clip, format=vs.RGBS), 0.0, 1.0)


def fps(clip: vs.VideoNode, frames: int) -> float:
    clip.get_frame(0)  # sessions are built on the first frame: not timed
    start = time.perf_counter()
    for _ in clip[1:].frames():
        pass
    return frames / (time.perf_counter() - start)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--models", nargs="+", default=["realesr-animevideov3-x4", "realesrgan-x4plus"])
    ap.add_argument("--frames", type=int, default=8, help="timed frames per run (default 8)")
    ap.add_argument("--rounds", type=int, default=2, help="alternating runs; best kept")
    ap.add_argument("--size", default="320x240", help="input WxH crop of the real clip")
    ap.add_argument("--threads", type=int, default=os.cpu_count(), help="VapourSynth threads")
    ap.add_argument("--streams", type=int, default=1, help="ORT sessions for both")
    ap.add_argument("--record", action="store_true", help="append the table to RESULTS.md")
    args = ap.parse_args()
    core.num_threads = args.threads
    w, h = (int(v) for v in args.size.split("x"))
    rgb = source(args.frames, w, h)

    rows = ["| model | input | vsremaster fps | vs-mlrt ort.Model fps | ratio | max abs diff |",
            "|---|---|---|---|---|---|"]
    for model_id in args.models:
        path = str(resolve_model(model_id).path)
        ours = vsr.upscale(rgb, model=model_id, num_streams=args.streams, tile=None)
        peer = core.ort.Model(rgb, network_path=path, provider="CPU", num_streams=args.streams)
        best_ours = best_peer = 0.0
        for _ in range(args.rounds):
            best_ours = max(best_ours, fps(ours, args.frames))
            best_peer = max(best_peer, fps(peer, args.frames))
        diff = 0.0
        for a, b in zip(ours.frames(), peer.frames()):
            for p in range(3):
                diff = max(diff, float(np.abs(np.asarray(a[p]) - np.clip(np.asarray(b[p]), 0, 1)).max()))
        row = (f"| {model_id} | {w}x{h} RGBS, {args.frames} frames | {best_ours:.3f} | "
               f"{best_peer:.3f} | {best_ours / best_peer:.2f} | {diff:.1e} |")
        rows.append(row)
        print(row, flush=True)
    table = "\n".join(rows)
    print(table)
    if args.record:
        plugin = core.ort.Version()
        record(
            "upscale vs vs-mlrt ort.Model (CPU)",
            {
                "vapoursynth": str(core.core_version.release_major),
                "onnxruntime (ours)": onnxruntime.__version__,
                "vs-mlrt ort": f"{plugin['version']} (bundled onnxruntime "
                f"{plugin['onnxruntime_version']})",
                "vsremaster": vsr.__version__,
                "threads": str(args.threads),
                "streams": str(args.streams),
            },
            table,
            "vs-mlrt's output is clipped to 0-1 before the difference (ours clamps to the "
            "model's value range). Whole frames, no tiling, fp32.",
        )


if __name__ == "__main__":
    main()
