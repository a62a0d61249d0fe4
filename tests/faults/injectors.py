"""The data-source and store faults of the suite, each on a real thing: PostgreSQL
restarted under a running pg_dump, sshd dropping an rsync transfer, a tmpfs store that
fills up. Used by tests/faults/scenarios.py; nothing here is faked."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import textwrap
import threading
import time
from pathlib import Path

import psycopg

from tests.fixtures.util import wait_for

# -- PostgreSQL ---------------------------------------------------------------------------

_COPY_IN_FLIGHT = ("SELECT pid FROM pg_stat_activity WHERE application_name = 'pg_dump' "
                   "AND datname = %s AND query LIKE 'COPY %%' AND state = 'active'")


def fill_database(cluster, name: str, megabytes: int) -> str:
    """Create ``name`` with a table of ``megabytes`` MiB of random bytes; return its dsn."""
    dsn = cluster.create_database(name)
    with psycopg.connect(dsn, autocommit=True) as db:
        db.execute("CREATE TABLE blobs (id int PRIMARY KEY, payload bytea)")
        db.execute("ALTER TABLE blobs ALTER COLUMN payload SET STORAGE EXTERNAL")  # no pglz tries
        with db.cursor().copy("COPY blobs (id, payload) FROM STDIN") as copy:
            for i in range(megabytes):
                copy.write_row((i, os.urandom(1 << 20)))
    return dsn


def pg_dump_pids(port: int) -> list[int]:
    """pids of pg_dump processes connected to the cluster on ``port``."""
    out = subprocess.run(["pgrep", "-f", f"pg_dump .*port={port}"], capture_output=True, text=True).stdout
    return [int(p) for p in out.split()]


class RestartDuringDump:
    """On a thread: wait until a pg_dump of ``database`` is copying table data, freeze it
    (SIGSTOP, so its server backend is certainly still sending), restart the cluster
    (``pg_ctl stop -m fast`` terminates the backend), thaw pg_dump, and record when the
    cluster accepted connections again (``back_at``) and whether the fault hit."""

    def __init__(self, cluster, database: str, *, timeout: float = 60) -> None:
        self.cluster, self.database, self.timeout = cluster, database, timeout
        self.hit = False
        self.back_at: float | None = None
        self.error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, daemon=True, name="pg-restart")

    def start(self) -> "RestartDuringDump":
        self._thread.start()
        return self

    def join(self) -> None:
        self._thread.join(self.timeout + 60)
        if self.error is not None:
            raise self.error

    def _copying(self) -> bool:
        with psycopg.connect(self.cluster.dsn("postgres"), autocommit=True, connect_timeout=2) as db:
            return bool(db.execute(_COPY_IN_FLIGHT, (self.database,)).fetchall())

    def _run(self) -> None:
        try:
            wait_for(self._copying, timeout=self.timeout, interval=0.005, what="pg_dump to copy table data")
            frozen = pg_dump_pids(self.cluster.port)
            for pid in frozen:
                os.kill(pid, signal.SIGSTOP)
            self.hit = bool(frozen)
            try:
                self.cluster.stop()
            finally:
                for pid in frozen:
                    with contextlib.suppress(ProcessLookupError):
                        os.kill(pid, signal.SIGCONT)
            self.cluster.start()
            self.back_at = time.time()
        except BaseException as exc:  # noqa: BLE001 - re-raised by join()
            self.error = exc


POSTGRES_DATASET = """\
{name}:
  kind: postgres
  region: eu-central
  connection: {{env: {env}}}
  key: content
  rpo: 1h
  rto: 15m
  policies:
    - {{name: {policy}, trigger: hourly, keep: 100000 versions, copies: [home-region]}}
"""


# -- sshd -----------------------------------------------------------------------------------

def remote_files_dataset(name: str, policy: str, server, remote_dir: Path) -> tuple[str, str]:
    """(datasets block, hosts block) of a files dataset on plan host ``web1`` = ``server``."""
    datasets = textwrap.dedent(f"""\
        {name}:
          kind: files
          region: eu-central
          source: {{path: {remote_dir}, host: web1}}
          key: content
          rpo: 1h
          rto: 15m
          policies:
            - {{name: {policy}, trigger: hourly, keep: 100000 versions, copies: [home-region]}}
        """)
    hosts = (f"hosts:\n  web1: {{address: {server.host}, port: {server.port}, user: {server.user}, "
             f"key_file: {server.key_file}, known_hosts: {server.known_hosts_file}}}\n")
    return datasets, hosts


def in_flight_bytes(mirror: str) -> int:
    """Bytes rsync has written to its temp files (``.name.XXXXXX``) in ``mirror``."""
    if not os.path.isdir(mirror):
        return 0
    total = 0
    for name in os.listdir(mirror):
        if name.startswith(".") and name != ".rsync-partial":
            with contextlib.suppress(OSError):
                total += os.path.getsize(os.path.join(mirror, name))
    return total


def when_transferring(mirror: str, at_least: int, action, *, timeout: float = 60) -> threading.Thread:
    """Start a thread that runs ``action()`` once rsync has ``at_least`` bytes of a file
    in flight in ``mirror``."""
    def run():
        wait_for(lambda: in_flight_bytes(mirror) >= at_least, timeout=timeout, interval=0.01,
                 what="rsync to be mid-transfer")
        action()

    thread = threading.Thread(target=run, daemon=True, name="ssh-drop")
    thread.start()
    return thread


# -- a small filesystem ------------------------------------------------------------------

class Tmpfs:
    """A tmpfs of ``size_bytes`` mounted at ``path`` (needs root); ``fill`` leaves a
    given number of bytes free with a filler file; ``free_space`` removes it."""

    PAGE = 4096

    def __init__(self, path: Path, size_bytes: int) -> None:
        self.path, self.size = Path(path), size_bytes
        self.filler = self.path / "filler"

    def mount(self) -> bool:
        """Mount it; False (nothing mounted) when this process may not mount."""
        self.path.mkdir(parents=True, exist_ok=True)
        done = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={self.size}", "tmpfs", str(self.path)],
                              capture_output=True)
        return done.returncode == 0

    def umount(self) -> None:
        subprocess.run(["umount", str(self.path)], capture_output=True, check=False)

    def available(self) -> int:
        st = os.statvfs(self.path)
        return st.f_bavail * st.f_frsize

    def fill(self, leave_free: int) -> None:
        """Grow the filler file until at most ``leave_free`` bytes (page-rounded) are free."""
        self.free_space()
        with open(self.filler, "wb") as out:
            want = self.available() - leave_free
            chunk = b"\0" * (1 << 20)
            while want > 0:
                n = min(want, len(chunk))
                try:
                    out.write(chunk[:n])
                    out.flush()
                except OSError:
                    break
                want -= n

    def free_space(self) -> None:
        self.filler.unlink(missing_ok=True)
