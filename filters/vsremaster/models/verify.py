"""Numerical verification of converted models against the original ncnn runtime.

:func:`run_ncnn` runs an ncnn model with the ``ncnn`` Python package on the CPU in plain
float32 (no Vulkan, no float16/bfloat16/int8 storage or arithmetic).
:func:`verify_against_ncnn` feeds the same uniform random images to that and to the ONNX
model (onnxruntime, CPU execution provider) and reports the largest absolute difference.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import ModelError
from .ncnn import read_param

__all__ = ["Verification", "run_ncnn", "run_onnx", "verify_against_ncnn"]


def _ncnn_net(param: Path, bin: Path):
    import ncnn

    net = ncnn.Net()
    opt = net.opt
    # Options must be set before loading: layers pick their kernels at load time.
    opt.use_vulkan_compute = False
    for name in (
        "use_fp16_storage",
        "use_fp16_packed",
        "use_fp16_arithmetic",
        "use_bf16_storage",
        "use_bf16_packed",
        "use_int8_storage",
        "use_int8_packed",
        "use_int8_arithmetic",
        "use_int8_inference",
    ):
        if hasattr(opt, name):
            setattr(opt, name, False)
    # Winograd, sgemm and packed layouts stay on: they are float32 too. Winograd accounts
    # for most of the ~1e-5 difference from onnxruntime (turning it off gives ~2e-6),
    # well inside the 1e-4 tolerance, so ncnn runs as its users run it.
    opt.num_threads = max(1, os.cpu_count() or 1)
    if net.load_param(str(param)) != 0:
        raise ModelError(f"ncnn cannot load {param}")
    if net.load_model(str(bin)) != 0:
        raise ModelError(f"ncnn cannot load the weights {bin}")
    return net


def run_ncnn(param: Path, bin: Path, x: np.ndarray) -> np.ndarray:
    """Run an ncnn model on one image with the ncnn runtime (CPU, float32).

    Args:
        param: the ``.param`` file.
        bin: the ``.bin`` file.
        x: float32 ``[1, C, H, W]`` input (values as the model expects them, e.g. 0..1).

    Returns:
        float32 ``[1, C_out, H_out, W_out]`` output.

    Raises:
        ModelError: ``x`` is not ``[1, C, H, W]``, or ncnn fails to load or run the model.
    """
    if x.ndim != 4 or x.shape[0] != 1:
        raise ModelError(f"run_ncnn expects a [1, C, H, W] array, got shape {x.shape}")
    graph = read_param(Path(param))
    net = _ncnn_net(Path(param), Path(bin))
    try:
        return _ncnn_forward(net, graph.input_blob, graph.output_blob, x, Path(param))
    finally:
        net.clear()


def _ncnn_forward(net, in_blob: str, out_blob: str, x: np.ndarray, param: Path) -> np.ndarray:
    """One ncnn inference: ``[1, C, H, W]`` float32 in, ``[1, C', H', W']`` float32 out."""
    import ncnn

    chw = np.ascontiguousarray(x[0], dtype=np.float32)
    # clone(): ncnn must own the input. A Mat wrapping numpy memory has no reference count,
    # and an in-place first layer (e.g. a scalar BinaryOp) then crashes ncnn in light mode.
    mat_in = ncnn.Mat(chw).clone()
    ex = net.create_extractor()
    if ex.input(in_blob, mat_in) != 0:
        raise ModelError(f"ncnn rejected the input blob {in_blob!r} of {param}")
    ret, mat = ex.extract(out_blob)
    if ret != 0:
        raise ModelError(f"ncnn failed to compute {out_blob!r} of {param} (code {ret})")
    out = np.array(mat, dtype=np.float32, copy=True)
    del ex, mat, mat_in
    return out.reshape((1,) * (4 - out.ndim) + out.shape)


def run_onnx(onnx_path: Path, x: np.ndarray) -> np.ndarray:
    """Run an ONNX model (input ``input``) once with onnxruntime's CPU execution provider.

    Args:
        onnx_path: the model file.
        x: float32 ``[1, C, H, W]`` input.

    Returns:
        The float32 first output.
    """
    return _onnx_session(onnx_path).run(None, {"input": x})[0]


def _onnx_session(onnx_path: Path):
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.log_severity_level = 3
    return ort.InferenceSession(str(onnx_path), so, providers=["CPUExecutionProvider"])


@dataclass(frozen=True, slots=True)
class Verification:
    """Outcome of :func:`verify_against_ncnn`.

    Attributes:
        max_abs_error: largest ``|onnx - ncnn|`` over every output value of every size
            (in the model's output units, e.g. 0..1 pixel values).
        tolerance: the bound it was compared with.
        sizes: the input sizes tried, as ``(height, width)`` pairs.
        passed: ``max_abs_error <= tolerance`` (False for NaN errors).
    """

    max_abs_error: float
    tolerance: float
    sizes: tuple[tuple[int, int], ...]
    passed: bool


def verify_against_ncnn(
    onnx_path: Path,
    param: Path,
    bin: Path,
    *,
    tolerance: float = 1e-4,
    sizes: Sequence[tuple[int, int]] = ((48, 64), (37, 53)),
    seed: int = 0,
    in_channels: int = 3,
) -> Verification:
    """Compare a converted ONNX model with the original ncnn model on random images.

    For each ``(height, width)`` in ``sizes`` a uniform random float32 image in [0, 1) of
    shape ``[1, in_channels, height, width]`` (``numpy.random.default_rng(seed)``, drawn in
    order) goes through both; the largest absolute difference is reported.

    Args:
        onnx_path: the converted model (input ``input``).
        param: the ncnn ``.param`` file it came from.
        bin: the ncnn ``.bin`` file.
        tolerance: largest acceptable absolute difference.
        sizes: input sizes ``(height, width)`` in pixels.
        seed: random seed of the inputs.
        in_channels: input channel count C.

    Returns:
        The :class:`Verification`; a failed comparison is reported, not raised.

    Raises:
        ModelError: the two outputs have different shapes, or either runtime fails.
    """
    sizes_t = tuple((int(h), int(w)) for h, w in sizes)
    if not sizes_t:
        raise ModelError("verify_against_ncnn needs at least one size")
    rng = np.random.default_rng(seed)
    session = _onnx_session(Path(onnx_path))
    graph = read_param(Path(param))
    in_blob, out_blob = graph.input_blob, graph.output_blob
    net = _ncnn_net(Path(param), Path(bin))
    worst = 0.0
    try:
        for h, w in sizes_t:
            x = rng.uniform(0.0, 1.0, size=(1, in_channels, h, w)).astype(np.float32)
            got = session.run(None, {"input": x})[0]
            ref = _ncnn_forward(net, in_blob, out_blob, x, Path(param))
            if got.shape != ref.shape:
                raise ModelError(
                    f"{Path(onnx_path).name}: output shape {tuple(got.shape)} differs from "
                    f"ncnn's {tuple(ref.shape)} for a {h}x{w} input"
                )
            err = float(np.max(np.abs(got.astype(np.float64) - ref)))
            if not np.isfinite(err):
                worst = float("nan")
            elif not np.isnan(worst):
                worst = max(worst, err)
    finally:
        net.clear()
    passed = bool(np.isfinite(worst) and worst <= tolerance)
    return Verification(max_abs_error=worst, tolerance=float(tolerance), sizes=sizes_t,
                        passed=passed)
