"""Target quality: a CRF per scene, found with short VMAF probes against the restored frames.

For each scene (cut by :func:`vsremaster.encode.encode` from the analysis report, a file or
the script's own frames):

1. a few sample segments (:func:`sample_spans`, about ``probe_share`` of the scene in
   12-frame segments, at least one) of the **script's output** are rendered once into a
   ``.y4m`` (the reference; never the raw source: ab-av1 #213 / Av1an #830 are users bitten
   by the wrong reference);
2. the samples are encoded with the final encoder settings at a CRF (each segment followed
   by a few of its frames in reverse, encoded but not scored:
   :func:`vsremaster.encode.probes.probe_frames`), decoded and scored with VMAF
   (:mod:`vsremaster.encode.vmaf`): mean and a low percentile. This runs in rounds over all
   undecided scenes at once (:func:`vsremaster.encode.probes.probe_scenes`): one encode
   whose zones give each scene its CRF, one VMAF run;
3. the next CRF comes from piecewise-linear interpolation of VMAF over CRF through the
   probes so far (:func:`next_crf`): a second probe 4 CRF away in the direction of the
   target, a third at the interpolated CRF when the answer is neither bracketed within 4 CRF
   nor within 2 CRF of the probed range, up to ``max_probes``. The third probe is taken
   even when :func:`balance` then keeps the scene near its first two: skipping it there
   cut the probe time by 18-23 % on two benchmark titles but lowered action's P1 (91.51 to
   91.25) and its saving at equal P1 (17.1 to 12.5 %), as a third point bends the
   prediction between the first two (VMAF falls faster at high CRF);
4. the CRFs: by default (``balance``) one title-level decision (:func:`balance`): the
   frame-weighted predicted mean of the title on the target, each scene half way from one
   common CRF toward equal predicted low-percentile VMAF; otherwise (:func:`choose_crf`)
   each scene the largest CRF that keeps its own predicted mean at the target. ``min_low``
   is a floor in both.

The per-scene search is that of ab-av1's ``crf-search`` and Av1an's ``--target-quality``.
The CRFs become x265 zones (:func:`zones_arg`); a ``b=`` (bitrate factor) zone of
``2 ** ((base - crf) / 6)`` in a CRF encode gives the frames of an encode at ``crf`` when the
zone covers the whole stream (x265 3.5 ignores ``--crf`` in ``--zonefile``); after a zone
boundary x265 takes up to one mini-GOP (about 4 frames at preset slow) to move its QP to the
new zone's (per-frame QPs of x265's ``--csv``, CRF 24 → a zone of CRF 36 from frame 50:
frame 51 still at the old QP, 52-54 in between).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import EncodeError, InputError

__all__ = [
    "Probe",
    "Scene",
    "TargetQuality",
    "choose_crf",
    "merge_short",
    "next_crf",
    "predict",
    "read_cuts",
    "sample_spans",
    "zones_arg",
]

log = logging.getLogger("vsremaster.encode")

_FIRST_STEP = 4.0  # CRF distance of the second probe from the first
_BRACKET = 4.0  # an answer between two probes this close is final
_NEAR = 0.5  # an answer this close to a probe is final
_REACH = 2.0  # CRFs this far beyond the probed range are extrapolated, not probed
_SEGMENT = 12  # probe segment length (shorter ones under-predicted the encode by 0.3-1.5)
_MIN_SEGMENTS = 1  # per scene
_CRF_GRID = 0.1  # resolution of the chosen CRF
# How far balance() moves each scene from one common CRF toward equal low percentiles. The
# lows of 12-frame samples are noisy. Measured on the benchmark titles (9 probe runs: 3
# titles x 3 sample layouts / first CRFs; each allocation's size and P1 read off whole-title
# encodes at every integer CRF): full equalisation (1.0) saved -45 to +13 % against a fixed
# CRF at equal P1 (mean -9 %); 0.5 -1.3 to +18 % (mean +5 %); 0.25 +1 to +16 % (mean +5 %).
_SHRINK = 0.5


@dataclass(frozen=True, slots=True)
class TargetQuality:
    """What target-quality encoding aims at, and how hard it looks.

    Attributes:
        vmaf: Target mean VMAF of every scene (0-100; 95 is "visually transparent" for most
            viewers at normal distance, 93 good streaming quality).
        min_low: Optional floor for the ``percentile``-th percentile VMAF of every scene
            (e.g. 88 keeps the worst 1 % of frames above 88); None: only the mean counts.
        percentile: Which low percentile is reported and held at ``min_low`` (0-100).
        probe_share: Fraction of each scene's frames used for probes (0.02-1; at least one
            12-frame segment per scene).
        max_probes: Probe encodes per scene at most (2-8).
        min_crf / max_crf: CRF range searched (0-51).
        start_crf: CRF of the first probe of every scene.
        verify: After the final encode, score the same sample frames of the finished file
            (renders the samples of the script once more) and log measured VMAF per scene.
        balance: True (default): the title's mean VMAF is held at ``vmaf``, scenes with
            worse low-percentile VMAF getting somewhat lower CRFs (:func:`balance`); False:
            every scene's own mean is held at ``vmaf``.
    """

    vmaf: float = 95.0
    min_low: float | None = None
    percentile: float = 1.0
    probe_share: float = 0.1
    max_probes: int = 4
    min_crf: float = 10.0
    max_crf: float = 40.0
    start_crf: float = 24.0
    verify: bool = True
    balance: bool = True

    def check(self) -> None:
        """Raise InputError for a value out of range."""
        if not 0 < self.vmaf <= 100:
            raise InputError(f"target VMAF must be in (0, 100]; got {self.vmaf}.")
        if self.min_low is not None and not 0 < self.min_low <= 100:
            raise InputError(f"min VMAF of the low percentile must be in (0, 100]; got {self.min_low}.")
        if not 0 <= self.percentile < 50:
            raise InputError(f"the VMAF percentile must be in [0, 50); got {self.percentile}.")
        if not 0.02 <= self.probe_share <= 1:
            raise InputError(f"probe share must be in [0.02, 1]; got {self.probe_share}.")
        if not 2 <= self.max_probes <= 8:
            raise InputError(f"max probes must be 2 to 8; got {self.max_probes}.")
        if not 0 <= self.min_crf < self.max_crf <= 51:
            raise InputError(f"need 0 <= min CRF < max CRF <= 51; got {self.min_crf}, {self.max_crf}.")
        if not self.min_crf <= self.start_crf <= self.max_crf:
            raise InputError(f"start CRF {self.start_crf} is outside {self.min_crf}..{self.max_crf}.")

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(slots=True)
class Probe:
    """One probe: the scene's samples encoded at ``crf``.

    Attributes:
        crf: x265 CRF.
        mean / low: VMAF mean and low percentile of the sample frames.
        kbps: Bitrate of the probe encode (kbit/s at the title's frame rate).
        frames: Frames scored.
    """

    crf: float
    mean: float
    low: float
    kbps: float
    frames: int


@dataclass(slots=True)
class Scene:
    """A scene of the title and what target quality decided for it.

    ``start``/``end`` are frames of the script's output 0 (``end`` exclusive); ``samples``
    the ``[start, end)`` segments probed; ``limited_by`` is ``"mean"``, ``"low"``,
    ``"min-crf"`` (the target is out of reach even at ``min_crf``) or ``"max-crf"``.
    ``measured_*`` come from the finished file (``verify``); ``bits`` from the encoder's
    per-frame statistics.
    """

    index: int
    start: int
    end: int
    samples: list[tuple[int, int]] = field(default_factory=list)
    probes: list[Probe] = field(default_factory=list)
    crf: float | None = None
    limited_by: str | None = None
    predicted_mean: float | None = None
    predicted_low: float | None = None
    measured_mean: float | None = None
    measured_low: float | None = None
    bits: int | None = None

    @property
    def frames(self) -> int:
        return self.end - self.start

    @property
    def frames_sampled(self) -> int:
        return sum(b - a for a, b in self.samples)

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["samples"] = [list(s) for s in self.samples]
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Scene:
        data = dict(data)
        data["samples"] = [tuple(s) for s in data.get("samples", [])]
        data["probes"] = [Probe(**p) for p in data.get("probes", [])]
        return cls(**data)


# --------------------------------------------------------------------------- scenes


def read_cuts(path: Path) -> list[int]:
    """Scene cuts from a file: a vsremaster ``report.json`` (its ``cuts``), a JSON list of
    frame numbers, or text with one frame number per line (``#`` comments allowed).

    Raises:
        InputError: the file is missing or holds anything else.
    """
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as err:
        raise InputError(f"Cannot read scene cuts from {path}: {err}") from err
    try:
        data = json.loads(text)
    except json.JSONDecodeError:
        data = None
    if isinstance(data, dict) and isinstance(data.get("cuts"), list):
        data = data["cuts"]
    if isinstance(data, list):
        values = data
    elif isinstance(data, int) and not isinstance(data, bool):
        values = [data]  # a file with one frame number
    elif data is None:
        values = [line.split("#", 1)[0].strip() for line in text.splitlines()]
        values = [v for v in values if v]
    else:
        values = None
    try:
        cuts = [int(v) for v in values] if values is not None else None
    except (TypeError, ValueError):
        cuts = None
    if cuts is None or any(c < 0 for c in cuts):
        raise InputError(
            f"{path}: scene cuts must be a report.json, a JSON list or one frame number per line."
        )
    return sorted(set(cuts))


def merge_short(spans: Sequence[tuple[int, int]], min_frames: int) -> list[tuple[int, int]]:
    """Merge scenes shorter than ``min_frames`` into the scene before (the first into the
    one after): a flash or a two-frame shot is not worth its own probes and keyframe."""
    merged: list[list[int]] = []
    for start, end in spans:
        if merged and (end - start < min_frames or merged[-1][1] - merged[-1][0] < min_frames):
            merged[-1][1] = end
        else:
            merged.append([start, end])
    return [(a, b) for a, b in merged]


def sample_spans(start: int, end: int, fps: float, share: float) -> list[tuple[int, int]]:
    """Probe segments of the scene ``[start, end)``: about ``share`` of its frames in
    12-frame segments, at least one, evenly spread (the whole scene when it is that short).

    Measured on the benchmark titles (``benchmarks/encode.py``, x265 preset slow, titles cut
    every 1-12 s, probes with the tail of :func:`vsremaster.encode.probes.probe_frames`):
    at least one segment per scene sampled 9-16 % of the frames and left the title's mean
    within 0.25 of the target; at least two (with an 11-frame tail) sampled 11-32 % for no
    better mean (-0.06 to +0.20). Without the tail, one segment per scene left the mean up
    to 0.9 above the target.
    """
    length = end - start
    count = max(_MIN_SEGMENTS, round(share * length / _SEGMENT))
    if length <= count * _SEGMENT:
        return [(start, end)]
    spans: list[tuple[int, int]] = []
    for i in range(count):
        a = round(start + (i + 0.5) * length / count - _SEGMENT / 2)
        a = min(max(a, start), end - _SEGMENT)
        spans.append((a, a + _SEGMENT))
    return spans


# --------------------------------------------------------------------------- CRF search


def _curve(probes: Sequence[Probe], key: str) -> tuple[np.ndarray, np.ndarray]:
    """Probe CRFs (ascending) and their scores, made non-increasing (VMAF cannot rise with
    CRF; a noisy probe that says so is flattened)."""
    ordered = sorted(probes, key=lambda p: p.crf)
    crfs = np.array([p.crf for p in ordered])
    values = np.minimum.accumulate(np.array([getattr(p, key) for p in ordered]))
    return crfs, values


def predict(probes: Sequence[Probe], crf: float, key: str = "mean") -> float:
    """VMAF (``key``: ``"mean"`` or ``"low"``) expected at ``crf``.

    Inside the probed range: the parabola through the three probes nearest ``crf`` (VMAF
    falls faster at high CRF, a chord between distant probes under-predicts by ~1), kept
    between the two neighbouring probes' values so it stays monotone; with two probes the
    chord. Outside it: the end segment extended linearly. A single probe predicts itself.
    """
    return float(_predict(probes, np.array([crf], dtype=np.float64), key)[0])


def _predict(probes: Sequence[Probe], at: np.ndarray, key: str) -> np.ndarray:
    """:func:`predict` at every CRF of ``at`` at once."""
    crfs, values = _curve(probes, key)
    if crfs.size == 1:
        return np.full(at.shape, values[0])
    i = np.clip(np.searchsorted(crfs, at) - 1, 0, crfs.size - 2)
    x0, x1, y0, y1 = crfs[i], crfs[i + 1], values[i], values[i + 1]
    same = x1 == x0
    slope = np.where(same, 0.0, (y1 - y0) / np.where(same, 1.0, x1 - x0))
    linear = np.where(same, np.minimum(y0, y1), y0 + slope * (at - x0))
    if crfs.size < 3:
        return linear
    near = np.argsort(np.abs(crfs[None, :] - at[:, None]), axis=1, kind="stable")[:, :3]
    xs, ys = crfs[near], values[near]
    with np.errstate(divide="ignore", invalid="ignore"):
        curved = sum(
            ys[:, j] * np.prod([(at - xs[:, m]) / (xs[:, j] - xs[:, m])
                                for m in range(3) if m != j], axis=0)
            for j in range(3)
        )
    distinct = (xs[:, 0] != xs[:, 1]) & (xs[:, 0] != xs[:, 2]) & (xs[:, 1] != xs[:, 2])
    inside = (crfs[0] < at) & (at < crfs[-1]) & distinct
    curved = np.clip(curved, np.minimum(y0, y1), np.maximum(y0, y1))
    return np.where(inside, curved, linear)


def _grid(lo: float, hi: float) -> np.ndarray:
    """Candidate CRFs from ``hi`` down to ``lo`` in steps of the CRF resolution."""
    return np.round(np.arange(hi, lo - 1e-9, -_CRF_GRID), 3)


def _first_meeting(grid: np.ndarray, predicted: np.ndarray, goal: float) -> float | None:
    """The largest CRF of the descending ``grid`` whose prediction reaches ``goal``."""
    hits = np.flatnonzero(predicted >= goal)
    return float(grid[hits[0]]) if hits.size else None


def _crf_meeting(probes: Sequence[Probe], key: str, goal: float, lo: float, hi: float) -> float | None:
    """Largest CRF on the grid in ``[lo, hi]`` whose prediction reaches ``goal``."""
    grid = _grid(lo, hi)
    return _first_meeting(grid, _predict(probes, grid, key), goal)


def choose_crf(probes: Sequence[Probe], target: TargetQuality) -> tuple[float, str]:
    """The CRF for a scene from its probes, and which goal decided it.

    Returns:
        (crf, limited_by) with ``limited_by`` one of ``"mean"``, ``"low"``, ``"min-crf"``,
        ``"max-crf"``.
    """
    lo, hi = target.min_crf, target.max_crf
    goals = [("mean", target.vmaf)]
    if target.min_low is not None:
        goals.append(("low", target.min_low))
    best, reason = hi, "max-crf"
    for key, goal in goals:
        crf = _crf_meeting(probes, key, goal, lo, hi)
        if crf is None:
            return lo, "min-crf"
        if crf < best:
            best, reason = crf, key
    return best, reason


def _meets(probe: Probe, target: TargetQuality) -> bool:
    return probe.mean >= target.vmaf and (target.min_low is None or probe.low >= target.min_low)


def next_crf(probes: Sequence[Probe], target: TargetQuality, start: float) -> float | None:
    """The CRF to probe next, or None when the probes so far decide the scene."""
    if not probes:
        return start
    if len(probes) >= target.max_probes:
        return None
    lo, hi = target.min_crf, target.max_crf
    probed = sorted(p.crf for p in probes)
    if len(probes) == 1:
        p = probes[0]
        step = _FIRST_STEP if _meets(p, target) else -_FIRST_STEP
        nxt = min(max(p.crf + step, lo), hi)
        return None if abs(nxt - p.crf) < _CRF_GRID else nxt
    crf, reason = choose_crf(probes, target)
    if any(abs(crf - c) <= _NEAR for c in probed):
        return None
    below = [c for c in probed if c <= crf]
    above = [c for c in probed if c >= crf]
    if below and above and above[0] - below[-1] <= _BRACKET:
        return None
    if probed[0] - _REACH <= crf <= probed[-1] + _REACH:
        return None
    if reason in ("min-crf", "max-crf") and any(abs(c - crf) < _CRF_GRID for c in probed):
        return None
    return round(crf, 1)


def balance(scenes: Sequence[Scene], target: TargetQuality) -> None:
    """Title-level decision (``target.balance``): the title's frame-weighted predicted mean
    on ``target.vmaf``, with each scene moved part of the way (``_SHRINK``) from one common
    CRF toward the CRF that would give every scene the same low-percentile VMAF.

    Full equalisation (the lowest common low ``L`` whose CRFs hold the title mean) spends
    bits where the worst frames are, but a scene's low percentile from 12-frame samples is
    a noisy guess, and on titles whose shots are alike it made files larger than one CRF
    for all. The CRFs are ``(1 - _SHRINK) * c + _SHRINK * crf_L`` with the largest common
    ``c`` that holds the mean. ``min_low`` stays a floor per scene, and each scene's CRF
    stays within ``_REACH`` CRF of its probes (extrapolation is trusted no further). Sets
    ``crf``, ``limited_by`` (``"balanced"``, ``"low"``, ``"min-crf"``, ``"max-crf"``) and
    the predictions of every scene.
    """
    frames = sum(s.frames for s in scenes)
    if frames == 0:
        return

    # Each scene's predictions on its CRF grid, computed once for the whole bisection.
    tables = []
    for scene in scenes:
        probed = [p.crf for p in scene.probes]
        lo = max(target.min_crf, min(probed) - _REACH)
        hi = min(target.max_crf, max(probed) + _REACH)
        grid = _grid(lo, hi)
        low, mean = _predict(scene.probes, grid, "low"), _predict(scene.probes, grid, "mean")
        floor = None if target.min_low is None else _first_meeting(grid, low, target.min_low)
        tables.append((grid, low, mean, lo, hi, floor))

    def crfs_for(level: float) -> list[tuple[float, str]]:
        out = []
        for grid, low, _, lo, hi, floor in tables:
            crf = _first_meeting(grid, low, level)
            reason = "balanced"
            if crf is None:
                crf, reason = lo, "min-crf"
            elif crf >= hi:
                reason = "max-crf"
            if floor is not None and floor < crf:
                crf, reason = floor, "low"
            out.append((crf, reason))
        return out

    def title_mean(choice: list[tuple[float, str]]) -> float:
        total = 0.0
        for scene, (grid, _, mean, _, _, _), (crf, _) in zip(scenes, tables, choice, strict=True):
            at = np.flatnonzero(np.isclose(grid, crf))
            value = mean[at[0]] if at.size else predict(scene.probes, crf, "mean")
            total += value * scene.frames
        return total / frames

    def bisect(choice: Callable[[float], list[tuple[float, str]]], lo: float, hi: float,
               rising: bool) -> list[tuple[float, str]]:
        """``choice`` at the end of [lo, hi] nearest the point where the title mean
        crosses the target, on the side that reaches it."""
        for _ in range(40):
            mid = (lo + hi) / 2
            if (title_mean(choice(mid)) >= target.vmaf) == rising:
                hi = mid
            else:
                lo = mid
        return choice(hi if rising else lo)

    balanced = [crf for crf, _ in bisect(crfs_for, 0.0, 100.0, rising=True)]  # L rises

    def shrunk(common: float) -> list[tuple[float, str]]:
        out = []
        for full, (_, _, _, lo, hi, floor) in zip(balanced, tables, strict=True):
            crf = round((1 - _SHRINK) * common + _SHRINK * full, 1)
            reason = "balanced"
            if crf <= lo:
                crf, reason = lo, "min-crf"
            elif crf >= hi:
                crf, reason = hi, "max-crf"
            if floor is not None and floor < crf:
                crf, reason = floor, "low"
            out.append((crf, reason))
        return out

    # the common CRF falls as the mean must rise
    choice = bisect(shrunk, target.min_crf, target.max_crf, rising=False)
    for scene, (crf, reason) in zip(scenes, choice, strict=True):
        scene.crf, scene.limited_by = crf, reason
        scene.predicted_mean = round(predict(scene.probes, crf, "mean"), 3)
        scene.predicted_low = round(predict(scene.probes, crf, "low"), 3)


# --------------------------------------------------------------------------- zones


def zones_arg(scenes: Sequence[Scene], offset: int, base: float) -> str:
    """x265 ``--zones`` value giving each scene its CRF in an encode at CRF ``base`` whose
    frame 0 is title frame ``offset`` (empty when no scene differs from ``base``)."""
    zones = []
    for scene in scenes:
        assert scene.crf is not None
        if abs(scene.crf - base) < 1e-6:
            continue
        factor = 2.0 ** ((base - scene.crf) / 6.0)
        zones.append(f"{scene.start - offset},{scene.end - 1 - offset},b={factor:.6f}")
    return "/".join(zones)


def base_crf(scenes: Sequence[Scene]) -> float:
    """The CRF most frames get (fewest zones needed)."""
    weights: dict[float, int] = {}
    for scene in scenes:
        assert scene.crf is not None
        weights[scene.crf] = weights.get(scene.crf, 0) + scene.frames
    return max(weights, key=lambda c: (weights[c], -c))


def title_summary(scenes: Sequence[Scene], fps: float) -> dict[str, Any]:
    """Frame-weighted CRF and VMAF of the title from its scenes."""
    frames = sum(s.frames for s in scenes)

    def weighted(name: str) -> float | None:
        values = [(getattr(s, name), s.frames) for s in scenes]
        if any(v is None for v, _ in values) or frames == 0:
            return None
        return round(sum(v * n for v, n in values) / frames, 3)

    bits = [s.bits for s in scenes]
    kbps = None
    if frames and all(b is not None for b in bits):
        kbps = round(sum(bits) / (frames / fps) / 1000, 1)  # type: ignore[arg-type]
    return {
        "frames": frames,
        "scenes": len(scenes),
        "crf": weighted("crf"),
        "predicted_mean": weighted("predicted_mean"),
        "measured_mean": weighted("measured_mean"),
        "kbps": kbps,
        "probes": sum(len(s.probes) for s in scenes),
    }


def check_cuts(cuts: Sequence[int], num_frames: int, where: str) -> list[int]:
    """Cuts inside the title, sorted; EncodeError naming ``where`` when one is outside."""
    bad = [c for c in cuts if not 0 <= c < num_frames]
    if bad:
        raise EncodeError(
            f"Scene cuts from {where} lie outside the script's {num_frames} frames "
            f"(e.g. {bad[0]}); was it made for another script or trim?"
        )
    return sorted({int(c) for c in cuts} - {0})

