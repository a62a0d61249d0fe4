"""Scratch targets for deep verification and drills: a place to restore into that is
created for the check and always removed afterwards, whatever happens.

* files: a temporary directory.
* postgres: a temporary database ``drfleet_scratch_<hex>`` on the dataset's own server.
* redis: a temporary redis-server on a free loopback port with its own directory.
MongoDB has no scratch target here (no server can run on these machines); deep checks of
mongodb datasets report that instead of pretending.
"""

from __future__ import annotations

import contextlib
import secrets
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Iterator

from drfleet.datapath.errors import DataPathError


class ScratchUnavailable(DataPathError):
    hint = "give the worker a server it may create scratch databases on, or run the check where one exists"


@contextlib.contextmanager
def scratch_target(kind: str, source_conn: str) -> Iterator[tuple[str, dict]]:
    """Yield (connection, restore options) of a fresh scratch target; remove it on exit."""
    if kind == "files":
        path = Path(tempfile.mkdtemp(prefix="drfleet-scratch-"))
        try:
            target = path / "tree"
            yield str(target), {}
        finally:
            shutil.rmtree(path, ignore_errors=True)
    elif kind == "postgres":
        yield from _postgres(source_conn)
    elif kind == "redis":
        yield from _redis()
    else:
        raise ScratchUnavailable(f"no scratch target for {kind} datasets on this worker", kind=kind)


def _postgres(source_conn: str):
    import psycopg
    from psycopg.conninfo import conninfo_to_dict, make_conninfo

    name = f"drfleet_scratch_{secrets.token_hex(6)}"
    params = conninfo_to_dict(source_conn)
    admin = make_conninfo(**{**params, "dbname": "postgres"})
    try:
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
    except psycopg.Error as exc:
        raise ScratchUnavailable("cannot create a scratch database", database=name,
                                 reason=str(exc).splitlines()[0]) from None
    try:
        yield make_conninfo(**{**params, "dbname": name}), {}
    finally:
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def _redis():
    directory = Path(tempfile.mkdtemp(prefix="drfleet-scratch-redis-"))
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    argv = ["redis-server", "--bind", "127.0.0.1", "--port", str(port), "--dir", str(directory),
            "--save", "", "--appendonly", "no", "--dbfilename", "dump.rdb"]
    procs: list[subprocess.Popen] = []

    def start() -> None:
        procs.append(subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.2):
                return
            time.sleep(0.05)
        raise ScratchUnavailable("scratch redis-server did not start", port=port)

    try:
        start()
        yield f"redis://127.0.0.1:{port}/0", {"data_dir": str(directory), "restart": start}
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        shutil.rmtree(directory, ignore_errors=True)
