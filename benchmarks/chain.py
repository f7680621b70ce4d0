"""Benchmark: the whole restoration chain on 720×480 real footage, stage by stage.

Source: the "vtest" sample (real SD footage, 768×576) cropped to 720×480 and woven into
interlaced frames, top field first: each frame's two fields come from two consecutive real
frames, so the combing is real motion. The chain is what ``vsremaster script`` plans for an
interlaced, noisy, damaged title, every stage on: ``deinterlace`` (bob, double rate) →
``denoise`` (σ per plane measured once on its input and passed, as the script passes the
analysis's) → ``descratch`` → ``upscale`` (``--sr-model``; default the
model the ``auto`` preset picks here) → the face pass (BlazeFace detection + tracking over
the source bobbed by ``resize.Bob``, what ``remaster`` runs before writing the script; its
tracks number the deinterlaced frames) → ``face_enhance``
when a face restorer is installed (else the row says it was skipped).

Each stage is timed alone: its input is rendered first and held in memory, then the stage
runs over it with VapourSynth's threads (``--threads``). Per stage: output fps, peak resident
memory while it ran (``VmHWM``, reset before each stage; it includes the held input), and for
the ML stages, from the inferences actually run (every call's input shapes are recorded):

- nominal FLOPs per output frame: 2 × the multiply-accumulates of every Conv, ConvTranspose,
  MatMul and Gemm node at the shapes run (direct convolution; ncnn's Winograd kernels do
  fewer multiplies, so "effective" GFLOP/s can pass the measured peak), read from an ONNX
  Runtime profile of one run per distinct shape with graph optimisation off;
- activation traffic: the bytes every node reads and writes (its inputs, weights and
  outputs, once each), per output frame;
- achieved GFLOP/s and GB/s from those and the stage's time, and their share of this
  machine's peak, measured in the same run: float32 GEMM (numpy/OpenBLAS, 2048², all cores)
  for FLOP/s and a large ``numpy.copyto`` (read + write) for bandwidth.

The whole chain is then rendered end to end (stages overlap across threads), and vs-mlrt's
``core.ort.Model`` runs the same SR ONNX on the same held input (CPU provider, same streams;
for models with unpadded convolutions a ``Pad`` goes in front, as vs-mlrt's own waifu2x
files do) so the SR stage has its peer in the same run.

    python benchmarks/chain.py --frames 6 --record
    python benchmarks/chain.py --frames 6 --sr-model realesr-animevideov3-x4 --record

Needs the 'bench' extra (vapoursynth-mlrt-ort) and the models (``vsremaster models fetch``).

On a GPU machine with PyTorch and no VapourSynth (the lent ones), ``carry.py`` brings the
VapourSynth core and the models, ``--save-source`` here and ``--source`` there bring the
source frames (no source plugin is needed), and ``--backend torch`` runs every stage on
CUDA. The peaks are then torch's float16 GEMM and a device-to-device copy, the memory column
adds the peak GPU memory torch reserved, and the vs-mlrt peer is not run (its GPU plugins
cannot be carried there).

    python chain.py --frames 30 --save-source ../.gpu/source.npz           # here
    python3 chain.py --frames 30 --source ../.gpu/source.npz --backend torch --record  # there
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnxruntime as ort
import vapoursynth as vs
import vsremaster as vsr
from _common import fps, peer_network, proc_status_mib, record, reset_peak_rss
from vsremaster.chain import resolve_preset
from vsremaster.models.store import resolve_model
from vsremaster.runtime.session import SessionPool
from vsremaster.samples import sample_path
from vsremaster.stages.denoise import estimate_sigma

core = vs.core
SIZE = (720, 480)


# ---------------------------------------------------------------- the machine's peak


def peak_gflops(n: int = 2048, rounds: int = 5) -> float:
    """Best float32 GEMM rate of numpy (OpenBLAS, all cores), GFLOP/s."""
    a, b = (np.random.default_rng(i).random((n, n), dtype=np.float32) for i in (0, 1))
    a @ b
    best = min(_timed(lambda: a @ b) for _ in range(rounds))
    return 2 * n**3 / best / 1e9


def peak_gbps(mib: int = 512, rounds: int = 5) -> float:
    """Best copy bandwidth (bytes read + written) of ``numpy.copyto``, GB/s."""
    src = np.ones(mib << 18, np.float32)
    dst = np.empty_like(src)
    np.copyto(dst, src)
    best = min(_timed(lambda: np.copyto(dst, src)) for _ in range(rounds))
    return 2 * src.nbytes / best / 1e9


def _timed(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


# The CUDA device's name when the stages run on it (the torch backend on a GPU machine), else
# None; set once by main().
GPU: str | None = None


def cuda_device(backend: str) -> str | None:
    """The name of the GPU the ``torch`` backend runs on, or None (CPU, or another backend)."""
    if backend != "torch":
        return None
    try:
        import torch
    except ImportError:
        return None
    return torch.cuda.get_device_name() if torch.cuda.is_available() else None


def machine_peaks() -> tuple[float, float, str]:
    """(GFLOP/s, GB/s, what the FLOP/s figure is) of the machine the models run on: on a GPU
    torch's float16 GEMM (the upscaler's precision; float32 stages run on TF32 tensor cores,
    whose peak is half of it) and a device-to-device copy; else numpy's float32 GEMM."""
    if GPU:
        import torch
        from chain_torch import peak_tbps, peak_tflops

        return (1e3 * peak_tflops("cuda", torch.float16), 1e3 * peak_tbps("cuda"),
                "float16 GEMM, torch 8192²")
    return peak_gflops(), peak_gbps(), "float32 GEMM, numpy 2048²"


def reset_peaks() -> None:
    """Reset the peak resident memory (and the peak GPU memory on a GPU)."""
    reset_peak_rss()
    if GPU:
        import torch

        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()


def peak_memory() -> str:
    """Peak resident MiB since :func:`reset_peaks`; on a GPU also the peak GPU memory torch
    reserved (its caching allocator's pools; the CUDA context, about 0.5 GiB, not included)."""
    rss = f"{proc_status_mib('VmHWM'):.0f}"
    if GPU:
        import torch

        return f"{rss} / {torch.cuda.max_memory_reserved() / 2**20:.0f}"
    return rss


# ---------------------------------------------------------------- FLOPs from the graph


class InferenceLog:
    """Records the feed shapes of every model inference (``SessionPool.run``/``run_all``):
    the first input under "" (its name differs between backends), the others by name."""

    def __init__(self) -> None:
        self.calls: dict[tuple[Path, tuple], int] = defaultdict(int)
        self._run, self._run_all = SessionPool.run, SessionPool.run_all
        log = self

        def run(pool, x):
            log.calls[(pool.config.model, (("", x.shape),))] += 1
            return log._run(pool, x)

        def run_all(pool, x, extra=None):
            feeds = (("", x.shape),
                     *((k, v.shape) for k, v in sorted((extra or {}).items())))
            log.calls[(pool.config.model, feeds)] += 1
            return log._run_all(pool, x, extra)

        SessionPool.run, SessionPool.run_all = run, run_all

    def take(self) -> dict[tuple[Path, tuple], int]:
        calls, self.calls = dict(self.calls), defaultdict(int)
        return calls


_costs: dict[tuple[Path, tuple], tuple[float, float]] = {}


def graph_cost(model: Path, feeds: tuple) -> tuple[float, float]:
    """(nominal FLOPs, bytes read + written by all nodes) of one run of ``model`` on inputs of
    these shapes, from an ONNX Runtime profile (graph optimisation off: the graph's own ops)."""
    key = (model, feeds)
    if key in _costs:
        return _costs[key]
    opts = ort.SessionOptions()
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    opts.enable_profiling = True
    opts.profile_file_prefix = str(Path(tempfile.gettempdir()) / "vsr-chain-profile")
    opts.log_severity_level = 3
    sess = ort.InferenceSession(str(model), opts, providers=["CPUExecutionProvider"])
    names = [i.name for i in sess.get_inputs()]
    rng = np.random.default_rng(0)
    given = dict(feeds)
    inputs = {}
    for i, inp in enumerate(sess.get_inputs()):
        shape = given.get("") if i == 0 else given.get(inp.name)
        if shape is None:
            raise SystemExit(f"{model.name}: no recorded shape for input {inp.name} ({names})")
        inputs[inp.name] = rng.random(shape, dtype=np.float32)
    sess.run(None, inputs)
    profile = Path(sess.end_profiling())
    flops = traffic = 0.0
    for event in json.loads(profile.read_text()):
        args = event.get("args", {})
        if event.get("cat") != "Node" or not event["name"].endswith("_kernel_time"):
            continue
        shapes = [next(iter(d.values())) for d in args.get("input_type_shape", [])]
        outs = [next(iter(d.values())) for d in args.get("output_type_shape", [])]
        traffic += sum(int(args.get(k, 0)) for k in ("activation_size", "parameter_size",
                                                     "output_size"))
        op = args.get("op_name")
        if op == "Conv":
            w = shapes[1]
            flops += 2 * np.prod(outs[0]) * np.prod(w[1:])
        elif op == "ConvTranspose":
            w = shapes[1]
            flops += 2 * np.prod(shapes[0]) * np.prod(w[1:])
        elif op in ("MatMul", "Gemm"):
            k = shapes[0][-1]
            flops += 2 * np.prod(outs[0]) * k
    profile.unlink(missing_ok=True)
    _costs[key] = (float(flops), float(traffic))
    return _costs[key]


# ---------------------------------------------------------------- clips


def interlaced_source(frames: int, saved: Path | None = None) -> vs.VideoNode:
    """``frames`` TFF frames of 720×480 real footage, each woven from two real frames; from
    ``saved`` (written by ``--save-source``) where the machine has no source plugin."""
    if saved is not None:
        return load_source(saved, frames)
    clip = core.bs.VideoSource(str(sample_path("vtest")))
    clip = core.std.CropAbs(clip, *SIZE, (clip.width - SIZE[0]) // 2, (clip.height - SIZE[1]) // 2)
    clip = clip[: 2 * frames].std.SetFrameProps(_Matrix=6, _FieldBased=0)
    fields = core.std.SeparateFields(clip, tff=True)
    woven = core.std.DoubleWeave(core.std.SelectEvery(fields, 4, [0, 3]), tff=True)[::2]
    return core.std.SetFieldBased(woven, 2)


def save_source(clip: vs.VideoNode, path: Path) -> None:
    """The frames of ``clip`` (8-bit planar) as a ``.npz`` of one array per plane."""
    planes = [[np.asarray(f[p]).copy() for f in clip.frames()] for p in range(clip.format.num_planes)]
    np.savez_compressed(path, fps=np.array([clip.fps.numerator, clip.fps.denominator]),
                        **{f"plane{p}": np.stack(v) for p, v in enumerate(planes)})
    print(f"source: {path} ({clip.num_frames} frames)")


def load_source(path: Path, frames: int) -> vs.VideoNode:
    """The first ``frames`` frames saved by :func:`save_source` (YUV420P8, TFF, BT.601)."""
    data = np.load(path)
    planes = [data[f"plane{p}"] for p in range(3)]
    if len(planes[0]) < frames:
        raise SystemExit(f"{path} holds {len(planes[0])} frames; --frames {frames} asked")
    blank = core.std.BlankClip(format=vs.YUV420P8, width=SIZE[0], height=SIZE[1],
                               length=frames, fpsnum=int(data["fps"][0]),
                               fpsden=int(data["fps"][1]), keep=True)

    def fill(n: int, f: vs.VideoFrame) -> vs.VideoFrame:
        out = f.copy()
        for p, plane in enumerate(planes):
            np.copyto(np.asarray(out[p]), plane[n])
        return out

    clip = core.std.ModifyFrame(blank, blank, fill).std.SetFrameProps(_Matrix=6)
    return core.std.SetFieldBased(clip, 2)


def held(clip: vs.VideoNode) -> vs.VideoNode:
    """``clip`` rendered once and served from memory (so the next stage is timed alone)."""
    frames = [f.copy() for f in clip.frames()]
    blank = core.std.BlankClip(clip, keep=True)  # one frame: ModifyFrame asks it, cheaply
    return core.std.ModifyFrame(blank, blank, lambda n, f: frames[n])


def run_stage(name: str, make, src: vs.VideoNode, log: InferenceLog, peaks: tuple[float, float],
              *, warm: bool = True):
    """Render ``make(src)`` (``src`` held in memory) and measure it. Returns (row, output,
    seconds). ``warm``: render one frame of another instance first, untimed, so the model
    sessions (process-wide pools) exist before the clock starts, as in the other benchmarks."""
    if warm:
        make(src).get_frame(0)
        log.take()
    reset_peaks()
    start = time.perf_counter()
    out = make(src)
    kept = held(out)
    seconds = time.perf_counter() - start
    calls = log.take()
    return Stage(name, table_row(name, out, seconds, calls, peaks), kept, seconds, calls)


@dataclass
class Stage:
    """One measured stage: its table row, its output held in memory, its time and the model
    calls it made (``(model, feed shapes) -> count``)."""

    name: str
    row: str
    out: vs.VideoNode
    seconds: float
    calls: dict


def table_row(name: str, out: vs.VideoNode, seconds: float, calls: dict, peaks: tuple[float, float]) -> str:
    """A table row for ``out`` rendered in ``seconds`` with these model ``calls``."""
    rate = out.num_frames / seconds
    flops = traffic = 0.0
    for (model, feeds), count in calls.items():
        f, b = graph_cost(model, feeds)
        flops += f * count
        traffic += b * count
    if flops:
        gflops, gbps = flops / seconds / 1e9, traffic / seconds / 1e9
        ml = (f"{flops / out.num_frames / 1e9:.1f} | {gflops:.1f} | "
              f"{100 * gflops / peaks[0]:.0f} % | {traffic / out.num_frames / 1e9:.2f} | "
              f"{gbps:.2f} | {100 * gbps / peaks[1]:.1f} %")
    else:
        ml = "- | - | - | - | - | -"
    text = (f"| {name} | {out.width}x{out.height} | {out.num_frames} | {rate:.3f} | "
            f"{1000 / rate:.0f} | {peak_memory()} | {ml} |")
    print(text, flush=True)
    return text


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--frames", type=int, default=6, help="interlaced source frames (default 6;"
                    " the bob doubles them)")
    ap.add_argument("--sr-model", default=None, help="upscale model (default: the auto preset's)")
    ap.add_argument("--threads", type=int, default=os.cpu_count(), help="VapourSynth threads")
    ap.add_argument("--backend", default="auto", help="vsremaster backend for every stage")
    ap.add_argument("--num-streams", type=int, default=None, help="sessions (frames in flight)"
                    " per ML stage (default: the stages' own, 1 on a CPU, 2 on a GPU)")
    ap.add_argument("--record", action="store_true", help="append the tables to RESULTS.md")
    ap.add_argument("--workload", type=Path, help="write every stage's model calls to this JSON "
                    "(for chain_torch.py on a GPU machine)")
    ap.add_argument("--save-source", type=Path, metavar="NPZ", help="write the source frames "
                    "here and stop (for a machine without the source plugin; see carry.py)")
    ap.add_argument("--source", type=Path, metavar="NPZ", help="read the source frames from "
                    "a --save-source file instead of decoding the sample")
    args = ap.parse_args()
    core.num_threads = args.threads
    if args.save_source:
        save_source(interlaced_source(args.frames), args.save_source)
        return
    sr_model = args.sr_model or resolve_preset("auto")[0].upscale_model
    backend, streams = args.backend, args.num_streams
    global GPU
    GPU = cuda_device(backend)

    *peaks, peak_what = machine_peaks()
    print(f"peak: {peaks[0]:.0f} GFLOP/s ({peak_what}), {peaks[1]:.1f} GB/s (copy)", flush=True)
    log = InferenceLog()
    source = held(interlaced_source(args.frames, args.source))
    face_model = installed_restorer()
    sigma: list[float] = []

    def measured(clip: vs.VideoNode) -> list[float]:
        if not sigma:
            sigma.extend(estimate_sigma(clip))
        return sigma

    stages = [
        ("deinterlace", lambda c: vsr.deinterlace(c, tff=True, backend=backend,
                                                  num_streams=streams)),
        # sigma as the generated script passes it (measured by the analysis): here measured
        # once, on the first input the stage sees, and reused by the whole chain
        ("denoise", lambda c: vsr.denoise(c, sigma=measured(c), backend=backend,
                                          num_streams=streams)),
        ("descratch", lambda c: vsr.descratch(c, backend=backend, num_streams=streams)),
        (f"upscale {sr_model}", lambda c: vsr.upscale(c, model=sr_model, backend=backend,
                                                      num_streams=streams)),
    ]
    rows = [f"| stage | output | frames | fps | ms/frame | peak RSS{' / VRAM' if GPU else ''} MiB | GFLOP/frame | "
            "GFLOP/s | % peak FLOP/s | GB/frame | GB/s | % peak GB/s |",
            "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    clip, done, inputs = source, [], {}
    for name, make in stages:
        inputs[name] = clip
        done.append(run_stage(name, make, clip, log, peaks))
        clip = done[-1].out
    sidecar = Path(tempfile.mkdtemp(prefix="vsr-chain-")) / "title.faces.json"
    done.append(run_stage("face pass (bob, detect + track)",
                          lambda c: face_pass(core.resize.Bob(c, tff=True), sidecar, backend),
                          source, log, peaks, warm=False))
    if face_model is not None:
        done.append(run_stage(
            f"face_enhance {face_model}",
            lambda c: vsr.face_enhance(c, tracks=str(sidecar), model=face_model, backend=backend),
            clip, log, peaks))
        clip = done[-1].out
    rows += [stage.row for stage in done]
    if face_model is None:
        rows.append("| face_enhance | - | - | skipped: no face restorer installed "
                    "(`vsremaster models add`) | | | | | | | | |")
    total = sum(stage.seconds for stage in done)
    n_out = clip.num_frames
    rows.append(f"| sum of the stages | | {n_out} | {n_out / total:.3f} | {1000 * total / n_out:.0f}"
                " | | | | | | | |")

    # End to end: all stages in one graph (they overlap across VapourSynth's threads), the
    # graph built inside the timing (descratch reads its input's frame 0 while it is built).
    log.take()
    reset_peaks()
    start = time.perf_counter()
    chain = source
    for _, make in stages:
        chain = make(chain)
    for _ in chain.frames():
        pass
    rows.append(table_row("whole chain, end to end (no face pass)", chain,
                          time.perf_counter() - start, log.take(), peaks))
    if args.workload:
        write_workload(args.workload, done)

    # The SR stage's peer: vs-mlrt ort.Model, same ONNX, same held input frames.
    peer_rows = ["vs-mlrt is not run on the GPU: its CUDA and TensorRT plugins (and "
                 "onnxruntime-gpu) cannot be carried to the lent machine (64 MiB per call, no "
                 "network); its CPU plugin would time the CPU."] if GPU else \
        sr_peer_rows(inputs[f"upscale {sr_model}"], sr_model, backend, log)
    table = "\n".join(rows) + "\n\n" + "\n".join(peer_rows)
    print(table)
    if args.record:
        from _common import package_versions

        machine = f"GPU: {GPU}, torch backend" if GPU else "CPU"
        versions = package_versions("torch") if GPU else \
            package_versions("onnxruntime", "openvino", "ncnn")
        record(
            f"Whole chain on 720x480 real footage ({machine}): {sr_model}",
            {"vapoursynth": str(core.core_version.release_major), **versions,
             **package_versions("numpy"), "threads": str(args.threads), "backend": backend},
            table,
            f"Machine peak measured in the same run: {peaks[0]:.0f} GFLOP/s ({peak_what}), "
            f"{peaks[1]:.1f} GB/s (copy, read + write). Each stage is timed "
            "alone on its held input (graph building included); 'sum of the stages' adds "
            "their times; the whole chain builds and runs them in one graph. FLOPs are nominal (direct convolution) at the shapes "
            "run (tiles, padding and every plane included); bytes are every node's inputs, "
            "weights and outputs once; ncnn's Winograd convolutions do fewer multiplies than "
            "that count, so an upscaler on ncnn can pass 100 % of the GEMM peak. Peak RSS "
            "includes the held input frames" + ("; peak VRAM is what torch's allocator "
            "reserved (CUDA context not included)" if GPU else "") + ". The face "
            "pass runs on the source bobbed by resize.Bob, as `script` runs it on an "
            "interlaced source.",
        )


def sr_peer_rows(sr_in: vs.VideoNode, sr_model: str, backend: str, log: InferenceLog) -> list[str]:
    """The SR stage against vs-mlrt's ``ort.Model`` (CPU provider, same ONNX) on ``sr_in``."""
    rgb = core.std.Limiter(core.resize.Bicubic(sr_in, format=vs.RGBS), 0.0, 1.0)
    rgb = held(rgb)
    with tempfile.TemporaryDirectory() as tmp:
        path, _ = peer_network(sr_model, Path(tmp))
        log.take()
        spec = resolve_model(sr_model).spec
        ours_rgb = vsr.upscale(rgb, model=sr_model, backend=backend, tile=None)
        peer = core.ort.Model(rgb, network_path=path, provider="CPU", num_streams=1)
        speeds = {label: fps(c, c.num_frames - 1)  # first frame (session start) not timed
                  for label, c in (("vsremaster upscale (RGBS in/out)", ours_rgb),
                                   ("vs-mlrt ort.Model", peer))}
        log.take()
    ratio = speeds["vsremaster upscale (RGBS in/out)"] / speeds["vs-mlrt ort.Model"]
    return ["| SR model | input | vsremaster fps | vs-mlrt ort.Model fps | ratio |",
            "|---|---|---|---|---|",
            f"| {sr_model} (x{spec.scale}) | {rgb.width}x{rgb.height} RGBS, "
            f"{rgb.num_frames - 1} frames | {speeds['vsremaster upscale (RGBS in/out)']:.3f} | "
            f"{speeds['vs-mlrt ort.Model']:.3f} | {ratio:.2f} |"]


def write_workload(path: Path, stages: list[Stage]) -> None:
    """The model calls of each stage, as ``chain_torch.py`` replays them."""
    from vsremaster.registry import sha256_file

    out = {"format": "vsremaster.chain-workload", "version": 1, "stages": []}
    for stage in stages:
        calls = []
        for (model, feeds), count in stage.calls.items():
            flops, traffic = graph_cost(model, feeds)
            calls.append({"model": model.name, "sha256": sha256_file(model), "count": count,
                          "feeds": [[name, list(shape)] for name, shape in feeds],
                          "flops": flops, "bytes": traffic})
        out["stages"].append({"name": stage.name, "frames": stage.out.num_frames, "calls": calls})
    path.write_text(json.dumps(out, indent=1), encoding="utf-8")
    print(f"workload: {path}")


def face_pass(clip: vs.VideoNode, sidecar: Path, backend: str) -> vs.VideoNode:
    """The face pass over ``clip`` (detect + track, sidecar written), as ``remaster`` runs it
    before writing the script; returns ``clip`` so it is timed like the stages."""
    from vsremaster.faces.detect import FaceDetector
    from vsremaster.faces.scan import scan_faces, write_sidecar

    det = FaceDetector("blazeface-back-256", backend=backend)
    scan = scan_faces(clip, det, cuts=[])
    write_sidecar(scan, sidecar)
    print(f"  face pass: {len(scan.tracks)} track(s), faces in "
          f"{scan.stats['frames_with_faces']}/{scan.num_frames} frames", flush=True)
    return clip


def installed_restorer() -> str | None:
    from vsremaster.errors import ModelMissingError
    from vsremaster.faces.restore import installed_face_model

    try:
        return installed_face_model()
    except ModelMissingError:
        return None


if __name__ == "__main__":
    main()
