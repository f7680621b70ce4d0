"""Spatial and temporal complexity: ITU-T P.910 SI/TI and optical-flow motion.

How detailed and how busy the picture is drives the choice of the chain: a denoiser's
temporal radius and motion search, an encoder's CRF and psy settings, and a
target-quality probe's sampling. :class:`Complexity` measures per frame

- **SI** (spatial information, ITU-T P.910 (04/2008) §7.7): the standard deviation over the
  frame of the Sobel gradient magnitude of luma;
- **TI** (temporal information, same clause): the standard deviation of the luma difference
  to the previous frame;
- **motion**: mean optical-flow speed from DIS optical flow (Kroeger et al., "Fast Optical
  Flow using Dense Inverse Search", ECCV 2016; OpenCV's ``DISOpticalFlow``) on the reduced
  luma, in full-size pixels per frame, and **pan**, the speed of the mean flow vector
  (camera pans and tilts move every pixel the same way; subjects moving about cancel out).

SI and TI are computed on luma code values on the 8-bit scale (the classic P.910 (2008)
definition also used by FFmpeg's ``siti`` filter, which additionally stretches limited-range
luma by 255/219; the 2022 revision of P.910 computes them after a display model, in the PQ
domain, so its numbers are not comparable).
"""

from __future__ import annotations

import threading
from collections.abc import Mapping, Sequence
from typing import Any, ClassVar

import cv2
import numpy as np

from .base import Frame
from .scenes import reduce_frame

__all__ = ["Complexity", "spatial_information", "temporal_information"]

_LOCAL = threading.local()

_MIN_FLOW_SIZE = 16
"""DIS needs a frame at least this wide or tall (OpenCV refuses below 12 px)."""


def _dis() -> cv2.DISOpticalFlow:
    """This thread's DIS instance (instances keep state and are not thread-safe)."""
    flow = getattr(_LOCAL, "dis", None)
    if flow is None:
        flow = _LOCAL.dis = cv2.DISOpticalFlow_create(cv2.DISOPTICAL_FLOW_PRESET_ULTRAFAST)
    return flow


def _scratch(shape: tuple[int, ...], count: int) -> list[np.ndarray]:
    """``count`` float32 work planes of ``shape`` owned by this thread, reused call after
    call: fresh full-size temporaries cost more in page faults than the filters themselves."""
    buffers = getattr(_LOCAL, "buffers", None)
    if buffers is None or buffers[0].shape != shape or len(buffers) < count:
        buffers = _LOCAL.buffers = [np.empty(shape, np.float32) for _ in range(max(count, 3))]
    return buffers[:count]


def _std(plane: np.ndarray) -> float:
    """Population standard deviation of a float32 plane (sums in double precision)."""
    count = plane.shape[0] * plane.shape[1]
    if count == 0:  # a frame under 3 pixels has no interior for the Sobel kernels
        return 0.0
    mean = cv2.sumElems(plane)[0] / count
    return float(np.sqrt(max(cv2.norm(plane, cv2.NORM_L2SQR) / count - mean * mean, 0.0)))


def spatial_information(y: np.ndarray) -> float:
    """ITU-T P.910 spatial information of one frame.

    ``std(sqrt(Sobel_x(Y)^2 + Sobel_y(Y)^2))`` over the frame less its 1-pixel border (where
    the 3×3 Sobel kernels are undefined), as in P.910 (2008) §7.7 and VQEG's ``siti-tools``
    legacy mode.

    Args:
        y: luma, H×W, float32 on the 8-bit scale.

    Returns:
        SI in 8-bit levels, >= 0 (about 30-90 for typical SD footage; 0 for a flat frame
        or one under 3 pixels wide or tall).
    """
    y = np.ascontiguousarray(y, dtype=np.float32)
    gx, gy, magnitude = _scratch(y.shape, 3)
    cv2.Sobel(y, cv2.CV_32F, 1, 0, dst=gx, ksize=3)
    cv2.Sobel(y, cv2.CV_32F, 0, 1, dst=gy, ksize=3)
    cv2.magnitude(gx, gy, magnitude)
    return _std(magnitude[1:-1, 1:-1])


def temporal_information(y: np.ndarray, y_prev: np.ndarray) -> float:
    """ITU-T P.910 temporal information between two frames: ``std(Y_n - Y_{n-1})``.

    Args:
        y, y_prev: luma of frames n and n-1, H×W float32 on the 8-bit scale.

    Returns:
        TI in 8-bit levels, >= 0 (0 for identical frames; a cut gives large values).
    """
    y = np.ascontiguousarray(y, dtype=np.float32)
    (diff,) = _scratch(y.shape, 1)
    cv2.subtract(y, np.ascontiguousarray(y_prev, dtype=np.float32), dst=diff)
    return _std(diff)


def _u8(plane: np.ndarray) -> np.ndarray:
    return np.clip(plane + 0.5, 0, 255).astype(np.uint8)


class Complexity:
    """Per-frame spatial/temporal complexity (``VSR_Complexity*`` props).

    Keys (frame n against frame n-1; at the clip start frame 0 is compared with itself):

    - ``si``: :func:`spatial_information` of frame n, full size, 8-bit levels.
    - ``ti``: :func:`temporal_information` of frames n, n-1, full size, 8-bit levels.
      Interlaced frames are measured as stored (woven fields), as P.910 tools do.
    - ``motion``: mean optical-flow speed from n-1 to n, full-size pixels per frame
      (DIS ultrafast on the ~1/4-size luma of :func:`vsremaster.analysis.scenes.reduce_frame`,
      so speeds below about 1 px are approximate). Meaningless across a cut.
    - ``pan``: length of the mean flow vector, full-size pixels per frame (global motion).
      ``motion`` and ``pan`` are NaN for frames under 16 pixels wide and tall.

    Cost per 720×480 frame on one core: about 1.0 ms (SI 0.5, TI 0.15, flow and its
    8-bit conversions 0.3), plus the frame reduction (0.25 ms) shared with
    :class:`~vsremaster.analysis.scenes.SceneChange`.
    """

    name: ClassVar[str] = "Complexity"
    keys: ClassVar[tuple[str, ...]] = ("si", "ti", "motion", "pan")
    before: ClassVar[int] = 1
    after: ClassVar[int] = 0
    sampled: ClassVar[bool] = False
    plot: ClassVar[tuple[str, ...]] = ("si", "ti", "motion")
    worst: ClassVar[str] = "motion"

    def measure(self, frames: Sequence[Frame]) -> dict[str, float]:
        """SI of ``frames[1]``, and TI and motion from ``frames[0]`` to ``frames[1]``.

        Args:
            frames: frames n-1, n.

        Returns:
            ``{"si", "ti", "motion", "pan"}`` as documented on the class.
        """
        prev, cur = frames
        out = {
            "si": spatial_information(cur.y),
            "ti": temporal_information(cur.y, prev.y),
            "motion": float("nan"),
            "pan": float("nan"),
        }
        a, b = reduce_frame(prev), reduce_frame(cur)
        if max(b.y.shape) < _MIN_FLOW_SIZE:
            return out
        flow = _dis().calc(_u8(a.y), _u8(b.y), None)
        speed = cv2.magnitude(flow[..., 0], flow[..., 1])
        mean_x, mean_y = cv2.mean(flow)[:2]
        out["motion"] = float(cv2.mean(speed)[0]) * b.scale
        out["pan"] = float(np.hypot(mean_x, mean_y)) * b.scale
        return out

    def summarize(self, series: Mapping[str, np.ndarray]) -> dict[str, Any]:
        """SI/TI/motion statistics of a span (a scene or the whole title).

        P.910 characterises a sequence by the maximum SI and TI over time; the maximum is
        one frame's value, so the mean and median are given too. The span's first frame is
        left out of the TI and motion statistics: it is measured against the frame before
        the span (the previous scene when spans are scenes) or, at the clip start, against
        itself.

        Args:
            series: ``{key: values}`` for every key, one float per frame of the span (NaN
                for unmeasured frames, which are ignored).

        Returns:
            ``si_max, si_mean, si_median, ti_max, ti_mean, ti_median`` (8-bit levels),
            ``motion_mean, motion_max, pan_mean`` (full-size pixels per frame); ``None``
            where the span has no value (TI and motion of a 1-frame span).
        """
        out: dict[str, Any] = {}
        for key, skip, stats in (
            ("si", 0, ("max", "mean", "median")),
            ("ti", 1, ("max", "mean", "median")),
            ("motion", 1, ("mean", "max")),
            ("pan", 1, ("mean",)),
        ):
            values = np.asarray(series[key], dtype=np.float64)[skip:]
            values = values[np.isfinite(values)]
            for stat in stats:
                out[f"{key}_{stat}"] = float(getattr(np, stat)(values)) if values.size else None
        return out
