"""Super-resolution: ``vsremaster.upscale``."""

from __future__ import annotations

from pathlib import Path

import vapoursynth as vs

from .. import log
from ..errors import InputError
from ..models.store import ncnn_source, resolve_model
from ..runtime.filter import model_filter
from ..runtime.frames import from_model, to_model
from ..runtime.memory import session_budget
from ..runtime.session import (
    Backend, SessionConfig, check_backend, get_pool, runs_on_ncnn, stream_count,
)
from ..runtime.tiling import auto_tile, plan_tiles

__all__ = ["upscale", "DEFAULT_UPSCALE_MODEL"]

DEFAULT_UPSCALE_MODEL = "realesrgan-x4plus"


def _target_size(
    clip: vs.VideoNode, scale: int, width: int | None, height: int | None
) -> tuple[int, int]:
    """Final size: model scale by default; one side given keeps the display aspect."""
    fmt = clip.format
    mw, mh = 1 << fmt.subsampling_w, 1 << fmt.subsampling_h
    if width is None and height is None:
        return clip.width * scale, clip.height * scale
    if width is None:
        width = round(height * clip.width / clip.height / mw) * mw
    if height is None:
        height = round(width * clip.height / clip.width / mh) * mh
    if width <= 0 or height <= 0 or width % mw or height % mh:
        raise InputError(
            f"upscale: {width}x{height} is not a valid size for {fmt.name} "
            f"(width must be a positive multiple of {mw}, height of {mh})"
        )
    return width, height


def upscale(
    clip: vs.VideoNode,
    model: str | Path = DEFAULT_UPSCALE_MODEL,
    width: int | None = None,
    height: int | None = None,
    *,
    tile: int | tuple[int, int] | None = None,
    overlap: int | None = None,
    backend: str | Backend = "auto",
    num_streams: int | None = None,
    fp16: bool | None = None,
) -> vs.VideoNode:
    """Super-resolve a progressive clip with an ONNX model, then resize to an exact size.

    The clip is converted to planar float RGB using its own colour properties, run through
    the model (tiled, padded to the model's size multiple), resized with Spline36 to
    ``width`` × ``height`` if they differ from the model's output, and converted back to the
    input's colour family and bit depth. All frame properties are kept; the sample aspect
    ratio is adjusted if the shape changes.

    Models (``vsremaster models list``): ``realesrgan-x4plus`` (Real-ESRGAN, Wang et al.
    ICCVW 2021; RRDBNet; real-world footage, best and slowest), ``realesr-animevideov3-x2/x3/x4``
    (SRVGGNetCompact, fast), ``realesrgan-x4plus-anime``, ``waifu2x-photo-x2[-noise0..3]``
    (waifu2x upconv_7 photo). A path to your own ``.onnx`` file (NCHW float 0-1 RGB or GRAY)
    also works; its scale is measured.

    Args:
        clip: constant-format YUV/RGB/GRAY clip, 8-16 bit integer or 16/32 bit float,
            progressive (``_FieldBased`` 0 or absent).
        model: manifest id or path to an ONNX file.
        width, height: output size in pixels (default: input × model scale). Give one to
            keep the display aspect ratio; must suit the chroma subsampling.
        tile: tile size in input pixels (int for square, or (w, h)); default: the whole
            frame if the model's working memory fits the free memory, else the largest tile
            that does.
        overlap: context pixels per tile side (default: the model's); tiles are blended
            with feathered ramps across the shared ``2 * overlap`` pixels.
        backend: "auto" (TensorRT → CUDA → ncnn → OpenVINO → CPU), "tensorrt", "cuda",
            "ncnn", "openvino", "cpu" (ONNX Runtime) or "torch" (the ONNX graph in PyTorch;
            CUDA when torch sees a GPU). "ncnn" runs the model's original ncnn files on the
            CPU (zoo models converted from ncnn; 1.3-1.7x ONNX Runtime's CPU speed on the
            compact models; fp32 only); ``auto`` prefers it on a CPU when the files are
            installed. "openvino" runs the ONNX file in OpenVINO's CPU plugin (fp32; on
            this project's 2-core test machine as fast as ncnn on the compact 4x, faster
            than ncnn on the RRDB models, slower on waifu2x: ``benchmarks/backends.py``).
            An explicit backend that is not available raises instead of falling back.
        num_streams: parallel sessions (frames in flight); default 1 on CPU, 2 on GPU.
        fp16: half precision; default: on for GPU backends when the model allows it.

    Returns:
        The upscaled clip, same format family and bit depth as ``clip``.

    Raises:
        InputError: variable format, unsupported format, bad size; per frame: interlaced.
        ModelError / ModelMissingError / ChecksumError: model unknown, not installed or altered.
        BackendError: the requested backend is not available (when the first frame runs).
    """
    loaded = resolve_model(model)
    spec = loaded.spec
    if spec.task not in ("upscale", "user"):
        raise InputError(f"upscale: model {spec.id!r} is a {spec.task} model, not an upscaler")
    rgb, prepared = to_model(clip, spec.in_channels, "upscale")
    out_w, out_h = _target_size(clip, spec.scale, width, height)

    backend = check_backend(backend)
    streams, effective = stream_count(backend, num_streams, "upscale")
    gpu = effective.gpu
    config = SessionConfig(
        model=loaded.path, backend=backend, num_streams=streams,
        fp16=spec.fp16 and gpu if fp16 is None else fp16, ncnn=ncnn_source(spec),
    )
    if isinstance(tile, int):
        tile = (tile, tile)
    if tile is None:
        tile = auto_tile(
            clip.width, clip.height,
            bytes_per_pixel=spec.working_bytes_per_pixel(runs_on_ncnn(config)),
            budget=session_budget(effective, streams), multiple=spec.multiple,
        )
        if tile is not None:
            log.info(f"upscale: {clip.width}x{clip.height} split into {tile[0]}x{tile[1]} tiles "
                     "to fit the memory budget")
    plan = plan_tiles(
        clip.width, clip.height, tile=tile,
        overlap=spec.overlap if overlap is None else overlap, multiple=spec.multiple,
    )
    out = model_filter(
        [rgb], get_pool(config), plan, scale=spec.scale, border=spec.border,
        out_channels=spec.out_channels, value_range=spec.value_range,
    )
    return from_model(out, prepared, width=out_w, height=out_h)
