"""Redis: an RDB snapshot streamed from a live server; restore by replacing the RDB file.

dump -- connects as a replica (see ``redis_protocol``) and streams the exact RDB the
server sends. ``position`` is ``{"master_repl_offset": <offset>, "replid": <id>}`` from
the server's ``+FULLRESYNC`` answer: the snapshot is the dataset at that offset. The
handshake happens inside ``dump()``, which therefore waits up to the server's
``repl-diskless-sync-delay`` (5 s by default) and raises SourceToolFailed at once when
the server refuses (bad password, missing permission). Options: ``timeout`` (seconds
without progress before giving up, default 60).

restore -- CONSTRAINT: an RDB can only be loaded by a server at startup, so restoring
needs control of the target server's files and process: its data directory must be
writable here, and the caller must say how to (re)start it. Options:
    ``data_dir`` (required)   the target server's ``dir``;
    ``dbfilename``            its ``dbfilename`` (default ``dump.rdb``);
    ``restart`` | ``command`` exactly one: a callable (no arguments) that (re)starts the
                              server, or an argv run to do it (exit code 0 expected);
    ``shutdown``              default True: before replacing the file, send
                              ``SHUTDOWN NOSAVE`` to ``conn`` so a running server cannot
                              overwrite the restored file with its own dataset on exit;
    ``timeout``               seconds to wait for the server to stop/come back (60).
The stream is first spooled next to the target file (0600, owned like the file it
replaces, or like ``data_dir``), then moved into place while the server is down. The server must run with ``appendonly no`` (with AOF on it would load
the AOF instead); when CONFIG is allowed, restore checks ``dir``, ``dbfilename`` and
``appendonly`` after the restart and raises RestoreFailed if the file was not used.

fingerprint -- per database (from INFO keyspace): key count, and a SHA-256 over the
sorted keys with their type, absolute expiry (PEXPIRETIME) and value read by type
(string; hash and set sorted; list in order; zset in rank order with scores; stream
entries). Other types (modules) contribute their type only. Bounded by ``max_keys``
(default 100000): a database with more keys is *sampled* -- only keys whose SHA-256
falls in a fixed fraction (about max_keys keys) are hashed, so the sample is the same on
a source and its copy; SCAN still visits every key. Options: ``max_keys``.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
import time
from typing import Any, BinaryIO, Callable, Mapping

import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from drfleet.errors import DrfleetError
from drfleet.providers.datasources.errors import (
    FingerprintFailed,
    InvalidSourceOptions,
    RestoreFailed,
    with_target_state,
)
from drfleet.providers.datasources.support.credentials import scrub_text
from drfleet.providers.datasources.support.producer import ThreadProducer
from drfleet.providers.datasources.support.redis_protocol import TOOL, RdbStream, RedisTarget
from drfleet.providers.datasources.support.tools import run_tool

KIND = "redis"
DEFAULT_TIMEOUT = 60.0
DEFAULT_MAX_KEYS = 100_000
BATCH = 500
COPY_CHUNK = 1 << 20


def _options(options: Mapping[str, Any] | None, allowed: set[str]) -> dict[str, Any]:
    opts = dict(options or {})
    unknown = sorted(set(opts) - allowed)
    if unknown:
        raise InvalidSourceOptions(KIND, f"unknown option(s) {', '.join(unknown)}",
                                   allowed=", ".join(sorted(allowed)) or "(none)")
    return opts


def dump(conn: str, options: Mapping[str, Any] | None = None) -> ThreadProducer:
    """Stream an RDB snapshot of the server at ``conn`` (all its databases).

    Raises SourceToolFailed when the server cannot be reached or refuses the handshake;
    the producer's ``close()`` raises SourceToolFailed if the transfer breaks off.
    """
    opts = _options(options, {"timeout"})
    target = RedisTarget(conn)
    rdb = RdbStream(target, timeout=float(opts.get("timeout", DEFAULT_TIMEOUT)))
    position = {"master_repl_offset": rdb.offset, "replid": rdb.replid}
    return ThreadProducer(rdb.copy_to, tool=TOOL, position=position, facts=target.facts,
                          on_kill=rdb.shutdown, cleanup=[rdb.close])


def _client(target: RedisTarget, db: int | None = None, timeout: float = 10.0) -> redis.Redis:
    # No retries: a refused connection must be seen at once (e.g. "is it down yet?").
    return redis.Redis(**target.client_kwargs(db), socket_timeout=timeout,
                       socket_connect_timeout=timeout, retry=Retry(NoBackoff(), 0))


def _wait(condition: Callable[[], bool], timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True


def _is_down(target: RedisTarget) -> bool:
    try:
        _client(target, timeout=1.0).ping()
    except redis.ConnectionError:
        return True
    except redis.RedisError:
        return False
    return False


def _is_loaded(target: RedisTarget) -> bool:
    try:
        return int(_client(target, timeout=2.0).info("persistence").get("loading", 1)) == 0
    except redis.RedisError:
        return False


def _restore_failed(target: RedisTarget, message: str, tail: list[str] | None = None,
                    **facts: Any) -> RestoreFailed:
    return RestoreFailed("redis-server", None,
                         [scrub_text(t, [target.password]) for t in tail or []],
                         message=message, **target.facts, **facts)


def restore(conn: str, stream: BinaryIO, options: Mapping[str, Any] | None = None) -> None:
    """Replace the target server's RDB file with ``stream`` and restart the server.

    Raises InvalidSourceOptions for missing/inconsistent options; RestoreFailed when the
    stream is not an RDB or is truncated (both before the server is touched), the server cannot be stopped, the restart command fails, the
    server does not come back within ``timeout``, or it did not load the restored file.
    """
    opts = _options(options, {"data_dir", "dbfilename", "restart", "command", "shutdown",
                              "timeout"})
    target = RedisTarget(conn)
    if not opts.get("data_dir"):
        raise InvalidSourceOptions(KIND, "restore needs 'data_dir', the target server's dir")
    if (opts.get("restart") is None) == (opts.get("command") is None):
        raise InvalidSourceOptions(KIND, "restore needs exactly one of 'restart' (a callable) "
                                         "or 'command' (an argv list)")
    data_dir = os.path.realpath(opts["data_dir"])
    dbfilename = opts.get("dbfilename", "dump.rdb")
    timeout = float(opts.get("timeout", DEFAULT_TIMEOUT))
    facts = {"data_dir": data_dir, "dbfilename": dbfilename}

    states = {"spool": "untouched: the whole backup is read and checked before the server is "
                       "stopped, and it was not stopped",
              "shutdown": "its data file was not replaced (check that the server is running: "
                          "SHUTDOWN NOSAVE may have stopped it)",
              "restart": f"its data file {dbfilename} now holds the backup (its previous dataset is "
                         "gone) but the server is not serving it: start the server"}
    stage = "spool"
    try:
        head = stream.read(5)
        if head != b"REDIS":
            raise _restore_failed(target, "the stream is not an RDB file (no 'REDIS' magic)", **facts)
        fd, spool = tempfile.mkstemp(prefix=".drfleet-restore-", suffix=".rdb", dir=data_dir)
        try:
            with os.fdopen(fd, "wb") as out:
                out.write(head)
                while chunk := stream.read(COPY_CHUNK):
                    out.write(chunk)
                out.flush()
                os.fsync(out.fileno())
            if not _ends_like_an_rdb(spool):
                raise _restore_failed(target, "the RDB stream is truncated (it does not end with "
                                              "the EOF opcode and checksum)", **facts)
            _match_owner(spool, os.path.join(data_dir, dbfilename), data_dir)
            stage = "shutdown"
            if opts.get("shutdown", True):
                _shutdown_nosave(target, timeout, facts)
            os.replace(spool, os.path.join(data_dir, dbfilename))
            stage = "restart"
        finally:
            if os.path.exists(spool):
                os.unlink(spool)
        _restart(target, opts, timeout, facts)
        _check_loaded_from(target, data_dir, dbfilename, facts)
    except DrfleetError as exc:
        raise with_target_state(exc, states[stage]) from None


def _ends_like_an_rdb(path: str) -> bool:
    """RDB files (version 5+) end with the EOF opcode 0xFF and an 8-byte CRC64."""
    with open(path, "rb") as rdb:
        rdb.seek(0, os.SEEK_END)
        if rdb.tell() < 18:
            return False
        rdb.seek(-9, os.SEEK_END)
        return rdb.read(1) == b"\xff"


def _match_owner(path: str, existing: str, data_dir: str) -> None:
    """Give ``path`` the owner of the file it replaces (else of the data dir), so a server
    running as its own user can read it when we run as root."""
    if os.geteuid() != 0:
        return
    st = os.stat(existing if os.path.exists(existing) else data_dir)
    os.chown(path, st.st_uid, st.st_gid)


def _shutdown_nosave(target: RedisTarget, timeout: float, facts: dict[str, Any]) -> None:
    if _is_down(target):
        return
    try:
        _client(target).shutdown(nosave=True)
    except redis.ConnectionError:
        pass  # the server went away, as asked
    except redis.RedisError as exc:
        raise _restore_failed(target, "the target server refused SHUTDOWN NOSAVE",
                              [str(exc)], **facts) from None
    if not _wait(lambda: _is_down(target), timeout):
        raise _restore_failed(target, f"the target server was still up {timeout:g}s after "
                                      "SHUTDOWN NOSAVE", **facts)


def _restart(target: RedisTarget, opts: dict[str, Any], timeout: float,
             facts: dict[str, Any]) -> None:
    if opts.get("restart") is not None:
        opts["restart"]()
    else:
        argv = [str(a) for a in opts["command"]]
        returncode, tail = run_tool(argv, secrets=[target.password])
        if returncode != 0:
            raise RestoreFailed(os.path.basename(argv[0]), returncode, tail,
                                message=f"the restart command {argv[0]} exited with code "
                                        f"{returncode}", **target.facts, **facts)
    if not _wait(lambda: _is_loaded(target), timeout):
        raise _restore_failed(target, f"the target server did not come back (loaded) within "
                                      f"{timeout:g}s of the restart", **facts)


def _check_loaded_from(target: RedisTarget, data_dir: str, dbfilename: str,
                       facts: dict[str, Any]) -> None:
    client = _client(target)
    try:
        config = {name: client.config_get(name).get(name) for name in
                  ("dir", "dbfilename", "appendonly")}
    except redis.ResponseError:
        return  # CONFIG disabled or renamed: nothing more can be checked
    if os.path.realpath(config["dir"] or data_dir) != data_dir or \
            (config["dbfilename"] or dbfilename) != dbfilename:
        raise _restore_failed(target, "the restarted server does not load the restored file",
                              server_dir=config.get("dir"),
                              server_dbfilename=config.get("dbfilename"), **facts)
    if config.get("appendonly") == "yes":
        raise _restore_failed(target, "the server runs with appendonly yes: it loaded its AOF, "
                                      "not the restored RDB", **facts)


def fingerprint(conn: str, options: Mapping[str, Any] | None = None, *,
                like: Mapping[str, Any] | None = None) -> dict:
    """Key counts and content checksums of every database of the server (see module doc).

    Raises FingerprintFailed when the server cannot be read.
    """
    opts = _options(options, {"max_keys"})
    max_keys = int(opts.get("max_keys", DEFAULT_MAX_KEYS))
    target = RedisTarget(conn)
    try:
        keyspace = _client(target).info("keyspace")
        databases = {}
        for name in sorted(keyspace, key=lambda n: int(n[2:])):
            databases[name[2:]] = _fingerprint_db(_client(target, int(name[2:]), 30.0), max_keys)
    except redis.RedisError as exc:
        raise FingerprintFailed(KIND, scrub_text(str(exc), [target.password]),
                                **target.facts) from None
    digest = hashlib.sha256(json.dumps(databases, sort_keys=True).encode()).hexdigest()
    return {"kind": KIND, "databases": databases, "digest": digest}


def _fingerprint_db(client: redis.Redis, max_keys: int) -> dict[str, Any]:
    total = client.dbsize()
    sampled = total > max_keys
    cutoff = int((max_keys / total) * 2**64) if sampled else 2**64
    keys = sorted(k for k in client.scan_iter(count=1000)
                  if int.from_bytes(hashlib.sha256(k).digest()[:8], "big") < cutoff)
    digest = hashlib.sha256()
    for start in range(0, len(keys), BATCH):
        batch = keys[start:start + BATCH]
        pipe = client.pipeline(transaction=False)
        for key in batch:
            pipe.type(key)
            pipe.execute_command("PEXPIRETIME", key)
        answers = pipe.execute(raise_on_error=False)
        types = [t.decode() if isinstance(t, bytes) else str(t) for t in answers[0::2]]
        expiries = [e if isinstance(e, int) else "?" for e in answers[1::2]]
        values = _read_values(client, batch, types)
        for key, kind, expiry, value in zip(batch, types, expiries, values):
            for part in (key, kind.encode(), str(expiry).encode(), *value):
                digest.update(len(part).to_bytes(8, "big"))
                digest.update(part)
    return {"keys": total, "mode": "sampled" if sampled else "full", "hashed_keys": len(keys),
            "checksum": digest.hexdigest()}


def _read_values(client: redis.Redis, keys: list[bytes], types: list[str]) -> list[list[bytes]]:
    pipe = client.pipeline(transaction=False)
    readers = {"string": lambda k: pipe.get(k), "hash": lambda k: pipe.hgetall(k),
               "list": lambda k: pipe.lrange(k, 0, -1), "set": lambda k: pipe.smembers(k),
               "zset": lambda k: pipe.zrange(k, 0, -1, withscores=True),
               "stream": lambda k: pipe.xrange(k)}
    asked = []
    for key, kind in zip(keys, types):
        reader = readers.get(kind)
        if reader is not None:
            reader(key)
        asked.append(reader is not None)
    answers = iter(pipe.execute(raise_on_error=False))
    return [_canonical(kind, next(answers)) if was_asked else []
            for kind, was_asked in zip(types, asked)]


def _canonical(kind: str, value: Any) -> list[bytes]:
    if value is None or isinstance(value, Exception):
        return [b"<missing>"]
    if kind == "string":
        return [value]
    if kind == "hash":
        return [part for item in sorted(value.items()) for part in item]
    if kind == "list":
        return list(value)
    if kind == "set":
        return sorted(value)
    if kind == "zset":
        return [part for member, score in value for part in (member, repr(score).encode())]
    if kind == "stream":
        return [part for entry_id, fields in value
                for part in (entry_id, *(p for item in fields.items() for p in item))]
    return []


def tool_versions() -> dict[str, str]:
    """What a dump is made with: drfleet's own replication client, and redis-py."""
    return {"rdb-transfer": f"{TOOL}, drfleet built-in", "redis-py": redis.__version__}
