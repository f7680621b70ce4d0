"""Child processes whose stderr is drained by a thread, and that can be stopped for sure.

Every program the encoder runs goes through :class:`Program`:

* stderr is read continuously by a daemon thread (so a chatty program never blocks on a full
  pipe), appended to a log file, split into lines (``\\r`` or ``\\n``), passed to an optional
  callback (progress, fatal-error detection) and the last meaningful lines are kept for the
  error message;
* on POSIX each program runs in its own process group, and :meth:`Program.kill` sends
  SIGKILL to the whole group, so a wrapper script and the binary it started both stop.
  Because of this a Ctrl-C in the terminal reaches only Python; the encoder stops the
  programs itself.

:class:`Runner` keeps the programs of one encode, so that all of them are killed on failure,
and :func:`failure` turns a failed program into an EncodeError that quotes it.
"""

from __future__ import annotations

import itertools
import logging
import os
import re
import shlex
import signal
import subprocess
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any

from ..errors import EncodeError
from .progress import StderrLines

__all__ = [
    "Program",
    "Runner",
    "command_line",
    "describe_exit",
    "failure",
    "ffmpeg_noise",
    "is_broken_pipe",
    "sigterm_as_interrupt",
    "x265_noise",
]

log = logging.getLogger("vsremaster.encode")

_TAIL_KEEP = 200
_FAILURE_TAIL = 15


def command_line(argv: Sequence[str | os.PathLike[str]]) -> str:
    """Quote ``argv`` for a POSIX shell (for logs and :class:`EncodeResult.commands`)."""
    return shlex.join(os.fspath(a) for a in argv)


def describe_exit(returncode: int | None) -> str:
    """``"exit code 1"``, ``"killed by signal SIGPIPE"`` or ``"still running"``."""
    if returncode is None:
        return "still running"
    if returncode < 0:
        try:
            name = signal.Signals(-returncode).name
        except ValueError:
            name = f"signal {-returncode}"
        return f"killed by signal {name} (exit code {returncode})"
    return f"exit code {returncode}"


class Program:
    """A running external program.

    Args:
        name: Short name used in messages (``"vspipe"``, ``"x265"``, ``"ffmpeg"``).
        argv: Command line.
        log_path: File that receives the program's complete stderr.
        stdin: What the program reads (a pipe from another program, DEVNULL...).
        stdout: Where its standard output goes (``subprocess.PIPE`` to chain it).
        is_noise: Predicate for stderr lines not worth quoting (progress, blank lines).
        on_line: Called from the drain thread with every stderr line; exceptions it raises
            are swallowed.

    Raises:
        OSError: the program cannot be started.
    """

    def __init__(
        self,
        name: str,
        argv: Sequence[str | os.PathLike[str]],
        *,
        log_path: Path,
        stdin: int | IO[Any] | None = subprocess.DEVNULL,
        stdout: int | IO[Any] | None = subprocess.DEVNULL,
        is_noise: Callable[[str], bool] = lambda line: not line.strip(),
        on_line: Callable[[str], None] | None = None,
    ) -> None:
        self.name = name
        self.argv = [os.fspath(a) for a in argv]
        self.killed = False
        self.started = time.monotonic()
        self._is_noise = is_noise
        self._on_line = on_line
        self._tail: deque[str] = deque(maxlen=_TAIL_KEEP)
        self._tail_lock = threading.Lock()
        kwargs: dict[str, Any] = {}
        if os.name == "posix":
            kwargs["process_group"] = 0
        else:  # pragma: no cover - Windows
            kwargs["creationflags"] = getattr(subprocess, "CREATE_NEW_PROCESS_GROUP", 0)
        self.popen = subprocess.Popen(
            self.argv, stdin=stdin, stdout=stdout, stderr=subprocess.PIPE, **kwargs
        )
        self._log_path = log_path
        self._thread = threading.Thread(target=self._drain, name=f"drain-{name}", daemon=True)
        self._thread.start()

    @property
    def command(self) -> str:
        """The command line, shell-quoted."""
        return command_line(self.argv)

    @property
    def returncode(self) -> int | None:
        """Exit status once it has exited (negative: killed by that signal), else None."""
        return self.popen.returncode

    def _drain(self) -> None:
        stream = self.popen.stderr
        assert stream is not None
        splitter = StderrLines()
        try:
            with self._log_path.open("ab") as log:
                while True:
                    data = stream.read1(65536)  # type: ignore[attr-defined]
                    if not data:
                        break
                    log.write(data)
                    for line in splitter.feed(data):
                        self._handle(line)
                for line in splitter.flush():
                    self._handle(line)
        except (OSError, ValueError):
            pass  # the pipe was closed under us (process killed); nothing more to read
        finally:
            try:
                stream.close()
            except OSError:
                pass

    def _handle(self, line: str) -> None:
        if self._on_line is not None:
            try:
                self._on_line(line)
            except Exception:  # noqa: BLE001 - a display problem must not kill the drain
                pass
        if not self._is_noise(line):
            with self._tail_lock:
                self._tail.append(line.rstrip())

    def poll(self) -> int | None:
        """Return the exit status if the program has exited, else None."""
        return self.popen.poll()

    def wait(self, timeout: float | None = None) -> int:
        """Wait for the program to exit and return its status.

        Raises:
            subprocess.TimeoutExpired: still running after ``timeout`` seconds.
        """
        return self.popen.wait(timeout)

    def kill(self) -> None:
        """Stop the program (and its process group) with SIGKILL, if it is still running."""
        if self.popen.poll() is not None:
            return
        self.killed = True
        try:
            if os.name == "posix":
                os.killpg(self.popen.pid, signal.SIGKILL)
            else:  # pragma: no cover - Windows
                self.popen.kill()
        except (ProcessLookupError, PermissionError):
            pass

    def finish(self, timeout: float | None = 10.0) -> None:
        """Reap the program and wait for its stderr to be fully read.

        Args:
            timeout: Seconds to wait for it to exit before killing it; None waits forever.
        """
        try:
            self.popen.wait(timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            self.popen.wait()
        self._thread.join(timeout)

    def tail(self, count: int = 15) -> list[str]:
        """The last ``count`` meaningful stderr lines."""
        with self._tail_lock:
            lines = list(self._tail)
        return lines[-count:]

    def contains(self, *needles: str) -> bool:
        """True when a kept stderr line contains any of ``needles``."""
        with self._tail_lock:
            return any(n in line for line in self._tail for n in needles)


# --------------------------------------------------------------------------- running a step


def ffmpeg_noise(line: str) -> bool:
    s = line.strip()
    return not s or s.startswith(("frame=", "size=", "Press [q]"))


def x265_noise(line: str) -> bool:
    s = line.strip()
    return (
        not s
        or bool(re.match(r"^\[?[\d.]+%?\]?\s*\d+/?\d* frames", s))
        or bool(re.match(r"^\d+ frames: ", s))
    )


def is_broken_pipe(program: Program) -> bool:
    rc = program.returncode
    sigpipe = getattr(signal, "SIGPIPE", None)
    return (sigpipe is not None and rc == -sigpipe) or program.contains(
        "Broken pipe", "errno: 32", "fwrite() call failed", "EPIPE"
    )


def failure(program: Program, what: str, complaints: list[str] | None = None) -> EncodeError:
    """EncodeError naming ``program``, its exit status and its last meaningful messages.

    ``complaints`` (the lines that showed the encoder rejecting its parameters) are quoted
    first, since FFmpeg prints them long before it stops.
    """
    lines = program.tail(_FAILURE_TAIL)
    quoted = "\n".join(f"  {line}" for line in lines) if lines else "  (no messages)"
    head = f"{program.name} failed ({describe_exit(program.returncode)}) {what}.\n"
    if complaints:
        head = (
            f"{program.name} rejected its parameters ({describe_exit(program.returncode)}) "
            f"{what}:\n" + "\n".join(f"  {line.strip()}" for line in complaints) + "\n"
        )
    return EncodeError(
        f"{head}Last messages from {program.name}:\n{quoted}\nCommand: {program.command}"
    )


@contextmanager
def sigterm_as_interrupt() -> Iterator[None]:
    """Turn SIGTERM into KeyboardInterrupt while encoding (main thread only)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum: int, frame: object) -> None:
        raise KeyboardInterrupt(f"signal {signal.Signals(signum).name}")

    previous = signal.signal(signal.SIGTERM, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


class Runner:
    """Bookkeeping for one encode: programs started (all killed on failure), commands run,
    the folder for their logs. Thread-safe enough for chunk workers (list appends)."""

    def __init__(self, tmp: Path) -> None:
        self.tmp = tmp
        self._serial = itertools.count()  # next() is atomic: unique log names across threads
        self.programs: list[Program] = []
        self.commands: list[str] = []

    def start(self, name: str, argv: list[str], **kwargs: Any) -> Program:
        log.debug("running %s", command_line(argv))
        try:
            log_path = self.tmp / f"{name}-{next(self._serial)}.log"
            program = Program(name, argv, log_path=log_path, **kwargs)
        except OSError as err:
            raise EncodeError(f"{name} could not be started ({argv[0]}): {err}") from err
        self.programs.append(program)
        return program

    def log_file(self, name: str) -> Path:
        """A fresh file name in the log folder (unique across worker threads)."""
        return self.tmp / f"{name}-{next(self._serial)}"

    def kill_all(self) -> None:
        for program in self.programs:
            program.kill()
        for program in self.programs:
            program.finish(timeout=5)

    def run(self, name: str, argv: list[str], what: str, ok: tuple[int, ...] = (0,)) -> Program:
        """Run one program to completion; EncodeError when its exit status is not in ``ok``."""
        self.commands.append(command_line(argv))
        program = self.start(name, argv, is_noise=ffmpeg_noise)
        program.finish(timeout=None)
        if program.returncode not in ok:
            raise failure(program, what)
        return program


