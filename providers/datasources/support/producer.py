"""Producers: a dump being produced, read as a stream.

A ``Producer`` is what every ``dump()`` returns: a readable binary stream and a context
manager. ``read(n)`` returns n bytes unless the stream ends first (b"" at the end);
``readinto(buf)`` fills ``buf`` likewise. ``close()`` waits for the producer and raises
``SourceToolFailed`` when it exited non-zero, failed, or was killed -- even if it had
already written data, because a truncated dump is not a backup. ``kill()`` stops the
producer at once; after it, ``close()`` always raises. ``position`` is the dict of source
positions taken right before the dump (WAL LSN, replication offset, ...).

Leaving a ``with`` block normally closes (and may raise). Leaving it by an exception kills
the producer, unless the producer had already failed on its own: then its
``SourceToolFailed`` is raised instead, with the consumer's exception as its context,
because the producer's stderr is the real cause.

``ProcessProducer`` streams a subprocess's stdout; ``ThreadProducer`` streams what a
function writes from a background thread. Both read through a 1 MiB buffer from a pipe
enlarged to 1 MiB, so large reads cost one copy and a few syscalls.
"""

from __future__ import annotations

import fcntl
import io
import os
import signal
import subprocess
import threading
from typing import Any, BinaryIO, Callable, Iterable, Mapping, Sequence

from drfleet.providers.datasources.errors import DataSourceError, SourceToolFailed, ToolNotInstalled
from drfleet.providers.datasources.support.tools import StderrTail

READ_BUFFER = 1 << 20
PIPE_SIZE = 1 << 20


def _grow_pipe(fd: int) -> None:
    try:
        fcntl.fcntl(fd, fcntl.F_SETPIPE_SZ, PIPE_SIZE)
    except (OSError, AttributeError):
        pass  # keep the default size; only throughput suffers


def _exit_words(returncode: int | None) -> str:
    if returncode is None:
        return "failed"
    return f"exited with code {returncode}" if returncode >= 0 else \
        f"was killed by signal {-returncode}"


class Producer:
    """Base class: a readable stream over ``reader`` plus the producer's lifecycle."""

    def __init__(self, tool: str, reader: BinaryIO, *, position: Mapping[str, Any] | None = None,
                 facts: Mapping[str, Any] | None = None,
                 cleanup: Iterable[Callable[[], None]] = ()) -> None:
        self.tool = tool
        self.position: dict[str, Any] = dict(position or {})
        self.facts: dict[str, Any] = dict(facts or {})
        self._reader = reader
        self._cleanup = list(cleanup)
        self._at_eof = False
        self._killed = False
        self._closed = False
        self._error: SourceToolFailed | DataSourceError | None = None

    # --- stream ---------------------------------------------------------------------
    def readable(self) -> bool:
        return True

    def read(self, n: int = -1) -> bytes:
        data = self._reader.read(n)
        if not data and n != 0:
            self._at_eof = True
        return data

    def readinto(self, buf: Any) -> int:
        count = self._reader.readinto(buf)
        if not count and len(memoryview(buf)):
            self._at_eof = True
        return count

    @property
    def closed(self) -> bool:
        return self._closed

    # --- lifecycle ------------------------------------------------------------------
    def kill(self) -> None:
        """Stop the producer now; ``close()`` will then raise SourceToolFailed."""
        self._killed = True
        self._terminate()

    def close(self) -> None:
        """Wait for the producer; raise SourceToolFailed if it failed or was killed.

        Closing before the end of the stream while the producer is still writing stops
        it (it sees a broken pipe), which is reported as a failure too. Cleanup steps
        (e.g. removing a passfile) run in every case. Idempotent: a second call raises
        the same error again, or returns.
        """
        if self._closed:
            if self._error is not None:
                raise self._error
            return
        self._closed = True
        try:
            try:
                self._reader.close()
            except OSError:
                pass
            self._error = self._finish()
        finally:
            for cleanup in self._cleanup:
                cleanup()
        if self._error is not None:
            raise self._error

    def __enter__(self) -> "Producer":
        return self

    def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> bool:
        if exc_type is None:
            self.close()
            return False
        if self._closed:
            return False
        failed_on_its_own = self._failed_already()
        if not failed_on_its_own:
            self.kill()
        try:
            self.close()
        except DataSourceError:
            if failed_on_its_own:
                raise
        return False

    # --- for subclasses -------------------------------------------------------------
    def _terminate(self) -> None:
        raise NotImplementedError

    def _finish(self) -> DataSourceError | None:
        raise NotImplementedError

    def _failed_already(self) -> bool:
        raise NotImplementedError

    def _failure(self, returncode: int | None, tail: list[str], message: str | None = None
                 ) -> SourceToolFailed:
        if self._killed:
            message = f"{self.tool} was killed before its dump was complete"
        elif message is None and not self._at_eof:
            message = (f"{self.tool} {_exit_words(returncode)} after its reader stopped before "
                       "the end of its output")
        return SourceToolFailed(self.tool, returncode, tail, message=message, **self.facts)


class ProcessProducer(Producer):
    """Streams the stdout of ``argv``; stderr is drained into a 20-line tail.

    Raises ToolNotInstalled (after running ``cleanup``) when argv[0] cannot be executed.
    The child runs in its own session so ``kill()`` reaches any helpers it forks.
    ``secrets`` are scrubbed from the stderr tail.
    """

    def __init__(self, argv: Sequence[str], *, tool: str | None = None,
                 env: Mapping[str, str] | None = None, position: Mapping[str, Any] | None = None,
                 facts: Mapping[str, Any] | None = None, secrets: Iterable[str | None] = (),
                 cleanup: Iterable[Callable[[], None]] = ()) -> None:
        cleanup = list(cleanup)
        self.argv = list(argv)
        try:
            self._proc = subprocess.Popen(
                self.argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                stderr=subprocess.PIPE, env=dict(env) if env is not None else None,
                start_new_session=True, bufsize=READ_BUFFER)
        except (FileNotFoundError, PermissionError):
            for step in cleanup:
                step()
            raise ToolNotInstalled(self.argv[0], **dict(facts or {})) from None
        _grow_pipe(self._proc.stdout.fileno())
        self._stderr = StderrTail(self._proc.stderr, secrets=secrets)
        super().__init__(tool or os.path.basename(self.argv[0]), self._proc.stdout,
                         position=position, facts=facts, cleanup=cleanup)

    @property
    def pid(self) -> int:
        return self._proc.pid

    def _terminate(self) -> None:
        if self._proc.poll() is None:  # not reaped yet, so the pid is still ours
            try:
                os.killpg(self._proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass

    def _finish(self) -> SourceToolFailed | None:
        returncode = self._proc.wait()
        tail = self._stderr.lines()
        if returncode != 0 or self._killed:
            return self._failure(returncode, tail)
        return None

    def _failed_already(self) -> bool:
        returncode = self._proc.poll()
        return returncode is not None and returncode != 0


class _Killed(Exception):
    """Raised inside a ThreadProducer's work function when the producer is killed."""


class _PipeSink(io.RawIOBase):
    def __init__(self, fd: int, producer: "ThreadProducer") -> None:
        self._fd = fd
        self._producer = producer

    def writable(self) -> bool:
        return True

    def write(self, data: Any) -> int:
        if self._producer._killed:
            raise _Killed()
        return os.write(self._fd, data)

    def close(self) -> None:
        if not self.closed:
            try:
                os.close(self._fd)
            finally:
                super().close()


class ThreadProducer(Producer):
    """Streams what ``work(sink)`` writes to ``sink`` from a background thread.

    ``sink`` is a 1 MiB buffered binary writer; the stream ends when ``work`` returns.
    If ``work`` raises a DataSourceError it is what ``close()`` raises; any other
    exception becomes SourceToolFailed naming ``tool`` with the exception as the stderr
    tail. ``on_kill`` is called by ``kill()`` to unblock ``work`` when it waits on input
    (e.g. shut a socket down); writes fail as soon as the producer is killed.
    """

    def __init__(self, work: Callable[[BinaryIO], None], *, tool: str,
                 position: Mapping[str, Any] | None = None,
                 facts: Mapping[str, Any] | None = None,
                 on_kill: Callable[[], None] | None = None,
                 cleanup: Iterable[Callable[[], None]] = ()) -> None:
        read_fd, write_fd = os.pipe()
        _grow_pipe(write_fd)
        super().__init__(tool, open(read_fd, "rb", buffering=READ_BUFFER), position=position,
                         facts=facts, cleanup=cleanup)
        self._on_kill = on_kill
        self._exc: BaseException | None = None
        self._sink = io.BufferedWriter(_PipeSink(write_fd, self), buffer_size=READ_BUFFER)
        self._thread = threading.Thread(target=self._run, args=(work,), daemon=True,
                                        name=f"producer-{tool}")
        self._thread.start()

    def _run(self, work: Callable[[BinaryIO], None]) -> None:
        try:
            work(self._sink)
            self._sink.flush()
        except BaseException as exc:  # noqa: BLE001 - reported by close()
            self._exc = exc
        finally:
            try:
                self._sink.close()
            except (OSError, _Killed):
                try:
                    self._sink.raw.close()
                except OSError:
                    pass

    def _terminate(self) -> None:
        if self._on_kill is not None:
            try:
                self._on_kill()
            except OSError:
                pass

    def _finish(self) -> DataSourceError | None:
        if not self._at_eof and self._thread.is_alive():
            self._terminate()  # it may be waiting on its input, not on the closed pipe
        self._thread.join()
        exc = self._exc
        if self._killed:
            return self._failure(None, [])
        if exc is None:
            return None
        if isinstance(exc, DataSourceError):
            return exc
        if isinstance(exc, BrokenPipeError) and not self._at_eof:
            return self._failure(None, [])
        error = self._failure(None, [f"{exc.__class__.__name__}: {exc}"])
        error.__cause__ = exc
        return error

    def _failed_already(self) -> bool:
        return not self._thread.is_alive() and self._exc is not None
