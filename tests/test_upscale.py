"""vsremaster.upscale: formats, sizes, props and errors a user would notice; real models."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest
import vapoursynth as vs
import vsremaster as vsr
from vsremaster.errors import BackendError, InputError, ModelError
from vsremaster.models.manifest import load_manifest
from vsremaster.models.store import ncnn_source, sources_dir
from vsremaster.runtime.session import Backend, SessionConfig, available_backends, get_pool

import onnx
from onnx import TensorProto, helper, numpy_helper

core = vs.core


@pytest.fixture(scope="module")
def nearest2x(tmp_path_factory) -> Path:
    """A user ONNX model: 2x nearest-neighbour upscale (exactly predictable output)."""
    scales = numpy_helper.from_array(np.array([1, 1, 2, 2], np.float32), "scales")
    graph = helper.make_graph(
        [helper.make_node("Resize", ["input", "", "scales"], ["output"], mode="nearest")],
        "nearest2x",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, [1, 3, "h", "w"])],
        [helper.make_tensor_value_info("output", TensorProto.FLOAT, [1, 3, "H", "W"])],
        [scales],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    path = tmp_path_factory.mktemp("models") / "nearest2x.onnx"
    onnx.save(model, str(path))
    return path


@pytest.fixture(scope="module")
def bikes(sample_clip) -> vs.VideoNode:
    return core.bs.VideoSource(str(sample_clip("bikes")))[:6].std.SetFrameProps(_Matrix=6)


def planes(frame: vs.VideoFrame) -> list[np.ndarray]:
    return [np.asarray(frame[p]).astype(np.float64) for p in range(frame.format.num_planes)]


@pytest.mark.parametrize(
    "fmt, size",
    [
        (vs.YUV420P8, (640, 272)),
        (vs.YUV420P10, (640, 272)),
        (vs.YUV444P16, (175, 143)),  # odd size: padded to the model multiple and cropped
        (vs.RGB24, (175, 143)),
        (vs.GRAY8, (321, 99)),
        (vs.RGBS, (64, 48)),
        (vs.YUV422P8, (640, 272)),
    ],
)
def test_formats_round_trip_like_a_point_resize(bikes, nearest2x, fmt, size):
    clip = core.resize.Bicubic(bikes, *size, format=fmt)
    clip = core.std.SetFrameProps(clip, MyProp=42)
    out = vsr.upscale(clip, model=nearest2x)
    assert (out.format.id, out.width, out.height) == (fmt, size[0] * 2, size[1] * 2)
    assert out.num_frames == clip.num_frames
    ref = core.resize.Point(clip, size[0] * 2, size[1] * 2)
    got, want = out.get_frame(2), ref.get_frame(2)
    # 8-16 bit: off by at most the dither step (a few codes for the chroma of 4:2:x)
    peak = (1 << out.format.bits_per_sample) - 1 if out.format.sample_type == vs.INTEGER else 1.0
    for g, w in zip(planes(got), planes(want)):
        assert np.abs(g - w).mean() / peak < 0.004
    assert got.props["MyProp"] == 42  # every input prop is kept
    if clip.format.color_family == vs.YUV:
        assert got.props["_Matrix"] == 6


def test_missing_matrix_gets_resolution_default(bikes, nearest2x):
    clip = core.std.RemoveFrameProps(bikes, "_Matrix")
    out = vsr.upscale(clip, model=nearest2x)
    assert out.get_frame(0).props["_Matrix"] == 6  # SMPTE 170M for 640x272, said in the log


def test_per_frame_matrix_is_used_both_ways(bikes, nearest2x):
    """Frames tagged 709 and 170M each convert with their own matrix and keep it."""
    clip = core.std.Interleave(
        [bikes.std.SetFrameProps(_Matrix=1), bikes.std.SetFrameProps(_Matrix=6)]
    )
    out = vsr.upscale(clip, model=nearest2x)
    ref = core.resize.Point(clip, out.width, out.height)
    for n in (0, 1):
        f = out.get_frame(n)
        assert f.props["_Matrix"] == (1 if n == 0 else 6)
        y, yr = planes(f)[0], planes(ref.get_frame(n))[0]
        assert np.abs(y - yr).mean() < 0.6


def test_requested_size_and_sar(bikes, nearest2x):
    out = vsr.upscale(bikes, model=nearest2x, width=960)
    assert (out.width, out.height) == (960, 408)  # height follows the aspect ratio
    f = vsr.upscale(bikes, model=nearest2x, width=1280, height=720).get_frame(0)
    # 640x272 shown at 40:17; stretched to 1280x720 the SAR must keep the display aspect
    assert (f.props["_SARNum"], f.props["_SARDen"]) == (45, 34)
    assert 1280 * 45 / 34 / 720 == pytest.approx(640 / 272)


def test_bad_sizes_and_clips_are_rejected(bikes, nearest2x):
    with pytest.raises(InputError, match="multiple of 2"):
        vsr.upscale(bikes, model=nearest2x, width=961, height=408)
    variable = core.std.Splice([bikes, core.resize.Point(bikes, 320, 136)], mismatch=True)
    with pytest.raises(InputError, match="variable format or size"):
        vsr.upscale(variable, model=nearest2x)
    with pytest.raises(InputError, match="not supported"):
        gray32 = core.query_video_format(vs.GRAY, vs.INTEGER, 32, 0, 0)
        vsr.upscale(core.std.BlankClip(format=gray32, width=64, height=48), model=nearest2x)


def test_interlaced_frames_are_an_error_that_says_deinterlace(bikes, nearest2x):
    out = vsr.upscale(bikes.std.SetFrameProps(_FieldBased=2), model=nearest2x)
    with pytest.raises(vs.Error, match="interlaced.*TFF.*deinterlace first"):
        out.get_frame(0)


def test_unknown_missing_and_gpu_backend_errors(bikes, nearest2x, tmp_path):
    with pytest.raises(ModelError, match="unknown model 'no-such-model'"):
        vsr.upscale(bikes, model="no-such-model")
    with pytest.raises(ModelError, match="does not exist"):
        vsr.upscale(bikes, model=tmp_path / "absent.onnx")
    if Backend.CUDA not in available_backends():
        with pytest.raises(BackendError, match="cuda"):
            vsr.upscale(bikes, model=nearest2x, backend="cuda")


# ---------------------------------------------------------------- real models


def psnr(a: np.ndarray, b: np.ndarray, peak: float) -> float:
    mse = np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2)
    return 10 * np.log10(peak**2 / mse)


def test_real_model_output_is_exactly_the_onnx_output(sample_clip, model):
    """Through VapourSynth (tiles, pool, conversion) == a direct ORT run on the same RGB."""
    loaded = model("realesr-animevideov3-x4")
    clip = core.bs.VideoSource(str(sample_clip("carphone")))[:3]
    rgb = core.resize.Bicubic(clip, format=vs.RGBS, matrix_in_s="170m")
    out = vsr.upscale(rgb, model="realesr-animevideov3-x4", backend="cpu")
    x = np.stack([np.asarray(rgb.get_frame(1)[p]) for p in range(3)])[None]
    x = np.clip(x, 0, 1)  # the model's value range; YUV->RGB overshoots slightly
    sess = ort.InferenceSession(str(loaded.path), providers=["CPUExecutionProvider"])
    want = np.clip(sess.run(None, {"input": x})[0][0], 0, 1)
    got = np.stack([np.asarray(out.get_frame(1)[p]) for p in range(3)])
    assert got.shape == (3, 576, 704)
    np.testing.assert_allclose(got, want, atol=1e-5)


def test_ncnn_backend_matches_onnx_runtime_and_auto_prefers_it_on_cpu(sample_clip, model):
    """backend="ncnn" runs the registry's original ncnn files: same frames as ONNX Runtime
    within the converter's verified tolerance; ``auto`` on a CPU-only machine picks it."""
    loaded = model("realesr-animevideov3-x2")
    clip = core.bs.VideoSource(str(sample_clip("carphone")))[:3]
    rgb = core.resize.Bicubic(clip, format=vs.RGBS, matrix_in_s="170m")
    runs = {b: vsr.upscale(rgb, model="realesr-animevideov3-x2", backend=b)
            for b in ("ncnn", "cpu", "auto")}
    for n in range(3):
        got = {b: np.stack([np.asarray(c.get_frame(n)[p]) for p in range(3)])
               for b, c in runs.items()}
        assert got["ncnn"].shape == (3, 288, 352)
        assert np.abs(got["ncnn"] - got["cpu"]).max() <= loaded.spec.tolerance
        assert np.abs(got["ncnn"] - got["cpu"]).max() > 0  # really another runtime
    if not available_backends()[0].gpu:
        np.testing.assert_array_equal(got["auto"], got["ncnn"])
        files = ncnn_source(loaded.spec)
        assert get_pool(SessionConfig(loaded.path, Backend.AUTO, 1, ncnn=files)).backend is Backend.NCNN


def test_ncnn_backend_needs_the_model_s_intact_ncnn_files(bikes, nearest2x, model, tmp_path,
                                                           monkeypatch):
    with pytest.raises(BackendError, match="no ncnn source.*backend 'cpu'"):
        vsr.upscale(bikes, model=nearest2x, backend="ncnn")
    with pytest.raises(BackendError, match="fp32 only"):
        vsr.upscale(bikes, model="realesr-animevideov3-x2", backend="ncnn", fp16=True)
    spec = model("realesr-animevideov3-x2").spec
    assert ncnn_source(spec) is not None
    # A cache whose ncnn files were altered (or removed) gives no ncnn source: auto runs ORT.
    originals = {m: (sources_dir(spec) / m).read_bytes() for m in (spec.param, spec.bin)}
    monkeypatch.setenv("VSREMASTER_MODELS", str(tmp_path / "models"))
    for member, data in originals.items():
        target = sources_dir(spec) / member
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(data)
    assert ncnn_source(spec) == (sources_dir(spec) / spec.param, sources_dir(spec) / spec.bin)
    tampered = bytearray((sources_dir(spec) / spec.bin).read_bytes())
    tampered[-4:] = b"\0\0\0\0"
    (sources_dir(spec) / spec.bin).write_bytes(bytes(tampered))
    assert ncnn_source(spec) is None
    (sources_dir(spec) / spec.param).unlink()
    assert ncnn_source(spec) is None
    assert load_manifest()["realesrgan-x4plus"].param  # the zoo's upscalers all have one


def test_real_model_tiles_streams_and_fp16_agree(sample_clip, model):
    model("realesr-animevideov3-x2")
    clip = core.bs.VideoSource(str(sample_clip("carphone")))[:4]
    whole = vsr.upscale(clip, model="realesr-animevideov3-x2")
    tiled = vsr.upscale(clip, model="realesr-animevideov3-x2", tile=64, overlap=8, num_streams=2)
    half = vsr.upscale(clip, model="realesr-animevideov3-x2", fp16=True)
    for n in range(4):
        w, t, h = (planes(c.get_frame(n))[0] for c in (whole, tiled, half))
        assert psnr(w, t, 255) > 45  # no visible seams
        assert psnr(w, h, 255) > 40  # half precision close to full


def test_real_model_upscale_is_faithful_to_the_source(sample_clip, model):
    """Downscaled back, the 4x result matches the source; it is sharper than bicubic."""
    model("realesrgan-x4plus")
    clip = core.bs.VideoSource(str(sample_clip("carphone")))[40:41]
    crop = core.std.CropAbs(clip, 64, 48, 56, 40)  # the face
    up = vsr.upscale(crop, model="realesrgan-x4plus")
    back = core.resize.Bicubic(up, crop.width, crop.height)
    bicubic = core.resize.Bicubic(crop, up.width, up.height)
    src_y = planes(crop.get_frame(0))[0]
    assert psnr(planes(back.get_frame(0))[0], src_y, 255) > 30

    def sharpness(y: np.ndarray) -> float:
        return float(np.abs(np.diff(y, axis=1)).mean() + np.abs(np.diff(y, axis=0)).mean())

    assert sharpness(planes(up.get_frame(0))[0]) > 1.2 * sharpness(planes(bicubic.get_frame(0))[0])


def test_a_4k_output_is_tiled_to_the_memory_budget(caplog, model, monkeypatch):
    """960x540 -> 3840x2160 with the RRDB model: ncnn needs about 51 kB of working memory
    per input pixel (twice ONNX Runtime), about 25 GiB for the whole frame; the planner
    tiles it to the CPU budget, and plans tiles for ONNX Runtime from its own figure."""
    import re

    from vsremaster.runtime.memory import CPU_STAGE_BUDGET

    monkeypatch.delenv("VSREMASTER_MEMORY_BUDGET", raising=False)
    caplog.set_level("INFO", logger="vsremaster")
    model("realesrgan-x4plus")
    spec = load_manifest()["realesrgan-x4plus"]
    clip = core.std.BlankClip(width=960, height=540, format=vs.RGBS, length=1)
    areas = {}
    for backend, per_pixel in (("ncnn", spec.bytes_per_pixel_ncnn), ("cpu", spec.bytes_per_pixel)):
        caplog.clear()
        vsr.upscale(clip, model="realesrgan-x4plus", backend=backend)  # planned, not run
        found = re.search(r"split into (\d+)x(\d+) tiles", caplog.text)
        assert found, backend
        areas[backend] = int(found[1]) * int(found[2])
        assert areas[backend] * per_pixel <= CPU_STAGE_BUDGET
    assert areas["cpu"] > 1.5 * areas["ncnn"]
