"""The resumable work folder of a target-quality or chunked encode.

``.OUT.vsremaster-work/`` next to the output holds ``state.json`` (settings fingerprint,
scenes with their probes and CRFs, finished chunks with frame count and SHA-256), the chunk
bitstreams and the logs. It survives a failure, Ctrl-C or a killed process; a rerun with the
same script (same bytes) and settings reuses every decided scene and every chunk whose file
still has its recorded checksum and frame count. Different settings start over. The folder
is removed when the output is finished.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
from pathlib import Path
from typing import Any

from ..errors import EncodeError

__all__ = ["WorkDir", "file_sha256", "fingerprint"]

log = logging.getLogger("vsremaster.encode")

_STATE = "state.json"
_VERSION = 1


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def fingerprint(script: Path, settings: dict[str, Any]) -> str:
    """SHA-256 over the script's bytes and the settings that shape the output."""
    digest = hashlib.sha256(Path(script).read_bytes())
    digest.update(json.dumps(settings, sort_keys=True, default=str).encode("utf-8"))
    return digest.hexdigest()


class WorkDir:
    """State of one output's encode, kept across runs.

    Args:
        output: The final ``.mkv``.
        key: :func:`fingerprint` of the script and settings.
        fresh: Discard whatever an earlier run left.
    """

    def __init__(self, output: Path, key: str, *, fresh: bool = False) -> None:
        self.path = output.parent / f".{output.stem}.vsremaster-work"
        self.key = key
        self.resumed = False
        state = self._load()
        if state is not None and not fresh and state.get("key") == key:
            self.state = state
            self.resumed = True
        else:
            if state is not None:
                why = "--fresh" if fresh else "the script or settings changed"
                log.info("starting over in %s (%s)", self.path, why)
            shutil.rmtree(self.path, ignore_errors=True)
            self.state = {"version": _VERSION, "key": key, "scenes": None, "chunks": {}}
        try:
            self.path.mkdir(exist_ok=True)
            (self.path / "chunks").mkdir(exist_ok=True)
        except OSError as err:
            raise EncodeError(f"Cannot write in {output.parent}: {err}") from err

    def _load(self) -> dict[str, Any] | None:
        try:
            data = json.loads((self.path / _STATE).read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError, UnicodeDecodeError):
            return None
        return data if isinstance(data, dict) and data.get("version") == _VERSION else None

    def save(self) -> None:
        """Write ``state.json`` atomically (a kill mid-write leaves the previous one)."""
        target = self.path / _STATE
        partial = self.path / f".{_STATE}.{os.getpid()}"
        partial.write_text(json.dumps(self.state, indent=1), encoding="utf-8")
        os.replace(partial, target)

    def chunk_path(self, name: str, suffix: str = ".hevc") -> Path:
        return self.path / "chunks" / f"{name}{suffix}"

    def finished_chunk(self, name: str, record: dict[str, Any]) -> bool:
        """True when chunk ``name`` was finished with this exact ``record`` (span, CRFs)
        and its file still has the recorded SHA-256."""
        done = self.state["chunks"].get(name)
        if not done or any(done.get(k) != v for k, v in record.items()):
            return False
        path = self.chunk_path(name)
        if not path.is_file() or path.stat().st_size != done.get("bytes"):
            return False
        return file_sha256(path) == done.get("sha256")

    def mark_chunk(self, name: str, record: dict[str, Any], frames: int) -> None:
        path = self.chunk_path(name)
        self.state["chunks"][name] = {
            **record,
            "frames": frames,
            "bytes": path.stat().st_size,
            "sha256": file_sha256(path),
        }
        self.save()

    def remove(self) -> None:
        shutil.rmtree(self.path, ignore_errors=True)
