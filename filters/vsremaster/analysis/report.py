"""``report.json`` and ``report.html``: what the analysis found, for programs and for people.

The JSON holds the per-frame series, the scene cuts, per-scene and whole-title summaries and
the recommended chain with reasons. The HTML is one self-contained file (plots and thumbnails
embedded as data URIs, no scripts, no network) that opens in any browser.
"""

from __future__ import annotations

import base64
import io
import json
import math
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import vapoursynth as vs

from .. import __version__
from .._resources import templates_dir
from ..runtime.frames import default_matrix
from .annotate import prop_name
from .run import Analysis

if TYPE_CHECKING:
    from ..chain import SourceInfo

__all__ = ["REPORT_VERSION", "analyze_source", "report_dict", "write_report", "read_report"]

REPORT_VERSION = 1
_THUMB_WIDTH = 320


def _clean(value: Any) -> Any:
    """JSON-safe: NaN/inf -> None, numpy scalars -> Python, recursively."""
    if isinstance(value, dict):
        return {str(k): _clean(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_clean(v) for v in value]
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def report_dict(analysis: Analysis, source: dict[str, Any], recommendation: list[dict]) -> dict:
    """The ``report.json`` content.

    Args:
        analysis: the pass result.
        source: what is known of the source (path, declared props...).
        recommendation: from :func:`vsremaster.analysis.recommend.recommend`.
    """
    return _clean({
        "report_version": REPORT_VERSION,
        "generator": f"vsremaster {__version__}",
        "generated": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "source": source,
        "clip": {
            "width": analysis.width, "height": analysis.height,
            "num_frames": analysis.num_frames, "format": analysis.format_name,
            "fps": [analysis.fps.numerator, analysis.fps.denominator],
            "first_source_frame": analysis.first_frame,
        },
        "settings": {"every": analysis.every, "seconds": round(analysis.seconds, 3),
                     "analysis_fps": round(analysis.analysis_fps, 2)},
        "metrics": {
            m.name: {"keys": list(m.keys), "sampled": m.sampled, "about": _about(m)}
            for m in analysis.metrics
        },
        "cuts": analysis.cuts,
        "scenes": analysis.scenes,
        "title": analysis.title,
        "recommendation": recommendation,
        "frames": {name: [None if not math.isfinite(v) else round(float(v), 5) for v in values]
                   for name, values in analysis.series.items()},
    })


def read_report(path: Path) -> dict:
    """Load a ``report.json`` written by :func:`write_report`.

    Raises:
        ValueError: not a vsremaster report, or a version this release cannot read.
    """
    data = json.loads(Path(path).read_text(encoding="utf-8"))
    if data.get("report_version") != REPORT_VERSION:
        raise ValueError(f"{path} is not a vsremaster report of version {REPORT_VERSION}")
    return data


def _about(metric: Any) -> str:
    """First line of a metric's docstring, without reStructuredText markup."""
    return (type(metric).__doc__ or "").strip().split("\n")[0].replace("``", "")


def _png(fig) -> str:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=96, bbox_inches="tight")
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


def _plots(analysis: Analysis) -> list[dict[str, str]]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    seconds = np.arange(analysis.num_frames) / float(analysis.fps)
    plots = []
    for metric in analysis.metrics:
        fig, ax = plt.subplots(figsize=(10, 2.4))
        for key in metric.plot:
            values = analysis.series[prop_name(metric, key)]
            ok = np.isfinite(values)
            if not ok.any():
                continue
            style = {"marker": ".", "linestyle": "-", "markersize": 3} if metric.sampled else {}
            ax.plot(seconds[ok], values[ok], label=key, linewidth=1, **style)
        for cut in analysis.cuts:
            ax.axvline(cut / float(analysis.fps), color="0.6", linestyle="--", linewidth=0.8)
        ax.set_xlabel("time (s); dashed: scene cuts")
        ax.set_title(metric.name, loc="left", fontsize=10)
        ax.grid(alpha=0.3)
        if ax.lines:
            ax.legend(fontsize=7, loc="upper right", ncol=4)
        plots.append({"name": metric.name, "src": _png(fig),
                      "about": _about(metric)})
        plt.close(fig)
    return plots


def _thumbnail(clip: vs.VideoNode, n: int) -> str:
    import cv2

    height = max(2, round(clip.height * _THUMB_WIDTH / clip.width / 2) * 2)
    one = clip[n]
    kwargs = {}
    if clip.format.color_family == vs.YUV:
        matrix = int(one.get_frame(0).props.get("_Matrix", 2))
        kwargs["matrix_in"] = default_matrix(clip.width, clip.height) if matrix == 2 else matrix
    frame = vs.core.resize.Bicubic(one, _THUMB_WIDTH, height, format=vs.RGB24, **kwargs).get_frame(0)
    bgr = np.dstack([np.asarray(frame[p]) for p in (2, 1, 0)])
    ok, jpg = cv2.imencode(".jpg", bgr, [cv2.IMWRITE_JPEG_QUALITY, 85])
    return "data:image/jpeg;base64," + base64.b64encode(jpg.tobytes()).decode("ascii")


def _thumbnails(analysis: Analysis, clip: vs.VideoNode) -> list[dict[str, str]]:
    """A representative (middle) frame per scene, then the worst frame of each metric that
    found anything."""
    picks: list[tuple[int, str]] = [((s["start"] + s["end"]) // 2,
                                     f"scene {i + 1} (frames {s['start']}-{s['end'] - 1})")
                                    for i, s in enumerate(analysis.scenes[:12])]
    for metric in analysis.metrics:
        key = getattr(metric, "worst", None)
        if not key:
            continue
        values = analysis.series[prop_name(metric, key)]
        if np.isfinite(values).any() and np.nanmax(values) > 0:
            n = int(np.nanargmax(values))
            picks.append((n, f"highest {metric.name} {key}: {values[n]:.3g} (frame {n})"))
    return [{"caption": caption, "src": _thumbnail(clip, n)} for n, caption in picks]


def write_report(
    analysis: Analysis,
    clip: vs.VideoNode,
    out_dir: Path,
    *,
    source: dict[str, Any],
    recommendation: list[dict],
) -> dict:
    """Write ``report.json`` and ``report.html`` into ``out_dir`` (created if needed).

    Args:
        analysis: the pass result.
        clip: the analysed clip (thumbnails are taken from it).
        source: what is known of the source, recorded as is.
        recommendation: the recommended chain.

    Returns:
        The report (``report.json`` content). Both files are written to temporary names
        and renamed.
    """
    import jinja2

    out_dir.mkdir(parents=True, exist_ok=True)
    data = report_dict(analysis, source, recommendation)
    env = jinja2.Environment(loader=jinja2.FileSystemLoader(str(templates_dir())),
                             autoescape=True, undefined=jinja2.StrictUndefined)
    html = env.get_template("report.html.j2").render(
        report=data, plots=_plots(analysis), thumbnails=_thumbnails(analysis, clip),
        title_json=json.dumps(data["title"], indent=1),
    )
    paths = (out_dir / "report.json", out_dir / "report.html")
    for path, text in zip(paths, (json.dumps(data, indent=1) + "\n", html)):
        partial = path.with_name(f".{path.name}.partial-{os.getpid()}")
        partial.write_text(text, encoding="utf-8")
        os.replace(partial, path)
    return data


def analyze_source(
    info: SourceInfo,
    out_dir: Path,
    *,
    every: int = 10,
    trim: tuple[int, int] | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> dict:
    """Analyse a video file and write ``report.json`` and ``report.html`` into ``out_dir``.

    Args:
        info: the source, from :func:`vsremaster.chain.probe_source` (opened with BestSource).
        out_dir: folder for the report (created if needed).
        every: sampling step for costly metrics.
        trim: (first, end) source frames to analyse, or None for all.
        progress: ``progress(done, total)`` after each frame.

    Returns:
        The report (``report.json`` content).

    """
    from .recommend import recommend
    from .run import analyze

    clip = vs.core.bs.VideoSource(str(info.path))
    first = 0
    if trim is not None:
        first = trim[0]
        clip = clip[trim[0] : trim[1]]
    analysis = analyze(clip, every=every, first_frame=first, progress=progress)
    recommendation = recommend(analysis.title)
    source = {"path": str(info.path), "name": info.path.name, "description": info.describe(),
              "file": info.stamp()}
    return write_report(analysis, clip, out_dir, source=source, recommendation=recommendation)
