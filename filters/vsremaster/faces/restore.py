"""Face restoration along the tracks: ``vsremaster.face_enhance``.

For every face of every frame (from the tracks of :func:`~vsremaster.faces.scan.scan_faces`,
smoothed in both directions within each shot), the stage:

1. aligns the face to the restorer's template (:func:`~vsremaster.faces.align.align`: a
   least-squares similarity from the smoothed landmarks, computed in square pixels so
   anamorphic SD is not distorted);
2. neutralises the light's colour: per-channel gains bring the face's mean colour to a
   daylight skin reference (stage light in deep red or blue is far outside what GFPGAN and
   CodeFormer were trained on); the mean is taken over ``COLOUR_WINDOW`` frames either side
   along the track (within its shot), so the gains do not flicker with noise, expressions
   or strobing light; the gains are undone on the restored crop, so the original colour
   comes back exactly where the restorer changed nothing;
3. runs the restorer (ONNX: GFPGAN 1.x, CodeFormer with its fidelity ``weight`` input,
   RestoreFormer(++) or GPEN-BFR; RGB NCHW in [-1, 1], FaceFusion's convention);
4. pastes the crop back through the inverse transform with a feathered square mask. The
   mask follows the smoothed landmarks, so its geometry is as stable as the track; it fades
   in and out over ``fade`` frames where a track is born or dies inside a shot (a face
   appearing at a scene cut appears at once), and is scaled by ``strength``. Only the
   pasted area takes the round trip to the model's RGB float and back; the rest of the
   frame (chroma of YUV 4:2:0 too) stays bit-exact.

Tracks are in pixels of the scanned clip; a clip of another size (the stage placed after
``upscale``) gets them scaled with pixel centres kept, so the face is cropped from the
upscaled frame and pasted back at the same place. Frames without faces are passed through
untouched. Each output frame carries ``VSRFaces`` (faces restored) and ``VSRFaceSeconds``
(time spent on them) so a benchmark or a previewer can report the cost per face.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

import numpy as np
import vapoursynth as vs

from .. import log
from ..errors import InputError, ModelError, ModelMissingError
from ..models.manifest import load_manifest
from ..models.store import install_hint, is_installed, is_model_file, resolve_model
from ..runtime.frames import from_model, to_model
from ..runtime.session import Backend, SessionConfig, check_backend, get_pool
from ..stages.temporal import neighbour_clips
from .align import align, feather_mask, paste_alpha, paste_back, template_transform
from .scan import FaceScan, read_sidecar

__all__ = ["FaceRestorer", "face_enhance", "installed_face_model", "neutralise_colour",
           "face_colour", "DEFAULT_FACE_MODELS", "SKIN_REFERENCE", "COLOUR_WINDOW"]

core = vs.core

# Preference order when the caller does not name a model (the first installed one is used).
DEFAULT_FACE_MODELS = ("gfpgan-1.4", "codeformer", "gfpgan-1.3", "restoreformer-pp",
                       "restoreformer", "gpen-bfr-512", "gpen-bfr-256")
# Mean linear-ish sRGB of a face under daylight, relative to its red: what the crop's mean is
# brought to before restoring (a typical light skin tone; only the ratios matter).
SKIN_REFERENCE = np.array([1.0, 0.77, 0.66], np.float32)
MAX_GAIN = 3.0
COLOUR_WINDOW = 4  # frames either side whose face colour sets a frame's gains
_COLOUR_SIZE = 64  # template crop side the face colour is measured on


def face_colour(crop: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """The ``(3,)`` mean colour of a template crop ``(S, S, 3)`` where ``weights``
    ``(S, S)`` (0-1) says the face is."""
    w = weights[..., None]
    return (crop * w).sum((0, 1)) / max(float(w.sum()), 1e-6)


def neutralise_colour(crop: np.ndarray, weights: np.ndarray, mean: np.ndarray | None = None
                      ) -> tuple[np.ndarray, np.ndarray]:
    """Per-channel gains that give the face region the skin reference's colour.

    Args:
        crop: ``(S, S, 3)`` float RGB, 0-1.
        weights: ``(S, S)`` where the face is (0-1).
        mean: the face's colour to neutralise (default: :func:`face_colour` of this crop;
            :func:`face_enhance` passes the mean over neighbouring frames).

    Returns:
        ``(neutral, gains)``: ``crop * gains`` clipped to 0-1, and the ``(3,)`` gains (each
        within [1/3, 3], the mean brightness kept); divide the restored crop by them.
    """
    mean = face_colour(crop, weights) if mean is None else mean
    target = SKIN_REFERENCE * (mean.mean() / SKIN_REFERENCE.mean())
    gains = np.clip(target / np.maximum(mean, 1e-4), 1 / MAX_GAIN, MAX_GAIN).astype(np.float32)
    return np.clip(crop * gains, 0.0, 1.0), gains


def _face_weights(size: int) -> np.ndarray:
    """Where the face is inside a template crop: an ellipse around eyes, nose and mouth."""
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32) / size
    return (((xx - 0.5) / 0.24) ** 2 + ((yy - 0.6) / 0.3) ** 2 <= 1).astype(np.float32)


@dataclass
class FaceRestorer:
    """A face-restoration ONNX model and how to feed it.

    Args:
        model: manifest id (``vsremaster models list``, task face-restore; installed with
            ``vsremaster models add``) or a path to an ONNX file with the same I/O.
        template: alignment template for a path (default ``ffhq_512``; ids know theirs).
        backend: ``auto``, ``cpu``, ``cuda``, ``tensorrt`` (ONNX Runtime), ``openvino``
            or ``torch``.
        threads: CPU threads (ORT, OpenVINO; 0 = all cores).

    Raises:
        ModelMissingError: the model is not installed (the message says how to add it).
        ModelError: not a face restorer, or an I/O that does not fit.
    """

    model: str | Path = DEFAULT_FACE_MODELS[0]
    template: str | None = None
    backend: str = "auto"
    threads: int = 0

    def __post_init__(self) -> None:
        if is_model_file(self.model):
            self._path = Path(self.model).expanduser().resolve()
            if not self._path.is_file():
                raise ModelError(f"face restorer file {self._path} does not exist")
            self.template = self.template or "ffhq_512"
            self.name = self._path.name
        else:
            spec = load_manifest()[str(self.model)]
            if spec.task != "face-restore":
                raise ModelError(f"{spec.id!r} is a {spec.task} model, not a face restorer")
            self._path = resolve_model(spec.id).path
            self.template = self.template or spec.template
            self.name = spec.id
        backend = check_backend(self.backend)
        self._pool = get_pool(SessionConfig(self._path, backend, 1, False, self.threads))

    @cached_property
    def _io(self) -> tuple[int, str | None]:
        inputs = self._pool.inputs()
        shape = inputs[0][1]
        if len(shape) != 4 or shape[1] != 3 or not isinstance(shape[2], int) or shape[2] != shape[3]:
            raise ModelError(f"{self._path}: expected a [1, 3, S, S] image input, got {shape}")
        weight = next((t for n, _, t in inputs[1:] if n == "weight"), None)
        return shape[2], weight

    @property
    def size(self) -> int:
        """Crop side in pixels (the model's input size)."""
        return self._io[0]

    @property
    def has_fidelity(self) -> bool:
        """Whether the model takes a fidelity ``weight`` (CodeFormer)."""
        return self._io[1] is not None

    def restore(self, crop: np.ndarray, fidelity: float | None = None) -> np.ndarray:
        """Restore one aligned crop.

        Args:
            crop: ``(S, S, 3)`` float32 RGB, 0-1.
            fidelity: CodeFormer's ``w`` (0 = most restoration, 1 = most faithful).

        Returns:
            ``(S, S, 3)`` float32 RGB, 0-1.
        """
        x = (crop.transpose(2, 0, 1)[None] * 2.0 - 1.0).astype(np.float32)
        extra = None
        if self.has_fidelity:
            dtype = np.float64 if "double" in self._io[1] else np.float32
            extra = {"weight": np.array([0.5 if fidelity is None else fidelity], dtype)}
        y = self._pool.run_all(x, extra)[0][0]
        return ((np.clip(y, -1.0, 1.0) + 1.0) * 0.5).transpose(1, 2, 0).astype(np.float32)


def _frame_index(scan: FaceScan, width: int, height: int, *, min_face: float,
                 fade: int) -> dict[int, list[tuple[np.ndarray, float, int]]]:
    """frame -> [(landmarks in clip pixels, blend weight, track number)] for the faces to
    restore."""
    sx, sy = width / scan.width, height / scan.height
    bounds = {0, scan.num_frames, *scan.cuts}
    index: dict[int, list[tuple[np.ndarray, float]]] = {}
    for k, t in enumerate(scan.tracks):
        if t.landmarks is None:
            continue
        born_at_cut = t.start in bounds
        dies_at_cut = t.end in bounds
        sizes = np.sqrt(np.maximum((t.boxes[:, 2] - t.boxes[:, 0]) * (t.boxes[:, 3] - t.boxes[:, 1]), 0))
        for row, n in enumerate(range(t.start, t.end)):
            if sizes[row] <= min_face:
                continue
            # a face growing past min_face blends in over the next 25 % of size (no pop)
            ramp = min(1.0, (sizes[row] - min_face) / (0.25 * min_face)) if min_face else 1.0
            if fade > 0:
                if not born_at_cut:
                    ramp = min(ramp, (row + 1) / (fade + 1))
                if not dies_at_cut:
                    ramp = min(ramp, (t.end - n) / (fade + 1))
            index.setdefault(n, []).append((_clip_points(t.landmarks[row], sx, sy), ramp, k))
    return index


def _clip_points(landmarks: np.ndarray, sx: float, sy: float) -> np.ndarray:
    """Landmarks of the scanned clip in pixels of a clip ``sx``, ``sy`` times its size
    (pixel centres kept)."""
    return (landmarks + 0.5) * (sx, sy) - 0.5


def face_enhance(
    clip: vs.VideoNode,
    tracks: FaceScan | str | Path,
    model: str | Path | None = None,
    *,
    strength: float = 0.8,
    fidelity: float | None = None,
    min_face: float = 24.0,
    fade: int = 4,
    neutralise: bool = True,
    backend: str | Backend = "auto",
) -> vs.VideoNode:
    """Restore the tracked faces of a progressive clip and blend them back.

    Args:
        clip: constant-format YUV/RGB/GRAY clip (8-16 bit integer, 16/32 bit float), the
            scanned clip itself or the same frames at another size (after ``upscale``).
        tracks: a ``TITLE.faces.json`` from ``vsremaster faces track`` or a
            :class:`~vsremaster.faces.scan.FaceScan`; same frame count as ``clip``.
        model: face restorer id (``gfpgan-1.4``, ``codeformer``, ... see
            ``vsremaster models list``) or ONNX path; default: the first installed of
            :data:`DEFAULT_FACE_MODELS`.
        strength: 0-1, share of the restored face in the result (FaceFusion's default 0.8).
        fidelity: CodeFormer's ``w``, 0-1 (default 0.5; higher is more faithful and steadier
            from frame to frame). Only for models with a ``weight`` input.
        min_face: faces whose box side is at most this, in pixels of the scanned clip, are
            left alone (restorers invent a face from so few pixels); they blend in fully at
            1.25 × ``min_face``, so a face growing past the limit does not pop.
        fade: frames over which a face fades in/out where its track starts/ends inside a shot.
        neutralise: bring stage-light colour to the skin reference before restoring and put
            it back after (see :func:`neutralise_colour`), with the face's mean colour over
            ``COLOUR_WINDOW`` frames either side along its track.
        backend: ONNX Runtime backend.

    Returns:
        A clip of the same format, size and properties; frames with restored faces carry
        ``VSRFaces`` and ``VSRFaceSeconds``.

    Raises:
        InputError: bad arguments, tracks of another clip (frame count), a GRAY-only model.
        ModelMissingError: no face restorer installed (the message says which file to
            bring and the ``vsremaster models add`` command).
    """
    if not 0.0 <= strength <= 1.0:
        raise InputError(f"face_enhance: strength must be within 0-1, got {strength}")
    if fidelity is not None and not 0.0 <= fidelity <= 1.0:
        raise InputError(f"face_enhance: fidelity must be within 0-1, got {fidelity}")
    if min_face < 0 or fade < 0:
        raise InputError("face_enhance: min_face and fade must be >= 0")
    scan = tracks if isinstance(tracks, FaceScan) else read_sidecar(Path(tracks))
    if scan.num_frames != clip.num_frames:
        raise InputError(
            f"face_enhance: the tracks cover {scan.num_frames} frames, the clip has "
            f"{clip.num_frames}; scan the same frames (same trim) with `vsremaster faces track`"
        )
    restorer = FaceRestorer(model or installed_face_model(), backend=str(backend))
    if fidelity is not None and not restorer.has_fidelity:
        raise InputError(f"face_enhance: {restorer.name} has no fidelity input "
                         "(only CodeFormer-style models take one)")
    rgb, prepared = to_model(clip, 3, "face_enhance")
    index = _frame_index(scan, clip.width, clip.height, min_face=min_face, fade=fade)
    if not index:
        log.info(f"face_enhance: no face of at least {min_face:g} px in the tracks; "
                 "the clip passes through unchanged")
        return clip
    size = restorer.size
    mask = feather_mask(size) * np.float32(strength)
    weights = _face_weights(size)

    sx, sy = clip.width / scan.width, clip.height / scan.height
    colour_weights = _face_weights(_COLOUR_SIZE)
    colours: dict[tuple[int, int], np.ndarray] = {}  # (track, frame) -> face colour

    def colour(k: int, m: int, frame: vs.VideoFrame, sar: float) -> np.ndarray:
        if (k, m) not in colours:
            t = scan.tracks[k]
            lm = _clip_points(t.landmarks[m - t.start], sx, sy)
            small = np.dstack([  # plane by plane: no copy of the whole frame
                align(np.asarray(frame[p]), lm, template=restorer.template,
                      size=_COLOUR_SIZE, sar=sar)[0] for p in range(3)])
            colours[k, m] = face_colour(np.clip(small, 0.0, 1.0), colour_weights)
        return colours[k, m]

    def restore(n: int, f: vs.VideoFrame | list[vs.VideoFrame]) -> vs.VideoFrame:
        start = time.perf_counter()
        frames = dict(zip(offsets, f if isinstance(f, list) else [f]))  # one clip: a frame
        img = np.dstack([np.asarray(frames[0][p]) for p in range(3)])
        out = img
        props = frames[0].props
        sar = props.get("_SARNum", 1) / (props.get("_SARDen", 1) or 1) or 1.0
        for lm, ramp, k in index[n]:
            crop, m = align(img, lm, template=restorer.template, size=size, sar=sar)
            crop = np.clip(crop, 0.0, 1.0)
            gains = np.ones(3, np.float32)
            if neutralise:
                t = scan.tracks[k]
                near = [d for d in offsets if t.start <= n + d < t.end]
                mean = np.mean([colour(k, n + d, frames[d], sar) for d in near], axis=0)
                crop, gains = neutralise_colour(crop, weights, mean)
            fixed = restorer.restore(crop, fidelity) / gains
            out = paste_back(out, fixed, m, mask * np.float32(ramp))
        dst = frames[0].copy()
        for p in range(3):
            np.copyto(np.asarray(dst[p]), out[..., p])
        dst.props["VSRFaces"] = len(index[n])
        dst.props["VSRFaceSeconds"] = time.perf_counter() - start
        return dst

    window = range(-COLOUR_WINDOW, COLOUR_WINDOW + 1) if neutralise else range(1)
    shifted = neighbour_clips(rgb, [d for d in window if d])
    offsets = sorted(shifted)
    sources = [shifted[d] for d in offsets]

    def per_frame(n: int) -> vs.VideoNode:  # a fresh ModifyFrame per frame runs frames in parallel
        return core.std.ModifyFrame(rgb, sources, restore)

    worked = core.std.FrameEval(rgb, per_frame)
    # Only where a face was pasted does the frame take the model-format round trip (YUV ->
    # RGB float -> YUV resamples chroma): elsewhere it stays bit-exact.
    merged = core.std.MaskedMerge(clip, from_model(worked, prepared),
                                  _paste_area(clip, index, restorer, mask), first_plane=True)
    restored = core.std.CopyFrameProps(merged, worked, props=["VSRFaces", "VSRFaceSeconds"])
    faces = sum(len(v) for v in index.values())
    log.info(f"face_enhance: {faces} face(s) in {len(index)} frame(s) with {restorer.name} "
             f"({size}x{size}, strength {strength:g})")

    def choose(n: int) -> vs.VideoNode:
        return restored if n in index else clip

    return core.std.FrameEval(clip, choose, clip_src=[clip, restored])


def _paste_area(clip: vs.VideoNode, index: dict, restorer: FaceRestorer,
                mask: np.ndarray) -> vs.VideoNode:
    """A GRAY clip in ``clip``'s sample type and depth: peak where frame ``n``'s faces of
    ``index`` are pasted (the paste masks' support, grown by 2 px so subsampled chroma is
    covered), 0 elsewhere."""
    import cv2

    fmt = clip.format
    peak = 1.0 if fmt.sample_type == vs.FLOAT else (1 << fmt.bits_per_sample) - 1
    gray = core.query_video_format(vs.GRAY, fmt.sample_type, fmt.bits_per_sample, 0, 0)
    blank = core.std.BlankClip(clip, format=gray.id, color=0, keep=True)
    grow = np.ones((5, 5), np.uint8)

    def area(n: int, f: list[vs.VideoFrame]) -> vs.VideoFrame:
        f, src = f
        sar = src.props.get("_SARNum", 1) / (src.props.get("_SARDen", 1) or 1) or 1.0
        pasted = np.zeros((clip.height, clip.width), np.uint8)
        for lm, ramp, _ in index.get(n, ()):
            m = template_transform(lm, template=restorer.template, size=restorer.size, sar=sar)
            landed = paste_alpha(m, mask * np.float32(ramp), pasted.shape)
            if landed is not None:
                rows, cols, _, alpha = landed
                pasted[rows, cols] |= alpha > 0
        dst = f.copy()
        np.asarray(dst[0])[...] = cv2.dilate(pasted, grow).astype(np.float32) * peak
        return dst

    return core.std.ModifyFrame(blank, [blank, clip], area)


def installed_face_model() -> str:
    """The first installed face restorer of :data:`DEFAULT_FACE_MODELS`.

    Raises:
        ModelMissingError: none is installed; the message lists what to bring and how.
    """
    for model_id in DEFAULT_FACE_MODELS:
        if is_installed(model_id):
            return model_id
    spec = load_manifest()[DEFAULT_FACE_MODELS[0]]
    raise ModelMissingError(
        "no face-restoration model is installed (no registry package ships their weights); "
        f"{install_hint(spec)}. Others: vsremaster models list"
    )
