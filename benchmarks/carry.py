"""Pack what the GPU benchmarks need for a machine that has PyTorch but no VapourSynth, and
unpack it there.

The lent GPU machine (see ``../shared/docs/ENVIRONMENT.md``) has PyTorch, onnx, the CPU
build of ONNX Runtime, numpy and opencv, no VapourSynth and no network, and takes at most
64 MiB of files per call. ``pack`` writes into FOLDER:

- ``vapoursynth.tar.xz``: the installed VapourSynth core (library, Python module, vspipe),
  no plugins: the chain needs only ``std`` and ``resize``, which are built in;
- ``models/``: the installed models named (ONNX and fetch record); a model over
  ``--max-mib`` goes as ``ID.pack.npz``: the graph without its weights, plus every weight
  tensor in float16 where that is exact and in float32 where it is not (realesrgan-x4plus:
  67 MB → 33 MB; its weights come from an ncnn file that stores them in float16);
- the chain's source frames are written by ``chain.py --save-source FOLDER/source.npz``.

``unpack`` (on the GPU machine) extracts VapourSynth into SITE (put it on ``PYTHONPATH``) and
rebuilds every packed ONNX byte for byte, checked against the sha256 in its fetch record.

    python benchmarks/carry.py pack .gpu realesr-animevideov3-x4 realesrgan-x4plus blazeface-back-256
    python benchmarks/carry.py unpack .gpu /tmp/site      # there; then VSREMASTER_MODELS=.gpu/models
"""

from __future__ import annotations

import argparse
import hashlib
import json
import shutil
import sys
import tarfile
from pathlib import Path

import numpy as np
import onnx
from onnx import numpy_helper

CORE = ("__init__.py", "__main__.py", "_cli.py", "_shell.py", "_utils.py", "vapoursynth.abi3.so",
        "libvapoursynth.so.4", "libvapoursynthfilters.so", "libvapoursynthfilters_avx2.so",
        "libvapoursynthfilters_zn4.so", "libvsscript.so", "vspipe")


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def pack_model(path: Path, out: Path) -> None:
    """``path`` as ``out`` (``.pack.npz``): the weightless graph and the weights."""
    model = onnx.load(str(path))
    arrays: dict[str, np.ndarray] = {}
    for i, tensor in enumerate(model.graph.initializer):
        if tensor.data_type != onnx.TensorProto.FLOAT or not tensor.raw_data:
            continue  # stays in the graph
        a = numpy_helper.to_array(tensor)
        half = a.astype(np.float16)
        arrays[f"w{i}"] = half if np.array_equal(half.astype(np.float32), a) else a
        tensor.raw_data = b""
    np.savez(out, graph=np.frombuffer(model.SerializeToString(), np.uint8), **arrays)


def unpack_model(packed: Path, out: Path) -> None:
    """Rebuild the ONNX file ``packed`` was made from."""
    data = np.load(packed)
    model = onnx.load_from_string(data["graph"].tobytes())
    for i, tensor in enumerate(model.graph.initializer):
        if f"w{i}" in data:
            tensor.raw_data = data[f"w{i}"].astype("<f4").tobytes()
    out.write_bytes(model.SerializeToString())


def pack(folder: Path, model_ids: list[str], max_mib: float) -> None:
    import vapoursynth

    from vsremaster.models.store import read_record, resolve_model

    folder.mkdir(parents=True, exist_ok=True)
    package = Path(vapoursynth.__file__).parent
    with tarfile.open(folder / "vapoursynth.tar.xz", "w:xz") as tar:
        for name in CORE:
            tar.add(package / name, f"vapoursynth/{name}")
    models = folder / "models"
    models.mkdir(exist_ok=True)
    for model_id in model_ids:
        path = resolve_model(model_id).path
        record = read_record(model_id) or {}
        (models / f"{model_id}.json").write_text(json.dumps(record, indent=1), encoding="utf-8")
        if path.stat().st_size > max_mib * 2**20:
            out = models / f"{model_id}.pack.npz"
            pack_model(path, out)
            check = folder / f".{model_id}.check"
            unpack_model(out, check)
            ok = sha256(check.read_bytes()) == sha256(path.read_bytes())
            check.unlink()
            if not ok:
                raise SystemExit(f"{model_id}: the packed model does not rebuild byte for byte")
        else:
            shutil.copyfile(path, models / path.name)
    total = sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())
    print(f"{folder}: {total / 2**20:.1f} MiB")


def unpack(folder: Path, site: Path) -> None:
    site.mkdir(parents=True, exist_ok=True)
    with tarfile.open(folder / "vapoursynth.tar.xz") as tar:
        tar.extractall(site, filter="tar")
    for packed in (folder / "models").glob("*.pack.npz"):
        model_id = packed.name.removesuffix(".pack.npz")
        out = packed.with_name(f"{model_id}.onnx")
        unpack_model(packed, out)
        want = json.loads((folder / "models" / f"{model_id}.json").read_text())["onnx_sha256"]
        if sha256(out.read_bytes()) != want:
            raise SystemExit(f"{model_id}: rebuilt file differs from its fetch record")
        print(f"{out}: rebuilt, sha256 matches")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    p = sub.add_parser("pack", help="here: VapourSynth core and the models into FOLDER")
    p.add_argument("folder", type=Path)
    p.add_argument("models", nargs="+", help="installed model ids")
    p.add_argument("--max-mib", type=float, default=8.0, help="pack models larger than this")
    u = sub.add_parser("unpack", help="there: VapourSynth into SITE, packed models rebuilt")
    u.add_argument("folder", type=Path)
    u.add_argument("site", type=Path)
    args = ap.parse_args()
    if args.cmd == "pack":
        sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "filters"))
        pack(args.folder, args.models, args.max_mib)
    else:
        unpack(args.folder, args.site)


if __name__ == "__main__":
    main()
