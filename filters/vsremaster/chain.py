"""Which stages a title gets, with which parameters and why: presets and chain planning.

``vsremaster script`` and ``remaster`` open the source (:func:`probe_source`), plan a chain
of stage calls (:func:`plan_chain`) and render it into a ``.vpy``; each step carries the
reason that becomes its comment in the script.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import Any

import vapoursynth as vs

from .errors import InputError
from .models.store import resolve_model

__all__ = [
    "Preset", "PRESETS", "AUTO_PRESET", "FIELD_ORDERS", "Chain", "SourceInfo", "Step",
    "check_options", "probe_source", "plan_chain", "resolve_preset", "stage_backend",
]

FIELD_ORDERS = ("auto", "progressive", "tff", "bff")
"""``--field-order`` choices: auto = the analysis' measurement, else the source's props."""


@dataclass(frozen=True, slots=True)
class Preset:
    """A named set of stage choices, from fastest to best."""

    name: str
    description: str
    upscale_model: str


PRESETS: dict[str, Preset] = {
    p.name: p
    for p in (
        Preset("fast", "waifu2x photo 2x with light noise reduction: faithful to real "
               "footage, about 1 s per SD frame on a 2-core CPU", "waifu2x-photo-x2-noise1"),
        Preset("quality", "Real-ESRGAN x4plus (RRDBNet): sharpest on real footage, about 20x "
               "slower than fast; meant for a GPU", "realesrgan-x4plus"),
        Preset("anime", "Real-ESRGAN animevideo v3 4x: for drawn content (it outlines real "
               "faces like a cartoon)", "realesr-animevideov3-x4"),
    )
}
AUTO_PRESET = "auto"


def resolve_preset(name: str) -> tuple[Preset, str]:
    """Return the preset for ``name`` and why it was chosen.

    ``auto`` means ``quality`` when ONNX Runtime offers a GPU backend, else ``fast``.

    Raises:
        InputError: unknown preset name.
    """
    if name == AUTO_PRESET:
        from .runtime.session import available_backends

        gpu = available_backends()[0].gpu
        chosen = PRESETS["quality" if gpu else "fast"]
        why = "a GPU backend is available" if gpu else "no GPU backend; --preset quality is sharper"
        return chosen, f"preset auto -> {chosen.name}: {why}"
    try:
        return PRESETS[name], f"preset {name}"
    except KeyError:
        raise InputError(
            f"unknown preset {name!r}; choose one of {AUTO_PRESET}, {', '.join(PRESETS)}"
        ) from None


@dataclass(frozen=True, slots=True)
class SourceInfo:
    """What the chain planner needs to know about a source file (from its first frame)."""

    path: Path
    width: int
    height: int
    num_frames: int
    fps: Fraction
    format_name: str
    field_based: int
    sar: Fraction

    def stamp(self) -> dict[str, int]:
        """Size and modification time of the file now: a pass over the source recorded with
        the same stamp (analysis report, face sidecar) was made from the same bytes."""
        stat = self.path.stat()
        return {"bytes": stat.st_size, "mtime_ns": stat.st_mtime_ns}

    def describe(self) -> str:
        order = {0: "progressive", 1: "interlaced BFF", 2: "interlaced TFF"}.get(
            self.field_based, f"_FieldBased={self.field_based}"
        )
        fps = float(self.fps)
        return (
            f"{self.width}x{self.height} {self.format_name}, {fps:.3f} fps, "
            f"{self.num_frames} frames, {order}, SAR {self.sar.numerator}:{self.sar.denominator}"
        )


@dataclass(frozen=True, slots=True)
class Step:
    """One stage call in a generated script: ``clip = vsr.<function>(clip, **kwargs)``."""

    function: str
    reason: str
    kwargs: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Chain:
    """A planned script: the stage calls, and notes for its comments (findings, stages the
    analysis recommends that this release does not have)."""

    steps: list[Step]
    notes: list[str] = field(default_factory=list)


def probe_source(path: Path) -> SourceInfo:
    """Open ``path`` with BestSource and read its size, rate, length and frame 0 props.

    Raises:
        InputError: missing file, or a file BestSource cannot decode as video.
    """
    path = Path(path)
    if not path.is_file():
        raise InputError(f"source {path} does not exist")
    core = vs.core
    if not hasattr(core, "bs"):
        raise InputError("the BestSource plugin is not loaded: pip install vapoursynth-bestsource")
    try:
        clip = core.bs.VideoSource(str(path))
        props = clip.get_frame(0).props
    except vs.Error as exc:
        raise InputError(f"cannot open {path} as video: {exc}") from exc
    if clip.format is None or clip.width == 0:
        raise InputError(f"{path}: variable format or size is not supported yet")
    return SourceInfo(
        path=path.resolve(),
        width=clip.width,
        height=clip.height,
        num_frames=clip.num_frames,
        fps=Fraction(clip.fps.numerator, clip.fps.denominator),
        format_name=clip.format.name,
        field_based=int(props.get("_FieldBased", 0)),
        sar=Fraction(int(props.get("_SARNum", 1)) or 1, int(props.get("_SARDen", 1)) or 1),
    )


def check_options(preset: str, backend: str, field_order: str) -> None:
    """Refuse :func:`plan_chain` options that are wrong whatever the source, so that
    ``remaster`` can stop before its analysis.

    Raises:
        InputError: unknown preset or field order.
        BackendError: unknown backend, or one this install does not offer (the message
            names the package to install).
    """
    from .runtime.session import check_backend

    resolve_preset(preset)
    if field_order not in FIELD_ORDERS:
        raise InputError(
            f"unknown field order {field_order!r}; choose one of {', '.join(FIELD_ORDERS)}"
        )
    check_backend(backend)


def _field_order(source: SourceInfo, report: dict | None, override: str) -> tuple[str, str]:
    """(``progressive``/``tff``/``bff``/``telecined``, why): override, else analysis, else props."""
    if override != "auto":
        return override, f"--field-order {override}"
    declared = {0: "progressive", 1: "bff", 2: "tff"}.get(source.field_based, "progressive")
    if report is not None:
        rec = next((r for r in report.get("recommendation", [])
                    if r["stage"] in ("deinterlace", "ivtc")), None)
        if rec is not None and rec["stage"] == "ivtc":
            return "telecined", f"analysis: {rec['reason']}"
        if rec is not None:
            return ("tff" if rec["params"].get("tff") else "bff"), f"analysis: {rec['reason']}"
        measured = report.get("title", {}).get("Interlace", {}).get("field_order")
        if measured == "progressive":
            why = "analysis: no combing found"
            if declared != "progressive":
                why += f" (the source declares {declared.upper()}; the measurement wins)"
            return "progressive", why
    label = declared if declared == "progressive" else declared.upper()
    return declared, f"the source's _FieldBased property says {label}"


def stage_backend(backend: str, *, upscale: bool = False) -> str:
    """The backend a ``--backend`` choice gives one stage: ``ncnn`` reaches only the upscale
    (it runs the upscalers' ncnn files); the other stages, and the face pass, keep ``auto``."""
    return "auto" if backend == "ncnn" and not upscale else backend


def _backend_kwargs(backend: str, *, upscale: bool = False) -> dict[str, str]:
    """The ``backend`` argument of a step (none for ``auto``)."""
    chosen = stage_backend(backend, upscale=upscale)
    return {} if chosen == "auto" else {"backend": chosen}


def plan_chain(
    source: SourceInfo,
    *,
    report: dict | None = None,
    preset: str = AUTO_PRESET,
    model: str | None = None,
    width: int | None = None,
    height: int | None = None,
    backend: str = "auto",
    tile: int | None = None,
    num_streams: int | None = None,
    field_order: str = "auto",
    first_frame: int = 0,
) -> Chain:
    """Plan the stage calls for ``source``, from its analysis report when there is one.

    Args:
        source: from :func:`probe_source`.
        report: ``report.json`` content (:mod:`vsremaster.analysis.report`), or None.
        preset, model, width, height, backend, tile, num_streams: upscale choices.
        field_order: ``auto`` (measured, else declared), or forced ``progressive``/``tff``/``bff``.
        first_frame: source frame number of the script's frame 0 (its trim), to place the
            report's scene cuts: with temporal stages, the chain starts by marking them
            (``mark_scene_changes``), so no stage mixes frames across a cut.

    Raises:
        BackendError: see :func:`check_options`.
        InputError: unknown preset or field order, or a telecined source (no IVTC stage
            yet; the message says how to proceed). Interlaced sources get a ``deinterlace``
            step (double-rate bob) before the upscale; sources the analysis finds damaged
            (its ``descratch`` recommendation) get a ``descratch`` step after the bob, noisy or
            compressed ones (``denoise``) a ``denoise`` step with the measured sigma per
            plane before it (the descratcher was trained on footage with little noise).
        ModelError: the model is unknown, not installed (the message names the fetch
            command) or altered.
    """
    check_options(preset, backend, field_order)
    chosen, why = resolve_preset(preset)
    order, order_why = _field_order(source, report, field_order)
    if order == "telecined":
        raise InputError(
            f"{source.path.name} is telecined ({order_why}); vsremaster has no IVTC stage yet. "
            "Inverse-telecine it first (e.g. vivtc VFM + VDecimate), or pass --field-order "
            "tff/bff to bob it anyway."
        )
    steps = []
    if order in ("tff", "bff"):
        from .stages.deinterlace import DEFAULT_DEINTERLACE_MODEL

        resolve_model(DEFAULT_DEINTERLACE_MODEL)  # present and intact, or a clear error now
        kwargs = {"tff": order == "tff"}
        kwargs.update(_backend_kwargs(backend))
        steps.append(Step("deinterlace", f"Deinterlace ({order.upper()}: {order_why}): bob to "
                          f"double rate ({float(source.fps) * 2:.3f} fps) with vsremaster's "
                          f"network {DEFAULT_DEINTERLACE_MODEL}, the source's own lines kept.",
                          kwargs))
    bob = bool(steps)
    recs = (report or {}).get("recommendation", [])
    noise = next((r for r in recs if r["stage"] == "denoise"), None)
    if noise is not None:
        from .stages.denoise import DEFAULT_DENOISE_MODEL

        resolve_model(DEFAULT_DENOISE_MODEL)
        kwargs = {**noise["params"], **_backend_kwargs(backend)}
        after = " (after the bob)" if bob else ""
        steps.append(Step("denoise", f"Denoise{after} with vsremaster's temporal network "
                          f"{DEFAULT_DENOISE_MODEL}, sigma per plane as measured (8-bit "
                          f"scale). Analysis: {noise['reason']}.", kwargs))
    damage = next((r for r in recs if r["stage"] == "descratch"), None)
    if damage is not None:
        from .stages.descratch import DEFAULT_DESCRATCH_MODEL

        resolve_model(DEFAULT_DESCRATCH_MODEL)
        kwargs = _backend_kwargs(backend)
        after = " (after the bob: it needs progressive frames)" if bob else ""
        steps.append(Step("descratch", f"Remove scratches, lines, dust and snow{after} with "
                          f"vsremaster's network {DEFAULT_DESCRATCH_MODEL}. Analysis: "
                          f"{damage['reason']}.", kwargs))
    cuts = [int(c) + int(report.get("first_source_frame", 0)) - first_frame
            for c in (report or {}).get("cuts", [])]
    cuts = [c for c in cuts if c > 0]
    if steps and cuts:
        steps.insert(0, Step("mark_scene_changes", f"Mark the analysis's {len(cuts)} scene "
                             "cuts (_SceneChangePrev/Next): the temporal stages below do not "
                             "mix frames across them.", {"cuts": cuts}))
    notes = [f"Field order: {order} ({order_why})."]
    if report is not None:
        for rec in recs:
            if not rec["available"]:
                params = ", ".join(f"{k}={v!r}" for k, v in rec["params"].items())
                notes.append(f"Recommended, not in this release yet: {rec['stage']}({params}): "
                             f"{rec['reason']}.")
    model_id = model or chosen.upscale_model
    spec = resolve_model(model_id).spec  # installed and intact, or a clear error now
    scale = spec.scale
    kwargs: dict[str, Any] = {"model": model_id}
    if width or height:
        kwargs.update({k: v for k, v in (("width", width), ("height", height)) if v})
        size = f"to {width or 'auto'}x{height or 'auto'}"
    else:
        size = f"{scale}x to {source.width * scale}x{source.height * scale}"
    for key, value in (("tile", tile), ("num_streams", num_streams)):
        if value:
            kwargs[key] = value
    kwargs.update(_backend_kwargs(backend, upscale=True))
    what = spec.description if spec.task != "user" else f"your model {model_id}"
    upscale_rec = next((r for r in (report or {}).get("recommendation", [])
                        if r["stage"] == "upscale"), None)
    extra = f" Analysis: {upscale_rec['reason']}." if upscale_rec else ""
    reason = f"Upscale {size} with {what} ({why}).{extra}"
    return Chain([*steps, Step("upscale", reason, kwargs)], notes)


def face_step(model: str, tracks: Path, found: str, *, backend: str = "auto") -> Step:
    """The ``face_enhance`` call placed after the upscale: faces are cropped from the upscaled
    frame and pasted back into it (``found``: what the face pass saw, for the comment)."""
    kwargs: dict[str, Any] = {"tracks": str(tracks), "model": model, **_backend_kwargs(backend)}
    return Step("face_enhance", f"{found}; restore them with {model} along the tracks "
                "(smoothed landmarks, no track across a scene cut).", kwargs)
