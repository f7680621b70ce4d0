"""Target-quality probes: sample frames of the script rendered once, encoded at a few CRFs,
scored with VMAF against those same rendered frames; and the check of the finished file.

The decisions (which CRF to try, which to keep) are in :mod:`vsremaster.encode.target`;
this module runs the programs. Sample frames are rendered in batches of at most
``batch_bytes`` of raw y4m (one vspipe run of a generated wrapper script per batch, so the
restoration script is loaded once per batch, not once per segment) and deleted as soon as
their scenes are decided: disk use stays bounded on long titles.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

from .. import __version__
from ..errors import EncodeError
from .process import Runner, failure
from .progress import (
    FrameProgress,
    ProgressBar,
    TitleClock,
    is_vspipe_progress,
    parse_vspipe_progress,
)
from .target import (
    Probe,
    Scene,
    TargetQuality,
    balance,
    base_crf,
    choose_crf,
    next_crf,
    predict,
    zones_arg,
)
from .tools import vspipe_exe
from .vmaf import pool, vmaf_scores
from .x265 import VideoEncoder

__all__ = ["METHOD", "TAIL", "measure_scenes", "probe_frames", "probe_scenes", "render_frames"]

log = logging.getLogger("vsremaster.encode")

BATCH_BYTES = 1 << 30
KEEP_BYTES = 2 << 30  # sample frames up to this size are kept for the VMAF check
TAIL = 6  # frames of reversed tail after each probe segment (see probe_frames)
# How probes are taken (sampling, tail, scoring); part of the resume fingerprint, so a run
# resumed after a change of method probes again instead of mixing probes of two methods.
# Raise it with every such change.
METHOD = 2


def render_frames(
    run: Runner,
    script: Path,
    spans: Sequence[tuple[int, int]],
    out: Path,
    *,
    on_frames: Callable[[int], None] | None = None,
) -> None:
    """Render the ``[start, end)`` frame ranges of ``script``'s output 0 into the ``.y4m``
    ``out``, in order, with one vspipe run (progress reported as frames done).

    Raises:
        EncodeError: vspipe fails (the script's error is quoted).
    """
    from ..render import render_template

    wrapper = run.tmp / "frames.vpy"
    wrapper.write_text(
        render_template(
            "frames.vpy.j2",
            version=__version__,
            script=str(script),
            spans=[[int(a), int(b)] for a, b in spans],
        ),
        encoding="utf-8",
    )
    argv = [str(vspipe_exe()), "-c", "y4m", "-p", str(wrapper), str(out)]

    def line(text: str) -> None:
        if on_frames is not None:
            for report in parse_vspipe_progress(text):
                on_frames(report.done)

    run.commands.append(" ".join(argv[:-2]) + f" {wrapper.name} {out.name}")
    program = run.start("vspipe", argv, is_noise=is_vspipe_progress, on_line=line)
    program.finish(timeout=None)
    if program.returncode != 0:
        raise failure(program, f"while rendering probe frames of {script.name}")


def _frame_bytes(video: VideoEncoder) -> int:
    info = video.info
    luma = info.width * info.height
    chroma = 0 if info.color_family == "GRAY" else 2 * luma >> (info.subsampling_w + info.subsampling_h)
    return (luma + chroma) * (1 if info.bits <= 8 else 2)


def _batches(scenes: Sequence[Scene], frame_bytes: int, limit: int) -> list[list[Scene]]:
    batches: list[list[Scene]] = []
    size = 0
    for scene in scenes:
        need = frame_bytes * scene.frames_sampled
        if not batches or size + need > limit:
            batches.append([])
            size = 0
        batches[-1].append(scene)
        size += need
    return batches


def _render_batch(
    run: Runner, video: VideoEncoder, batch: Sequence[Scene], bar: ProgressBar, done: int,
    total: int,
) -> Path:
    """The sample frames of ``batch`` as a ``.y4m``: rendered now (advancing ``bar`` from
    ``done``; the speed goes to the bar's title clock unless it has one), or the file kept
    from probing the same batch."""
    reference = run.tmp / f"samples-{batch[0].index}-{batch[-1].index}.y4m"
    if reference.is_file():
        bar.update(FrameProgress(done + _sample_frames(batch), total))
        return reference
    spans = [span for scene in batch for span in scene.samples]
    partial = reference.with_suffix(".partial.y4m")
    started = time.monotonic()
    render_frames(
        run, video.info.script, spans, partial,
        on_frames=lambda n: bar.update(FrameProgress(done + n, total)),
    )  # fmt: skip
    if bar.clock is not None and bar.clock.fps("render") is None:
        # with its start-up and a seek per segment, a guide only when the title was not
        # rendered whole to find its scenes
        bar.clock.measured("render", _sample_frames(batch), time.monotonic() - started)
    partial.replace(reference)
    return reference


def _sample_frames(scenes: Sequence[Scene]) -> int:
    return sum(s.frames_sampled for s in scenes)


def probe_scenes(
    run: Runner,
    video: VideoEncoder,
    scenes: Sequence[Scene],
    target: TargetQuality,
    *,
    save: Callable[[], None],
    progress: bool = True,
    batch_bytes: int = BATCH_BYTES,
    clock: TitleClock | None = None,
) -> float:
    """Decide the CRF of every scene that has none yet (``scene.crf is None``).

    The probes run in rounds over a batch of scenes: each round asks every undecided scene
    for its next CRF (:func:`next_crf`), encodes the samples of all of them in **one**
    encoder run whose zones give each scene its own CRF (the same zones the final encode
    uses), and scores that file with **one** VMAF run pooled per scene: a batch takes 2-4
    encoder and VMAF runs, however many scenes it holds.

    The probes are saved (``save()``) after every round and each scene when decided, so a
    killed run resumes where it was. The speeds of rendering, encoding and scoring go to
    ``clock`` (the whole title's time left).

    Returns:
        Seconds spent.

    Raises:
        EncodeError: rendering, a probe encode or VMAF fails.
    """
    started = time.monotonic()
    todo = [s for s in scenes if s.crf is None]
    if not todo:
        if target.balance:
            balance(scenes, target)  # deterministic: same answer as the run that probed
        _warn_unreachable(scenes, target)
        return 0.0
    fps = float(video.info.fps)
    total = 3 * _sample_frames(todo)  # rendering and two rounds; grows with a round more
    keep = target.verify and _frame_bytes(video) * _sample_frames(scenes) <= KEEP_BYTES
    done = 0
    with ProgressBar(total, "probing (VMAF)", enabled=progress, clock=clock,
                     phase="probes") as bar:
        for batch in _batches(todo, _frame_bytes(video), batch_bytes):
            reference = _render_batch(run, video, batch, bar, done, total)
            done += _sample_frames(batch)
            positions, offset = {}, 0
            for scene in batch:
                positions[scene.index] = offset
                offset += scene.frames_sampled
            while True:
                plan: list[tuple[Scene, float]] = []
                for scene in batch:
                    if scene.crf is not None:
                        continue
                    crf = next_crf(scene.probes, target, target.start_crf)
                    if crf is None:
                        _decide(scene, target)
                    else:
                        plan.append((scene, crf))
                save()
                if not plan:
                    break
                count = sum(s.frames_sampled for s, _ in plan)
                total = max(total, done + count)
                _probe_round(run, video, reference, positions, plan, target, fps, clock)
                done += count
                bar.update(FrameProgress(done, total))
            if not keep:
                reference.unlink(missing_ok=True)
    if target.balance:
        balance(scenes, target)
        save()
    _warn_unreachable(scenes, target)
    return time.monotonic() - started


def _warn_unreachable(scenes: Sequence[Scene], target: TargetQuality) -> None:
    """Warn about scenes held at the lowest CRF the search allows (``min_crf``, or as far
    below its probes as it extrapolates) that are still predicted below the target."""
    short = [s for s in scenes if s.limited_by == "min-crf" and s.predicted_mean is not None
             and s.predicted_mean < target.vmaf]
    if short:
        log.warning(
            "%d of %d scenes cannot reach VMAF %g at the lowest CRF searched (%s); the "
            "title falls short there: a lower --target-vmaf avoids oversized scenes",
            len(short), len(scenes), target.vmaf,
            ", ".join(f"scene {s.index}: CRF {s.crf:g}, predicted {s.predicted_mean:.1f}"
                      for s in short[:4]) + (" …" if len(short) > 4 else ""),
        )  # fmt: skip


def _decide(scene: Scene, target: TargetQuality) -> None:
    scene.crf, scene.limited_by = choose_crf(scene.probes, target)
    scene.predicted_mean = round(predict(scene.probes, scene.crf, "mean"), 3)
    scene.predicted_low = round(predict(scene.probes, scene.crf, "low"), 3)
    log.debug(
        "scene %d (%d-%d): CRF %.1f (%s) after %d probes",
        scene.index, scene.start, scene.end - 1, scene.crf, scene.limited_by,
        len(scene.probes),
    )  # fmt: skip


def _probe_round(
    run: Runner,
    video: VideoEncoder,
    reference: Path,
    positions: dict[int, int],
    plan: Sequence[tuple[Scene, float]],
    target: TargetQuality,
    fps: float,
    clock: TitleClock | None = None,
) -> None:
    """Encode the samples of the scenes in ``plan`` (each at its CRF) in one run, score
    them with one VMAF run and add a :class:`Probe` to each scene. A scene's samples start
    at frame ``positions[scene.index]`` of ``reference``.

    Every sample segment is followed by a tail of up to :data:`TAIL` of its own frames in
    reverse order, encoded but not scored (see :func:`probe_frames`)."""
    order: list[int] = []  # frames of ``reference`` to encode, in order
    parts: list[Scene] = []  # each scene's segments and tails: its zone
    segments: list[list[Scene]] = []  # each scene's scored frames, a part per segment
    for scene, crf in plan:
        begin, at, mine = len(order), positions[scene.index], []
        for a, b in scene.samples:
            mine.append(Scene(index=scene.index, start=len(order), end=len(order) + b - a))
            order += probe_frames(at, at + b - a)
            at += b - a
        parts.append(Scene(index=scene.index, start=begin, end=len(order), crf=float(crf)))
        segments.append(mine)
    scored = [segment for mine in segments for segment in mine]
    source = run.tmp / "probe-samples.y4m"
    _y4m_select(reference, source, order, _frame_bytes(video))
    out, csv = run.tmp / "probe.hevc", run.tmp / "probe.csv"
    base = base_crf(parts)
    crfs = ", ".join(sorted({f"{c:g}" for _, c in plan}, key=float))
    argv = video.argv(out, crf=base, zones=zones_arg(parts, 0, base), csv=csv, source=source)
    started = time.monotonic()
    run.run(video.name, argv, f"encoding probes at CRF {crfs}")
    encoded = time.monotonic()
    ranges = [(s.start, s.end) for s in scored]
    scores = vmaf_scores(
        out, source, pix_fmt=video.pix_fmt, distorted_frames=ranges, reference_frames=ranges,
        log_dir=run.tmp,
    )  # fmt: skip
    if clock is not None:
        clock.measured("encode", len(order), encoded - started)
        clock.measured("vmaf", len(scores), time.monotonic() - encoded)
    scene_bits(csv, 0, scored)
    at = 0
    for (scene, crf), mine in zip(plan, segments, strict=True):
        count = sum(s.frames for s in mine)
        stats = pool(scores[at : at + count], target.percentile)
        at += count
        scene.probes.append(Probe(
            crf=float(crf),
            mean=round(stats.mean, 3),
            low=round(stats.low, 3),
            kbps=round(sum(s.bits or 0 for s in mine) / (count / fps) / 1000, 1),
            frames=count,
        ))  # fmt: skip
    for path in (out, csv, source):
        path.unlink(missing_ok=True)


def probe_frames(start: int, end: int) -> list[int]:
    """Frames to encode for the probe segment ``[start, end)``: the segment, then up to
    :data:`TAIL` of its own frames in reverse order (``end - 2`` down), encoded but not
    scored, so that the segment does not end the stream.

    Measured on the ``benchmarks/encode.py`` titles (x265 preset slow, the segments the
    probes took, against the same frames in an encode of the whole title): plain 12-frame
    segments scored 0.28-0.54 VMAF low at CRF 26 (0.79 at CRF 30), likely as the lookahead
    and cu-tree see the stream end; with a 6-frame tail -0.04 to +0.19, with 11 frames
    -0.25 to +0.03 for 1.9x the encoded frames.
    """
    tail = range(end - 2, max(start, end - 1 - TAIL) - 1, -1)
    return [*range(start, end), *tail]


_Y4M_FRAME = b"FRAME\n"


def _y4m_select(src: Path, dst: Path, frames: Sequence[int], frame_bytes: int) -> None:
    """Write the listed frames of ``src`` (in that order; repeats allowed), a ``.y4m``
    written by vspipe (every frame header a bare ``FRAME``, ``frame_bytes`` of samples),
    into ``dst``.

    Raises:
        EncodeError: ``src`` is not such a file, or is truncated.
    """
    step = len(_Y4M_FRAME) + frame_bytes
    with src.open("rb") as f, dst.open("wb") as g:
        header = f.readline()
        if not header.startswith(b"YUV4MPEG2 ") or f.read(len(_Y4M_FRAME)) != _Y4M_FRAME:
            raise EncodeError(f"{src.name}: not a y4m file from vspipe")
        size = src.stat().st_size - len(header)
        if size % step:
            raise EncodeError(f"{src.name}: truncated y4m ({size} bytes after the header)")
        g.write(header)
        for i in frames:
            f.seek(len(header) + i * step)
            frame = f.read(step) if i >= 0 else b""
            if len(frame) != step:  # past the end, or shortened while being read
                raise EncodeError(f"{src.name}: has no frame {i}")
            g.write(frame)


def measure_scenes(
    run: Runner,
    video: VideoEncoder,
    encoded: Path,
    scenes: Sequence[Scene],
    target: TargetQuality,
    *,
    progress: bool = True,
    batch_bytes: int = BATCH_BYTES,
    clock: TitleClock | None = None,
) -> float:
    """Score the finished file on each scene's sample frames and set ``measured_mean`` /
    ``measured_low``. The frames come from probing when it kept them (up to
    :data:`KEEP_BYTES`), else the script renders them again. Returns the seconds spent."""
    started = time.monotonic()
    fps = float(video.info.fps)
    total = _sample_frames(scenes)
    done = 0
    with ProgressBar(total, "checking VMAF", enabled=progress, clock=clock,
                     phase="verify") as bar:
        for batch in _batches(scenes, _frame_bytes(video), batch_bytes):
            reference = _render_batch(run, video, batch, bar, done, total)
            spans = [span for scene in batch for span in scene.samples]
            first = spans[0][0]
            scores = vmaf_scores(
                encoded, reference, pix_fmt=video.pix_fmt,
                distorted_frames=[(a - first, b - first) for a, b in spans],
                distorted_seek=((first - 0.25) / fps, (spans[-1][1] - first + 0.5) / fps),
                log_dir=run.tmp,
            )  # fmt: skip
            position = 0
            for scene in batch:
                count = scene.frames_sampled
                stats = pool(scores[position : position + count], target.percentile)
                scene.measured_mean = round(stats.mean, 3)
                scene.measured_low = round(stats.low, 3)
                position += count
            done += position
            bar.update(FrameProgress(done, total))
            reference.unlink(missing_ok=True)
    return time.monotonic() - started


def scene_bits(csv_path: Path, offset: int, scenes: Sequence[Scene]) -> None:
    """Add the bits of each frame in x265's ``--csv`` log to the scenes that hold it.

    Rows come in encode order with the slice POC, which restarts at 0 on every IDR frame;
    with closed GOPs every frame shown before an IDR is encoded before it, so an IDR's frame
    number is one past the highest seen so far. The encode's frame 0 is title frame
    ``offset``.
    """
    lines = csv_path.read_text(encoding="utf-8", errors="replace").splitlines()
    header = [c.strip() for c in lines[0].split(",")] if lines else []
    if not {"POC", "Bits", "Type"} <= set(header):
        raise EncodeError(f"{csv_path.name}: not an x265 per-frame log")
    poc_col, bits_col, type_col = header.index("POC"), header.index("Bits"), header.index("Type")
    starts = np.array([s.start for s in scenes])
    base, highest = 0, -1
    for raw in lines[1:]:
        cells = raw.split(",")
        try:
            poc = int(cells[poc_col])
            bits = int(cells[bits_col])
        except (IndexError, ValueError):
            continue  # the summary line at the end
        if poc == 0 and highest >= 0 and "I" in cells[type_col]:
            base = highest + 1
        frame = base + poc
        highest = max(highest, frame)
        frame += offset
        i = int(np.searchsorted(starts, frame, side="right")) - 1
        if 0 <= i < len(scenes) and frame < scenes[i].end:
            scenes[i].bits = (scenes[i].bits or 0) + bits
