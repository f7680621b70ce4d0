"""Convert ncnn models (``.param`` text + ``.bin`` weights) to ONNX.

The converter is written from the ncnn file formats and checked numerically against the
ncnn runtime itself (see :mod:`vsremaster.models.verify`). It handles the layers used by the
image-restoration models vsremaster ships (Real-ESRGAN, waifu2x and relatives):

* ``Input`` -> the graph input ``input``, float32 ``[1, C, "height", "width"]``.
* ``Split`` -> nothing: its outputs are aliases of its input.
* ``Convolution`` -> ``Conv`` (explicit or SAME padding, stride, dilation, rectangular
  kernels) + the fused activation (ReLU, leaky ReLU, clip, sigmoid, mish, hard-swish).
* ``Deconvolution`` -> ``ConvTranspose`` (ncnn stores the kernel ``[out, in, kh, kw]``,
  unflipped; ONNX wants ``[in, out, kh, kw]``), output padding, ``Slice`` for
  ``20=output_w``/``21=output_h`` with SAME padding, + the fused activation.
* ``PReLU`` -> ``PRelu`` (one slope per channel, or one for all).
* ``PixelShuffle`` -> ``DepthToSpace`` (mode 0 = PyTorch order = ``CRD``, 1 = ``DCR``).
* ``Interp`` -> ``Resize`` for bilinear/bicubic (half-pixel or align-corners coordinates
  with ``1/scale``, edge taps clamped, cubic ``A = -0.75``) and for nearest with
  power-of-two scales; other nearest resizes use ``Gather`` with ncnn's own float32
  index arithmetic, which Resize's does not reproduce exactly.
* ``BinaryOp`` -> ``Add``/``Sub``/``Mul``/``Div``/``Max``/``Min``/``Pow`` (the reversed
  ``rsub``/``rdiv``/``rpow`` swap the operands; ``1=with_scalar`` uses ``2=b``).
* ``Eltwise`` -> ``Mul``/``Sum``/``Max`` (sum with per-input coefficients).
* ``Concat`` -> ``Concat`` (blobs are CHW, so ncnn axis 0 is ONNX axis 1).

Everything else (other layers, int8 weights, unknown parameters) raises
:class:`~vsremaster.errors.ModelError` naming the layer, its type and the offending
parameter, so a model is never converted half right.

File formats, as used here:

* ``.param``: line 1 is the magic ``7767517``, line 2 ``layer_count blob_count``, then one
  line per layer ``Type name n_in n_out in_blobs... out_blobs... key=value...``. Keys are
  integers; a key ``-23300 - k`` holds the array parameter ``k`` written
  ``count,v1,v2,...``. A value with ``.``, ``e`` or ``E`` is a float, otherwise an int.
* ``.bin``: the weights of every layer, in layer order, with no header. A convolution
  weight blob starts with a 4-byte little-endian tag: ``0x01306B47`` = float16 data
  (padded to a 4-byte boundary), ``0`` = float32. Biases and PReLU slopes are raw float32
  without a tag. float16 weights are widened to float32 exactly.

The ONNX output is deterministic: the same ``.param``/``.bin`` give byte-identical files
(fixed IR version, opset, producer, names derived from the layer order; no timestamps).
"""

from __future__ import annotations

import math
import os
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import ModelError

__all__ = [
    "CONVERTER_VERSION",
    "OPSET",
    "IR_VERSION",
    "SUPPORTED_LAYERS",
    "ParamValue",
    "NcnnLayer",
    "NcnnGraph",
    "WeightReader",
    "parse_param",
    "read_param",
    "build_model",
    "convert",
]

#: Bumped whenever the converter's output bytes change for the same input files.
CONVERTER_VERSION = "1.0"
#: ONNX operator set the models are written for.
OPSET = 17
#: ONNX IR version written into the models (IR 8 is the one that goes with opset 17).
IR_VERSION = 8

MAGIC = 7767517
FP16_TAG = 0x01306B47
FP32_TAG = 0

_ARRAY_KEY_BASE = -23300
_SAME_UPPER = -233
_SAME_LOWER = -234

SUPPORTED_LAYERS = (
    "Input",
    "Split",
    "Convolution",
    "Deconvolution",
    "PReLU",
    "PixelShuffle",
    "Interp",
    "BinaryOp",
    "Eltwise",
    "Concat",
)

#: A parameter value: an int, a float, or (for array parameters) a tuple of them.
ParamValue = int | float | tuple[int | float, ...]


# --------------------------------------------------------------------------------------
# .param parsing
# --------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class NcnnLayer:
    """One line of a ``.param`` file.

    Attributes:
        type: layer type, e.g. ``"Convolution"``.
        name: layer name (unique within well-formed files).
        inputs: names of the blobs it reads, in order.
        outputs: names of the blobs it writes, in order.
        params: parameter id -> value. Array parameters (written with key ``-233xx``) are
            stored under their id ``xx`` as a tuple.
        line: 1-based line number in the ``.param`` file, for error messages.
    """

    type: str
    name: str
    inputs: tuple[str, ...]
    outputs: tuple[str, ...]
    params: dict[int, ParamValue] = field(default_factory=dict)
    line: int = 0

    def where(self) -> str:
        """``"layer 'name' (Type, line N)"``, the prefix of every error about this layer."""
        return f"layer {self.name!r} ({self.type}, line {self.line})"


@dataclass(frozen=True, slots=True)
class NcnnGraph:
    """A parsed ``.param`` file.

    Attributes:
        layers: the layers in file order (which is also the order of their weights in the
            ``.bin`` file, and a topological order).
        blob_count: the blob count declared on line 2.
    """

    layers: tuple[NcnnLayer, ...]
    blob_count: int

    @property
    def input_blob(self) -> str:
        """Name of the blob written by the single ``Input`` layer.

        Raises:
            ModelError: there is not exactly one ``Input`` layer with one output.
        """
        inputs = [layer for layer in self.layers if layer.type == "Input"]
        if len(inputs) != 1 or len(inputs[0].outputs) != 1:
            raise ModelError(
                f"ncnn model needs exactly one Input layer with one output blob, found "
                f"{len(inputs)}"
            )
        return inputs[0].outputs[0]

    @property
    def output_blob(self) -> str:
        """Name of the single blob that no layer reads (Split fan-outs excepted).

        Raises:
            ModelError: the model has no such blob or several.
        """
        consumed = {blob for layer in self.layers for blob in layer.inputs}
        outs = [
            blob
            for layer in self.layers
            if layer.type not in ("Split", "Input")
            for blob in layer.outputs
            if blob not in consumed
        ]
        if len(outs) != 1:
            raise ModelError(
                f"ncnn model needs exactly one output blob (written but never read), found "
                f"{len(outs)}: {', '.join(outs) or '(none)'}"
            )
        return outs[0]


def _parse_number(text: str) -> int | float:
    if any(c in text for c in ".eE"):
        return float(text)
    return int(text)


def parse_param(text: str) -> NcnnGraph:
    """Parse the text of an ncnn ``.param`` file.

    Args:
        text: the whole file (the plain-text format, magic ``7767517``; the binary
            ``.param.bin`` format is not supported).

    Returns:
        The graph: layers in file order with their blobs and parameters.

    Raises:
        ModelError: wrong magic, malformed line, counts that do not match, a blob read
            before it is written or written twice, a bad ``key=value``.
    """
    lines = [(i + 1, ln.strip()) for i, ln in enumerate(text.splitlines())]
    lines = [(n, ln) for n, ln in lines if ln]
    if not lines or lines[0][1] != str(MAGIC):
        first = lines[0][1][:40] if lines else "(empty file)"
        raise ModelError(f"not an ncnn .param file: magic {MAGIC} expected, found {first!r}")
    if len(lines) < 2:
        raise ModelError(".param file has no 'layer_count blob_count' line")
    try:
        layer_count, blob_count = (int(v) for v in lines[1][1].split())
    except ValueError:
        raise ModelError(
            f".param line {lines[1][0]}: expected 'layer_count blob_count', found "
            f"{lines[1][1]!r}"
        ) from None
    body = lines[2:]
    if len(body) != layer_count:
        raise ModelError(f".param declares {layer_count} layers but has {len(body)} layer lines")

    layers: list[NcnnLayer] = []
    written: set[str] = set()
    for lineno, ln in body:
        tok = ln.split()
        if len(tok) < 4:
            raise ModelError(f".param line {lineno}: malformed layer line {ln[:80]!r}")
        ltype, name = tok[0], tok[1]
        try:
            n_in, n_out = int(tok[2]), int(tok[3])
        except ValueError:
            raise ModelError(
                f".param line {lineno}: layer {name!r}: bad blob counts {tok[2]!r} {tok[3]!r}"
            ) from None
        if n_in < 0 or n_out < 0 or len(tok) < 4 + n_in + n_out:
            raise ModelError(f".param line {lineno}: layer {name!r}: blob list is truncated")
        ins = tuple(tok[4 : 4 + n_in])
        outs = tuple(tok[4 + n_in : 4 + n_in + n_out])
        for blob in ins:
            if blob not in written:
                raise ModelError(
                    f".param line {lineno}: layer {name!r} reads blob {blob!r} before any "
                    "layer writes it"
                )
        for blob in outs:
            if blob in written:
                raise ModelError(
                    f".param line {lineno}: layer {name!r} writes blob {blob!r} a second time"
                )
            written.add(blob)
        params: dict[int, ParamValue] = {}
        for kv in tok[4 + n_in + n_out :]:
            key_s, sep, val_s = kv.partition("=")
            try:
                if not sep:
                    raise ValueError
                key = int(key_s)
                if key <= _ARRAY_KEY_BASE:
                    pid = _ARRAY_KEY_BASE - key
                    parts = val_s.split(",")
                    count = int(parts[0])
                    values = tuple(_parse_number(p) for p in parts[1:] if p != "")
                    if count != len(values):
                        raise ModelError(
                            f".param line {lineno}: layer {name!r}: array parameter {key} "
                            f"declares {count} values but has {len(values)}"
                        )
                    params[pid] = values
                else:
                    params[key] = _parse_number(val_s)
            except ValueError:
                raise ModelError(
                    f".param line {lineno}: layer {name!r}: bad parameter {kv!r}"
                ) from None
        layers.append(NcnnLayer(ltype, name, ins, outs, params, lineno))
    if len(written) > blob_count:
        raise ModelError(f".param declares {blob_count} blobs but uses {len(written)}")
    return NcnnGraph(tuple(layers), blob_count)


def read_param(path: Path) -> NcnnGraph:
    """Read and parse a ``.param`` file (see :func:`parse_param`).

    Raises:
        ModelError: the file cannot be read or is malformed (message names the file).
    """
    try:
        text = Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ModelError(f"cannot read ncnn param file {path}: {exc}") from exc
    try:
        return parse_param(text)
    except ModelError as exc:
        raise ModelError(f"{path}: {exc}") from None


# --------------------------------------------------------------------------------------
# .bin reading
# --------------------------------------------------------------------------------------


class WeightReader:
    """Sequential reader of an ncnn ``.bin`` file.

    Args:
        data: the whole file's bytes.
        source: a name for error messages (usually the path).
    """

    def __init__(self, data: bytes, source: str = ".bin") -> None:
        self._data = memoryview(data)
        self._pos = 0
        self._source = source

    @property
    def remaining(self) -> int:
        """Bytes not read yet."""
        return len(self._data) - self._pos

    def _take(self, nbytes: int, layer: NcnnLayer, what: str) -> memoryview:
        if nbytes > self.remaining:
            raise ModelError(
                f"{self._source} is truncated: {layer.where()} needs {nbytes} bytes of {what} "
                f"at offset {self._pos}, only {self.remaining} left"
            )
        chunk = self._data[self._pos : self._pos + nbytes]
        self._pos += nbytes
        return chunk

    def raw_f32(self, count: int, layer: NcnnLayer, what: str) -> np.ndarray:
        """Read ``count`` untagged float32 values (biases, PReLU slopes).

        Returns:
            float32 array of shape ``[count]`` (a copy).

        Raises:
            ModelError: the file ends early.
        """
        return np.frombuffer(self._take(4 * count, layer, what), dtype="<f4").astype(np.float32)

    def tagged(self, count: int, layer: NcnnLayer, what: str) -> np.ndarray:
        """Read a tagged weight blob of ``count`` values (convolution kernels).

        Returns:
            float32 array of shape ``[count]``; float16 data is widened exactly.

        Raises:
            ModelError: the file ends early, or the tag is not float16/float32 (int8 or
                other quantised weights are not supported).
        """
        tag = int.from_bytes(self._take(4, layer, f"{what} tag"), "little")
        if tag == FP16_TAG:
            nbytes = 2 * count
            padded = (nbytes + 3) // 4 * 4
            raw = self._take(padded, layer, f"{what} (float16)")
            return np.frombuffer(raw[:nbytes], dtype="<f2").astype(np.float32)
        if tag == FP32_TAG:
            raw = self._take(4 * count, layer, f"{what} (float32)")
            return np.frombuffer(raw, dtype="<f4").astype(np.float32)
        raise ModelError(
            f"{self._source}: {layer.where()}: {what} has storage tag 0x{tag:08X}; only "
            f"float32 (0) and float16 (0x{FP16_TAG:08X}) weights are supported (int8 or "
            "quantised weights are not)"
        )


# --------------------------------------------------------------------------------------
# graph building
# --------------------------------------------------------------------------------------


class _Params:
    """Typed access to one layer's parameters, remembering which keys were used."""

    def __init__(self, layer: NcnnLayer) -> None:
        self.layer = layer
        self.used: set[int] = set()

    def has(self, key: int) -> bool:
        return key in self.layer.params

    def _get(self, key: int, default: ParamValue) -> ParamValue:
        self.used.add(key)
        return self.layer.params.get(key, default)

    def get_int(self, key: int, default: int) -> int:
        value = self._get(key, default)
        if isinstance(value, tuple) or (isinstance(value, float) and not value.is_integer()):
            raise self.error(key, f"must be an integer, found {value!r}")
        return int(value)

    def get_float(self, key: int, default: float) -> float:
        value = self._get(key, default)
        if isinstance(value, tuple):
            raise self.error(key, f"must be a number, found an array {value!r}")
        return float(value)

    def array(self, key: int) -> tuple[float, ...]:
        value = self._get(key, ())
        if not isinstance(value, tuple):
            value = (value,)
        return tuple(float(v) for v in value)

    def error(self, key: int, msg: str) -> ModelError:
        return ModelError(f"{self.layer.where()}: parameter {key}: {msg}")

    def require(self, key: int, allowed: Sequence[Any], what: str) -> None:
        """Raise unless parameter ``key`` (default 0) is one of ``allowed``."""
        value = self.layer.params.get(key, 0)
        self.used.add(key)
        if value not in allowed:
            raise self.error(key, f"{what}={value!r} is not supported")

    def check_all_used(self) -> None:
        unknown = sorted(set(self.layer.params) - self.used)
        if unknown:
            shown = ", ".join(f"{k}={self.layer.params[k]!r}" for k in unknown)
            raise ModelError(f"{self.layer.where()}: unsupported parameter(s) {shown}")


class _Builder:
    """Accumulates ONNX nodes and initializers with deterministic names."""

    def __init__(self) -> None:
        from onnx import helper, numpy_helper

        self.helper = helper
        self.numpy_helper = numpy_helper
        self.nodes: list[Any] = []
        self.initializers: list[Any] = []
        self._names: set[str] = set()

    def const(self, name: str, array: np.ndarray) -> str:
        if name in self._names:
            raise ModelError(f"internal: duplicate tensor name {name!r}")
        self._names.add(name)
        self.initializers.append(self.numpy_helper.from_array(np.array(array, order="C"), name))
        return name

    def node(self, op: str, inputs: Sequence[str], outputs: Sequence[str], name: str,
             **attrs: Any) -> None:
        self.nodes.append(self.helper.make_node(op, list(inputs), list(outputs), name=name,
                                                **attrs))


@dataclass
class _Ctx:
    """Conversion state: ONNX tensor and channel count of every ncnn blob."""

    b: _Builder
    weights: WeightReader
    tensor: dict[str, str]
    channels: dict[str, int | None]
    output_blob: str
    index: int = 0
    layer: NcnnLayer | None = None

    # names --------------------------------------------------------------------------
    @property
    def prefix(self) -> str:
        assert self.layer is not None
        return f"L{self.index:04d}_{self.layer.name}"

    def out_name(self, blob: str) -> str:
        return "output" if blob == self.output_blob else f"{blob}:{self.index:04d}"

    def tmp(self, suffix: str) -> str:
        return f"{self.prefix}/{suffix}"

    def inp(self, i: int = 0) -> str:
        assert self.layer is not None
        return self.tensor[self.layer.inputs[i]]

    def in_ch(self, i: int = 0) -> int | None:
        assert self.layer is not None
        return self.channels[self.layer.inputs[i]]

    def set_out(self, name: str, channels: int | None, i: int = 0) -> None:
        assert self.layer is not None
        self.tensor[self.layer.outputs[i]] = name
        self.channels[self.layer.outputs[i]] = channels


def _expect_blobs(layer: NcnnLayer, n_in: int | None, n_out: int | None) -> None:
    if n_in is not None and len(layer.inputs) != n_in:
        raise ModelError(f"{layer.where()}: expects {n_in} input blob(s), has "
                         f"{len(layer.inputs)}")
    if n_out is not None and len(layer.outputs) != n_out:
        raise ModelError(f"{layer.where()}: expects {n_out} output blob(s), has "
                         f"{len(layer.outputs)}")


def _activation(ctx: _Ctx, p: _Params, x: str, final: str) -> None:
    """Emit ncnn's fused activation (params 9 and 10) from ``x`` into ``final``."""
    act = p.get_int(9, 0)
    args = p.array(10)
    b = ctx.b
    name = ctx.tmp("act")
    if act == 0:
        if args:
            raise p.error(10, "activation parameters given without an activation")
        b.node("Identity", [x], [final], name)
    elif act == 1:
        b.node("Relu", [x], [final], name)
    elif act == 2:
        slope = args[0] if args else 0.0
        b.node("LeakyRelu", [x], [final], name, alpha=float(slope))
    elif act == 3:
        if len(args) != 2:
            raise p.error(10, f"clip activation needs [min, max], found {list(args)}")
        lo = b.const(ctx.tmp("clip_min"), np.array(args[0], dtype=np.float32))
        hi = b.const(ctx.tmp("clip_max"), np.array(args[1], dtype=np.float32))
        b.node("Clip", [x, lo, hi], [final], name)
    elif act == 4:
        b.node("Sigmoid", [x], [final], name)
    elif act == 5:  # mish: x * tanh(softplus(x))
        sp, th = ctx.tmp("softplus"), ctx.tmp("tanh")
        b.node("Softplus", [x], [sp], ctx.tmp("act_softplus"))
        b.node("Tanh", [sp], [th], ctx.tmp("act_tanh"))
        b.node("Mul", [x, th], [final], name)
    elif act == 6:  # hard-swish: x * clip(x * alpha + beta, 0, 1)
        if len(args) != 2:
            raise p.error(10, f"hard-swish activation needs [alpha, beta], found {list(args)}")
        hs = ctx.tmp("hardsigmoid")
        b.node("HardSigmoid", [x], [hs], ctx.tmp("act_hardsigmoid"), alpha=float(args[0]),
               beta=float(args[1]))
        b.node("Mul", [x, hs], [final], name)
    else:
        raise p.error(9, f"activation_type={act} is not supported")


def _conv_geometry(p: _Params) -> dict[str, int]:
    kw = p.get_int(1, 0)
    kh = p.get_int(11, kw)
    dw = p.get_int(2, 1)
    dh = p.get_int(12, dw)
    sw = p.get_int(3, 1)
    sh = p.get_int(13, sw)
    pl = p.get_int(4, 0)
    pt = p.get_int(14, pl)
    pr = p.get_int(15, pl)
    pb = p.get_int(16, pt)
    for key, v in ((1, kw), (11, kh), (2, dw), (12, dh), (3, sw), (13, sh)):
        if v <= 0:
            raise p.error(key, f"must be positive, found {v}")
    return dict(kw=kw, kh=kh, dw=dw, dh=dh, sw=sw, sh=sh, pl=pl, pt=pt, pr=pr, pb=pb)


def _pad_mode(p: _Params, g: dict[str, int]) -> str:
    """``"explicit"``, ``"SAME_UPPER"`` or ``"SAME_LOWER"``; rejects other negatives."""
    pads = (g["pl"], g["pt"], g["pr"], g["pb"])
    if all(v >= 0 for v in pads):
        return "explicit"
    if all(v == _SAME_UPPER for v in pads):
        return "SAME_UPPER"
    if all(v == _SAME_LOWER for v in pads):
        return "SAME_LOWER"
    raise p.error(4, f"padding (left, top, right, bottom)={pads} is not supported (mixed "
                     "negative padding)")


def _conv_weights(ctx: _Ctx, p: _Params, g: dict[str, int], transposed: bool
                  ) -> tuple[str, str | None, int]:
    layer = p.layer
    num_output = p.get_int(0, 0)
    if num_output <= 0:
        raise p.error(0, f"num_output must be positive, found {num_output}")
    bias_term = p.get_int(5, 0)
    wsize = p.get_int(6, 0)
    per_in = num_output * g["kw"] * g["kh"]
    if wsize <= 0 or wsize % per_in:
        raise p.error(6, f"weight_data_size={wsize} is not a multiple of num_output*kernel_h*"
                         f"kernel_w={per_in}")
    cin = wsize // per_in
    have = ctx.in_ch()
    if have is not None and have != cin:
        raise ModelError(f"{layer.where()}: weights are for {cin} input channels, its input "
                         f"blob has {have}")
    w = ctx.weights.tagged(wsize, layer, "weight").reshape(num_output, cin, g["kh"], g["kw"])
    if transposed:  # ncnn stores deconvolution kernels [out, in, kh, kw], unflipped
        w = w.transpose(1, 0, 2, 3)
    wname = ctx.b.const(f"{ctx.prefix}.weight", w)
    bname = None
    if bias_term not in (0, 1):
        raise p.error(5, f"bias_term must be 0 or 1, found {bias_term}")
    if bias_term:
        bias = ctx.weights.raw_f32(num_output, layer, "bias")
        bname = ctx.b.const(f"{ctx.prefix}.bias", bias)
    return wname, bname, num_output


def _convolution(ctx: _Ctx, p: _Params) -> None:
    _expect_blobs(p.layer, 1, 1)
    g = _conv_geometry(p)
    mode = _pad_mode(p, g)
    p.require(8, (0,), "int8_scale_term")
    p.require(19, (0,), "dynamic_weight")
    if p.get_float(18, 0.0) != 0.0:
        raise p.error(18, f"pad_value={p.layer.params[18]!r} is not supported (only 0)")
    wname, bname, cout = _conv_weights(ctx, p, g, transposed=False)
    attrs: dict[str, Any] = dict(
        kernel_shape=[g["kh"], g["kw"]], strides=[g["sh"], g["sw"]],
        dilations=[g["dh"], g["dw"]],
    )
    if mode == "explicit":
        attrs["pads"] = [g["pt"], g["pl"], g["pb"], g["pr"]]
    else:
        attrs["auto_pad"] = mode
    conv_out = ctx.tmp("conv")
    ctx.b.node("Conv", [ctx.inp(), wname] + ([bname] if bname else []), [conv_out],
               f"{ctx.prefix}", **attrs)
    out = ctx.out_name(p.layer.outputs[0])
    _activation(ctx, p, conv_out, out)
    ctx.set_out(out, cout)


def _deconvolution(ctx: _Ctx, p: _Params) -> None:
    _expect_blobs(p.layer, 1, 1)
    g = _conv_geometry(p)
    mode = _pad_mode(p, g)
    opr = p.get_int(18, 0)
    opb = p.get_int(19, opr)
    ow = p.get_int(20, 0)
    oh = p.get_int(21, ow)
    p.require(28, (0,), "dynamic_weight")
    if opr < 0 or opb < 0:
        raise p.error(18, f"output padding ({opr}, {opb}) must not be negative")
    if opr >= max(g["sw"], g["dw"]) or opb >= max(g["sh"], g["dh"]):
        raise p.error(18, f"output padding ({opr}, {opb}) must be smaller than the stride or "
                          "the dilation")
    # ncnn computes the full transposed convolution, then cuts explicit padding if any is
    # positive (output_w/h are then ignored); otherwise, with output_w/h and SAME padding,
    # cuts the surplus down to output_h x output_w; otherwise keeps the full output.
    crop = False
    pads = [0, 0, 0, 0]
    if mode == "explicit":
        if any(g[k] for k in ("pl", "pt", "pr", "pb")):
            pads = [g["pt"], g["pl"], g["pb"], g["pr"]]
        elif ow > 0 and oh > 0:
            raise p.error(20, f"output size {ow}x{oh} without SAME padding is not supported "
                              "(ncnn itself fails on it)")
    elif ow > 0 and oh > 0:
        crop = True
    wname, bname, cout = _conv_weights(ctx, p, g, transposed=True)
    attrs: dict[str, Any] = dict(
        kernel_shape=[g["kh"], g["kw"]], strides=[g["sh"], g["sw"]],
        dilations=[g["dh"], g["dw"]], pads=pads,
    )
    if opr or opb:
        attrs["output_padding"] = [opb, opr]
    b = ctx.b
    deconv_out = ctx.tmp("deconv")
    b.node("ConvTranspose", [ctx.inp(), wname] + ([bname] if bname else []), [deconv_out],
           f"{ctx.prefix}", **attrs)
    if crop:
        # Cut the full output down to (oh, ow); the odd pixel goes right/bottom for
        # SAME_UPPER, left/top for SAME_LOWER.
        shape = ctx.tmp("shape")
        b.node("Shape", [deconv_out], [shape], ctx.tmp("crop_shape"), start=2, end=4)
        want = b.const(ctx.tmp("crop_size"), np.array([oh, ow], dtype=np.int64))
        cut = ctx.tmp("cut")
        b.node("Sub", [shape, want], [cut], ctx.tmp("crop_cut"))
        two = b.const(ctx.tmp("two"), np.array([2, 2], dtype=np.int64))
        half = ctx.tmp("half")
        b.node("Div", [cut, two], [half], ctx.tmp("crop_half"))
        start = half
        if mode == "SAME_LOWER":
            start = ctx.tmp("start")
            b.node("Sub", [cut, half], [start], ctx.tmp("crop_start"))
        end = ctx.tmp("end")
        b.node("Add", [start, want], [end], ctx.tmp("crop_end"))
        axes = b.const(ctx.tmp("axes"), np.array([2, 3], dtype=np.int64))
        cropped = ctx.tmp("cropped")
        b.node("Slice", [deconv_out, start, end, axes], [cropped], ctx.tmp("crop"))
        deconv_out = cropped
    out = ctx.out_name(p.layer.outputs[0])
    _activation(ctx, p, deconv_out, out)
    ctx.set_out(out, cout)


def _prelu(ctx: _Ctx, p: _Params) -> None:
    _expect_blobs(p.layer, 1, 1)
    n = p.get_int(0, 0)
    if n <= 0:
        raise p.error(0, f"num_slope must be positive, found {n}")
    have = ctx.in_ch()
    if n != 1 and have is not None and have != n:
        raise p.error(0, f"num_slope={n} but the input blob has {have} channels")
    slope = ctx.weights.raw_f32(n, p.layer, "slope")
    slope = slope.reshape(n, 1, 1) if n > 1 else slope.reshape(1)
    sname = ctx.b.const(f"{ctx.prefix}.slope", slope)
    out = ctx.out_name(p.layer.outputs[0])
    ctx.b.node("PRelu", [ctx.inp(), sname], [out], ctx.prefix)
    ctx.set_out(out, ctx.in_ch())


def _pixelshuffle(ctx: _Ctx, p: _Params) -> None:
    _expect_blobs(p.layer, 1, 1)
    r = p.get_int(0, 1)
    mode = p.get_int(1, 0)
    if r <= 0:
        raise p.error(0, f"upscale_factor must be positive, found {r}")
    if mode not in (0, 1):
        raise p.error(1, f"mode={mode} is not supported (0 = PyTorch, 1 = TensorFlow order)")
    have = ctx.in_ch()
    if have is not None and have % (r * r):
        raise p.error(0, f"{have} input channels are not divisible by {r}*{r}")
    out = ctx.out_name(p.layer.outputs[0])
    ctx.b.node("DepthToSpace", [ctx.inp()], [out], ctx.prefix, blocksize=r,
               mode="CRD" if mode == 0 else "DCR")
    ctx.set_out(out, None if have is None else have // (r * r))


def _is_power_of_two(v: float) -> bool:
    m, _ = math.frexp(v)
    return v > 0 and m == 0.5


def _nearest_gather(ctx: _Ctx, x: str, out: str, fixed: tuple[int, int] | None,
                    scales: tuple[float, float]) -> None:
    """ncnn's nearest resize, reproduced bit for bit with ``Gather``.

    ncnn picks source pixel ``min(int(dst * step), in - 1)`` with ``step`` a float32:
    ``1.f / scale`` for a scale, ``in / (float)out`` for a fixed output size. Multiplying by
    a rounded reciprocal differs from ONNX Resize's division for some (scale, dst), e.g.
    scale 1.7, dst 17 gives 9 in ncnn and 10 in Resize, so the indices are computed the
    ncnn way here.
    """
    b = ctx.b
    hw = ctx.tmp("hw")
    b.node("Shape", [x], [hw], ctx.tmp("shape_hw"), start=2, end=4)
    hwf = ctx.tmp("hw_f")
    b.node("Cast", [hw], [hwf], ctx.tmp("cast_hw"), to=1)  # FLOAT
    if fixed is not None:
        out_hw = ""
        out_hwf = b.const(ctx.tmp("out_hw_f"), np.array(fixed, dtype=np.float32))
        step = ctx.tmp("step")
        b.node("Div", [hwf, out_hwf], [step], ctx.tmp("step_div"))
    else:
        sc = b.const(ctx.tmp("scale_hw"), np.array(scales, dtype=np.float32))
        prod = ctx.tmp("out_hw_f")
        b.node("Mul", [hwf, sc], [prod], ctx.tmp("out_mul"))
        floor = ctx.tmp("out_floor")
        b.node("Floor", [prod], [floor], ctx.tmp("out_floor"))
        out_hw = ctx.tmp("out_hw")
        b.node("Cast", [floor], [out_hw], ctx.tmp("out_cast"), to=7)  # INT64
        recip = np.float32(1.0) / np.array(scales, dtype=np.float32)
        step = b.const(ctx.tmp("step"), recip.astype(np.float32))
    one = b.const(ctx.tmp("one"), np.array(1, dtype=np.int64))
    zero = b.const(ctx.tmp("zero"), np.array(0, dtype=np.int64))
    last = ctx.tmp("last")
    b.node("Sub", [hw, one], [last], ctx.tmp("last_sub"))
    src = x
    for axis, tag in ((0, "h"), (1, "w")):
        ax = b.const(ctx.tmp(f"axis_{tag}"), np.array(axis, dtype=np.int64))
        n_out, st, lim = ctx.tmp(f"n_{tag}"), ctx.tmp(f"step_{tag}"), ctx.tmp(f"last_{tag}")
        if fixed is not None:
            n_out = b.const(n_out, np.array(fixed[axis], dtype=np.int64))
        else:
            b.node("Gather", [out_hw, ax], [n_out], ctx.tmp(f"gather_n_{tag}"), axis=0)
        b.node("Gather", [step, ax], [st], ctx.tmp(f"gather_step_{tag}"), axis=0)
        b.node("Gather", [last, ax], [lim], ctx.tmp(f"gather_last_{tag}"), axis=0)
        rng, rngf = ctx.tmp(f"dst_{tag}"), ctx.tmp(f"dst_f_{tag}")
        b.node("Range", [zero, n_out, one], [rng], ctx.tmp(f"range_{tag}"))
        b.node("Cast", [rng], [rngf], ctx.tmp(f"cast_dst_{tag}"), to=1)
        pos, posf = ctx.tmp(f"pos_{tag}"), ctx.tmp(f"pos_floor_{tag}")
        posi = ctx.tmp(f"pos_i_{tag}")
        b.node("Mul", [rngf, st], [pos], ctx.tmp(f"mul_{tag}"))
        b.node("Floor", [pos], [posf], ctx.tmp(f"floor_{tag}"))
        b.node("Cast", [posf], [posi], ctx.tmp(f"cast_src_{tag}"), to=7)
        idx = ctx.tmp(f"src_{tag}")
        b.node("Min", [posi, lim], [idx], ctx.tmp(f"clamp_{tag}"))
        dst = out if tag == "w" else ctx.tmp("rows")
        b.node("Gather", [src, idx], [dst], ctx.prefix if tag == "w" else ctx.tmp("gather_h"),
               axis=2 + axis)
        src = dst


def _interp(ctx: _Ctx, p: _Params) -> None:
    _expect_blobs(p.layer, 1, 1)
    kind = p.get_int(0, 0)
    hs = p.get_float(1, 1.0)
    ws = p.get_float(2, 1.0)
    oh = p.get_int(3, 0)
    ow = p.get_int(4, 0)
    p.require(5, (0,), "dynamic_target_size")
    align = p.get_int(6, 0)
    if kind not in (1, 2, 3):
        raise p.error(0, f"resize_type={kind} is not supported (1 nearest, 2 bilinear, "
                         "3 bicubic)")
    if align not in (0, 1):
        raise p.error(6, f"align_corner must be 0 or 1, found {align}")
    fixed = oh > 0 and ow > 0
    if not fixed and (oh > 0 or ow > 0):
        raise p.error(3, f"output size needs both height and width, found {oh}x{ow}")
    if not fixed and not (hs > 0 and ws > 0):
        raise p.error(1, f"scales must be positive, found {hs} x {ws}")
    b = ctx.b
    x = ctx.inp()
    out = ctx.out_name(p.layer.outputs[0])
    ctx.set_out(out, ctx.in_ch())
    if kind == 1:
        # Align-corner does not apply to nearest in ncnn.
        if fixed or not (_is_power_of_two(hs) and _is_power_of_two(ws)):
            _nearest_gather(ctx, x, out, (oh, ow) if fixed else None, (hs, ws))
            return
        # Power-of-two scales: 1/scale is exact, so Resize's division equals ncnn's product.
        attrs: dict[str, Any] = dict(mode="nearest", coordinate_transformation_mode="asymmetric",
                                     nearest_mode="floor")
    else:
        # ncnn: src = (dst + 0.5) / scale - 0.5 (half-pixel; scale = out / in with a fixed
        # output size), or dst * (in-1)/(out-1) with align_corner; taps outside the image
        # are clamped to the edge; bicubic uses Keys' kernel with A = -0.75. Interpolation
        # is continuous in the coordinate, so float rounding differences stay ~1e-7.
        attrs = dict(mode="linear" if kind == 2 else "cubic",
                     coordinate_transformation_mode="align_corners" if align else "half_pixel")
        if kind == 3:
            attrs.update(cubic_coeff_a=-0.75, exclude_outside=0)
    if fixed:
        nc = ctx.tmp("nc")
        b.node("Shape", [x], [nc], ctx.tmp("shape_nc"), start=0, end=2)
        hw = b.const(ctx.tmp("size_hw"), np.array([oh, ow], dtype=np.int64))
        sizes = ctx.tmp("sizes")
        b.node("Concat", [nc, hw], [sizes], ctx.tmp("sizes_concat"), axis=0)
        b.node("Resize", [x, "", "", sizes], [out], ctx.prefix, **attrs)
    else:
        # ncnn sizes the output int(in * scale) and maps coordinates with 1 / scale (not
        # in / out), which is what ONNX Resize does when given scales.
        scales = b.const(ctx.tmp("scales"), np.array([1, 1, hs, ws], dtype=np.float32))
        b.node("Resize", [x, "", scales], [out], ctx.prefix, **attrs)


_BINARY: dict[int, tuple[str, bool]] = {
    0: ("Add", False),
    1: ("Sub", False),
    2: ("Mul", False),
    3: ("Div", False),
    4: ("Max", False),
    5: ("Min", False),
    6: ("Pow", False),
    7: ("Sub", True),
    8: ("Div", True),
    9: ("Pow", True),
}


def _binaryop(ctx: _Ctx, p: _Params) -> None:
    op_type = p.get_int(0, 0)
    with_scalar = p.get_int(1, 0)
    scalar = p.get_float(2, 0.0)
    if op_type not in _BINARY:
        raise p.error(0, f"op_type={op_type} is not supported (0-9: add, sub, mul, div, max, "
                         "min, pow, rsub, rdiv, rpow)")
    op, reverse = _BINARY[op_type]
    if with_scalar not in (0, 1):
        raise p.error(1, f"with_scalar must be 0 or 1, found {with_scalar}")
    if with_scalar:
        _expect_blobs(p.layer, 1, 1)
        a = ctx.inp()
        bb = ctx.b.const(ctx.tmp("b"), np.array(scalar, dtype=np.float32))
        ch = ctx.in_ch()
    else:
        _expect_blobs(p.layer, 2, 1)
        a, bb = ctx.inp(0), ctx.inp(1)
        ca, cb = ctx.in_ch(0), ctx.in_ch(1)
        ch = None if ca is None or cb is None else max(ca, cb)
    if reverse:
        a, bb = bb, a
    out = ctx.out_name(p.layer.outputs[0])
    ctx.b.node(op, [a, bb], [out], ctx.prefix)
    ctx.set_out(out, ch)


def _eltwise(ctx: _Ctx, p: _Params) -> None:
    _expect_blobs(p.layer, None, 1)
    n = len(p.layer.inputs)
    if n < 2:
        raise ModelError(f"{p.layer.where()}: expects at least 2 input blobs, has {n}")
    op_type = p.get_int(0, 0)
    coeffs = p.array(1)
    if op_type not in (0, 1, 2):
        raise p.error(0, f"op_type={op_type} is not supported (0 prod, 1 sum, 2 max)")
    if coeffs and len(coeffs) != n:
        raise p.error(1, f"{len(coeffs)} coefficients for {n} inputs")
    if coeffs and op_type != 1 and any(c != 1.0 for c in coeffs):
        raise p.error(1, "coefficients are only supported with op_type=1 (sum)")
    b = ctx.b
    ins = [ctx.inp(i) for i in range(n)]
    if op_type == 1 and coeffs:
        scaled = []
        for i, (t, c) in enumerate(zip(ins, coeffs)):
            if c == 1.0:
                scaled.append(t)
                continue
            cname = b.const(ctx.tmp(f"coeff{i}"), np.array(c, dtype=np.float32))
            st = ctx.tmp(f"scaled{i}")
            b.node("Mul", [t, cname], [st], ctx.tmp(f"mul{i}"))
            scaled.append(st)
        ins = scaled
    out = ctx.out_name(p.layer.outputs[0])
    op = {0: "Mul", 1: "Sum", 2: "Max"}[op_type]
    if op == "Mul":  # Mul is binary: chain it
        acc = ins[0]
        for i, t in enumerate(ins[1:], 1):
            dst = out if i == n - 1 else ctx.tmp(f"prod{i}")
            b.node("Mul", [acc, t], [dst], ctx.prefix if i == n - 1 else ctx.tmp(f"prod{i}"))
            acc = dst
    else:
        b.node(op, ins, [out], ctx.prefix)
    ctx.set_out(out, ctx.in_ch(0))


def _concat(ctx: _Ctx, p: _Params) -> None:
    _expect_blobs(p.layer, None, 1)
    axis = p.get_int(0, 0)
    if not -3 <= axis <= 2:
        raise p.error(0, f"axis={axis} is not supported for CHW blobs")
    onnx_axis = axis + 1 if axis >= 0 else axis
    ins = [ctx.inp(i) for i in range(len(p.layer.inputs))]
    chans = [ctx.in_ch(i) for i in range(len(p.layer.inputs))]
    if onnx_axis in (1, -3):
        ch = None if any(c is None for c in chans) else sum(c for c in chans if c is not None)
    else:
        ch = chans[0]
    out = ctx.out_name(p.layer.outputs[0])
    ctx.b.node("Concat", ins, [out], ctx.prefix, axis=onnx_axis)
    ctx.set_out(out, ch)


def _split(ctx: _Ctx, p: _Params) -> None:
    _expect_blobs(p.layer, 1, None)
    src, ch = ctx.inp(), ctx.in_ch()
    for i, blob in enumerate(p.layer.outputs):
        if blob == ctx.output_blob:  # never happens for well-formed files; stay correct
            ctx.b.node("Identity", [src], ["output"], f"{ctx.prefix}/{i}")
            ctx.set_out("output", ch, i)
        else:
            ctx.set_out(src, ch, i)


_HANDLERS: dict[str, Callable[[_Ctx, _Params], None]] = {
    "Split": _split,
    "Convolution": _convolution,
    "Deconvolution": _deconvolution,
    "PReLU": _prelu,
    "PixelShuffle": _pixelshuffle,
    "Interp": _interp,
    "BinaryOp": _binaryop,
    "Eltwise": _eltwise,
    "Concat": _concat,
}


def _input_channels(graph: NcnnGraph, override: int | None) -> int | None:
    """Channel count of the model input: ``override``, Input's ``2=c``, or from the weights
    of the first convolution reading it; None when none of these tells."""
    if override is not None:
        if override <= 0:
            raise ModelError(f"in_channels must be positive, found {override}")
        return override
    inp = next(layer for layer in graph.layers if layer.type == "Input")
    c = inp.params.get(2, 0)
    if isinstance(c, int) and c > 0:
        return c
    aliases = {graph.input_blob}
    for layer in graph.layers:
        if not aliases.intersection(layer.inputs):
            continue
        if layer.type == "Split":
            aliases.update(layer.outputs)
        elif layer.type in ("Convolution", "Deconvolution"):
            try:
                p = _Params(layer)
                g = _conv_geometry(p)
                n = p.get_int(0, 0) * g["kw"] * g["kh"]
                size = p.get_int(6, 0)
            except ModelError:
                continue
            if n > 0 and size > 0 and size % n == 0:
                return size // n
    return None


def build_model(graph: NcnnGraph, weights: bytes, *, source: str = ".bin",
                in_channels: int | None = None) -> Any:
    """Build the ONNX ``ModelProto`` of a parsed ncnn graph.

    Args:
        graph: the parsed ``.param`` file.
        weights: the whole ``.bin`` file.
        source: name of the weights for error messages.
        in_channels: channel count of the input; by default the Input layer's ``2=c`` or
            what the first convolution's weights imply.

    Returns:
        An ``onnx.ModelProto`` (opset 17, IR 8): input ``input`` float32
        ``[1, C, "height", "width"]``, output ``output`` float32
        ``[1, C_out, "out_height", "out_width"]``.

    Raises:
        ModelError: unsupported layer or parameter (named), weights that do not match the
            graph (truncated, trailing bytes, unknown storage tag).
    """
    from onnx import TensorProto, helper

    in_blob = graph.input_blob
    out_blob = graph.output_blob
    cin = _input_channels(graph, in_channels)
    b = _Builder()
    ctx = _Ctx(b, WeightReader(weights, source), {in_blob: "input"}, {in_blob: cin}, out_blob)
    for index, layer in enumerate(graph.layers):
        ctx.index, ctx.layer = index, layer
        if layer.type == "Input":
            if layer.outputs[0] != in_blob:
                raise ModelError(f"{layer.where()}: a second Input layer is not supported")
            p = _Params(layer)
            for key in (0, 1, 2):  # w, h, c: informative only, H/W stay dynamic
                p.get_int(key, 0)
            p.check_all_used()
            continue
        handler = _HANDLERS.get(layer.type)
        if handler is None:
            raise ModelError(
                f"{layer.where()}: op {layer.type!r} is not supported by the ncnn converter "
                f"(supported: {', '.join(SUPPORTED_LAYERS)})"
            )
        p = _Params(layer)
        handler(ctx, p)
        p.check_all_used()
    if ctx.weights.remaining:
        raise ModelError(
            f"{source}: {ctx.weights.remaining} bytes left after the weights of the last layer; "
            "the .bin file does not belong to this .param file"
        )
    if cin is None:
        raise ModelError(
            "cannot tell the model's input channel count: the Input layer has no 2=c and no "
            "convolution reads the input directly; pass in_channels"
        )
    if ctx.tensor.get(out_blob) != "output":
        raise ModelError(f"internal: output blob {out_blob!r} was not produced as 'output'")
    node_names = [n.name for n in b.nodes]
    if len(set(node_names)) != len(node_names):
        raise ModelError("internal: duplicate ONNX node names")
    cout = ctx.channels.get(out_blob)
    graph_proto = helper.make_graph(
        b.nodes,
        "ncnn",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, [1, cin, "height", "width"])],
        [helper.make_tensor_value_info(
            "output", TensorProto.FLOAT,
            [1, cout if cout is not None else "channels", "out_height", "out_width"])],
        b.initializers,
    )
    model = helper.make_model(
        graph_proto,
        opset_imports=[helper.make_opsetid("", OPSET)],
        producer_name="vsremaster",
        producer_version=CONVERTER_VERSION,
        ir_version=IR_VERSION,
    )
    model.doc_string = "converted from ncnn by vsremaster.models.ncnn"
    return model


def convert(param: Path, bin: Path, out: Path, *, in_channels: int | None = None) -> None:
    """Convert an ncnn model to an ONNX file.

    The file is written atomically (temporary file in the same folder, then
    ``os.replace``) and checked with ``onnx.checker``. Same input files give byte-identical
    output, in any process.

    Args:
        param: the ncnn ``.param`` (text) file.
        bin: the matching ``.bin`` weights file.
        out: the ONNX file to write (replaced if it exists).
        in_channels: input channel count when the model does not tell (see
            :func:`build_model`).

    Raises:
        ModelError: unreadable or malformed files, an unsupported layer or parameter
            (message names the layer, the op and the parameter), weights that do not match
            the graph, or a model that fails ``onnx.checker``.
    """
    import onnx

    graph = read_param(Path(param))
    try:
        weights = Path(bin).read_bytes()
    except OSError as exc:
        raise ModelError(f"cannot read ncnn weights file {bin}: {exc}") from exc
    try:
        model = build_model(graph, weights, source=str(bin), in_channels=in_channels)
    except ModelError as exc:
        raise ModelError(f"{Path(param).name}: {exc}") from None
    try:
        onnx.checker.check_model(model, full_check=True)
    except (onnx.checker.ValidationError, onnx.shape_inference.InferenceError) as exc:
        raise ModelError(f"{Path(param).name}: converted model fails onnx.checker: {exc}"
                         ) from exc
    data = model.SerializeToString(deterministic=True)
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{out.name}.", suffix=".tmp", dir=out.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, out)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
