"""Helpers shared by the benchmarks: machine description, RESULTS.md recording, process
memory, the vs-mlrt peer's network and fps timing of a clip, and the
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


def proc_status_mib(field: str) -> float:
    """A memory figure of this process from ``/proc/self/status`` (``VmRSS``: resident now,
    ``VmHWM``: peak resident), MiB; NaN where there is no such file."""
    try:
        with open("/proc/self/status", encoding="ascii") as fh:
            for line in fh:
                if line.startswith(field + ":"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return float("nan")


def reset_peak_rss() -> None:
    """Reset this process' ``VmHWM`` (Linux: ``echo 5 > /proc/self/clear_refs``)."""
    with open("/proc/self/clear_refs", "w", encoding="ascii") as fh:
        fh.write("5")


def peer_network(model_id: str, folder: Path) -> tuple[str, int]:
    """The ONNX vs-mlrt runs, and how many output pixels per side differ by construction.

    Models with unpadded ("valid") convolutions (waifu2x upconv_7 eats 7 px per side) give an
    output smaller than ``scale`` x input, which ort.Model refuses; vs-mlrt's own waifu2x
    files pad inside the graph, so the same weights get a ``Pad`` (reflect) in front. Our
    runtime pads symmetrically (edge pixel repeated), so the outer ``border * scale`` output
    pixels differ between the two and are left out of the difference."""
    import onnx

    from vsremaster.models.store import resolve_model

    loaded = resolve_model(model_id)
    border = loaded.spec.border
    if not border:
        return str(loaded.path), 0
    model = onnx.load(str(loaded.path))
    graph = model.graph
    name = graph.input[0].name
    for node in graph.node:
        node.input[:] = [f"{name}_padded" if i == name else i for i in node.input]
    pads = onnx.numpy_helper.from_array(np.array([0, 0, border, border] * 2, np.int64), "pads")
    graph.initializer.append(pads)
    graph.node.insert(0, onnx.helper.make_node("Pad", [name, "pads"], [f"{name}_padded"],
                                               mode="reflect"))
    path = folder / f"{model_id}.padded.onnx"
    onnx.save(model, str(path))
    return str(path), border * loaded.spec.scale


def fps(clip, frames: int) -> float:
    """Frames per second of rendering frames 1..``frames`` of ``clip`` (frame 0 first,
    untimed: it builds the model sessions)."""
    clip.get_frame(0)  # sessions are built on the first frame: not timed
    start = time.perf_counter()
    for _ in clip[1:].frames():
        pass
    return frames / (time.perf_counter() - start)


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
