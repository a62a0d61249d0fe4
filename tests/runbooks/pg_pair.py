"""A PostgreSQL primary with a streaming standby, owned by one test (the session's
``pg_cluster`` must never be stopped, so the primary here is its own ``PostgresCluster``)."""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from pathlib import Path

import psycopg

from tests.fixtures.postgres_cluster import PostgresCluster, _find_binary
from tests.fixtures.util import free_port, wait_for


def owned_dir(prefix: str) -> Path:
    """A fresh directory the server user can write (postgres when running as root)."""
    path = Path(tempfile.mkdtemp(prefix=prefix))
    path.chmod(0o755)
    if os.geteuid() == 0:
        shutil.chown(path, "postgres", "postgres")
    return path


class Standby:
    def __init__(self, primary: PostgresCluster) -> None:
        self.primary = primary
        self.base = owned_dir("drfleet-standby-")
        self.data_dir = self.base / "data"
        self.port = free_port()
        self.proc: subprocess.Popen | None = None

    def start(self) -> "Standby":
        run = self.primary._as_owner
        subprocess.run(run([_find_binary("pg_basebackup"), "-D", str(self.data_dir), "-R", "-X", "stream",
                            "-h", "127.0.0.1", "-p", str(self.primary.port), "-U", "postgres"]),
                       check=True, capture_output=True)
        with open(self.base / "log", "ab") as log:
            self.proc = subprocess.Popen(run([self.primary.postgres, "-D", str(self.data_dir), "-p", str(self.port),
                                              "-k", str(self.base), "-c", "listen_addresses=127.0.0.1"]),
                                         stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        wait_for(lambda: psycopg.connect(self.dsn(), connect_timeout=2).close() or True, timeout=60,
                 what="the standby to accept connections")
        return self

    def dsn(self, db: str = "postgres") -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/{db}"

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        shutil.rmtree(self.base, ignore_errors=True)


def primary_with_replication() -> PostgresCluster:
    primary = PostgresCluster().start()
    with open(primary.data_dir / "pg_hba.conf", "a") as hba:
        hba.write("host replication all 127.0.0.1/32 trust\n")
    primary.psql("SELECT pg_reload_conf()")
    return primary


def in_recovery(dsn: str) -> bool:
    with psycopg.connect(dsn, connect_timeout=5) as conn:
        return conn.execute("SELECT pg_is_in_recovery()").fetchone()[0]


def stop_cluster_in(data_dir: Path) -> None:
    """Stop a server a runbook started (pg_ctl as the data directory's owner)."""
    if not (data_dir / "postmaster.pid").exists():
        return
    argv = [_find_binary("pg_ctl"), "stop", "-D", str(data_dir), "-m", "immediate", "-w"]
    if os.geteuid() == 0:
        argv = ["runuser", "-u", "postgres", "--", *argv]
    subprocess.run(argv, capture_output=True, check=False)
