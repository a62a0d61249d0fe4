"""Running a local PostgreSQL cluster that drfleet laid down: as the ``postgres`` user when
drfleet runs as root (PostgreSQL refuses root), as the current user otherwise.

``start`` uses ``pg_ctl start`` with a log file in the data directory and waits for the
state asked for (accepting connections, out of recovery, or streaming). A server that
exits while starting (e.g. "recovery ended before configured recovery target was
reached") raises ClusterStartFailed with the log's tail.
"""

from __future__ import annotations

import os
import pwd
import shutil
import subprocess
import time
from pathlib import Path

from drfleet import settings
from drfleet.pitr.errors import ClusterStartFailed, PromoteFailed

LOG_NAME = "drfleet-server.log"


def find_pg_binary(name: str) -> str:
    """``name`` on PATH, else the newest /usr/lib/postgresql/*/bin/``name``."""
    found = shutil.which(name)
    if found:
        return found
    for candidate in sorted(Path("/usr/lib/postgresql").glob(f"*/bin/{name}"), reverse=True):
        return str(candidate)
    raise ClusterStartFailed(f"PostgreSQL program {name} is not installed", program=name,
                             hint="install the PostgreSQL server package (initdb, pg_ctl, postgres)")


def server_user() -> pwd.struct_passwd | None:
    """The account PostgreSQL runs as: ``postgres`` when we are root, else None (us)."""
    if os.geteuid() != 0:
        return None
    try:
        return pwd.getpwnam(settings.PG_USER.get())
    except KeyError:
        raise ClusterStartFailed("running as root but there is no 'postgres' user to run PostgreSQL",
                                 hint="create the postgres user or run drfleet as the database owner") from None


def as_server_user(argv: list[str]) -> list[str]:
    user = server_user()
    return ["runuser", "-u", user.pw_name, "--", *argv] if user else argv


def chown_tree(path: str | os.PathLike) -> None:
    """Give ``path`` and everything below it to the server user (when we are root)."""
    user = server_user()
    if not user:
        return
    for root, dirs, files in os.walk(path):
        os.chown(root, user.pw_uid, user.pw_gid)
        for name in files + dirs:
            os.lchown(os.path.join(root, name), user.pw_uid, user.pw_gid)


def log_tail(data_dir: str, lines: int = 20) -> list[str]:
    try:
        return (Path(data_dir) / LOG_NAME).read_text(errors="replace").splitlines()[-lines:]
    except OSError:
        return ["(no server log)"]


def dsn(port: int, host: str = "127.0.0.1", dbname: str = "postgres", user: str = "postgres") -> str:
    return f"host={host} port={port} dbname={dbname} user={user} connect_timeout=3"


def _pid_alive(data_dir: str) -> bool:
    pid_file = Path(data_dir) / "postmaster.pid"
    try:
        pid = int(pid_file.read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def query(port: int, sql: str, *, conninfo: str | None = None):
    import psycopg
    with psycopg.connect(conninfo or dsn(port), autocommit=True) as db:
        return db.execute(sql).fetchone()


def start(data_dir: str, port: int, *, until: str = "primary", timeout: float = 600.0) -> float:
    """Start the cluster in ``data_dir`` and wait until ``until``: "accepting" (any
    connection), "primary" (out of recovery) or "streaming" (a standby receiving WAL).
    Returns the seconds from start to that state. Raises ClusterStartFailed."""
    pg_ctl = find_pg_binary("pg_ctl")
    log = str(Path(data_dir) / LOG_NAME)
    started = time.monotonic()
    done = subprocess.run(as_server_user([pg_ctl, "start", "-D", data_dir, "-l", log, "-W"]),
                          capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise ClusterStartFailed("pg_ctl start failed", data_dir=data_dir, port=port,
                                 stderr_tail=(done.stderr or done.stdout).splitlines()[-5:],
                                 server_log=log, log_tail=log_tail(data_dir))
    deadline = started + timeout
    last_error = None
    while time.monotonic() < deadline:
        try:
            in_recovery, = query(port, "SELECT pg_is_in_recovery()")
            if until == "accepting" or (until == "primary" and not in_recovery):
                return time.monotonic() - started
            if until == "streaming":
                row = query(port, "SELECT status FROM pg_stat_wal_receiver")
                if row and row[0] == "streaming":
                    return time.monotonic() - started
        except Exception as exc:  # noqa: BLE001 - not up yet
            last_error = exc
        if time.monotonic() - started > 2 and not _pid_alive(data_dir):
            raise ClusterStartFailed("the server exited while starting", data_dir=data_dir, port=port,
                                     server_log=log, log_tail=log_tail(data_dir))
        time.sleep(0.1)
    raise ClusterStartFailed(f"the server did not reach state {until!r} within {timeout:.0f}s",
                             data_dir=data_dir, port=port, last_error=repr(last_error), server_log=log,
                             log_tail=log_tail(data_dir))


def stop(data_dir: str, *, mode: str = "fast") -> None:
    """Stop the cluster in ``data_dir`` if it runs (no error if it does not)."""
    if not _pid_alive(data_dir):
        return
    subprocess.run(as_server_user([find_pg_binary("pg_ctl"), "stop", "-D", data_dir, "-m", mode, "-w", "-t", "60"]),
                   capture_output=True, check=False)


def promote(data_dir: str, port: int, *, timeout: float = 60.0) -> float:
    """``pg_ctl promote`` and wait until the server accepts writes; returns seconds.
    Raises PromoteFailed with the log's tail."""
    started = time.monotonic()
    done = subprocess.run(as_server_user([find_pg_binary("pg_ctl"), "promote", "-D", data_dir, "-w",
                                          "-t", str(int(timeout))]),
                          capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise PromoteFailed("pg_ctl promote failed", data_dir=data_dir, port=port,
                            stderr_tail=(done.stderr or done.stdout).splitlines()[-5:],
                            log_tail=log_tail(data_dir))
    deadline = started + timeout
    while time.monotonic() < deadline:
        try:
            if not query(port, "SELECT pg_is_in_recovery()")[0]:
                return time.monotonic() - started
        except Exception:  # noqa: BLE001 - restarting connections during promotion
            pass
        time.sleep(0.1)
    raise PromoteFailed(f"still in recovery {timeout:.0f}s after promotion", data_dir=data_dir, port=port,
                        log_tail=log_tail(data_dir))
