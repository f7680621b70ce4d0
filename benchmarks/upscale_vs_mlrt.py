"""Benchmark: vsremaster.upscale vs vs-mlrt's core.ort.Model on the same ONNX and input.

Both run the same model on the same real footage (a crop of a sample clip, RGBS,
clamped to 0-1 so both see identical input), whole frames (no tiling), the same number of
VapourSynth threads and streams: vs-mlrt runs the model cache's ONNX file in its bundled ONNX
Runtime; vsremaster runs it with each backend asked for (``ncnn``: the registry's original
ncnn files the ONNX was converted from, what ``auto`` picks on a CPU; ``cpu``: the same ONNX
in ONNX Runtime). Reported per model and backend: fps of each (first frame, which builds the
sessions, excluded; best of the alternating rounds), the ratio, and the max abs difference
between the two outputs over all frames.

    python benchmarks/upscale_vs_mlrt.py --clip vtest --size 720x480 --record  # CPU presets
    python benchmarks/upscale_vs_mlrt.py --models realesrgan-x4plus --size 160x120 --frames 2

Needs the 'bench' extra (vapoursynth-mlrt-ort) and the models (`vsremaster models fetch`).
"""

from __future__ import annotations

import argparse
import os
import tempfile
from pathlib import Path

import ncnn
import numpy as np
import onnxruntime
import vapoursynth as vs

import vsremaster as vsr
from vsremaster.samples import sample_path

from _common import fps, peer_network, record

core = vs.core


def source(name: str, frames: int, width: int, height: int) -> vs.VideoNode:
    clip = core.bs.VideoSource(str(sample_path(name)))
    if width > clip.width or height > clip.height:
        raise SystemExit(f"{name} is {clip.width}x{clip.height}: too small for {width}x{height}")
    top = min(16, clip.height - height)
    clip = core.std.CropAbs(clip, width, height, (clip.width - width) // 2, top)
    clip = clip[: frames + 1].std.SetFrameProps(_Matrix=6)
    return core.std.Limiter(core.resize.Bicubic(clip, format=vs.RGBS), 0.0, 1.0)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--models", nargs="+",
                    default=["waifu2x-photo-x2-noise1", "realesr-animevideov3-x4"])
    ap.add_argument("--backends", nargs="+", default=["ncnn", "cpu"],
                    help="vsremaster backends to time (default: ncnn cpu)")
    ap.add_argument("--frames", type=int, default=8, help="timed frames per run (default 8)")
    ap.add_argument("--rounds", type=int, default=2, help="alternating runs; best kept")
    ap.add_argument("--size", default="320x240", help="input WxH crop of the real clip")
    ap.add_argument("--clip", default="bikes", help="sample clip (bikes: 640x272; vtest: 768x576)")
    ap.add_argument("--threads", type=int, default=os.cpu_count(), help="VapourSynth threads")
    ap.add_argument("--streams", type=int, default=1, help="ORT sessions for both")
    ap.add_argument("--record", action="store_true", help="append the table to RESULTS.md")
    args = ap.parse_args()
    core.num_threads = args.threads
    w, h = (int(v) for v in args.size.split("x"))
    rgb = source(args.clip, args.frames, w, h)

    rows = ["| model | input | vsremaster backend | vsremaster fps | vs-mlrt ort.Model fps | "
            "ratio | max abs diff |", "|---|---|---|---|---|---|---|"]
    folder = Path(tempfile.mkdtemp(prefix="vsr-bench-"))
    for model_id in args.models:
        path, margin = peer_network(model_id, folder)
        ours = {b: vsr.upscale(rgb, model=model_id, num_streams=args.streams, tile=None, backend=b)
                for b in args.backends}
        peer = core.ort.Model(rgb, network_path=path, provider="CPU", num_streams=args.streams)
        best = dict.fromkeys([*ours, "peer"], 0.0)
        for _ in range(args.rounds):
            for b, clip in [*ours.items(), ("peer", peer)]:
                best[b] = max(best[b], fps(clip, args.frames))
        for b, clip in ours.items():
            diff = 0.0
            for x, y in zip(clip.frames(), peer.frames()):
                for p in range(3):
                    got, want = np.asarray(x[p]), np.clip(np.asarray(y[p]), 0, 1)
                    if margin:
                        got, want = (a[margin:-margin, margin:-margin] for a in (got, want))
                    diff = max(diff, float(np.abs(got - want).max()))
            row = (f"| {model_id} | {w}x{h} RGBS, {args.frames} frames | {b} | {best[b]:.3f} | "
                   f"{best['peer']:.3f} | {best[b] / best['peer']:.2f} | {diff:.1e} |")
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
                "ncnn": ncnn.__version__,
                "threads": str(args.threads),
                "streams": str(args.streams),
            },
            table,
            "vs-mlrt's output is clipped to 0-1 before the difference (ours clamps to the "
            "model's value range). Whole frames, no tiling, fp32. waifu2x runs in vs-mlrt "
            "with a Pad (reflect, 7 px) in front of the same graph, as vs-mlrt's own waifu2x "
            "files do; the outer 14 output pixels (padding differs) are left out of the "
            "difference. Backend ncnn runs the "
            "original ncnn files of the same weights (what `auto` picks on a CPU); cpu runs "
            "the same ONNX file as vs-mlrt.",
        )


if __name__ == "__main__":
    main()
