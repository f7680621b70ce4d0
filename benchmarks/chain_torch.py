"""Benchmark: the chain's model work on a GPU through the torch backend, without VapourSynth.

The lent GPU machine has PyTorch but neither VapourSynth nor an ONNX Runtime GPU build, so
the chain cannot run there as a script. ``benchmarks/chain.py --workload FILE`` records,
on a machine that runs the chain, every inference each stage made (model file, sha256, input
shapes, how many times, nominal FLOPs and bytes per call) and the stage's output frames. This
script replays that workload with :class:`vsremaster.runtime.torch_graph.OnnxModule` (the
``torch`` backend's engine: the same ONNX graphs) on the device, each stage alone, inputs
already on the device, and reports per stage: model-only frames per second (an upper bound
for the stage: no VapourSynth, no format conversion, no host↔device copies), achieved
TFLOP/s and TB/s and their share of the device's peak **measured in the same run** (a large
GEMM in the precision used, and a device-to-device copy). The sum over stages gives the
chain's model-only fps.

    python benchmarks/chain.py --frames 6 --sr-model realesr-animevideov3-x4 --workload wl.json
    # on the GPU machine, the ONNX files named in wl.json in MODELS/:
    python benchmarks/chain_torch.py wl.json --models MODELS --precision bf16 [--compile]
    # one model on whole frames (FLOPs counted by torch's FlopCounterMode; no traffic figure):
    python benchmarks/chain_torch.py --single realesrgan-x4plus.onnx --shape 1,3,480,720

Models not in MODELS are reported as missing (their sha256 must match the workload's).
``benchmarks/workloads/`` holds the workloads of the 720×480 chains measured on the CI machine.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "filters"))
from vsremaster.registry import sha256_file  # noqa: E402
from vsremaster.runtime.torch_graph import OnnxModule  # noqa: E402

DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}


def sync(device: str) -> None:
    if device == "cuda":
        torch.cuda.synchronize()


def timed(fn, device: str, rounds: int = 3) -> float:
    """Best wall time of ``fn`` over ``rounds`` (after one untimed call)."""
    fn()
    sync(device)
    best = float("inf")
    for _ in range(rounds):
        start = time.perf_counter()
        fn()
        sync(device)
        best = min(best, time.perf_counter() - start)
    return best


def peak_tflops(device: str, dtype: torch.dtype, n: int = 8192) -> float:
    if device == "cpu":
        n = 2048
    a, b = (torch.rand(n, n, device=device, dtype=dtype) for _ in range(2))
    return 2 * n**3 / timed(lambda: a @ b, device) / 1e12


def peak_tbps(device: str, mib: int = 1024) -> float:
    src = torch.ones(mib << 18, device=device)
    dst = torch.empty_like(src)
    return 2 * src.numel() * 4 / timed(lambda: dst.copy_(src), device) / 1e12


def single_workload(path: Path, shape: str, frames: int, device: str) -> dict:
    """A one-stage workload: ``frames`` runs of ``path`` on one input of ``shape``, FLOPs
    counted by torch (convolutions and matrix products, as chain.py counts them)."""
    from torch.utils.flop_counter import FlopCounterMode

    dims = [int(v) for v in shape.split(",")]
    module = OnnxModule(path).to(device).eval()
    with torch.inference_mode(), FlopCounterMode(display=False) as counter:
        module(torch.rand(dims, device=device))
    call = {"model": path.name, "sha256": sha256_file(path), "count": frames,
            "feeds": [["", dims]], "flops": float(counter.get_total_flops()), "bytes": 0.0}
    return {"stages": [{"name": f"{path.stem} {shape}", "frames": frames, "calls": [call]}]}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("workload", type=Path, nargs="?", help="JSON written by chain.py --workload")
    ap.add_argument("--models", type=Path, default=Path("."), help="folder with the ONNX files")
    ap.add_argument("--single", type=Path, help="time this one ONNX file instead of a workload")
    ap.add_argument("--shape", default="1,3,480,720", help="--single: input shape N,C,H,W")
    ap.add_argument("--frames", type=int, default=8, help="--single: runs timed")
    ap.add_argument("--precision", choices=sorted(DTYPES),
                    default="bf16" if torch.cuda.is_available() else "fp32",
                    help="default: bf16 on a GPU, fp32 on a CPU (bf16 is emulated there)")
    ap.add_argument("--compile", action="store_true", help="torch.compile each model")
    ap.add_argument("--channels-last", action="store_true",
                    help="weights and inputs in channels-last (NHWC) memory order, as the "
                    "torch backend runs them on CUDA")
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = ap.parse_args()
    device, dtype = args.device, DTYPES[args.precision]
    if device == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = args.precision == "fp32"
        torch.backends.cudnn.allow_tf32 = args.precision == "fp32"
        name = torch.cuda.get_device_name()
    else:
        name = "CPU"
    if args.single:
        work, args.models = single_workload(args.single, args.shape, args.frames, device), \
            args.single.parent
    elif args.workload:
        work = json.loads(args.workload.read_text())
    else:
        ap.error("give a workload JSON or --single ONNX")
    peak_f = peak_tflops(device, dtype)  # fp32 on CUDA: TF32 tensor cores, as the models
    peak_b = peak_tbps(device)
    print(f"# {name}, torch {torch.__version__}, {args.precision}"
          f"{', torch.compile' if args.compile else ''}: measured peak {peak_f:.1f} TFLOP/s "
          f"(GEMM), {peak_b:.2f} TB/s (copy)")
    print("| stage | frames | model-only fps | TFLOP/s | % peak | TB/s | % peak |")
    print("|---|---|---|---|---|---|---|")
    total = 0.0
    for stage in work["stages"]:
        if not stage["calls"]:
            continue
        modules, missing = {}, []
        for call in stage["calls"]:
            path = args.models / call["model"]
            if call["model"] in modules or call["model"] in missing:
                continue
            if not path.is_file() or sha256_file(path) != call["sha256"]:
                missing.append(call["model"])
                continue
            module = OnnxModule(path).to(device).eval()
            if args.channels_last:
                module = module.to(memory_format=torch.channels_last)
            modules[call["model"]] = torch.compile(module) if args.compile else module
        if missing:
            print(f"| {stage['name']} | missing or different: {', '.join(missing)} | | | | | |")
            continue
        layout = torch.channels_last if args.channels_last else torch.contiguous_format
        feeds = [[torch.rand(shape, device=device).contiguous(memory_format=layout)
                  for _, shape in call["feeds"]] for call in stage["calls"]]

        def run() -> None:
            with torch.inference_mode(), torch.autocast(
                device, dtype=dtype, enabled=dtype != torch.float32
            ):
                for call, xs in zip(stage["calls"], feeds, strict=True):
                    module = modules[call["model"]]
                    for _ in range(call["count"]):
                        module(*xs)

        seconds = timed(run, device, rounds=2)
        flops = sum(c["flops"] * c["count"] for c in stage["calls"])
        traffic = sum(c["bytes"] * c["count"] for c in stage["calls"])
        tf, tb = flops / seconds / 1e12, traffic / seconds / 1e12
        total += seconds / stage["frames"]
        print(f"| {stage['name']} | {stage['frames']} | {stage['frames'] / seconds:.1f} | "
              f"{tf:.1f} | {100 * tf / peak_f:.0f} % | {tb:.2f} | {100 * tb / peak_b:.0f} % |",
              flush=True)
    if total:
        print(f"| all stages (model-only) | | {1 / total:.1f} | | | | |")


if __name__ == "__main__":
    main()
