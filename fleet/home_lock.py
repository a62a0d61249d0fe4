"""One fleet per DRFLEET_HOME, and how the CLI finds it.

``drfleet up`` holds an exclusive ``flock`` on ``HOME/fleet.lock`` (which names its pid) for
as long as it runs, and writes ``HOME/fleet.env`` (mode 0600: the Redis settings of the
fleet it started, names of files only, never a password) once its Redis answers. A second
``up`` on the same home is refused, naming the first one. The kernel drops the lock when
the process dies however it dies, so a stale ``fleet.env`` (its fleet is gone) is detected
and never used: the CLI says no fleet is running instead of talking to a dead port.
"""

from __future__ import annotations

import fcntl
import os
from pathlib import Path

from drfleet.errors import DrfleetError

LOCK = "fleet.lock"
ENV = "fleet.env"


class FleetAlreadyRunning(DrfleetError):
    hint = "stop it first (`drfleet down`, or Ctrl-C where it runs), or use another DRFLEET_HOME"


class HomeLock:
    """The exclusive lock of one home; ``acquire`` raises FleetAlreadyRunning."""

    def __init__(self, home: Path) -> None:
        self.home = home
        self.path = home / LOCK
        self._fd: int | None = None

    def acquire(self) -> "HomeLock":
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise FleetAlreadyRunning("a fleet is already running on this home", home=str(self.home),
                                      pid=holder_pid(self.home)) from None
        os.ftruncate(fd, 0)
        os.write(fd, str(os.getpid()).encode())
        self._fd = fd
        stale = self.home / ENV
        stale.unlink(missing_ok=True)  # left by a fleet that died without cleaning up
        return self

    def release(self) -> None:
        (self.home / ENV).unlink(missing_ok=True)
        if self._fd is not None:
            os.close(self._fd)  # closing drops the lock
            self._fd = None


def holder_pid(home: Path) -> int | None:
    """The pid of the ``drfleet up`` holding ``home``'s lock, or None when none does."""
    path = home / LOCK
    if not path.exists():
        return None
    fd = os.open(path, os.O_RDONLY)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            text = os.pread(fd, 32, 0).decode(errors="replace").strip()
            return int(text) if text.isdigit() else -1
        fcntl.flock(fd, fcntl.LOCK_UN)
        return None
    finally:
        os.close(fd)


def write_fleet_env(home: Path, env: dict[str, str]) -> Path:
    path = home / ENV
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as out:
        out.writelines(f"{name}={value}\n" for name, value in sorted(env.items()))
    return path


def running_fleet_env(home: Path) -> dict[str, str] | None:
    """The Redis settings of the fleet running on ``home``, or None when no fleet runs there
    (a ``fleet.env`` whose fleet died is ignored)."""
    path = home / ENV
    if holder_pid(home) is None or not path.exists():
        return None
    pairs = (line.split("=", 1) for line in path.read_text().splitlines() if "=" in line)
    return {name: value for name, value in pairs}
