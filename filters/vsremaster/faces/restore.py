"""Face restoration along the tracks: ``vsremaster.face_enhance``.

For every face of every frame (from the tracks of :func:`~vsremaster.faces.scan.scan_faces`,
smoothed in both directions within each shot), the stage:

1. aligns the face to the restorer's template (:func:`~vsremaster.faces.align.align`: a
   least-squares similarity from the smoothed landmarks, computed in square pixels so
   anamorphic SD is not distorted);
2. neutralises the light's colour: per-channel gains bring the face's mean colour to a
   daylight skin reference (stage light in deep red or blue is far outside what GFPGAN and
   CodeFormer were trained on); the gains are undone on the restored crop, so the original
   colour comes back exactly where the restorer changed nothing;
3. runs the restorer (ONNX: GFPGAN 1.x, CodeFormer with its fidelity ``weight`` input,
   RestoreFormer(++) or GPEN-BFR; RGB NCHW in [-1, 1], FaceFusion's convention);
4. pastes the crop back through the inverse transform with a feathered square mask. The
   mask follows the smoothed landmarks, so its geometry is as stable as the track; it fades
   in and out over ``fade`` frames where a track is born or dies inside a shot (a face
   appearing at a scene cut appears at once), and is scaled by ``strength``.

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
from .align import align, feather_mask, paste_back
from .scan import FaceScan, read_sidecar

__all__ = ["FaceRestorer", "face_enhance", "installed_face_model", "neutralise_colour",
           "DEFAULT_FACE_MODELS", "SKIN_REFERENCE"]

core = vs.core

# Preference order when the caller does not name a model (the first installed one is used).
DEFAULT_FACE_MODELS = ("gfpgan-1.4", "codeformer", "gfpgan-1.3", "restoreformer-pp",
                       "restoreformer", "gpen-bfr-512", "gpen-bfr-256")
# Mean linear-ish sRGB of a face under daylight, relative to its red: what the crop's mean is
# brought to before restoring (a typical light skin tone; only the ratios matter).
SKIN_REFERENCE = np.array([1.0, 0.77, 0.66], np.float32)
MAX_GAIN = 3.0


def neutralise_colour(crop: np.ndarray, weights: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-channel gains that give the face region the skin reference's colour.

    Args:
        crop: ``(S, S, 3)`` float RGB, 0-1.
        weights: ``(S, S)`` where the face is (0-1).

    Returns:
        ``(neutral, gains)``: ``crop * gains`` clipped to 0-1, and the ``(3,)`` gains (each
        within [1/3, 3], the mean brightness kept); divide the restored crop by them.
    """
    w = weights[..., None]
    mean = (crop * w).sum((0, 1)) / max(float(w.sum()), 1e-6)
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
        backend: ONNX Runtime backend (``auto``, ``cpu``, ``cuda``, ``tensorrt``).
        threads: ORT threads (0 = all cores).

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
                 fade: int) -> dict[int, list[tuple[np.ndarray, float]]]:
    """frame -> [(landmarks in clip pixels, blend weight)] for the faces to restore."""
    sx, sy = width / scan.width, height / scan.height
    bounds = {0, scan.num_frames, *scan.cuts}
    index: dict[int, list[tuple[np.ndarray, float]]] = {}
    for t in scan.tracks:
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
            lm = (t.landmarks[row] + 0.5) * (sx, sy) - 0.5
            index.setdefault(n, []).append((lm, ramp))
    return index


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
            it back after (see :func:`neutralise_colour`).
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

    def restore(n: int, f: vs.VideoFrame) -> vs.VideoFrame:
        start = time.perf_counter()
        img = np.dstack([np.asarray(f[p]) for p in range(3)])
        out = img
        sar = f.props.get("_SARNum", 1) / (f.props.get("_SARDen", 1) or 1) or 1.0
        for lm, ramp in index[n]:
            crop, m = align(img, lm, template=restorer.template, size=size, sar=sar)
            crop = np.clip(crop, 0.0, 1.0)
            gains = np.ones(3, np.float32)
            if neutralise:
                crop, gains = neutralise_colour(crop, weights)
            fixed = restorer.restore(crop, fidelity) / gains
            out = paste_back(out, fixed, m, mask * np.float32(ramp))
        dst = f.copy()
        for p in range(3):
            np.copyto(np.asarray(dst[p]), out[..., p])
        dst.props["VSRFaces"] = len(index[n])
        dst.props["VSRFaceSeconds"] = time.perf_counter() - start
        return dst

    def per_frame(n: int) -> vs.VideoNode:  # a fresh ModifyFrame per frame runs frames in parallel
        return core.std.ModifyFrame(rgb, rgb, restore)

    worked = core.std.FrameEval(rgb, per_frame)
    restored = core.std.CopyFrameProps(from_model(worked, prepared), worked,
                                       props=["VSRFaces", "VSRFaceSeconds"])
    faces = sum(len(v) for v in index.values())
    log.info(f"face_enhance: {faces} face(s) in {len(index)} frame(s) with {restorer.name} "
             f"({size}x{size}, strength {strength:g})")

    def choose(n: int) -> vs.VideoNode:
        return restored if n in index else clip

    return core.std.FrameEval(clip, choose, clip_src=[clip, restored])


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
