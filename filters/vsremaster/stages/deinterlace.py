"""Deinterlacing: ``vsremaster.deinterlace``, a learned bob with exact source match."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import vapoursynth as vs

from .. import log
from ..errors import InputError
from ..models.store import stage_model_path
from ..runtime.frames import check_clip
from ..runtime.session import Backend, SessionConfig, check_backend, get_pool, stream_count
from ..runtime.tiling import plan_tiles, run_tiled
from .temporal import neighbour_clips

__all__ = ["deinterlace", "DEFAULT_DEINTERLACE_MODEL", "field_order"]

core = vs.core

DEFAULT_DEINTERLACE_MODEL = "vsr-deinterlace-v1"
_OFFSETS = (-2, -1, 1, 2)  # neighbouring fields the model sees besides the current one
_ANALYSE_FRAMES = 300  # frames measured when nothing else says the field order
_MULTIPLE = 4  # the network down-samples twice


def field_order(clip: vs.VideoNode, tff: bool | None = None) -> bool | None:
    """The field order to deinterlace ``clip`` with: True = TFF, False = BFF, None =
    progressive.

    Order of evidence: the ``tff`` argument; else frame 0's ``_FieldBased`` (2 TFF, 1 BFF,
    0 progressive); else, when the property is absent, the analysis's field-order measurement
    (:class:`vsremaster.analysis.interlace.Interlace`, after FFmpeg's idet) over up to the
    first 300 frames.

    Raises:
        InputError: ``_FieldBased`` is absent and the measurement is undetermined, or says
            telecined (inverse telecine, not a bob, is the right tool).
    """
    if tff is not None:
        return bool(tff)
    declared = clip.get_frame(0).props.get("_FieldBased")
    if declared in (1, 2):
        return declared == 2
    if declared == 0:
        return None
    from ..analysis.interlace import Interlace
    from ..analysis.run import analyze

    metric = Interlace()
    result = analyze(clip[:_ANALYSE_FRAMES], metrics=[metric]).title[metric.name]
    order = result["field_order"]
    if order in ("TFF", "BFF"):
        log.info(f"deinterlace: no _FieldBased on the clip; measured field order {order}")
        return order == "TFF"
    if order == "progressive":
        return None
    raise InputError(
        f"deinterlace: the clip has no _FieldBased property and its field order measures as "
        f"{order!r}; pass tff=True or tff=False (or set _FieldBased with std.SetFieldBased)"
    )


def _neighbours(
    n: int, total: int, frame_props: vs.FrameProps, first_field: bool
) -> dict[int, bool]:
    """For each offset in ``_OFFSETS``: whether field ``n + offset`` exists and lies in the
    same scene. A cut flagged on the source frame (``_SceneChangePrev/Next``) separates it
    from the frame before/after, so offset -1 crosses it only from the frame's first field
    and +1 only from its second; offsets ±2 always reach the other frame."""
    prev_cut = bool(frame_props.get("_SceneChangePrev", 0))
    next_cut = bool(frame_props.get("_SceneChangeNext", 0))
    crosses = {-2: prev_cut, -1: prev_cut and first_field,
               1: next_cut and not first_field, 2: next_cut}
    return {d: 0 <= n + d < total and not crosses[d] for d in _OFFSETS}


def _model_input(planes: dict[int, np.ndarray], ok: dict[int, bool]) -> np.ndarray:
    """Stack fields t-2..t+2 as ``(5, h, w)``, standing in for missing neighbours: the
    field on the other side in time, else the current field (offset ±2) or its line
    average (offset ±1, which sits between the current lines)."""
    cur = planes[0]
    avg = None
    stack = []
    for d in (-2, -1, 0, 1, 2):
        if d == 0 or ok[d]:
            stack.append(planes[d])
        elif ok[-d]:
            stack.append(planes[-d])
        elif abs(d) == 2:
            stack.append(cur)
        else:
            if avg is None:
                avg = 0.5 * (cur + np.concatenate((cur[1:], cur[-1:])))
            stack.append(avg)
    return np.stack(stack)


def deinterlace(
    clip: vs.VideoNode,
    tff: bool | None = None,
    rate: str = "double",
    model: str | Path = DEFAULT_DEINTERLACE_MODEL,
    *,
    backend: str | Backend = "auto",
    num_streams: int | None = None,
) -> vs.VideoNode:
    """Deinterlace with vsremaster's own temporal network (``vsr-deinterlace-v1``).

    Each field becomes a progressive frame (a *bob*): the field's own lines are copied
    unchanged (source match) and the other lines are predicted by a U-Net from five fields,
    ``t-2 … t+2`` (see :mod:`vsremaster.training.deinterlace` and the model card
    ``onnx/vsr-deinterlace-v1.md``; trained on real progressive footage split into fields
    the MSU benchmark's way). Every plane goes through the model (4:2:0 chroma at its own
    size). Across a scene change (``_SceneChangePrev/_SceneChangeNext`` on the source
    frames) and at the clip's ends, fields from the other scene are not used: the field on
    the other side in time stands in, else the current one.

    Args:
        clip: interlaced clip, constant format (YUV/GRAY/RGB, 8-16 bit integer or 16/32 bit
            float); height a multiple of ``2 << subsampling_h`` (4 for 4:2:0).
        tff: field order, True = top field first; default: ``_FieldBased`` of frame 0, else
            measured (see :func:`field_order`).
        rate: ``"double"`` (one frame per field: 50i -> 50p, 59.94i -> 59.94p) or
            ``"single"`` (one frame per frame, from its first field).
        model: manifest id or path of an ONNX file with the same I/O (input ``(N, 5, h, w)``
            float fields in 0-1, output ``(N, 1, h, w)`` missing rows).
        backend: "auto" (TensorRT → CUDA → OpenVINO → CPU), "tensorrt", "cuda",
            "openvino" (OpenVINO's CPU plugin, fp32), "cpu" (ONNX Runtime) or "torch" (the
            ONNX graph in PyTorch; CUDA when torch sees a GPU).
        num_streams: parallel sessions; default 1 on CPU, 2 on GPU.

    Returns:
        Progressive clip, same format and size, ``_FieldBased=0``; double rate has twice
        the frames and frame rate and half the ``_Duration``; single rate keeps both. Other
        frame props are the source frame's; ``_Field`` is removed, and at double rate a
        source frame's ``_SceneChangePrev`` stays on its first field's frame only and
        ``_SceneChangeNext`` on its second's (the two fields of one frame are one shot). A
        progressive clip (``_FieldBased=0``, or measured progressive when the property is
        absent) is returned unchanged with a warning.

    Raises:
        InputError: variable format, unsupported depth, height not splittable into fields,
            unknown ``rate``, field order unknown.
        ModelError / ModelMissingError / ChecksumError: model unknown, missing or altered.
        BackendError: the requested backend is not available (at the first frame).
    """
    fmt = check_clip(clip, "deinterlace")
    if rate not in ("double", "single"):
        raise InputError(f"deinterlace: rate must be 'double' or 'single', got {rate!r}")
    step = 2 << fmt.subsampling_h
    if clip.height % step:
        raise InputError(
            f"deinterlace: height {clip.height} cannot hold two fields of {fmt.name} (needs a "
            f"multiple of {step}); an odd or cropped height is not an interlaced frame — "
            "crop or pad whole line pairs before deinterlacing"
        )
    order = field_order(clip, tff)
    if order is None:
        log.warning("deinterlace: the clip is progressive (_FieldBased=0 or measured); "
                    "returned unchanged. Pass tff=True/False to deinterlace anyway")
        return clip
    path = stage_model_path(model, "deinterlace", "deinterlace")
    backend = check_backend(backend)
    streams, _ = stream_count(backend, num_streams, "deinterlace")
    pool = get_pool(SessionConfig(model=path, backend=backend, num_streams=streams))

    src = core.std.SetFieldBased(clip, 2 if order else 1)
    fields = core.std.SeparateFields(src, tff=order)  # 2N fields, durations halved
    total = fields.num_frames
    shifted = neighbour_clips(fields, _OFFSETS)
    frames = core.std.AddBorders(fields, bottom=fields.height)  # full-height canvas
    if rate == "single":
        frames = core.std.SelectEvery(frames, 2, 0)
        shifted = {d: core.std.SelectEvery(c, 2, 0) for d, c in shifted.items()}
        frames = core.std.AssumeFPS(frames, src=clip)
    order_keys = (0, *_OFFSETS)
    plans = [plan_tiles(fields.width >> (p and fmt.subsampling_w),
                        fields.height >> (p and fmt.subsampling_h), tile=None, overlap=0,
                        multiple=_MULTIPLE) for p in range(fmt.num_planes)]
    integer = fmt.sample_type == vs.INTEGER
    peak = (1 << fmt.bits_per_sample) - 1 if integer else 1.0
    # model samples are 0-1; float YUV chroma is centred on 0, so it is shifted by 0.5
    offset = [0.5 if p and fmt.color_family == vs.YUV and not integer else 0.0
              for p in range(fmt.num_planes)]

    def infer(n: int, f: list[vs.VideoFrame]) -> vs.VideoFrame:
        k = n if rate == "double" else 2 * n
        first_field = k % 2 == 0
        top = first_field == order  # this field holds the even rows
        ok = _neighbours(k, total, f[1].props, first_field)
        dst = f[0].copy()
        for p in range(fmt.num_planes):
            planes = {}
            for i, d in enumerate(order_keys):
                a = np.asarray(f[1 + i][p], dtype=np.float32) * (1 / peak) + offset[p]
                planes[d] = a if top else a[::-1]
            # one whole-field tile: mirror-padded to the network's multiple of 4, cropped back
            y = run_tiled(_model_input(planes, ok)[None], pool.run, plans[p], scale=1)[0, 0]
            if not top:
                y = y[::-1]
            out = np.asarray(dst[p])
            cur = np.asarray(f[1][p])
            missing = (y - offset[p]) * peak
            if integer:
                missing = np.clip(np.rint(missing), 0, peak)
            out[(0 if top else 1)::2] = cur
            out[(1 if top else 0)::2] = missing
        props = dst.props  # the canvas's: source props, durations of the output rate
        props["_FieldBased"] = 0
        # At double rate a source frame's cut flags belong to one of its two pictures: the
        # cut before it to its first field's, the cut after it to its second field's.
        stale = ["_Field"]
        if rate == "double":
            stale.append("_SceneChangeNext" if first_field else "_SceneChangePrev")
        for key in stale:
            if key in props:
                del props[key]
        return dst

    sources = [frames, *(shifted[d] for d in order_keys)]

    def per_frame(n: int) -> vs.VideoNode:
        return core.std.ModifyFrame(frames, sources, infer)

    return core.std.FrameEval(frames, per_frame, clip_src=sources)
