"""vspipe's progress output, parsed, and the progress bar drawn from it.

``vspipe -p`` writes to stderr, with ``\\r`` between updates and ``\\n`` after other
messages::

    Script evaluation done in 0.20 seconds\\n
    Frame: 1/132\\rFrame: 21/132\\rFrame: 43/132\\r ... Frame: 120/132\\r
    Output 132 frames in 2.80 seconds (47.16 fps)\\n

VapourSynth R81 prints ``Frame: N/TOTAL`` only; older releases add ``(12.34 fps)``. Both
are understood; when vspipe gives no speed it is computed here. Error messages (a script
raising at frame N prints ``Error: Failed to retrieve frame N with error: ...`` followed by
the Python traceback) are kept as ordinary lines.
"""

from __future__ import annotations

import re
import threading
import time
from dataclasses import dataclass
from types import TracebackType
from typing import TYPE_CHECKING, Self

if TYPE_CHECKING:
    from rich.progress import Progress, TaskID

__all__ = [
    "FrameProgress",
    "ProgressBar",
    "StderrLines",
    "TitleClock",
    "format_seconds",
    "is_vspipe_progress",
    "parse_vspipe_progress",
]

_FRAME_RE = re.compile(r"^Frame:\s*(\d+)/(\d+)(?:\s*\(\s*([\d.]+)\s*fps\))?\s*$")
_DONE_RE = re.compile(r"^Output (\d+) frames in ([\d.]+) seconds \(([\d.]+) fps\)\s*$")


@dataclass(frozen=True, slots=True)
class FrameProgress:
    """One progress report.

    Attributes:
        done: Frames written so far.
        total: Frames to write (-1 when vspipe does not know).
        fps: Speed in frames per second, if vspipe printed it.
        final: True for vspipe's closing ``Output N frames in S seconds`` line.
    """

    done: int
    total: int
    fps: float | None = None
    final: bool = False


def _parse_line(line: str) -> FrameProgress | None:
    line = line.strip()
    match = _FRAME_RE.match(line)
    if match:
        fps = float(match.group(3)) if match.group(3) else None
        return FrameProgress(int(match.group(1)), int(match.group(2)), fps)
    match = _DONE_RE.match(line)
    if match:
        done = int(match.group(1))
        return FrameProgress(done, done, float(match.group(3)), final=True)
    return None


def is_vspipe_progress(line: str) -> bool:
    """True for vspipe's progress and bookkeeping lines (not worth quoting in an error)."""
    stripped = line.strip()
    return (
        not stripped
        or _parse_line(stripped) is not None
        or stripped.startswith("Script evaluation done in")
    )


def parse_vspipe_progress(text: str) -> list[FrameProgress]:
    """Parse every progress report in a piece of vspipe stderr.

    Args:
        text: vspipe's stderr (any mix of ``\\r`` and ``\\n`` separators).

    Returns:
        The reports in order; other lines are ignored.
    """
    found = []
    for piece in re.split(r"[\r\n]", text):
        report = _parse_line(piece)
        if report is not None:
            found.append(report)
    return found


class StderrLines:
    """Incremental splitter for a program's stderr: bytes in, complete lines out.

    Lines end at ``\\n`` or ``\\r`` (progress updates). Bytes are decoded as UTF-8 with
    replacement, so a multi-byte character cut between reads is reassembled first.
    """

    def __init__(self) -> None:
        self._pending = b""

    def feed(self, data: bytes) -> list[str]:
        """Add ``data``; return the lines it completed."""
        self._pending += data
        parts = re.split(rb"[\r\n]", self._pending)
        self._pending = parts.pop()
        return [p.decode("utf-8", "replace") for p in parts]

    def flush(self) -> list[str]:
        """Return the unterminated last line, if any."""
        rest, self._pending = self._pending, b""
        return [rest.decode("utf-8", "replace")] if rest else []


def format_seconds(seconds: float) -> str:
    """``H:MM:SS``."""
    seconds = max(0, round(seconds))
    hours, rest = divmod(seconds, 3600)
    return f"{hours}:{rest // 60:02d}:{rest % 60:02d}"


class TitleClock:
    """Time left in a whole scene-based encode, over its phases in order: ``"scenes"``
    (finding the cuts: renders the title once), ``"probes"`` (renders the sample frames,
    encodes and scores them once per CRF round), ``"encode"`` (renders and encodes the
    title), ``"verify"`` (scores the finished file on the samples).

    The phase running measures itself (its bar's fps). The phases after it are estimated
    from the speeds measured so far (:meth:`measured`): the final encode at
    ``1 / (1 / render + 1 / encode)`` frames per second (script and encoder share the CPU;
    the probes' encoder speed over all rounds, on 12-frame segments that each start a shot,
    is a pessimistic guide: the final encode took 0.76-0.83x the estimate on the
    encoder-bound ``benchmarks/encode.py`` titles, about 0.9x with a denoising script), the
    check at the VMAF speed of the probes. Until the probes have measured both speeds
    (while the scenes are found) the time left is unknown, and shown as such.

    Args:
        frames: Frames of the title.
        samples: Frames the probes score (0 without target quality).
        phases: The phases this encode runs, in order.
        work: What an interrupted run of the same encode measured (its :attr:`work`), so
            a resumed run whose scenes and probes are done still knows the speeds.

    Attributes:
        work: ``{kind: [frames, seconds]}`` measured so far (JSON-ready).
    """

    def __init__(self, frames: int, samples: int, *, phases: tuple[str, ...],
                 work: dict[str, list[float]] | None = None) -> None:
        self.started = time.monotonic()
        self.frames, self.samples = frames, samples
        self.phases = phases
        self.work: dict[str, list[float]] = {
            kind: [float(v[0]), float(v[1])] for kind, v in (work or {}).items()
            if isinstance(v, list) and len(v) == 2
        }  # fmt: skip

    def elapsed(self) -> float:
        """Seconds since the encode began."""
        return time.monotonic() - self.started

    def measured(self, kind: str, frames: int, seconds: float) -> None:
        """Add work a phase timed: ``frames`` in ``seconds`` of ``kind`` (``"render"``: the
        script, ``"encode"``: the encoder on probe frames, ``"vmaf"``: scoring)."""
        done = self.work.setdefault(kind, [0.0, 0.0])
        done[0] += frames
        done[1] += seconds

    def fps(self, kind: str) -> float | None:
        """Frames per second of ``kind`` over all the work measured (None: none yet)."""
        frames, seconds = self.work.get(kind, (0.0, 0.0))
        return frames / seconds if frames and seconds > 0 else None

    def final_fps(self) -> float | None:
        """Expected speed of the final encode (script and encoder together)."""
        render, encode = self.fps("render"), self.fps("encode")
        if render is None or encode is None:
            return None
        return 1 / (1 / render + 1 / encode)

    def estimate(self, phase: str) -> float | None:
        """Seconds the whole of ``phase`` should take (None: not known yet; the scenes and
        the probes are only timed by their own bars)."""
        if phase == "encode":
            fps = self.final_fps()
            return self.frames / fps if fps else None
        if phase == "verify":
            vmaf = self.fps("vmaf")
            return self.samples / vmaf if vmaf else None
        return None

    def after(self, phase: str) -> float | None:
        """Seconds the phases after ``phase`` should take (None: not known yet)."""
        total = 0.0
        for later in self.phases[self.phases.index(phase) + 1 :]:
            seconds = self.estimate(later)
            if seconds is None:
                return None
            total += seconds
        return total

    def text(self, phase: str, phase_left: float | None) -> str:
        """``title ~0:09:40 left`` for a moment of ``phase`` with ``phase_left`` seconds
        left in it (``title: time left unknown yet`` before the speeds are measured)."""
        later = self.after(phase)
        if phase_left is None or later is None:
            return "title: time left unknown yet"
        return f"title ~{format_seconds(phase_left + later)} left"


def _format_fps(fps: float | None) -> str:
    if fps is None:
        return "-- fps"
    return f"{fps:.2f} fps" if fps < 100 else f"{fps:.0f} fps"


class ProgressBar:
    """A rich progress bar on stderr: frames done/total, fps, ETA and elapsed time.

    Thread-safe: :meth:`update` may be called from the thread that reads vspipe's stderr.
    When ``enabled`` is False nothing is drawn and every method does nothing.

    Args:
        total: Number of frames expected.
        description: Text left of the bar.
        enabled: Draw anything at all.
        clock: The whole title's clock: its time left (over every phase) is shown after
            the bar when this bar is one ``phase`` of a scene-based encode.
        phase: The :class:`TitleClock` phase this bar shows.
    """

    def __init__(self, total: int, description: str = "encoding", *, enabled: bool = True,
                 clock: TitleClock | None = None, phase: str = "encode") -> None:
        self.total = total
        self.enabled = enabled
        self.description = description
        self.clock, self.phase = clock, phase
        self._lock = threading.Lock()
        self._progress: Progress | None = None
        self._task: TaskID | None = None
        self._first_time: float | None = None
        self._first_done = 0

    def __enter__(self) -> Self:
        if self.enabled:
            from rich.console import Console
            from rich.progress import (
                BarColumn,
                MofNCompleteColumn,
                Progress,
                TextColumn,
                TimeElapsedColumn,
                TimeRemainingColumn,
            )

            self._progress = Progress(
                TextColumn("[bold]{task.description}"),
                BarColumn(),
                MofNCompleteColumn(),
                TextColumn("frames"),
                TextColumn("{task.fields[speed]}"),
                TextColumn("ETA"),
                TimeRemainingColumn(),
                TextColumn("elapsed"),
                TimeElapsedColumn(),
                TextColumn("{task.fields[title]}"),
                console=Console(stderr=True),
                transient=False,
            )
            self._progress.start()
            self._task = self._progress.add_task(
                self.description, total=self.total, speed=_format_fps(None),
                title=self._title(None),
            )
        return self

    def update(self, report: FrameProgress) -> None:
        """Show ``report`` (speed computed from elapsed time when vspipe gave none)."""
        with self._lock:
            if self._progress is None or self._task is None:
                return
            now = time.monotonic()
            if self._first_time is None:
                self._first_time, self._first_done = now, report.done
            fps = report.fps
            if fps is None and now > self._first_time and report.done > self._first_done:
                fps = (report.done - self._first_done) / (now - self._first_time)
            total = report.total if report.total > 0 and not report.final else self.total
            left = (total - report.done) / fps if fps else None
            self._progress.update(
                self._task, completed=report.done, total=total, speed=_format_fps(fps),
                title=self._title(0.0 if report.done >= total else left),
            )

    def _title(self, phase_left: float | None) -> str:
        return "" if self.clock is None else "· " + self.clock.text(self.phase, phase_left)

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        with self._lock:
            if self._progress is not None:
                self._progress.stop()
                self._progress = None
