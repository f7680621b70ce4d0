"""backend="openvino": OpenVINO's CPU plugin runs the same ONNX files with ONNX Runtime's
results; ``auto`` picks it on a CPU for the models ncnn cannot run; a missing package or an
fp16 request is a clear error."""

from __future__ import annotations

import sys

import numpy as np
import pytest
import vapoursynth as vs
import vsremaster as vsr
from vsremaster.errors import BackendError
from vsremaster.models.store import resolve_model
from vsremaster.runtime.session import Backend, SessionConfig, available_backends, get_pool

pytest.importorskip("openvino")
core = vs.core


def test_stages_on_openvino_give_the_onnx_runtime_frames(against_onnx_runtime):
    """The user's view: the same 8-bit frames from descratch, denoise and deinterlace, and
    the upscaler within float rounding, on OpenVINO or on ONNX Runtime."""
    codes, shape, sr_diff = against_onnx_runtime(
        "openvino", [("descratch", "progressive"), ("denoise", "progressive"),
                     ("deinterlace", "interlaced")])
    assert codes <= 1
    assert shape == (128, 256)
    assert 0 < sr_diff <= 1e-4  # another runtime, the same numbers


def test_auto_runs_our_networks_on_openvino_when_no_gpu_is_there():
    if available_backends()[0].gpu:
        pytest.skip("a GPU provider comes first here")
    path = resolve_model("vsr-denoise-v1").path
    pool = get_pool(SessionConfig(path, Backend.AUTO, 1, threads=1))
    x = np.random.default_rng(0).random((1, 7, 32, 48), dtype=np.float32)
    assert pool.run(x).shape == (1, 1, 32, 48)
    assert pool.backend is Backend.OPENVINO
    with pytest.raises(BackendError, match="openvino backend runs fp32 only"):
        get_pool(SessionConfig(path, Backend.OPENVINO, 1, fp16=True))


def test_without_the_openvino_package_the_backend_is_named_and_auto_uses_onnx_runtime(
        monkeypatch, cup_crop):
    monkeypatch.setitem(sys.modules, "openvino", None)  # import openvino -> ImportError
    assert Backend.OPENVINO not in available_backends()
    with pytest.raises(BackendError, match="'openvino' is not available.*pip install openvino"):
        vsr.denoise(cup_crop[:3], backend="openvino")
    path = resolve_model("vsr-descratch-v1").path
    pool = get_pool(SessionConfig(path, Backend.AUTO, 1, threads=3))
    pool.run(np.zeros((1, 5, 16, 16), np.float32))
    assert pool.backend is (Backend.CPU if not available_backends()[0].gpu
                            else available_backends()[0])
