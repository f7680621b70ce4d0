"""Analysis: measure what is wrong with a source before restoring it.

``annotate(clip)`` attaches per-frame measurements as ``VSR_*`` frame properties (visible in
vspreview); ``analyze(clip)`` runs them over a clip and summarises per scene and per title;
``recommend()`` turns the summary into a restoration chain with reasons;
``write_report()`` writes ``report.json`` and ``report.html``.

Metrics (property prefix ``VSR_<name>``; details in each class's docstring):

============ ================================================================ ===========
name          measures                                                          frames
============ ================================================================ ===========
Interlace     combing (TDeint IsCombed / VFM) and field order (FFmpeg idet)    every
Scene         picture and histogram distances for scene cuts and flashes       every
Complexity    ITU-T P.910 SI/TI and mean motion                                every
Noise         noise sigma per plane and brightness band (8-bit scale)          sampled
Compression   8×8 blockiness and ringing                                       sampled
Blur          edge-width blur estimate                                         sampled
Scratches     vertical line scratches                                          sampled
Dust          single-frame dust and spots (temporal outliers)                  sampled
============ ================================================================ ===========

Faces are not measured yet: the project has no face detector so far, and the report says
nothing about them rather than guessing.
"""

from __future__ import annotations

from collections.abc import Sequence

from .annotate import annotate, prop_name
from .base import Frame, Metric
from .complexity import Complexity
from .compression import Blur, Compression
from .damage import Dust, Scratches
from .interlace import Interlace
from .noise import Noise
from .run import Analysis, analyze
from .scenes import SceneChange

__all__ = [
    "Analysis", "Frame", "Metric", "analyze", "annotate", "default_metrics", "prop_name",
    "scene_metric",
]


def default_metrics() -> list[Metric]:
    """Fresh instances of every metric, cheap ones first."""
    return [Interlace(), SceneChange(), Complexity(), Noise(), Compression(), Blur(),
            Scratches(), Dust()]


def scene_metric(metrics: Sequence[Metric]) -> SceneChange | None:
    """The scene-change metric among ``metrics`` (scene cuts are found from its series)."""
    return next((m for m in metrics if isinstance(m, SceneChange)), None)
