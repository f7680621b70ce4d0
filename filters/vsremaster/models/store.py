"""Installed models: where they live in the cache and how they are loaded safely.

A model is named by its manifest id (``realesrgan-x4plus``) or given as a path to the
user's own ``.onnx`` file. Manifest models load only if their sha256 matches the manifest
(user-supplied manifest models, e.g. ``gfpgan-1.4``: the sha256 recorded by
``vsremaster models add``); user files are taken as they are (they are the user's), and
what the runtime needs (scale, channels, border) is measured by running the model once on a
small probe input.
"""

from __future__ import annotations

import json
import threading
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import ChecksumError, InputError, ModelError, ModelMissingError
from .._resources import resource_dir
from ..paths import models_dir
from ..registry import sha256_file
from .manifest import ModelSpec, load_manifest

__all__ = ["LoadedModel", "onnx_path", "record_path", "read_record", "resolve_model",
           "stage_model_path", "is_installed",
           "is_model_file", "expected_sha256", "install_hint", "sources_dir", "ncnn_source"]

FETCH_HINT = "vsremaster models fetch"


def install_hint(spec: ModelSpec, *, force: bool = False) -> str:
    """The command that installs ``spec`` (what a user reads in an error)."""
    if spec.shipped:
        return (f"reinstall vsremaster: {spec.shipped} ships with it (onnx/ in the source); "
                f"python -m vsremaster.training rebuilds it from its recipe")
    if spec.user is not None:
        return (f"bring {spec.user.file} (its authors publish it at {spec.user.url}) and run: "
                f"vsremaster models add {spec.user.file} --as {spec.id}")
    return f"{FETCH_HINT}{' --force' if force else ''} {spec.id}"


def expected_sha256(spec: ModelSpec) -> str:
    """sha256 the installed ONNX must have: the manifest's, or for user-supplied models the
    one recorded when the file was added ("" when there is no record)."""
    if spec.user is None:
        return spec.onnx_sha256
    return (read_record(spec.id) or {}).get("onnx_sha256", "")


@dataclass(frozen=True, slots=True)
class LoadedModel:
    """A model ready for the runtime: its description and the verified ONNX file."""

    spec: ModelSpec
    path: Path


def onnx_path(model_id: str) -> Path:
    """Location of the ONNX of manifest model ``model_id``: the package's ``onnx/`` folder
    for our own (shipped) models, else the model cache."""
    spec = load_manifest().models.get(model_id)
    if spec is not None and spec.shipped:
        return resource_dir("onnx") / spec.shipped
    return models_dir() / f"{model_id}.onnx"


def record_path(model_id: str) -> Path:
    """Cache location of the fetch record (checksums, verification error) of ``model_id``."""
    return models_dir() / f"{model_id}.json"


def sources_dir(spec: ModelSpec) -> Path:
    """Cache folder the registry package carrying ``spec`` is extracted into."""
    pkg = load_manifest().package(spec)
    return models_dir() / "sources" / f"{pkg.name}-{pkg.version}"


def ncnn_source(spec: ModelSpec) -> tuple[Path, Path] | None:
    """The original ncnn ``(.param, .bin)`` of a model converted from ncnn, when both are
    extracted in the cache and match the manifest's sha256 (checked once per file version);
    None otherwise (models shipped as ONNX, user files, or sources removed). Never
    downloads: the runtime's ``ncnn`` backend runs these files."""
    if spec.user is not None or spec.shipped or not (spec.param and spec.bin):
        return None
    root = sources_dir(spec)
    files = (root / spec.param, root / spec.bin)
    for path, want in zip(files, (spec.param_sha256, spec.bin_sha256)):
        if not path.is_file() or _checked_sha256(path) != want:
            return None
    return files


def is_installed(model_id: str) -> bool:
    """Whether the ONNX of ``model_id`` is present in the cache (checksum not checked)."""
    return onnx_path(model_id).is_file()


_verified: dict[tuple[str, int, int], str] = {}
_verified_lock = threading.Lock()


def _checked_sha256(path: Path) -> str:
    """sha256 of ``path``, memoised per (path, size, mtime) so scripts don't rehash."""
    st = path.stat()
    key = (str(path), st.st_size, st.st_mtime_ns)
    with _verified_lock:
        if key in _verified:
            return _verified[key]
    digest = sha256_file(path)
    with _verified_lock:
        _verified[key] = digest
    return digest


def _resolve_manifest_model(model_id: str) -> LoadedModel:
    spec = load_manifest()[model_id]
    path = onnx_path(model_id)
    if not path.is_file():
        raise ModelMissingError(
            f"model {model_id!r} is not installed (looked for {path}); "
            f"install it with: {install_hint(spec)}"
        )
    digest, want = _checked_sha256(path), expected_sha256(spec)
    if digest != want:
        where = "the manifest records" if spec.user is None else "its install record says"
        raise ChecksumError(
            f"{path} has sha256 {digest} but {where} {want or '(nothing)'}; "
            f"refusing to load it. Reinstall: {install_hint(spec, force=True)}"
        )
    return LoadedModel(spec, path)


def _probe_user_model(path: Path) -> ModelSpec:
    """Measure scale, channels and border of a user ONNX model by running it twice."""
    import onnxruntime as ort

    try:
        sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    except Exception as exc:  # ORT raises its own exception types
        raise ModelError(f"{path} is not a loadable ONNX model: {exc}") from exc
    inputs, outputs = sess.get_inputs(), sess.get_outputs()
    if len(inputs) != 1 or len(outputs) != 1 or len(inputs[0].shape) != 4:
        raise ModelError(
            f"{path}: expected one NCHW image input and one output, got inputs "
            f"{[(i.name, i.shape) for i in inputs]} and outputs {[o.name for o in outputs]}"
        )
    channels = inputs[0].shape[1]
    if channels not in (1, 3):
        raise ModelError(f"{path}: input has {channels!r} channels; 1 (GRAY) or 3 (RGB) supported")
    sizes = (48, 64)
    outs = []
    for s in sizes:
        try:
            y = sess.run(None, {inputs[0].name: np.zeros((1, channels, s, s), np.float32)})[0]
        except Exception as exc:
            raise ModelError(f"{path}: probe run on a {s}x{s} input failed: {exc}") from exc
        outs.append(y.shape)
    # out = scale * (in - 2 * border)  for both probe sizes
    scale_num = outs[1][2] - outs[0][2]
    if scale_num <= 0 or scale_num % (sizes[1] - sizes[0]):
        raise ModelError(f"{path}: output sizes {outs} do not follow a fixed integer scale")
    scale = scale_num // (sizes[1] - sizes[0])
    border = (sizes[0] * scale - outs[0][2]) // (2 * scale)
    return ModelSpec(
        id=path.name, task="user", arch="user-supplied ONNX", paper="", description=str(path),
        scale=scale, in_channels=channels, out_channels=outs[0][1], value_range=(0.0, 1.0),
        multiple=16, border=border, overlap=16, temporal_window=1, fp16=False,
        bytes_per_pixel=0, licence="user's own", tolerance=0.0, package="", param="",
        param_sha256="", bin="", bin_sha256="", onnx_sha256=_checked_sha256(path),
    )


_user_specs: dict[tuple[str, str], ModelSpec] = {}


def is_model_file(model: str | Path) -> bool:
    """Whether ``model`` names a file (a Path, ``*.onnx`` or anything with a ``/``) rather
    than a manifest id."""
    text = str(model)
    return isinstance(model, Path) or text.endswith(".onnx") or "/" in text


def resolve_model(model: str | Path) -> LoadedModel:
    """Resolve a manifest id or a path to the user's own ``.onnx`` file.

    Args:
        model: manifest id (see ``vsremaster models list``) or path to an ONNX file.

    Raises:
        ModelError: unknown id, or a user file that is not a usable NCHW image model.
        ModelMissingError: known id, not installed (message names the fetch command).
        ChecksumError: installed file differs from the manifest's sha256.
    """
    if is_model_file(model):
        path = Path(model).expanduser().resolve()
        if not path.is_file():
            raise ModelError(f"model file {path} does not exist")
        key = (str(path), _checked_sha256(path))
        if key not in _user_specs:
            _user_specs[key] = _probe_user_model(path)
        return LoadedModel(_user_specs[key], path)
    return _resolve_manifest_model(str(model))


def stage_model_path(model: str | Path, task: str, func: str) -> Path:
    """The ONNX file a stage with its own I/O runs: a manifest id of a ``task`` model
    (sha256-checked), or a path (its I/O is the caller's promise; a mismatch fails at the
    first frame).

    Raises:
        ModelError: missing file, or unknown id. ModelMissingError / ChecksumError as
            :func:`resolve_model`.
        InputError: the id names a model of another task (the message names ``func``).
    """
    if is_model_file(model):
        path = Path(model).expanduser().resolve()
        if not path.is_file():
            raise ModelError(f"{func}: model file {path} does not exist")
        return path
    loaded = resolve_model(model)
    if loaded.spec.task != task:
        raise InputError(f"{func}: model {loaded.spec.id!r} is a {loaded.spec.task} model, "
                         f"not a {task} model")
    return loaded.path


def read_record(model_id: str) -> dict | None:
    """The JSON fetch record of an installed model, or None."""
    try:
        return json.loads(record_path(model_id).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None

