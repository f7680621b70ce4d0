"""Benchmark: one inference of each model on each CPU backend, at the chain's shapes.

The runtime-level view of the CPU speed-ups of issue #9: the same ONNX file (and, for the
upscalers converted from ncnn, the registry's ncnn files) run on

- ``cpu``: ONNX Runtime's CPU provider as the stages use it (graph optimisation level
  ``ALL``, which lays convolutions out as NCHWc blocks for MLAS's AVX2/AVX-512 kernels);
- ``cpu, no layout``: the same with level ``EXTENDED`` (plain NCHW): what the layout
  transformation is worth, before and after;
- ``openvino``: OpenVINO's CPU plugin (oneDNN), fp32;
- ``ncnn``: the original ncnn files, where the model has them.

Each backend runs through :mod:`vsremaster.runtime.session` as the stages do (the
``no layout`` row builds its ONNX Runtime session here), with the same threads. Inputs are
the shapes the 720×480 chain runs (a field for the deinterlacer, whole frames otherwise; the
RRDB upscaler on a 160×160 tile, as a whole frame would take minutes), filled with a fixed
random pattern (convolution speed does not depend on the values). Reported: median ms of
``--rounds`` runs taken in turn (the first run, which builds and warms up, excluded), speed-up
over ``cpu``, and the max abs difference from ``cpu``'s output.

    python benchmarks/backends.py --record
    python benchmarks/backends.py --models vsr-denoise-v1 --rounds 3   # quick

Needs the models (`vsremaster models fetch`); ncnn and openvino come with the `cpu` extra.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time

import numpy as np

from vsremaster.models.store import ncnn_source, resolve_model
from vsremaster.runtime.session import Backend, SessionConfig, available_backends, get_pool

from _common import package_versions, record

# model id -> input shape (NCHW) of one inference in the 720x480 chain
SHAPES = {
    "vsr-deinterlace-v1": (1, 5, 240, 720),
    "vsr-denoise-v1": (1, 7, 480, 720),
    "vsr-descratch-v1": (1, 5, 480, 720),
    "realesr-animevideov3-x4": (1, 3, 480, 720),
    "waifu2x-photo-x2-noise1": (1, 3, 480, 720),
    "realesrgan-x4plus": (1, 3, 160, 160),
}
NO_LAYOUT = "cpu, no layout"


def runners(model_id: str, threads: int) -> dict[str, object]:
    """Name -> function running one NCHW batch, for every backend this machine has."""
    import onnxruntime as ort

    loaded = resolve_model(model_id)
    spec, path = loaded.spec, loaded.path
    have = available_backends()
    out: dict[str, object] = {}
    files = ncnn_source(spec)
    for backend in (Backend.CPU, Backend.OPENVINO, Backend.NCNN):
        if backend not in have or (backend is Backend.NCNN and files is None):
            continue
        pool = get_pool(SessionConfig(path, backend, 1, threads=threads, ncnn=files))
        out[backend.value] = pool.run
    opts = ort.SessionOptions()
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED
    opts.intra_op_num_threads = threads
    opts.log_severity_level = 3
    sess = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
    name = sess.get_inputs()[0].name
    out[NO_LAYOUT] = lambda x: sess.run(None, {name: x})[0]
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--models", nargs="+", default=list(SHAPES), choices=list(SHAPES))
    ap.add_argument("--rounds", type=int, default=5, help="timed runs per backend (median)")
    ap.add_argument("--threads", type=int, default=os.cpu_count(), help="CPU threads")
    ap.add_argument("--record", action="store_true", help="append the table to RESULTS.md")
    args = ap.parse_args()

    order = ["cpu", NO_LAYOUT, "openvino", "ncnn"]
    rows = ["| model | input | " + " | ".join(f"{b} ms" for b in order)
            + " | speed-up over cpu: no layout / openvino / ncnn | max abs diff vs cpu |",
            "|---|---|" + "---|" * len(order) + "---|---|"]
    for model_id in args.models:
        shape = SHAPES[model_id]
        x = np.random.default_rng(0).random(shape, dtype=np.float32)
        run = runners(model_id, args.threads)
        outputs = {name: np.asarray(f(x)) for name, f in run.items()}  # build + warm up
        times: dict[str, list[float]] = {name: [] for name in run}
        for _ in range(args.rounds):
            for name, f in run.items():
                start = time.perf_counter()
                f(x)
                times[name].append(time.perf_counter() - start)
        ms = {name: 1000 * statistics.median(t) for name, t in times.items()}
        cell = lambda name: f"{ms[name]:.0f}" if name in ms else "-"  # noqa: E731
        ratio = lambda name: f"{ms['cpu'] / ms[name]:.2f}" if name in ms else "-"  # noqa: E731
        diff = max(float(np.abs(v - outputs["cpu"]).max()) for k, v in outputs.items()
                   if k != "cpu")
        row = (f"| {model_id} | {'x'.join(map(str, shape))} | "
               + " | ".join(cell(b) for b in order)
               + f" | {ratio(NO_LAYOUT)} / {ratio('openvino')} / {ratio('ncnn')} | {diff:.1e} |")
        rows.append(row)
        print(row, flush=True)
    table = "\n".join(rows)
    if args.record:
        record("CPU backends per model (one inference at the chain's shapes)",
               {"threads": str(args.threads),
                **package_versions("onnxruntime", "openvino", "ncnn", "numpy")}, table,
               "Median of the runs taken in turn; `cpu` is ONNX Runtime as the stages run it "
               "(level ALL: NCHWc layout), `cpu, no layout` the same at level EXTENDED. The "
               "RRDB row is one 160×160 tile.")


if __name__ == "__main__":
    main()
