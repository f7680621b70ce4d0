"""Interlacing: combing, field order, telecine cadence and a mislabelled ``_FieldBased``.

Two classic detectors, measured on every frame from luma (columns averaged in pairs: combing
is a vertical pattern, and halving the width halves the cost without blurring it):

* **Combing**, after TDeint/IsCombed metric 0 and VFM's combed-frame test (TIVTC, vivtc):
  a pixel is combed when it lies above (or below) both vertical neighbours by more than
  ``cthresh`` *and* the 5-tap ``[1, -3, 4, -3, 1]`` field-alternation test exceeds
  ``6·cthresh``. Two refinements keep still, sharp progressive detail (horizontal edges,
  aliased diagonals, fine stripes) from reading as combing: a combed pixel must pair with a
  combed pixel directly above or below it (a comb has many teeth, a thin line only one),
  and the frame must change there (``max(|cur-prev|, |cur-next|) > mthresh``, the motion
  gate of TDeint's motion-adaptive modes). The frame's score is the share of such pixels,
  and VFM's "MIC" is the largest share in any 16×16 block; a frame is combed when that
  exceeds ``mi = 0.25`` (IsCombed's default 64 pixels of 256).
* **Field order**, after FFmpeg's ``idet`` (``libavfilter/vf_idet.c``): the vertical second
  difference ``|a + c - 2b|`` summed over the frame, with the middle line taken from the
  frame itself (``weaveSelf``), or from the previous/next frame so that the current frame's
  fields are woven with their neighbours the way TFF (``weaveTff``: this top field with the
  previous bottom field, this bottom field with the next top field) or BFF (``weaveBff``)
  order would pair fields adjacent in time. The right order pairs fields one field period
  apart, the wrong one three, so the wrong weave combs more. idet's ``gamma`` (same-parity
  difference to the previous frame, ``diffTop``/``diffBottom``) finds repeated fields.

:meth:`Interlace.summarize` turns the per-frame evidence of a span into one decision, as
idet's multi-frame counts do: each frame votes progressive, TFF, BFF or undetermined, the
votes are counted, 3:2 pulldown is recognised by the 5-frame cadence of its combed frames
and repeated fields, and the result is compared with the ``_FieldBased`` the source declares.
"""

from __future__ import annotations

import math
import threading
from collections.abc import Mapping, Sequence
from typing import Any, ClassVar

import cv2
import numpy as np

from .base import Frame

__all__ = ["Interlace", "FIELD_ORDERS"]

FIELD_ORDERS: tuple[str, ...] = ("progressive", "TFF", "BFF", "telecined", "undetermined")
"""The decisions :meth:`Interlace.summarize` can return as ``field_order``."""

_UNDETERMINED, _PROGRESSIVE, _BFF, _TFF = -1, 0, 1, 2  # per-frame votes, _FieldBased coding
_DECLARED = {0: "progressive", 1: "BFF", 2: "TFF"}
_CADENCE = 5  # 3:2 pulldown repeats every 5 frames, of which 2 are combed
_CHUNK = 50  # frames per window when the cadence is checked (cadence may break at edits)
_CHUNK_HITS = 5  # windows with fewer combed + repeated-field frames are not counted
_CADENCE_P = 0.01  # a cadence is called when a lock this good has < 1 % chance at random


def _half_width(y: np.ndarray, dst: np.ndarray) -> np.ndarray:
    """Average columns in pairs: H×W -> H×(W//2) float32 into ``dst`` (2:1 linear = mean)."""
    h, w = y.shape
    return cv2.resize(y[:, : w // 2 * 2], (w // 2, h), dst=dst, interpolation=cv2.INTER_LINEAR)


class _Workspace:
    """Per-thread scratch planes for :meth:`Interlace.measure` (float32 and uint8, h×w)."""

    def __init__(self, h: int, w: int) -> None:
        self.shape = (h, w)
        self.prev, self.cur, self.next, self.nbr, self.f1, self.f2, self.f3, self.dp, \
            self.dn = (np.empty((h, w), np.float32) for _ in range(9))
        self.m1, self.m2, self.m3 = (np.empty((h, w), np.uint8) for _ in range(3))


def _parity_sums(rows: np.ndarray, first_row: int) -> tuple[float, float]:
    """Sum of per-row values on (even, odd) frame rows; ``rows[0]`` is frame row ``first_row``."""
    a, b = float(rows[0::2].sum()), float(rows[1::2].sum())
    return (a, b) if first_row % 2 == 0 else (b, a)


class Interlace:
    """How interlaced each frame looks, its field order evidence, and the span's decision.

    Per-frame keys (props ``VSR_Interlace<Key>``):

    ``combed``
        share of luma pixels that are combed where the picture moves, 0-1 (progressive
        frames of the sample clips stay below about 0.005; interlaced frames with clear
        motion reach 0.01-0.3).
    ``combedBlock``
        the largest combed share in any 16×16 block, 0-1 (VFM/TFM "MIC" / block area);
        the frame counts as combed when it exceeds :attr:`mi`.
    ``weaveSelf``, ``weaveTff``, ``weaveBff``
        mean ``|a + c - 2b|`` per pixel on the 8-bit scale (idet's ``delta`` and
        ``alpha``): the frame as it is, and its fields woven with the neighbours' in TFF
        or BFF order.
    ``diffTop``, ``diffBottom``
        mean ``|cur - prev|`` on the top-field (even) and bottom-field (odd) lines, 8-bit
        scale; one near 0 while the other is not is a repeated field (pulldown).
    ``order``
        this frame's vote: 2 TFF, 1 BFF, 0 progressive, -1 undetermined (too little motion
        to tell; ``_FieldBased`` coding otherwise).
    ``declaredFieldBased``
        the frame's ``_FieldBased`` prop as the source set it (0, 1, 2).

    Args:
        cthresh: comb threshold on the 8-bit scale (IsCombed default 6; 8-12 for mostly
            progressive, noisy sources).
        mthresh: motion gate, 8-bit scale.
        mi: combed share of a 16×16 block above which the frame counts as combed.
        intl_thres: idet's ``intl_thres``: a frame votes TFF when ``weaveBff`` exceeds
            ``weaveTff`` by this factor (and BFF the other way round).
        prog_thres: idet's ``prog_thres``: a frame that votes neither TFF nor BFF votes
            progressive when both weaves exceed ``weaveSelf`` by this factor.
        rep_thres: idet's ``rep_thres``: a field is repeated when the other parity's
            difference to the previous frame is this many times larger.
    """

    name: ClassVar[str] = "Interlace"
    keys: ClassVar[tuple[str, ...]] = (
        "combed", "combedBlock", "weaveSelf", "weaveTff", "weaveBff",
        "diffTop", "diffBottom", "order", "declaredFieldBased",
    )
    before: ClassVar[int] = 1
    after: ClassVar[int] = 1
    sampled: ClassVar[bool] = False
    plot: ClassVar[tuple[str, ...]] = ("combed", "combedBlock")
    worst: ClassVar[str] = "combed"

    _BLOCK: ClassVar[tuple[int, int]] = (16, 8)  # rows × half-width columns = 16×16 pixels

    def __init__(
        self,
        *,
        cthresh: float = 6.0,
        mthresh: float = 8.0,
        mi: float = 0.25,
        intl_thres: float = 1.04,
        prog_thres: float = 1.5,
        rep_thres: float = 3.0,
    ) -> None:
        self.cthresh = float(cthresh)
        self.mthresh = float(mthresh)
        self.mi = float(mi)
        self.intl_thres = float(intl_thres)
        self.prog_thres = float(prog_thres)
        self.rep_thres = float(rep_thres)
        self._local = threading.local()

    # ------------------------------------------------------------------ per frame
    def measure(self, frames: Sequence[Frame]) -> dict[str, float]:
        """Measure the middle of three frames (previous, current, next).

        Args:
            frames: ``(prev, cur, next)``; luma H×W float32 on the 8-bit scale.

        Returns:
            every key of :attr:`keys` (see the class docstring); frames under 8 lines or
            2 columns give NaN measures and an undetermined vote.
        """
        h, w = frames[1].y.shape
        declared = float(frames[1].field_based)
        if h < 8 or w < 2:
            return {**dict.fromkeys(self.keys, float("nan")), "order": float(_UNDETERMINED),
                    "declaredFieldBased": declared}
        ws = self._workspace(h, w // 2)
        prev, cur, nxt = ws.prev, ws.cur, ws.next
        for frame, half in zip(frames, (prev, cur, nxt)):
            _half_width(frame.y, half)
        inner = slice(0, h - 2)  # buffers' rows for arrays of h-2 rows (frame rows 1..h-2)
        # idet: |a + c - 2b| with a, c this frame's rows y-1 and y+1, and b row y of the
        # previous, next or this frame, for y = 1 .. h-2; summed per row.
        nbr = cv2.add(cur[:-2], cur[2:], dst=ws.nbr[inner])
        rows = []
        for middle in (prev, nxt, cur):
            twice = cv2.add(middle[1:-1], middle[1:-1], dst=ws.f1[inner])
            err = cv2.absdiff(nbr, twice, dst=twice)
            rows.append(cv2.reduce(err, 1, cv2.REDUCE_SUM).ravel())
        p_even, p_odd = _parity_sums(rows[0], 1)
        n_even, n_odd = _parity_sums(rows[1], 1)
        pixels = nbr.size
        # TFF pairs this top field (even rows) with prev's bottom field (odd rows) and this
        # bottom field with next's top field: prev in the middle of odd rows, next of even.
        weave_tff = (p_odd + n_even) / pixels
        weave_bff = (p_even + n_odd) / pixels
        weave_self = float(rows[2].sum()) / pixels

        diff_p = cv2.absdiff(cur, prev, dst=ws.dp)
        top, bottom = _parity_sums(cv2.reduce(diff_p, 1, cv2.REDUCE_SUM).ravel(), 0)
        half_w = cur.shape[1]
        diff_top = top / (half_w * ((h + 1) // 2))
        diff_bottom = bottom / (half_w * (h // 2))
        moving = cv2.max(diff_p, cv2.absdiff(cur, nxt, dst=ws.dn), dst=ws.dn)

        combed, combed_block = self._combing(ws, nbr, moving)
        return {
            "combed": combed,
            "combedBlock": combed_block,
            "weaveSelf": weave_self,
            "weaveTff": weave_tff,
            "weaveBff": weave_bff,
            "diffTop": diff_top,
            "diffBottom": diff_bottom,
            "order": float(self._vote(weave_self, weave_tff, weave_bff)),
            "declaredFieldBased": declared,
        }

    def _combing(
        self, ws: _Workspace, nbr: np.ndarray, moving: np.ndarray
    ) -> tuple[float, float]:
        """(combed share, max 16×16 block share) of ``ws.cur`` (half-width luma).

        ``nbr`` is ``cur[y-1] + cur[y+1]`` for rows 1..h-2, ``moving`` the per-pixel
        ``max(|cur-prev|, |cur-next|)``.
        """
        t = self.cthresh
        cur = ws.cur
        h = cur.shape[0]
        d1 = cv2.subtract(cur[1:-1], cur[:-2], dst=ws.f1[: h - 2])  # rows 1..h-2
        d2 = cv2.subtract(cur[1:-1], cur[2:], dst=ws.f2[: h - 2])
        high = cv2.compare(cv2.min(d1, d2, dst=ws.f3[: h - 2]), t, cv2.CMP_GT,
                           dst=ws.m1[: h - 2])
        low = cv2.compare(cv2.max(d1, d2, dst=d1), -t, cv2.CMP_LT, dst=ws.m2[: h - 2])
        comb = cv2.bitwise_or(high, low, dst=high)
        # 5-tap [1, -3, 4, -3, 1] on rows 2..h-3: cur[y-2] + 4 cur[y] + cur[y+2] - 3 nbr[y]
        five = cv2.add(cur[:-4], cur[4:], dst=ws.f2[: h - 4])
        five = cv2.scaleAdd(cur[2:-2], 4.0, five, dst=five)
        five = cv2.scaleAdd(nbr[1:-1], -3.0, five, dst=five)
        strong = cv2.compare(np.abs(five, out=five), 6.0 * t, cv2.CMP_GT, dst=ws.m2[: h - 4])
        comb = cv2.bitwise_and(comb[1:-1], strong, dst=ws.m3[: h - 4])
        # teeth in pairs: a combed pixel needs a combed pixel above or below (rows 3..h-4)
        pair = cv2.bitwise_or(comb[:-2], comb[2:], dst=ws.m1[: h - 6])
        pair = cv2.bitwise_and(comb[1:-1], pair, dst=pair)
        gate = cv2.compare(moving[3:-3], self.mthresh, cv2.CMP_GT, dst=ws.m2[: h - 6])
        comb = cv2.bitwise_and(pair, gate, dst=pair)
        share = cv2.countNonZero(comb) / comb.size
        by, bx = self._BLOCK
        hb, wb = comb.shape[0] // by, comb.shape[1] // bx
        if hb == 0 or wb == 0:
            return share, share
        blocks = cv2.resize(comb[: hb * by, : wb * bx], (wb, hb), interpolation=cv2.INTER_AREA)
        return share, float(blocks.max()) / 255.0

    def _workspace(self, h: int, w: int) -> _Workspace:
        """This thread's scratch buffers for h×w half-width planes (reused across frames:
        fresh megabyte arrays per call cost more in page faults than the arithmetic)."""
        ws = getattr(self._local, "ws", None)
        if ws is None or ws.shape != (h, w):
            ws = self._local.ws = _Workspace(h, w)
        return ws

    def _vote(self, weave_self: float, weave_tff: float, weave_bff: float) -> int:
        """idet's single-frame decision (same tests, same order)."""
        if weave_bff > self.intl_thres * weave_tff:
            return _TFF
        if weave_tff > self.intl_thres * weave_bff:
            return _BFF
        if min(weave_tff, weave_bff) > self.prog_thres * weave_self:
            return _PROGRESSIVE
        return _UNDETERMINED

    # ------------------------------------------------------------------ per span
    def summarize(self, series: Mapping[str, np.ndarray]) -> dict[str, Any]:
        """Decide progressive / TFF / BFF / telecined for a span of frames.

        Telecine (3:2 pulldown) is recognised by its 5-frame cadence: combed frames
        (``combedBlock > mi``) that also vote TFF or BFF should fall on two neighbouring
        phases of the cycle and repeated fields on two phases two apart. Both are counted
        together in windows of 50 frames (so a cadence broken by an edit re-locks) and
        pooled; the span is telecined when at least 75 % of them follow the cadence, a lock
        that frames at random phases (40 % expected) would reach with under 1 % chance,
        and at most 60 % of its frames are combed. Otherwise each frame's ``order`` vote
        is counted (idet's multi-frame decision) and the most voted of progressive, TFF
        and BFF wins.

        Args:
            series: ``{key: values}`` for every key of :attr:`keys`, one value per frame
                of the span in order (NaN frames are ignored).

        Returns:
            ``field_order``: one of :data:`FIELD_ORDERS` ("undetermined" when fewer than 3
            frames had enough motion to vote); ``field_based``: the measured
            ``_FieldBased`` (0/1/2; telecined gives the order of its fields; None when
            undetermined); ``confidence``: 0-1, the winner's lead over the runner-up as a
            share of the voting frames plus 4 (a handful of votes stays below 0.6), for
            telecine how far the cadence lock is above chance, scaled the same way;
            ``combed_share``: share of frames counted as combed; ``combed_mean``: mean
            ``combed``; ``votes``: frames per vote; ``repeated_fields``: frames repeating
            a field of the previous one; ``cadence_lock``: share of the combed and
            repeated-field frames on the pulldown phases (None without enough of them);
            ``declared``: the most common declared ``_FieldBased`` as a label;
            ``mislabelled``: True when a decision with confidence >= 0.5 contradicts the
            declared ``_FieldBased`` (telecined content is stored interlaced, so it is
            mislabelled only when declared progressive or in the other field order).
        """
        order = np.asarray(series["order"], dtype=np.float64)
        valid = np.isfinite(order)
        votes = {label: int(np.sum(order[valid] == code)) for label, code in
                 (("TFF", _TFF), ("BFF", _BFF), ("progressive", _PROGRESSIVE),
                  ("undetermined", _UNDETERMINED))}
        decided = votes["TFF"] + votes["BFF"] + votes["progressive"]
        block = np.asarray(series["combedBlock"], dtype=np.float64)
        with np.errstate(invalid="ignore"):
            combed = block > self.mi
        repeated = self._repeated(np.asarray(series["diffTop"], dtype=np.float64),
                                  np.asarray(series["diffBottom"], dtype=np.float64))
        frames = int(np.isfinite(block).sum())

        label, confidence = "undetermined", 0.0
        # a pulldown frame that combs also weaves cleanly with a neighbour (votes TFF/BFF);
        # noise that passes the comb test on progressive frames does not
        woven = combed & ((order == _TFF) | (order == _BFF))
        lock, evidence, log_p = self._telecine_lock(woven, repeated)
        if (lock is not None and lock >= 0.75 and log_p < math.log(_CADENCE_P)
                and combed.sum() <= 0.6 * frames):
            label = "telecined"
            confidence = (lock - 0.4) / 0.6 * evidence / (evidence + 4)
        elif decided >= 3:
            ranked = sorted((votes[k], k) for k in ("TFF", "BFF", "progressive"))
            label = ranked[-1][1]
            confidence = (ranked[-1][0] - ranked[-2][0]) / (decided + 4)
        measured = {"progressive": 0, "TFF": 2, "BFF": 1,
                    "telecined": 2 if votes["TFF"] >= votes["BFF"] else 1}.get(label)
        declared_fb = np.asarray(series["declaredFieldBased"], dtype=np.float64)
        declared_fb = declared_fb[np.isfinite(declared_fb)].astype(int).clip(0, 2)
        declared = int(np.bincount(declared_fb, minlength=3).argmax()) if declared_fb.size else 0
        combed_values = np.asarray(series["combed"], dtype=np.float64)
        return {
            "field_order": label,
            "field_based": measured,
            "confidence": round(float(min(max(confidence, 0.0), 1.0)), 3),
            "combed_share": float(combed.sum() / frames) if frames else float("nan"),
            "combed_mean": float(np.nanmean(combed_values))
            if np.isfinite(combed_values).any() else float("nan"),
            "votes": votes,
            "repeated_fields": int(repeated.sum()),
            "cadence_lock": None if lock is None else round(lock, 3),
            "declared": _DECLARED[declared],
            "mislabelled": bool(measured is not None and confidence >= 0.5
                                and measured != declared),
        }

    def _repeated(self, diff_top: np.ndarray, diff_bottom: np.ndarray) -> np.ndarray:
        """Frames where one field repeats the previous frame's (idet ``rep_thres``).

        A floor of 0.3 (8-bit) on the larger difference keeps still frames out.
        """
        with np.errstate(invalid="ignore"):
            lo, hi = np.fmin(diff_top, diff_bottom), np.fmax(diff_top, diff_bottom)
            return (hi > self.rep_thres * lo) & (hi > 0.3)

    @staticmethod
    def _telecine_lock(
        combed: np.ndarray, repeated: np.ndarray
    ) -> tuple[float | None, int, float]:
        """How well combed frames and repeated fields follow one 3:2 cadence.

        In 3:2 pulldown ``A1A2 B1B2 B1C2 C1D2 D1D2`` the combed frames sit on phases
        ``φ, φ+1`` of the 5-frame cycle and the repeated fields on ``φ, φ+2``. In each
        window of 50 frames holding at least 5 such frames, the phase ``φ`` that gathers
        most of them is taken; the windows are pooled.

        Returns:
            ``(lock, frames, log_p)``: the share of the pooled frames on their window's
            cadence (None when no window qualifies), how many frames were pooled, and the
            natural log of the chance of a lock this good from frames at random phases
            (binomial tail with p = 0.4, times 5 phases per window).
        """
        locked = total = windows = 0
        for start in range(0, combed.size, _CHUNK):
            window = slice(start, start + _CHUNK)
            hits_c = np.flatnonzero(combed[window])
            hits_r = np.flatnonzero(repeated[window])
            if hits_c.size + hits_r.size < _CHUNK_HITS:
                continue
            pc = np.bincount(hits_c % _CADENCE, minlength=_CADENCE)
            pr = np.bincount(hits_r % _CADENCE, minlength=_CADENCE)
            locked += int(max(pc[i] + pc[(i + 1) % _CADENCE] + pr[i] + pr[(i + 2) % _CADENCE]
                              for i in range(_CADENCE)))
            total += hits_c.size + hits_r.size
            windows += 1
        if total == 0:
            return None, 0, 0.0
        return locked / total, total, windows * math.log(_CADENCE) + _log_binom_tail(
            locked, total, 2 / _CADENCE)


def _log_binom_tail(k: int, n: int, p: float) -> float:
    """``log P(X >= k)`` for ``X ~ Binomial(n, p)``, computed in log space (any n)."""
    if k <= 0:
        return 0.0
    lp, lq, ln = math.log(p), math.log1p(-p), math.lgamma(n + 1)
    terms = [ln - math.lgamma(i + 1) - math.lgamma(n - i + 1) + i * lp + (n - i) * lq
             for i in range(k, n + 1)]
    top = max(terms)
    return top + math.log(sum(math.exp(t - top) for t in terms))
