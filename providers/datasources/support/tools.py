"""Running external tools: locating them, draining stderr, feeding stdin.

``StderrTail`` drains a child's stderr in a thread and keeps only the last lines, so the
child never blocks on a full stderr pipe and an error can quote what the tool said last.
``run_tool`` runs a tool to completion (optionally copying a stream to its stdin) and
returns its exit code and stderr tail; callers turn a non-zero code into their own error.
"""

from __future__ import annotations

import collections
import fcntl
import os
import shutil
import subprocess
import threading
from typing import BinaryIO, Iterable, Mapping, Sequence

from drfleet.providers.datasources.errors import ToolNotInstalled
from drfleet.providers.datasources.support.credentials import scrub_text

TAIL_LINES = 20
COPY_CHUNK = 1 << 20
PIPE_BUFFER = 4 << 20  # room for a few chunks in the tool's stdin pipe


class StderrTail:
    """Reads ``pipe`` to its end in a daemon thread, keeping the last ``TAIL_LINES`` lines.

    ``lines()`` joins the thread (the pipe closes when the child exits) and returns the
    kept lines, decoded leniently and scrubbed of ``secrets``.
    """

    def __init__(self, pipe: BinaryIO, *, secrets: Iterable[str | None] = ()) -> None:
        self._pipe = pipe
        self._secrets = [s for s in secrets if s]
        self._lines: collections.deque[bytes] = collections.deque(maxlen=TAIL_LINES)
        self._thread = threading.Thread(target=self._drain, name="stderr-tail", daemon=True)
        self._thread.start()

    def _drain(self) -> None:
        try:
            for line in self._pipe:
                self._lines.append(line[:4096])
        except (OSError, ValueError):
            pass
        finally:
            try:
                self._pipe.close()
            except OSError:
                pass

    def lines(self, timeout: float | None = 10.0) -> list[str]:
        self._thread.join(timeout)
        text = [ln.decode("utf-8", "replace").rstrip("\r\n") for ln in list(self._lines)]
        return [scrub_text(line, self._secrets) for line in text if line.strip()]


def require_tool(tool: str, **facts: object) -> str:
    """Absolute path of ``tool`` on PATH; raises ToolNotInstalled when it is missing."""
    path = shutil.which(tool)
    if path is None:
        raise ToolNotInstalled(tool, **facts)
    return path


def tool_version(tool: str, flag: str = "--version") -> str:
    """First line of ``tool --version``, or ``"not installed"`` when it is not on PATH."""
    path = shutil.which(tool)
    if path is None:
        return "not installed"
    try:
        out = subprocess.run([path, flag], capture_output=True, timeout=30, check=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f"unknown ({exc.__class__.__name__})"
    text = (out.stdout or out.stderr).decode("utf-8", "replace").strip()
    return text.splitlines()[0] if text else "unknown"


def child_env(extra: Mapping[str, str] | None = None,
              drop: Sequence[str] = ()) -> dict[str, str]:
    """This process's environment without the ``drop`` variables, plus ``extra``."""
    env = {k: v for k, v in os.environ.items() if k not in drop}
    env.update(extra or {})
    return env


def run_tool(argv: Sequence[str], *, stdin: BinaryIO | None = None,
             env: Mapping[str, str] | None = None,
             secrets: Iterable[str | None] = ()) -> tuple[int, list[str]]:
    """Run ``argv`` to completion, copying ``stdin`` (if given) to its standard input.

    Returns ``(returncode, stderr_tail)``. Raises ToolNotInstalled when argv[0] cannot be
    executed. If reading ``stdin`` raises, the tool is killed and the error propagates.
    A tool that exits before consuming all of stdin is reported through its return code.
    """
    try:
        proc = subprocess.Popen(list(argv), stdin=subprocess.PIPE if stdin else subprocess.DEVNULL,
                                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                                env=dict(env) if env is not None else None)
    except FileNotFoundError:
        raise ToolNotInstalled(argv[0]) from None
    tail = StderrTail(proc.stderr, secrets=secrets)
    try:
        if stdin is not None:
            widen_pipe(proc.stdin)
            _copy_into(stdin, proc.stdin)
    except BaseException:
        proc.kill()
        proc.wait()
        raise
    returncode = proc.wait()
    return returncode, tail.lines()


def widen_pipe(pipe: BinaryIO, size: int = PIPE_BUFFER) -> int:
    """Ask the kernel for a pipe buffer of ``size`` bytes (Linux ``F_SETPIPE_SZ``; above
    /proc/sys/fs/pipe-max-size only root may), falling back to 1 MiB, then leaving it.
    With a 64 KiB buffer a writer that prepares 1 MiB chunks (decrypting, decompressing)
    and the tool reading them take turns; with room for a few chunks they overlap.
    Returns the buffer size in effect (0 where it cannot be read)."""
    set_size, get_size = getattr(fcntl, "F_SETPIPE_SZ", 1031), getattr(fcntl, "F_GETPIPE_SZ", 1032)
    for wanted in (size, 1 << 20):
        try:
            return fcntl.fcntl(pipe.fileno(), set_size, wanted)
        except OSError:
            continue
    try:
        return fcntl.fcntl(pipe.fileno(), get_size)
    except OSError:
        return 0


def _copy_into(source: BinaryIO, sink: BinaryIO) -> None:
    """Copy ``source`` into ``sink`` and close it; a source with ``send_to(fd)`` (a spool
    follower) moves its bytes inside the kernel."""
    try:
        if hasattr(source, "send_to"):
            sink.flush()
            source.send_to(sink.fileno())
            return
        while True:
            chunk = source.read(COPY_CHUNK)
            if not chunk:
                break
            sink.write(chunk)
    except BrokenPipeError:
        pass  # the tool exited early; its exit code and stderr say why
    finally:
        try:
            sink.close()
        except BrokenPipeError:
            pass
