"""The measurement protocol every analysis metric follows.

A metric looks at one frame (and, if it needs them, a few neighbours) and returns named
numbers. The same metric objects serve two users: :func:`vsremaster.analysis.annotate`, a
VapourSynth filter that attaches the numbers to each frame as properties (so vspreview
shows them), and :func:`vsremaster.analysis.analyze`, which runs ``annotate`` over a clip,
collects the per-frame series and summarises them per scene and per title.

Frames reach a metric as float32 planes on the **8-bit scale** (a 10-bit value 512 is 128.0)
whatever the clip's depth, so thresholds and noise sigmas mean the same for every source.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar, Protocol, TypeVar

import numpy as np

__all__ = ["Frame", "Metric", "PROP_PREFIX", "span_stats"]

T = TypeVar("T")

PROP_PREFIX = "VSR_"
"""Frame properties written by ``annotate`` are named ``VSR_<Metric.name><key>``."""


def span_stats(values: np.ndarray, prefix: str, *, spread: bool = True) -> dict[str, float | None]:
    """NaN-aware median (and 10th/90th percentiles) of a per-frame series, JSON-ready.

    Args:
        values: 1-D float array, NaN where not measured.
        prefix: key stem, e.g. ``"sigma_y"``.
        spread: also return ``<prefix>_p10`` and ``<prefix>_p90``.

    Returns:
        ``{prefix: median, prefix_p10: ..., prefix_p90: ...}``, None where no frame was
        measured.
    """
    v = np.asarray(values, dtype=np.float64)
    v = v[np.isfinite(v)]
    keys = [prefix, f"{prefix}_p10", f"{prefix}_p90"] if spread else [prefix]
    if v.size == 0:
        return dict.fromkeys(keys, None)
    q = np.percentile(v, [50, 10, 90] if spread else [50])
    return {k: round(float(x), 4) for k, x in zip(keys, q)}


@dataclass(frozen=True, slots=True)
class Frame:
    """One frame as a metric sees it.

    Attributes:
        n: frame number in the clip.
        planes: float32 arrays on the 8-bit scale: (Y, U, V) for YUV (chroma at its own
            subsampled size), (Y,) for GRAY. RGB clips are converted to YUV (BT.709) first.
            A sequence: each plane is converted when first read, then shared (read-only:
            copy before modifying).
        field_based: the frame's ``_FieldBased`` property (0 progressive, 1 BFF, 2 TFF;
            0 when absent).

    ``annotate`` hands the same ``Frame`` to every temporal window and metric that needs
    frame ``n``, so work derived from it is done once through :meth:`derived`.
    """

    n: int
    planes: Sequence[np.ndarray]
    field_based: int = 0
    _memo: dict[str, Any] = field(default_factory=dict, repr=False, compare=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False, compare=False)

    def derived(self, key: str, compute: Callable[[Frame], T]) -> T:
        """``compute(self)``, computed once per frame and ``key`` (thread-safe)."""
        with self._lock:
            if key not in self._memo:
                self._memo[key] = compute(self)
            return self._memo[key]

    @property
    def y(self) -> np.ndarray:
        """Luma, H×W float32, 0-255 nominal."""
        return self.planes[0]


class Metric(Protocol):
    """A per-frame measurement.

    Attributes:
        name: CamelCase namespace, e.g. ``"Noise"``; props are ``VSR_Noise<key>``.
        keys: the names of the numbers :meth:`measure` returns (documented by the metric).
        before, after: neighbours needed on each side (0 = the frame alone). At the clip's
            ends missing neighbours are replaced by the nearest frame.
        sampled: True for costly metrics, which ``annotate(every=k)`` runs on every k-th
            frame only (their props are absent on the other frames); False for cheap ones,
            measured on every frame.
        plot: the keys worth plotting over time in the report (same unit and scale).
        worst: optional class attribute: the key whose highest value marks the frame the
            report shows as this metric's worst.
    """

    name: ClassVar[str]
    keys: ClassVar[tuple[str, ...]]
    before: ClassVar[int]
    after: ClassVar[int]
    sampled: ClassVar[bool]
    plot: ClassVar[tuple[str, ...]]

    def measure(self, frames: Sequence[Frame]) -> dict[str, float]:
        """Measure ``frames[self.before]`` (the current frame) given its neighbours.

        Args:
            frames: ``before + 1 + after`` frames in time order.

        Returns:
            ``{key: value}`` for every key in :attr:`keys` (floats; NaN when undefined).
        """
        ...

    def summarize(self, series: Mapping[str, np.ndarray]) -> dict[str, Any]:
        """Summarise this metric over a span of frames (one scene, or the whole title).

        Args:
            series: ``{key: values}`` for every key in :attr:`keys`, one float per frame of
                the span in order; NaN where the frame was not measured (sampling).

        Returns:
            JSON-ready numbers and labels (e.g. ``{"sigma_y": 3.1, "field_order": "TFF"}``).
        """
        ...
