"""Helpers shared by the benchmarks: machine description, RESULTS.md recording, and the
PyTorch speed of vsremaster's own networks on a GPU (``--torch CKPT`` of the stage
benchmarks, for the lent GPU machine, which has no VapourSynth and no ONNX Runtime GPU
build)."""

from __future__ import annotations

import os
import platform
import sys
import time
from pathlib import Path

import numpy as np

RESULTS = Path(__file__).with_name("RESULTS.md")


def machine() -> str:
    """CPU model, logical cores and RAM of this machine, in one line."""
    cpu = platform.processor() or "unknown CPU"
    try:
        with open("/proc/cpuinfo", encoding="ascii", errors="replace") as fh:
            for line in fh:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
        with open("/proc/meminfo", encoding="ascii") as fh:
            ram = int(fh.readline().split()[1]) / (1 << 20)
    except OSError:
        ram = 0.0
    return f"{cpu}, {os.cpu_count()} logical cores, {ram:.0f} GiB RAM"


def package_versions(*names: str) -> dict[str, str]:
    """Installed version of each distribution, for :func:`record`."""
    from importlib.metadata import version

    return {name: version(name) for name in names}


def record(title: str, versions: dict[str, str], table: str, notes: str = "") -> None:
    """Append a dated section with the machine, versions, command and table to RESULTS.md."""
    command = "python " + " ".join([Path(sys.argv[0]).as_posix(), *sys.argv[1:]])
    lines = [
        f"\n## {title} — {time.strftime('%Y-%m-%d')}\n",
        f"- machine: {machine()}",
        "- versions: " + ", ".join(f"{k} {v}" for k, v in versions.items()),
        f"- command: `{command}`\n",
        table.rstrip() + "\n",
    ]
    if notes:
        lines.append(notes.rstrip() + "\n")
    with open(RESULTS, "a", encoding="utf-8") as fh:
        fh.write("\n".join(lines))


def ssim(a: np.ndarray, b: np.ndarray) -> float:
    """Mean SSIM of two 8-bit luma planes (Wang et al. 2004: Gaussian 11×11, σ 1.5)."""
    import cv2

    c1, c2 = (0.01 * 255) ** 2, (0.03 * 255) ** 2
    blur = lambda x: cv2.GaussianBlur(x, (11, 11), 1.5)  # noqa: E731
    a, b = a.astype(np.float64), b.astype(np.float64)
    ma, mb = blur(a), blur(b)
    va, vb, cov = blur(a * a) - ma * ma, blur(b * b) - mb * mb, blur(a * b) - ma * mb
    s = ((2 * ma * mb + c1) * (2 * cov + c2)) / ((ma * ma + mb * mb + c1) * (va + vb + c2))
    return float(s.mean())


def render(clip) -> tuple[list[list[np.ndarray]], float]:
    """All frames' planes (copies) and the output frames per second of the render."""
    start = time.perf_counter()
    frames = [[np.array(f[p]) for p in range(f.format.num_planes)] for f in clip.frames()]
    return frames, len(frames) / (time.perf_counter() - start)


def torch_speed(recipe, checkpoint: Path, inputs: list[tuple[int, ...]], unit: str,
                count: int = 200) -> str:
    """A markdown table of ``unit`` (outputs/s) of a recipe's network (``build()``, weights
    from ``checkpoint``) on CUDA, fp32 and bf16, batch 1 and 8. ``inputs``: the input shapes
    ``(N, C, H, W)`` one output takes (a denoised frame: its luma and its two chroma planes);
    a batch of 8 multiplies each ``N`` by 8."""
    import torch

    from vsremaster.training.loop import load_weights

    model = recipe.build()
    load_weights(model, checkpoint)
    model = model.cuda().eval()
    rows = [f"| precision | batch | {unit} ({torch.cuda.get_device_name()}, torch "
            f"{torch.__version__}) |", "|---|---|---|"]
    for name, dtype in (("fp32", torch.float32), ("bf16", torch.bfloat16)):
        for batch in (1, 8):
            xs = [torch.rand(n * batch, *rest, device="cuda") for n, *rest in inputs]
            half = dtype != torch.float32
            with torch.no_grad(), torch.autocast("cuda", dtype=dtype, enabled=half):
                for _ in range(10):
                    [model(x) for x in xs]
                torch.cuda.synchronize()
                start = time.perf_counter()
                for _ in range(count // batch):
                    [model(x) for x in xs]
                torch.cuda.synchronize()
            rate = count // batch * batch / (time.perf_counter() - start)
            rows.append(f"| {name} | {batch} | {rate:.0f} |")
    return "\n".join(rows)
