"""Temporal face tracking: per-frame detections -> stable tracks with smoothed boxes and landmarks.

Method (SORT, Bewley et al., "Simple Online and Realtime Tracking", ICIP 2016, with a
Rauch–Tung–Striebel smoother instead of SORT's online output):

1. **Shots**: the title is split at its scene cuts; no track crosses a cut.
2. **Forward pass** per shot: each track is a constant-velocity Kalman filter on the box
   centre and size ``(cx, cy, s)``, ``s = sqrt(w * h)`` (the aspect ratio ``w / h`` is the
   track's running mean). Each frame, predicted boxes and detections are paired greedily by
   descending IoU (at least ``iou_min``); unpaired detections start tentative tracks.
3. **Hysteresis**: a track is confirmed after ``min_hits`` detections in a row (a one-frame
   false positive never becomes a track) and ends after more than ``max_gap`` frames without a
   detection; gaps of up to ``max_gap`` frames are bridged. A track ends at its last detection.
4. **Smoothing in both directions**: an RTS smoother over each track's frames (bridged frames
   use the prediction alone) gives the boxes; landmarks, expressed relative to the smoothed box
   (centre, size), are smoothed the same way per coordinate.

Noise is scale-aware: measurement noise is ``meas_noise * s`` pixels, process noise
``motion_noise * s`` pixels per frame squared, so a 40-pixel face in SD and a 400-pixel face
in 4K are tracked alike.

Shapes and units: boxes are ``(x0, y0, x1, y1)`` in pixels of the analysed frame (float),
landmarks ``(K, 2)`` pixels in the detector's point order, frame numbers are the clip's.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from itertools import pairwise

import numpy as np

__all__ = ["Detection", "Track", "box_iou", "centre_jitter", "track_faces"]


@dataclass(frozen=True, slots=True)
class Detection:
    """One face found in one frame.

    Attributes:
        box: ``(x0, y0, x1, y1)`` in pixels.
        score: detector confidence, 0-1.
        landmarks: ``(K, 2)`` points in pixels, or None. BlazeFace (K = 6): right eye, left
            eye, nose tip, mouth centre, right ear, left ear; YuNet, SCRFD, RetinaFace
            (K = 5): right eye, left eye, nose tip, right and left mouth corner ("right" is
            the person's right, the image's left).
    """

    box: tuple[float, float, float, float]
    score: float
    landmarks: np.ndarray | None = None


@dataclass(slots=True)
class Track:
    """A face followed through one shot.

    Attributes:
        id: unique per title, in order of birth.
        start / end: first frame and one past the last (``end`` exclusive).
        boxes: ``(n, 4)`` smoothed boxes, one per frame ``start..end-1``.
        raw: ``(n, 4)`` the detections paired with the track (NaN on bridged frames).
        scores: ``(n,)`` detector confidence (NaN on bridged frames).
        landmarks: ``(n, K, 2)`` smoothed landmarks, or None when the detector gives none.
    """

    id: int
    start: int
    end: int
    boxes: np.ndarray
    raw: np.ndarray
    scores: np.ndarray
    landmarks: np.ndarray | None = None

    @property
    def detected(self) -> np.ndarray:
        """``(n,)`` bool: frames with a detection (False: bridged)."""
        return ~np.isnan(self.scores)

    def to_dict(self) -> dict:
        def rows(a: np.ndarray | None) -> list | None:
            return None if a is None else np.round(a, 2).tolist()

        return {
            "id": self.id, "start": self.start, "end": self.end,
            "boxes": rows(self.boxes),
            "raw": [None if np.isnan(r[0]) else [round(float(v), 2) for v in r] for r in self.raw],
            "scores": [None if np.isnan(s) else round(float(s), 4) for s in self.scores],
            "landmarks": rows(self.landmarks),
        }  # fmt: skip

    @classmethod
    def from_dict(cls, data: dict) -> Track:
        raw = np.array([[np.nan] * 4 if r is None else r for r in data["raw"]], dtype=np.float64)
        scores = np.array([np.nan if s is None else s for s in data["scores"]], dtype=np.float64)
        lm = data.get("landmarks")
        return cls(
            id=int(data["id"]), start=int(data["start"]), end=int(data["end"]),
            boxes=np.asarray(data["boxes"], dtype=np.float64).reshape(-1, 4), raw=raw,
            scores=scores, landmarks=None if lm is None else np.asarray(lm, dtype=np.float64),
        )  # fmt: skip


def box_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """IoU of every box in ``a`` ``(n, 4)`` with every box in ``b`` ``(m, 4)``: ``(n, m)``."""
    a = np.asarray(a, dtype=np.float64).reshape(-1, 4)
    b = np.asarray(b, dtype=np.float64).reshape(-1, 4)
    x0 = np.maximum(a[:, None, 0], b[None, :, 0])
    y0 = np.maximum(a[:, None, 1], b[None, :, 1])
    x1 = np.minimum(a[:, None, 2], b[None, :, 2])
    y1 = np.minimum(a[:, None, 3], b[None, :, 3])
    inter = np.clip(x1 - x0, 0, None) * np.clip(y1 - y0, 0, None)
    area_a = (a[:, 2] - a[:, 0]) * (a[:, 3] - a[:, 1])
    area_b = (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])
    union = area_a[:, None] + area_b[None, :] - inter
    return np.where(union > 0, inter / np.where(union > 0, union, 1), 0.0)


def centre_jitter(boxes: np.ndarray) -> float:
    """Mean box-centre jitter: ``|c[t+1] - 2 c[t] + c[t-1]|`` divided by the box size
    ``sqrt(w * h)``, over the frames of ``boxes`` ``(n, 4)`` (NaN rows skipped); 0 for n < 3."""
    boxes = np.asarray(boxes, dtype=np.float64)
    if len(boxes) < 3:
        return 0.0
    centre = (boxes[:, :2] + boxes[:, 2:]) / 2
    size = np.sqrt(np.clip((boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1]), 1e-9, None))
    second = np.linalg.norm(centre[2:] - 2 * centre[1:-1] + centre[:-2], axis=1) / size[1:-1]
    second = second[np.isfinite(second)]
    return float(second.mean()) if second.size else 0.0


# --------------------------------------------------------------------------- Kalman


def _box_to_z(box: np.ndarray) -> tuple[np.ndarray, float]:
    w, h = box[2] - box[0], box[3] - box[1]
    return np.array([(box[0] + box[2]) / 2, (box[1] + box[3]) / 2, np.sqrt(max(w * h, 1e-9))]), w / max(h, 1e-9)


def _z_to_box(z: np.ndarray, aspect: float) -> np.ndarray:
    w = z[2] * np.sqrt(aspect)
    h = z[2] / np.sqrt(aspect)
    return np.array([z[0] - w / 2, z[1] - h / 2, z[0] + w / 2, z[1] + h / 2])


_F = np.eye(6)
_F[:3, 3:] = np.eye(3)
_H = np.hstack([np.eye(3), np.zeros((3, 3))])


def _noise(size: float, motion: float, meas: float) -> tuple[np.ndarray, np.ndarray]:
    """Process noise Q (discrete white-noise acceleration) and measurement noise R."""
    q = (motion * size) ** 2
    block = np.array([[0.25, 0.5], [0.5, 1.0]]) * q
    qm = np.zeros((6, 6))
    for i in range(3):
        qm[np.ix_([i, i + 3], [i, i + 3])] = block
    return qm, np.eye(3) * (meas * size) ** 2


@dataclass
class _Live:
    """A track during the forward pass."""

    id: int
    start: int
    x: np.ndarray
    p: np.ndarray
    aspect: float
    hits: int = 1
    misses: int = 0
    confirmed: bool = False
    # per frame since start: filtered / predicted state and covariance, the detection
    xs: list[np.ndarray] = field(default_factory=list)
    ps: list[np.ndarray] = field(default_factory=list)
    xp: list[np.ndarray] = field(default_factory=list)
    pp: list[np.ndarray] = field(default_factory=list)
    dets: list[Detection | None] = field(default_factory=list)


def _rts(xs: list[np.ndarray], ps: list[np.ndarray], xp: list[np.ndarray],
         pp: list[np.ndarray], f: np.ndarray = _F) -> np.ndarray:
    """Rauch–Tung–Striebel smoothing of a Kalman pass with transition ``f``: from the
    filtered (``xs``, ``ps``) and predicted (``xp``, ``pp``) states, ``(n, dim)``."""
    n = len(xs)
    out = [xs[-1]]
    x_s, p_s = xs[-1], ps[-1]
    for t in range(n - 2, -1, -1):
        gain = ps[t] @ f.T @ np.linalg.inv(pp[t + 1])
        x_s = xs[t] + gain @ (x_s - xp[t + 1])
        p_s = ps[t] + gain @ (p_s - pp[t + 1]) @ gain.T
        out.append(x_s)
    return np.array(out[::-1])


def _smooth_series(values: np.ndarray, detected: np.ndarray, motion: float, meas: float) -> np.ndarray:
    """RTS-smoothed ``(n, d)`` series (NaN rows are gaps), constant-velocity per column."""
    n, d = values.shape
    out = np.empty_like(values)
    f = np.array([[1.0, 1.0], [0.0, 1.0]])
    q = np.array([[0.25, 0.5], [0.5, 1.0]]) * motion**2
    r = meas**2
    for col in range(d):
        first = int(np.argmax(detected))
        x = np.array([values[first, col], 0.0])
        p = np.diag([r, 1.0])
        xs, ps, xp, pp = [], [], [], []
        for t in range(n):
            if t > 0:
                x, p = f @ x, f @ p @ f.T + q
            xp.append(x.copy())
            pp.append(p.copy())
            if detected[t]:
                s = p[0, 0] + r
                k = p[:, 0] / s
                x = x + k * (values[t, col] - x[0])
                p = p - np.outer(k, p[0])
            xs.append(x.copy())
            ps.append(p.copy())
        out[:, col] = _rts(xs, ps, xp, pp, f)[:, 0]
    return out


def _finish(live: _Live, motion: float, meas: float) -> Track | None:
    """Trim trailing misses, smooth, and build the Track (None for an unconfirmed one)."""
    if not live.confirmed:
        return None
    last = max(i for i, d in enumerate(live.dets) if d is not None)
    count = last + 1
    states = _rts(live.xs[:count], live.ps[:count], live.xp[:count], live.pp[:count])
    boxes = np.array([_z_to_box(s[:3], live.aspect) for s in states])
    dets = live.dets[:count]
    raw = np.array([d.box if d is not None else (np.nan,) * 4 for d in dets], dtype=np.float64)
    scores = np.array([d.score if d is not None else np.nan for d in dets], dtype=np.float64)
    landmarks = None
    if all(d is None or d.landmarks is not None for d in dets):
        k = next(d.landmarks.shape[0] for d in dets if d is not None)
        centre = (boxes[:, :2] + boxes[:, 2:]) / 2
        size = states[:, 2]
        rel = np.full((count, k * 2), np.nan)
        detected = np.array([d is not None for d in dets])
        for t, d in enumerate(dets):
            if d is not None:
                rel[t] = ((d.landmarks - centre[t]) / size[t]).reshape(-1)
        rel = _smooth_series(rel, detected, motion, meas)
        landmarks = rel.reshape(count, k, 2) * size[:, None, None] + centre[:, None, :]
    return Track(live.id, live.start, live.start + count, boxes, raw, scores, landmarks)


def track_faces(
    detections: Sequence[Sequence[Detection]],
    *,
    cuts: Sequence[int] = (),
    iou_min: float = 0.3,
    min_hits: int = 3,
    max_gap: int = 5,
    motion_noise: float = 0.02,
    meas_noise: float = 0.04,
) -> list[Track]:
    """Follow faces through a clip.

    Args:
        detections: per frame (index = frame number), the faces found in it.
        cuts: first frames of new scenes; tracks end before each.
        iou_min: least IoU between a track's predicted box and a detection to pair them.
        min_hits: detections in a row that confirm a new track (birth hysteresis).
        max_gap: frames without a detection that a track survives and bridges (death
            hysteresis); longer gaps end it (a face found again later starts a new track).
        motion_noise: process noise, fraction of the face size per frame squared.
        meas_noise: detector noise, fraction of the face size.

    Returns:
        Tracks ordered by birth, each within one shot.

    Raises:
        ValueError: bad parameters.
    """
    if not 0 < iou_min < 1 or min_hits < 1 or max_gap < 0:
        raise ValueError("need 0 < iou_min < 1, min_hits >= 1 and max_gap >= 0")
    n = len(detections)
    bounds = sorted({0, n, *(int(c) for c in cuts if 0 < c < n)})
    tracks: list[Track] = []
    next_id = 0
    for shot_start, shot_end in pairwise(bounds):
        live: list[_Live] = []
        for t in range(shot_start, shot_end):
            dets = list(detections[t])
            # predict
            for tr in live:
                size = max(tr.x[2], 1.0)
                q, _ = _noise(size, motion_noise, meas_noise)
                tr.x = _F @ tr.x
                tr.p = _F @ tr.p @ _F.T + q
                tr.xp.append(tr.x.copy())
                tr.pp.append(tr.p.copy())
            # associate greedily by IoU
            pairs: dict[int, int] = {}
            if live and dets:
                iou = box_iou(np.array([_z_to_box(tr.x[:3], tr.aspect) for tr in live]),
                              np.array([d.box for d in dets]))
                order = np.dstack(np.unravel_index(np.argsort(-iou, axis=None), iou.shape))[0]
                used_t, used_d = set(), set()
                for ti, di in order:
                    if iou[ti, di] < iou_min:
                        break
                    if ti in used_t or di in used_d:
                        continue
                    pairs[int(ti)] = int(di)
                    used_t.add(ti)
                    used_d.add(di)
            # update
            for ti, tr in enumerate(live):
                if ti in pairs:
                    det = dets[pairs[ti]]
                    z, aspect = _box_to_z(np.asarray(det.box, dtype=np.float64))
                    _, r = _noise(max(z[2], 1.0), motion_noise, meas_noise)
                    s = _H @ tr.p @ _H.T + r
                    k = tr.p @ _H.T @ np.linalg.inv(s)
                    tr.x = tr.x + k @ (z - _H @ tr.x)
                    tr.p = (np.eye(6) - k @ _H) @ tr.p
                    tr.aspect += (aspect - tr.aspect) / (tr.hits + 1)
                    tr.hits += 1
                    tr.misses = 0
                    tr.confirmed = tr.confirmed or tr.hits >= min_hits
                    tr.dets.append(det)
                else:
                    tr.misses += 1
                    tr.dets.append(None)
                tr.xs.append(tr.x.copy())
                tr.ps.append(tr.p.copy())
            # deaths: unconfirmed tracks die at their first miss, confirmed ones after max_gap
            keep = []
            for tr in live:
                dead = tr.misses > (max_gap if tr.confirmed else 0)
                if dead:
                    done = _finish(tr, motion_noise, meas_noise)
                    if done is not None:
                        tracks.append(done)
                else:
                    keep.append(tr)
            live = keep
            # births
            for di, det in enumerate(dets):
                if di in pairs.values():
                    continue
                z, aspect = _box_to_z(np.asarray(det.box, dtype=np.float64))
                _, r = _noise(max(z[2], 1.0), motion_noise, meas_noise)
                p = np.zeros((6, 6))
                p[:3, :3] = r
                p[3:, 3:] = np.eye(3) * (0.1 * z[2]) ** 2
                x = np.concatenate([z, np.zeros(3)])
                tr = _Live(next_id, t, x, p, aspect, confirmed=min_hits <= 1)
                next_id += 1
                tr.xp.append(x.copy())
                tr.pp.append(p.copy())
                tr.xs.append(x.copy())
                tr.ps.append(p.copy())
                tr.dets.append(det)
                live.append(tr)
        for tr in live:  # the shot ends: every track ends with it
            done = _finish(tr, motion_noise, meas_noise)
            if done is not None:
                tracks.append(done)
    tracks.sort(key=lambda tr: (tr.start, tr.id))
    for i, tr in enumerate(tracks):  # ids in order of birth among kept tracks
        tr.id = i
    return tracks
