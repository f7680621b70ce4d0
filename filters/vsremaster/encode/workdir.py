"""The resumable work folder of a target-quality or chunked encode.

``.OUT.vsremaster-work/`` next to the output holds ``state.json`` (settings fingerprint,
scenes with their probes and CRFs, finished chunks with frame count and SHA-256), the chunk
bitstreams and the logs. It survives a failure, Ctrl-C or a killed process; a rerun with the
same script (same code; comments do not count), the same files the script names, the same
vsremaster and the same settings reuses every decided scene and every chunk whose file
still has its recorded checksum and frame count. Anything else starts over, and the log
says what changed. The folder is removed when the output is finished.

A run killed outright (SIGKILL, power loss) cannot tidy up: its temporary folder
(``tmp-PID`` in the work folder, or ``.OUT.vsremaster-PID-*`` next to the output for a
single-pass encode, with sample frames of up to 2 GiB) and its ``.OUT.partial-PID.mkv`` stay
behind. The next encode of the same output removes them (:func:`remove_leftovers`) once the
process that made them is gone.

An encode holds ``OUT``'s lock (:class:`OutputLock`, ``.OUT.vsremaster-lock`` next to it)
from start to finish, so a second encode of the same output stops at once with a clear error
instead of sharing the work folder and the partial file; a killed run's lock goes with it.
"""

from __future__ import annotations

import ast
import hashlib
import io
import json
import logging
import os
import re
import shutil
import tokenize
from pathlib import Path
from typing import Any

from .. import __version__
from ..errors import EncodeError

__all__ = [
    "OutputLock",
    "WorkDir",
    "file_sha256",
    "fingerprint",
    "partial_path",
    "remove_leftovers",
    "script_code",
    "script_inputs",
    "temp_prefix",
    "work_folder",
]

log = logging.getLogger("vsremaster.encode")

_STATE = "state.json"
_VERSION = 1


def work_folder(output: Path) -> Path:
    """The work folder of ``output``'s scene-based encode."""
    return output.parent / f".{output.stem}.vsremaster-work"


def partial_path(output: Path) -> Path:
    """Where this process muxes ``output`` before renaming it onto the final name."""
    return output.parent / f".{output.stem}.partial-{os.getpid()}.mkv"


def temp_prefix(output: Path) -> str:
    """Name prefix of a single-pass encode's temporary folder next to ``output`` (the
    process id in it tells :func:`remove_leftovers` whose it is)."""
    return f".{output.stem}.vsremaster-{os.getpid()}-"


class OutputLock:
    """An exclusive ``flock`` on ``.OUT.vsremaster-lock`` next to ``output``, held (as a
    context manager) while ``output`` is encoded. The kernel keeps it for this process and
    drops it when the process ends, however it ends, so it also tells a run in another PID
    namespace (a container sharing the folder on this machine) from a dead one, which a PID
    cannot. The file holds the owner's PID, for the error message, and is removed on
    release.

    Re-entrant within a process (``remaster`` holds it over analysis and encode, and the
    encode takes it again). Without ``fcntl`` (Windows) or on a filesystem that refuses
    locks, the encode runs unlocked (a warning in the second case).

    Raises:
        EncodeError: on entry, when another encode of ``output`` holds the lock, or the
            folder cannot be written.
    """

    _held: set[str] = set()  # the lock files this process holds

    def __init__(self, output: Path) -> None:
        self.output = Path(output)
        self.path = self.output.parent / f".{self.output.stem}.vsremaster-lock"
        self._key = os.path.realpath(self.path)
        self._fd: int | None = None

    def __enter__(self) -> OutputLock:
        try:
            import fcntl
        except ImportError:
            return self
        if self._key in OutputLock._held:
            return self  # an outer OutputLock of this process holds it
        while self._fd is None:
            try:
                fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
            except OSError as err:
                raise EncodeError(f"Cannot write in {self.output.parent}: {err}") from err
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                holder = os.pread(fd, 32, 0).decode("ascii", "replace").strip() or "?"
                os.close(fd)
                raise EncodeError(
                    f"Another encode of {self.output.name} is running (process {holder}); "
                    "wait for it to finish, or stop it and run this again."
                ) from None
            except OSError as err:  # ENOLCK, EOPNOTSUPP: a filesystem without locks
                os.close(fd)
                log.warning("cannot lock %s (%s); not guarded against a second encode of it",
                            self.path.name, err)
                return self
            # a finishing run removes the file, then releases its lock: a lock taken on a
            # file no longer at the path is taken again on the one there now
            try:
                here = os.stat(self.path)
                mine = os.fstat(fd)
                if (here.st_dev, here.st_ino) == (mine.st_dev, mine.st_ino):
                    self._fd = fd
                    break
            except FileNotFoundError:
                pass
            os.close(fd)
        os.ftruncate(self._fd, 0)
        os.write(self._fd, f"{os.getpid()}\n".encode("ascii"))
        OutputLock._held.add(self._key)
        return self

    def __exit__(self, *exc: object) -> None:
        if self._fd is None:
            return
        OutputLock._held.discard(self._key)
        try:
            self.path.unlink()
        except OSError:
            pass
        os.close(self._fd)  # releases the lock
        self._fd = None


def _pid_alive(pid: int) -> bool:
    """False only when no process ``pid`` exists (POSIX; elsewhere assumed alive, so
    nothing is removed: Windows has no harmless ``kill(pid, 0)``)."""
    if pid == os.getpid() or os.name != "posix":
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # EPERM: it exists, as another user
        return True
    return True


def remove_leftovers(output: Path) -> int:
    """Remove the temporary folders and partial files that killed encodes of ``output``
    left (see the module's docstring) when their process no longer exists; those of a
    run still going are kept. Called with ``output``'s :class:`OutputLock` held, so no other
    encode of it runs, even one whose PID means nothing here.

    Returns:
        Bytes freed.
    """
    output = Path(output)
    stem = re.escape(output.stem)
    # the names partial_path, temp_prefix (+ mkdtemp's 8 characters of [a-z0-9_]),
    # WorkDir.temp_folder and WorkDir.save give
    beside = re.compile(rf"\.{stem}\.(?:partial-(\d+)\.mkv|vsremaster-(\d+)-[a-z0-9_]{{8}})")
    within = re.compile(r"tmp-(\d+)|\.state\.json\.(\d+)")
    found: list[Path] = []
    for folder, pattern in ((output.parent, beside), (work_folder(output), within)):
        try:
            names = os.listdir(folder)
        except OSError:
            continue
        for name in names:
            match = pattern.fullmatch(name)
            if match and not _pid_alive(int(match.group(1) or match.group(2))):
                found.append(folder / name)
    freed = 0
    for path in found:
        freed += _size(path)
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path, ignore_errors=True)
        else:
            try:
                path.unlink(missing_ok=True)
            except OSError as err:
                log.warning("cannot remove %s: %s", path, err)
    if found:
        names = ", ".join(p.name for p in found[:3]) + (" …" if len(found) > 3 else "")
        log.info("removed %s, left by an interrupted encode of %s (%.1f MB)", names,
                 output.name, freed / 1e6)
    return freed


def _size(path: Path) -> int:
    try:
        if path.is_symlink() or not path.is_dir():
            return path.lstat().st_size
        return sum(p.lstat().st_size for p in path.rglob("*") if not p.is_symlink())
    except OSError:
        return 0


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def script_code(script: Path) -> bytes:
    """The script's Python tokens without comments and blank lines (its bytes when it does
    not tokenize): what decides its frames. A regenerated header or an edited comment
    keeps an interrupted encode resumable."""
    data = Path(script).read_bytes()
    try:
        tokens = tokenize.tokenize(io.BytesIO(data).readline)
        kept = [f"{tok.type}:{tok.string}" for tok in tokens
                if tok.type not in (tokenize.COMMENT, tokenize.NL, tokenize.ENCODING)]
    except (tokenize.TokenError, SyntaxError, UnicodeDecodeError):
        return data
    return "\n".join(kept).encode("utf-8")


def script_inputs(script: Path) -> dict[str, list[int]]:
    """Files the script names: every string literal that is the path of an existing file
    (absolute, or relative to the script's folder, where vspipe runs it), other than the
    script, mapped to ``[size in bytes, mtime in ns]``: a re-captured source, a new face
    sidecar or a retrained model file changes these. Size and time, not a checksum: a
    source can be tens of GB. Paths built at run time are not seen."""
    script = Path(script)
    try:
        tree = ast.parse(script.read_bytes())
    except (SyntaxError, ValueError, OSError):
        return {}
    found: dict[str, list[int]] = {}
    for node in ast.walk(tree):
        if not (isinstance(node, ast.Constant) and isinstance(node.value, str)):
            continue
        text = node.value
        if not text or len(text) > 4096 or "\n" in text or "\0" in text:
            continue
        path = Path(text) if os.path.isabs(text) else script.parent / text
        try:
            if not path.is_file() or path.samefile(script):
                continue
            stat = path.stat()
        except (OSError, ValueError):
            continue
        found[os.path.abspath(path)] = [stat.st_size, stat.st_mtime_ns]
    return found


def fingerprint(script: Path, settings: dict[str, Any], inputs: dict[str, list[int]]) -> str:
    """SHA-256 over the script's code (:func:`script_code`), the files it names
    (:func:`script_inputs`), vsremaster's version and the settings that shape the output."""
    digest = hashlib.sha256(script_code(script))
    extra = {"settings": settings, "inputs": inputs, "vsremaster": __version__}
    digest.update(json.dumps(extra, sort_keys=True, default=str).encode("utf-8"))
    return digest.hexdigest()


def _changes(before: dict[str, Any], inputs: dict[str, list[int]]) -> str:
    """Why a saved state does not match: the files that changed, else a general reason."""
    old = before.get("inputs")
    if isinstance(old, dict) and old != inputs:
        names = sorted(p for p in set(old) | set(inputs) if old.get(p) != inputs.get(p))
        shown = ", ".join(Path(p).name for p in names[:3]) + (" …" if len(names) > 3 else "")
        return f"{shown} changed since the interrupted run"
    return "the script, vsremaster or the settings changed"


class WorkDir:
    """State of one output's encode, kept across runs.

    Args:
        output: The final ``.mkv``.
        key: :func:`fingerprint` of the script, the files it names and the settings.
        inputs: :func:`script_inputs`, kept to say which file changed.
        fresh: Discard whatever an earlier run left.
    """

    def __init__(self, output: Path, key: str, *, inputs: dict[str, list[int]] | None = None,
                 fresh: bool = False) -> None:
        self.path = work_folder(output)
        self.key = key
        self.resumed = False
        inputs = inputs or {}
        state = self._load()
        if state is not None and not fresh and state.get("key") == key:
            self.state = state
            self.resumed = True
        else:
            if state is not None:
                why = "--fresh" if fresh else _changes(state, inputs)
                log.info("starting over in %s (%s)", self.path, why)
            shutil.rmtree(self.path, ignore_errors=True)
            self.state = {"version": _VERSION, "key": key, "inputs": inputs, "scenes": None,
                          "chunks": {}}
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

    def temp_folder(self) -> Path:
        """This process's temporary folder in the work folder (created)."""
        folder = self.path / f"tmp-{os.getpid()}"
        folder.mkdir(exist_ok=True)
        return folder

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
