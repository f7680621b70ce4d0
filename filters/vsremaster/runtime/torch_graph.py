"""Run an ONNX graph in PyTorch: the ``torch`` backend's engine.

:class:`OnnxModule` translates the graph node by node into torch operations once, when it
is built (weights become buffers; attributes and constant inputs such as ``Slice`` bounds,
``Reshape`` shapes and ``Resize`` scales are read then), and its ``forward`` walks the
translated nodes in graph order. The walk is plain Python over a fixed list, so
``torch.compile`` traces it into one graph. The ONNX file is the single source of the model
for every backend: the ORT, ncnn and torch paths run the same weights.

Supported operators (what vsremaster's zoo and its own networks use): Conv, ConvTranspose,
Relu, LeakyRelu, PRelu, Sigmoid, Add, Sub, Mul, Div, Sum, Max, Min, Concat, DepthToSpace
(CRD and DCR), Resize (nearest/asymmetric/floor; linear and cubic with half-pixel or
align-corners coordinates, cubic A = -0.75), Slice, Identity, MaxPool, Reshape, Transpose,
Constant, ConstantOfShape. Anything else raises :class:`~vsremaster.errors.ModelError`
naming the node, so a model never runs half translated. Importing this module imports torch:
the session module imports it only when the ``torch`` backend is asked for.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

import onnx
from onnx import helper, numpy_helper

from ..errors import ModelError

__all__ = ["OnnxModule", "SUPPORTED_OPS"]


def _attrs(node) -> dict[str, Any]:
    out = {}
    for a in node.attribute:
        value = helper.get_attribute_value(a)
        out[a.name] = value.decode() if isinstance(value, bytes) else value
    return out


def _pads2d(pads: Sequence[int] | None) -> tuple[int, int, int, int]:
    """ONNX ``[top, left, bottom, right]`` -> ``(top, left, bottom, right)``; 0s if absent."""
    if not pads:
        return 0, 0, 0, 0
    if len(pads) != 4:
        raise ValueError(f"2-D pads expected, got {list(pads)}")
    return tuple(int(p) for p in pads)  # type: ignore[return-value]


class _Builder:
    """Translates nodes to ``(fn, inputs, outputs)`` steps; knows the graph's constants."""

    def __init__(self, model, source: str) -> None:
        self.source = source
        self.consts: dict[str, np.ndarray] = {
            init.name: numpy_helper.to_array(init) for init in model.graph.initializer
        }
        self.steps: list[tuple[Callable, list[str], list[str]]] = []

    def const(self, node, index: int) -> np.ndarray | None:
        if index >= len(node.input) or not node.input[index]:
            return None
        name = node.input[index]
        if name not in self.consts:
            raise self.error(node, f"input {index} ({name}) must be a constant")
        return self.consts[name]

    def error(self, node, what: str) -> ModelError:
        return ModelError(f"{self.source}: node {node.name or node.output[0]!r} "
                          f"({node.op_type}): {what} (torch backend)")

    def add(self, node, fn: Callable, inputs: Sequence[str] | None = None) -> None:
        names = list(node.input if inputs is None else inputs)
        self.steps.append((fn, names, list(node.output)))


def _conv(b: _Builder, node, a: dict) -> None:
    if a.get("auto_pad", "NOTSET") not in ("NOTSET", ""):
        raise b.error(node, f"auto_pad {a['auto_pad']} is not supported")
    t, left, bottom, right = _pads2d(a.get("pads"))
    stride = tuple(a.get("strides", (1, 1)))
    dilation = tuple(a.get("dilations", (1, 1)))
    groups = int(a.get("group", 1))
    if node.op_type == "ConvTranspose":
        if (t, left) != (bottom, right):
            raise b.error(node, "asymmetric pads are not supported")
        out_pad = tuple(a.get("output_padding", (0, 0)))
        if a.get("output_shape"):
            raise b.error(node, "output_shape is not supported")

        def deconv(x, w, bias=None):
            return F.conv_transpose2d(x, w, bias, stride, (t, left), out_pad, groups, dilation)

        b.add(node, deconv)
        return
    if (t, left) == (bottom, right):
        def conv(x, w, bias=None):
            return F.conv2d(x, w, bias, stride, (t, left), dilation, groups)
    else:
        def conv(x, w, bias=None):
            return F.conv2d(F.pad(x, (left, right, t, bottom)), w, bias, stride, 0, dilation, groups)
    b.add(node, conv)


def _resize(b: _Builder, node, a: dict) -> None:
    mode = a.get("mode", "nearest")
    coords = a.get("coordinate_transformation_mode", "half_pixel")
    scales, sizes = b.const(node, 2), b.const(node, 3)
    if sizes is not None and sizes.size:
        target: dict[str, Any] = {"size": tuple(int(v) for v in sizes[2:])}
    elif scales is not None and scales.size == 4 and tuple(scales[:2]) == (1, 1):
        # the given scale (not in/out) maps output to input coordinates, as in ONNX
        target = {"scale_factor": (float(scales[2]), float(scales[3])),
                  "recompute_scale_factor": False}
    else:
        raise b.error(node, "needs constant scales (1, 1, sh, sw) or sizes")
    if mode == "nearest":
        if coords != "asymmetric" or a.get("nearest_mode", "round_prefer_floor") != "floor":
            raise b.error(node, "nearest needs asymmetric coordinates and floor rounding")
        b.add(node, lambda x: F.interpolate(x, mode="nearest", **target), node.input[:1])
        return
    if mode not in ("linear", "cubic") or coords not in ("half_pixel", "align_corners"):
        raise b.error(node, f"mode {mode} with {coords} coordinates is not supported")
    if mode == "cubic" and (float(a.get("cubic_coeff_a", -0.75)) != -0.75
                            or int(a.get("exclude_outside", 0))):
        raise b.error(node, "cubic needs A = -0.75 and exclude_outside 0 (PyTorch's kernel)")
    torch_mode = "bilinear" if mode == "linear" else "bicubic"
    corners = coords == "align_corners"
    b.add(node, lambda x: F.interpolate(x, mode=torch_mode, align_corners=corners, **target),
          node.input[:1])


def _depth_to_space(b: _Builder, node, a: dict) -> None:
    r = int(a["blocksize"])
    if a.get("mode", "DCR") == "CRD":
        b.add(node, lambda x: F.pixel_shuffle(x, r))
        return

    def dcr(x):
        n, c, h, w = x.shape
        y = x.reshape(n, r, r, c // (r * r), h, w).permute(0, 3, 4, 1, 5, 2)
        return y.reshape(n, c // (r * r), h * r, w * r)

    b.add(node, dcr)


def _slice(b: _Builder, node, a: dict) -> None:
    starts, ends = b.const(node, 1), b.const(node, 2)
    axes, steps = b.const(node, 3), b.const(node, 4)
    axes = list(range(len(starts))) if axes is None else [int(v) for v in axes]
    steps = [1] * len(starts) if steps is None else [int(v) for v in steps]
    if any(s <= 0 for s in steps):
        raise b.error(node, "negative steps are not supported")
    spec = {ax: slice(int(s), int(e), st) for ax, s, e, st in zip(axes, starts, ends, steps)}

    def cut(x):
        index = [slice(None)] * x.dim()
        for ax, sl in spec.items():
            index[ax] = sl
        return x[tuple(index)]

    b.add(node, cut, node.input[:1])


def _reshape(b: _Builder, node, a: dict) -> None:
    shape = [int(v) for v in b.const(node, 1)]
    if int(a.get("allowzero", 0)):
        raise b.error(node, "allowzero is not supported")
    b.add(node, lambda x: x.reshape([x.shape[i] if s == 0 else s for i, s in enumerate(shape)]),
          node.input[:1])


def _max_pool(b: _Builder, node, a: dict) -> None:
    t, left, bottom, right = _pads2d(a.get("pads"))
    if (t, left) != (bottom, right) or a.get("auto_pad", "NOTSET") not in ("NOTSET", ""):
        raise b.error(node, "only symmetric explicit pads are supported")
    kernel = tuple(a["kernel_shape"])
    stride = tuple(a.get("strides", (1, 1)))
    ceil = bool(a.get("ceil_mode", 0))
    b.add(node, lambda x: F.max_pool2d(x, kernel, stride, (t, left), ceil_mode=ceil))


def _constant_of_shape(b: _Builder, node, a: dict) -> None:
    shape = [int(v) for v in b.const(node, 0)]
    value = numpy_helper.to_array(a["value"]) if "value" in a else np.zeros(1, np.float32)
    b.consts[node.output[0]] = np.full(shape, value.reshape(-1)[0], dtype=value.dtype)


def _constant(b: _Builder, node, a: dict) -> None:
    if "value" not in a:
        raise b.error(node, "only the 'value' attribute is supported")
    b.consts[node.output[0]] = numpy_helper.to_array(a["value"])


def _simple(fn_of_attrs: Callable[[dict], Callable]) -> Callable:
    def build(b: _Builder, node, a: dict) -> None:
        b.add(node, fn_of_attrs(a))
    return build


def _variadic(op: Callable) -> Callable[[dict], Callable]:
    def make(a: dict) -> Callable:
        def fn(*xs):
            out = xs[0]
            for x in xs[1:]:
                out = op(out, x)
            return out
        return fn
    return make


def _leaky_relu(a: dict) -> Callable:
    slope = float(a.get("alpha", 0.01))
    return lambda x: F.leaky_relu(x, slope)


def _concat(a: dict) -> Callable:
    axis = int(a["axis"])
    return lambda *xs: torch.cat(xs, axis)


def _transpose(a: dict) -> Callable:
    perm = tuple(a["perm"])
    return lambda x: x.permute(perm)


_OPS: dict[str, Callable] = {
    "Conv": _conv, "ConvTranspose": _conv, "Resize": _resize,
    "DepthToSpace": _depth_to_space, "Slice": _slice, "Reshape": _reshape,
    "MaxPool": _max_pool, "ConstantOfShape": _constant_of_shape, "Constant": _constant,
    "Relu": _simple(lambda a: F.relu),
    "Sigmoid": _simple(lambda a: torch.sigmoid),
    "LeakyRelu": _simple(_leaky_relu),
    "PRelu": _simple(lambda a: lambda x, slope: torch.where(x >= 0, x, x * slope)),
    "Identity": _simple(lambda a: lambda x: x),
    "Add": _simple(lambda a: torch.add), "Sub": _simple(lambda a: torch.sub),
    "Mul": _simple(lambda a: torch.mul), "Div": _simple(lambda a: torch.div),
    "Sum": _simple(_variadic(torch.add)), "Max": _simple(_variadic(torch.maximum)),
    "Min": _simple(_variadic(torch.minimum)),
    "Concat": _simple(_concat),
    "Transpose": _simple(_transpose),
}


SUPPORTED_OPS = tuple(_OPS)
"""ONNX operators :class:`OnnxModule` translates."""


class OnnxModule(torch.nn.Module):
    """An ONNX graph as a ``torch.nn.Module``: ``forward(*inputs)`` takes the graph's
    inputs in order (float32 tensors, NCHW) and returns the list of its outputs.
    ``input_names``, ``input_shapes`` (as the graph declares them: ints, or names for
    free dimensions) and ``output_names`` describe them.

    Raises (at construction):
        ModelError: an operator, attribute or non-constant shape input it does not
            translate (the node is named), or a file ONNX cannot read.
    """

    def __init__(self, path: Path | str) -> None:
        super().__init__()
        path = Path(path)
        try:
            model = onnx.load(str(path))
        except Exception as exc:  # onnx raises DecodeError, OSError…
            raise ModelError(f"{path}: not a readable ONNX file: {exc}") from exc
        builder = _Builder(model, path.name)
        for node in model.graph.node:
            if node.domain not in ("", "ai.onnx"):
                raise builder.error(node, f"domain {node.domain!r} is not supported")
            make = _OPS.get(node.op_type)
            if make is None:
                raise builder.error(
                    node, f"operator not supported (supported: {', '.join(SUPPORTED_OPS)})")
            try:
                make(builder, node, _attrs(node))
            except (KeyError, ValueError, TypeError) as exc:
                raise builder.error(node, f"bad attributes: {exc}") from exc
        consts = set(builder.consts)
        self.input_names = [i.name for i in model.graph.input if i.name not in consts]
        self.input_shapes = [
            (i.name, [d.dim_value or d.dim_param or None for d in i.type.tensor_type.shape.dim])
            for i in model.graph.input if i.name not in consts
        ]
        self.output_names = [o.name for o in model.graph.output]
        used = {name for _, ins, _ in builder.steps for name in ins}
        self._const_attr: dict[str, str] = {}
        for i, name in enumerate(sorted(consts & used)):
            attr = f"c{i}"
            self.register_buffer(attr, torch.from_numpy(np.array(builder.consts[name])),
                                 persistent=False)
            self._const_attr[name] = attr
        self._steps = builder.steps
        # the values each step is the last to read (not outputs or constants): dropped after
        # it, so a forward holds only the live activations (RRDB x4plus on a 720x480 frame:
        # tens of GiB if every intermediate is kept)
        last: dict[str, int] = {}
        for k, (_, ins, _) in enumerate(self._steps):
            for name in ins:
                if name:
                    last[name] = k
        keep = set(self.output_names) | set(self._const_attr)
        self._drop: list[list[str]] = [[] for _ in self._steps]
        for name, k in last.items():
            if name not in keep:
                self._drop[k].append(name)

    def forward(self, *inputs):
        env = dict(zip(self.input_names, inputs))
        for name, attr in self._const_attr.items():
            env[name] = getattr(self, attr)
        for (fn, ins, outs), drop in zip(self._steps, self._drop, strict=True):
            result = fn(*(env[i] for i in ins if i))
            if len(outs) == 1:
                env[outs[0]] = result
            else:
                env.update(zip(outs, result))
            for name in drop:
                del env[name]
        return [env[name] for name in self.output_names]
