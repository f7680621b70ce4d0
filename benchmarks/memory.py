"""Memory benchmark: peak RSS of a 4K upscale on the CPU, vsremaster's tiling vs whole frames.

One frame of real footage (``vtest``, 768x576, resized to 960x540 with Spline36) upscaled 4x
to 3840x2160, each configuration in its own process so its peak resident memory (``VmHWM``)
is its own: the interpreter, VapourSynth, the model sessions, the frames in and out and the
inference working memory. vsremaster runs with the default automatic tiling
(:func:`vsremaster.runtime.tiling.auto_tile`, sized from the session budget of
:mod:`vsremaster.runtime.memory`; the table shows the tile upscale logged) and, for
comparison, whole frames (``tile`` = the frame);
the peer is vs-mlrt's ``core.ort.Model`` on the same ONNX file, whole frame as its users run
it by default. Models: the compact ``realesr-animevideov3-x4`` (the chain's 4x) and the RRDB
``realesrgan-x4plus`` (the heaviest in the zoo). Reported: peak RSS (MiB), the tile chosen,
seconds for the frame.

    python benchmarks/memory.py --record
    python benchmarks/memory.py --models realesr-animevideov3-x4 --size 480x270   # quick
    python benchmarks/memory.py --bytes-per-pixel   # the manifest's figures, every upscaler

``--bytes-per-pixel`` measures what the tile planner needs: each zoo upscaler's inference
working memory per input pixel on ONNX Runtime (CPU) and on ncnn, the growth of the peak RSS
from a 256x256 to a 384x384 whole-frame input divided by the added pixels (so the weights
and the runtime's fixed part cancel), plus 10 %, rounded up to 100 bytes: the
``bytes_per_pixel`` and ``bytes_per_pixel_ncnn`` of ``onnx/manifest.toml``.

Needs the 'bench' extra (vapoursynth-mlrt-ort) and the models (`vsremaster models fetch`).
"""

from __future__ import annotations

import argparse
import json
import math
import subprocess
import sys
import tempfile
import time
from pathlib import Path

RUNS = [("vsremaster", "ncnn", "auto"), ("vsremaster", "cpu", "auto"),
        ("vsremaster", "cpu", "whole"), ("vs-mlrt ort.Model", "cpu", "whole")]


def frames(count: int, width: int, height: int):
    """``count`` frames of real footage (vtest) resized to ``width`` x ``height``."""
    import vapoursynth as vs

    from vsremaster.samples import sample_path

    clip = vs.core.bs.VideoSource(str(sample_path("vtest")))[100:100 + count]
    return vs.core.resize.Spline36(clip, width, height)


def child(*args: str) -> dict | None:
    """Run this file with ``args`` in a fresh process; its JSON answer, None if it failed."""
    run = subprocess.run([sys.executable, __file__, *args], capture_output=True, text=True,
                         cwd=Path(__file__).parent)
    if run.returncode != 0:
        print(run.stderr[-2000:], file=sys.stderr)
        return None
    return json.loads(run.stdout.strip().splitlines()[-1])


def one(model_id: str, who: str, backend: str, tiling: str, size: str) -> dict:
    """Upscale one frame in this process and report its peak RSS and the tile upscale chose
    (read from its log, so the table shows what the library decided)."""
    import logging
    import re

    import vapoursynth as vs

    import vsremaster as vsr

    from _common import peer_network, proc_status_mib

    w, h = (int(v) for v in size.split("x"))
    clip = frames(1, w, h)
    said: list[str] = []
    handler = logging.Handler()
    handler.emit = lambda record: said.append(record.getMessage())  # type: ignore[method-assign]
    logging.getLogger("vsremaster").addHandler(handler)
    logging.getLogger("vsremaster").setLevel(logging.INFO)
    started = time.perf_counter()
    if who == "vsremaster":
        out = vsr.upscale(clip, model=model_id, backend=backend,
                          tile=(w, h) if tiling == "whole" else None)
    else:
        path, _ = peer_network(model_id, Path(tempfile.mkdtemp(prefix="vsr-mem-")))
        rgb = vs.core.std.Limiter(vs.core.resize.Bicubic(clip, format=vs.RGBS,
                                                         matrix_in_s="170m"), 0.0, 1.0)
        out = vs.core.ort.Model(rgb, network_path=path, provider="CPU", num_streams=1)
    frame = out.get_frame(0)
    assert (frame.width, frame.height) == (4 * w, 4 * h)
    tiles = [m[1] for text in said if (m := re.search(r"into (\d+x\d+) tiles", text))]
    return {"peak_mib": round(proc_status_mib("VmHWM")),
            "seconds": round(time.perf_counter() - started, 1),
            "tile": tiles[0] if tiles else "whole"}


def peak_at(model_id: str, backend: str, side: int) -> dict:
    """Peak RSS (MiB) of this process upscaling two side x side frames whole."""
    import vsremaster as vsr

    from _common import proc_status_mib

    out = vsr.upscale(frames(2, side, side), model=model_id, backend=backend,
                      tile=(side, side))
    for frame in out.frames():
        assert frame.width == out.width
    return {"peak_mib": proc_status_mib("VmHWM")}


def bytes_per_pixel() -> str:
    """The manifest's working memory per input pixel of every zoo upscaler, per runtime."""
    from vsremaster.models.manifest import load_manifest

    small, large = 256, 384
    rows = ["| model | runtime | peak RSS MiB at 256² | at 384² | bytes per input pixel "
            "(+10 %) |", "|---|---|---|---|---|"]
    for spec in load_manifest().models.values():
        if spec.task != "upscale":
            continue
        for backend in ("cpu", "ncnn"):
            peaks = []
            for side in (small, large):
                answer = child("--peak", spec.id, backend, str(side))
                if answer is None:
                    raise SystemExit(f"{spec.id} on {backend} at {side}² failed")
                peaks.append(answer["peak_mib"])
            per_pixel = (peaks[1] - peaks[0]) * 2**20 / (large**2 - small**2) * 1.1
            row = (f"| {spec.id} | {'ONNX Runtime' if backend == 'cpu' else 'ncnn'} | "
                   f"{peaks[0]:.0f} | {peaks[1]:.0f} | {math.ceil(per_pixel / 100) * 100} |")
            rows.append(row)
            print(row, flush=True)
    return "\n".join(rows)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--models", nargs="+",
                    default=["realesr-animevideov3-x4", "realesrgan-x4plus"])
    ap.add_argument("--size", default="960x540", help="input WxH (output is 4x)")
    ap.add_argument("--record", action="store_true", help="append the table to RESULTS.md")
    ap.add_argument("--bytes-per-pixel", action="store_true",
                    help="measure the manifest's working memory per input pixel instead")
    ap.add_argument("--one", nargs=4, metavar=("MODEL", "WHO", "BACKEND", "TILING"),
                    help=argparse.SUPPRESS)
    ap.add_argument("--peak", nargs=3, metavar=("MODEL", "BACKEND", "SIDE"),
                    help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.one:
        print(json.dumps(one(*args.one, args.size)))
        return
    if args.peak:
        print(json.dumps(peak_at(args.peak[0], args.peak[1], int(args.peak[2]))))
        return
    if args.bytes_per_pixel:
        table = bytes_per_pixel()
        print(table)
        if args.record:
            from _common import package_versions, record

            record("Upscaler working memory per input pixel (CPU)",
                   package_versions("vapoursynth", "onnxruntime", "ncnn"), table,
                   "Whole frames of real footage (vtest resized), each size in its own "
                   "process; the difference of the peaks over the difference of the pixels "
                   "leaves the weights and the runtime's fixed memory out.")
        return

    from vsremaster.runtime.memory import CPU_STAGE_BUDGET

    w, h = (int(v) for v in args.size.split("x"))
    rows = ["| model | runtime | backend | tiling | tile | peak RSS MiB | s/frame |",
            "|---|---|---|---|---|---|---|"]
    for model_id in args.models:
        for who, backend, tiling in RUNS:
            result = child("--size", args.size, "--one", model_id, who, backend, tiling) or {
                "peak_mib": "failed", "seconds": "-", "tile": "-"}
            row = (f"| {model_id} | {who} | {backend} | {tiling} | {result['tile']} | "
                   f"{result['peak_mib']} | {result['seconds']} |")
            rows.append(row)
            print(row, flush=True)
    table = "\n".join(rows)
    print(table)
    if args.record:
        from _common import package_versions, record

        record(f"4K upscale memory ({w}x{h} -> {4 * w}x{4 * h}, CPU)",
               package_versions("vapoursynth", "onnxruntime", "ncnn"), table,
               f"One frame per run, each in its own process (peak RSS = the process' VmHWM, "
               f"interpreter and VapourSynth included). vsremaster's CPU budget: "
               f"{CPU_STAGE_BUDGET >> 30} GiB of inference working memory per stage at "
               "most (half the available memory when that is less), which keeps the process "
               "under 6 GiB for a 4K output.")


if __name__ == "__main__":
    main()
