"""The analysis pass: run the metrics over a clip, split it into scenes, summarise."""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from fractions import Fraction
from typing import Any

import numpy as np
import vapoursynth as vs

from .annotate import annotate, prop_name
from .base import Metric

__all__ = ["Analysis", "analyze", "metric_series"]


@dataclass
class Analysis:
    """Everything one analysis pass measured.

    Attributes:
        width, height, num_frames, fps: the analysed clip.
        format_name: its VapourSynth format name.
        every: sampling step used for costly metrics.
        first_frame: source frame number of the clip's frame 0 (when a trim was applied).
        series: per-frame values by property name (``VSR_NoiseSigmaY`` …), NaN where a
            sampled metric did not run.
        cuts: first frames of scenes (frame 0 not included).
        scenes: per scene: ``{"start", "end", <metric name>: summary}`` (end exclusive).
        title: per metric name, the whole-title summary.
        seconds: wall-clock time of the pass.
        metrics: the metric objects used (not serialised).
    """

    width: int
    height: int
    num_frames: int
    fps: Fraction
    format_name: str
    every: int
    first_frame: int
    series: dict[str, np.ndarray]
    cuts: list[int]
    scenes: list[dict[str, Any]]
    title: dict[str, Any]
    seconds: float
    metrics: list[Metric] = field(default_factory=list, repr=False)

    @property
    def analysis_fps(self) -> float:
        """Frames analysed per second of wall-clock time."""
        return self.num_frames / self.seconds if self.seconds > 0 else math.inf


def metric_series(
    series: Mapping[str, np.ndarray], metric: Metric, span: slice = slice(None)
) -> dict[str, np.ndarray]:
    """``{key: values}`` of one metric over ``span``, the form ``Metric.summarize`` takes."""
    return {key: series[prop_name(metric, key)][span] for key in metric.keys}


def analyze(
    clip: vs.VideoNode,
    *,
    every: int = 10,
    metrics: Sequence[Metric] | None = None,
    first_frame: int = 0,
    progress: Callable[[int, int], None] | None = None,
) -> Analysis:
    """Measure a clip: per-frame metrics, scene cuts, per-scene and whole-title summaries.

    Cheap metrics (combing, field order evidence, scene-change features, SI/TI, motion) are
    measured on every frame; costly ones (noise, compression, damage) on every ``every``-th
    frame. Memory grows only with the per-frame series (a few dozen floats per frame: about
    35 MB for a two-hour title at 24 fps).

    Args:
        clip: constant-format clip (see :func:`annotate`).
        every: sampling step for costly metrics.
        metrics: metric objects (default :func:`default_metrics`).
        first_frame: source frame number of ``clip``'s frame 0, recorded in the report.
        progress: called as ``progress(done, total)`` after each frame.
    """
    from . import default_metrics, scene_metric
    from .scenes import find_cuts, scene_spans

    metrics = list(metrics) if metrics is not None else default_metrics()
    names = [prop_name(m, k) for m in metrics for k in m.keys]
    total = clip.num_frames
    series = {name: np.full(total, np.nan) for name in names}
    annotated = annotate(clip, metrics, every=every)
    start = time.perf_counter()
    for n, frame in enumerate(annotated.frames(close=True)):
        props = frame.props
        for name in names:
            value = props.get(name)
            if value is not None:
                series[name][n] = value
        if progress is not None:
            progress(n + 1, total)
    seconds = time.perf_counter() - start

    scenes_metric = scene_metric(metrics)
    cuts = find_cuts(metric_series(series, scenes_metric)) if scenes_metric else []
    spans = scene_spans(cuts, total)
    scenes = [
        {"start": s, "end": e, **{m.name: m.summarize(metric_series(series, m, slice(s, e)))
                                  for m in metrics}}
        for s, e in spans
    ]
    title = {m.name: m.summarize(metric_series(series, m)) for m in metrics}
    return Analysis(
        width=clip.width, height=clip.height, num_frames=total,
        fps=Fraction(clip.fps.numerator, clip.fps.denominator), format_name=clip.format.name,
        every=every, first_frame=first_frame, series=series, cuts=cuts, scenes=scenes,
        title=title, seconds=seconds, metrics=metrics,
    )
