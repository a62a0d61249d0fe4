"""PostgreSQL: ``pg_dump -Fc -Z0`` streamed out, ``pg_restore -j`` in, per-table checksums.

The password never reaches argv: the tools get the connection as a libpq keyword string
without it, and read it from a temporary 0600 PGPASSFILE (PGPASSWORD is removed from
their environment so it cannot override it).

Options
    dump:        ``jobs`` -- only 1 (the default): parallel pg_dump needs the directory
                 format, which cannot be streamed.
    restore:     ``mode`` (``stream``, the default: schema and data loaded while the stream
                 arrives, indexes and constraints then built in parallel; ``spool``: the
                 whole dump spooled first); ``jobs`` (default 2) for ``pg_restore -j``;
                 ``clean`` (default False) drops the dump's objects first (``--clean
                 --if-exists``, always spooled); ``temp_dir`` where the dump is spooled
                 (pg_restore -j needs a seekable file; the directory needs room for the
                 whole uncompressed dump).
    fingerprint: none. ``dump`` fingerprints inside pg_dump's snapshot (see _SnapshotFingerprint).

The target database of a restore must exist; objects are restored ``--no-owner`` and
``--exit-on-error``.

A restore that fails part-way (a corrupt chunk, a refused statement, a killed tool) never
leaves half a database behind without saying so. The schema step runs in one transaction
(it fails whole, and fails on any object that exists already), so everything the restore
writes belongs to objects it created; on failure those are dropped again
(``support.pg_undo``) and the error's ``target_state`` says "as it was", or names what
could not be dropped. With ``clean`` the whole restore is one transaction (pg_restore
``--single-transaction``, so ``jobs`` is 1): on failure the target keeps its old objects.
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
import shutil
import tempfile
import threading
from typing import Any, BinaryIO, Mapping

import psycopg
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from drfleet.errors import DrfleetError
from drfleet.providers.datasources.errors import (
    FingerprintFailed,
    InvalidSourceOptions,
    RestoreFailed,
    with_target_state,
)
from drfleet.providers.datasources.support import pg_undo
from drfleet.providers.datasources.support.credentials import PrivateFile, scrub_text
from drfleet.providers.datasources.support.producer import ProcessProducer
from drfleet.providers.datasources.support.spool import GrowingSpool, SpoolCancelled
from drfleet.providers.datasources.support.tools import child_env, require_tool, run_tool, tool_version

KIND = "postgres"
DEFAULT_RESTORE_JOBS = 2
COPY_CHUNK = 1 << 20

_DETERMINISTIC_SESSION = (
    "SET DateStyle = 'ISO, YMD'", "SET TimeZone = 'UTC'", "SET IntervalStyle = 'postgres'",
    "SET extra_float_digits = 3", "SET bytea_output = 'hex'",
)
_USER_TABLES = """
    SELECT n.nspname, c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
    WHERE c.relkind IN ('r', 'p') AND n.nspname <> 'information_schema'
      AND n.nspname NOT LIKE 'pg\\_%'
"""
# Order-independent and constant-memory: the exact sum of one 64-bit hash per row (sum(bigint)
# accumulates in 128 bits and returns numeric: no overflow, no per-row numeric cast).
# "column-hash" (the default) combines each column's own extended hash function, seeded by
# the column's position, with xor: no whole-row copy per row, about half the CPU of
# hash_record_extended. A column whose type has no default hash opclass of its own (json,
# point, arrays, enums, composites, varchar ...) is hashed in its text form. "record-hash"
# and "text-hash" are the methods of earlier fingerprints, kept so those still compare.
DEFAULT_FINGERPRINT_METHOD = "column-hash"
_TABLE_SUMS = {
    "column-hash": "SELECT count(*), coalesce(sum({row_hash}), 0)::text FROM {table} t",
    "record-hash": "SELECT count(*), coalesce(sum(hash_record_extended(t, 0)), 0)::text FROM {table} t",
    "text-hash": "SELECT count(*), coalesce(sum(hashtextextended(t::text, 0)), 0)::text FROM {table} t",
}
# Live columns in order, each with the extended hash function (amproc 2) of the default
# hash opclass declared for exactly its type (a domain: its base type), or NULL.
_COLUMN_HASHES = """
    SELECT a.attname, (
        SELECT p.amproc::regproc::text FROM pg_opclass oc
        JOIN pg_amproc p ON p.amprocfamily = oc.opcfamily AND p.amprocnum = 2
             AND p.amproclefttype = oc.opcintype AND p.amprocrighttype = oc.opcintype
        WHERE oc.opcmethod = (SELECT oid FROM pg_am WHERE amname = 'hash') AND oc.opcdefault
          AND oc.opcintype = CASE WHEN ty.typtype = 'd' THEN ty.typbasetype ELSE ty.oid END
        LIMIT 1)
    FROM pg_attribute a JOIN pg_type ty ON ty.oid = a.atttypid
    WHERE a.attrelid = %s::regclass AND a.attnum > 0 AND NOT a.attisdropped
    ORDER BY a.attnum
"""


def _row_hash(db: psycopg.Connection, table: sql.Composable) -> sql.Composable:
    """The per-row expression of "column-hash" for ``table``."""
    columns = db.execute(_COLUMN_HASHES, [table.as_string(db)]).fetchall()
    if not columns:
        return sql.SQL("0::bigint")
    terms = []
    for position, (name, function) in enumerate(columns, start=1):
        column = sql.Identifier(name)
        if function:
            hashed = sql.SQL("{}({}, {})").format(sql.SQL(function), column, position)
        else:
            hashed = sql.SQL("hashtextextended({}::text, {})").format(column, position)
        terms.append(sql.SQL("coalesce({}, {})").format(hashed, -position))
    return sql.SQL(" # ").join(terms)


class _Target:
    """A connection string split into what tools may see and the password they may not."""

    def __init__(self, conn: str) -> None:
        try:
            params = conninfo_to_dict(conn)
        except psycopg.Error:
            raise InvalidSourceOptions(KIND, "the connection string cannot be parsed") from None
        self.password: str | None = params.pop("password", None)
        if self.password and "\n" in self.password:
            raise InvalidSourceOptions(KIND, "a password with a newline cannot be passed to "
                                             "libpq tools")
        self.tool_dbname = make_conninfo(**params)
        self.facts = {"host": params.get("host", "(default)"), "port": params.get("port"),
                      "database": params.get("dbname"), "user": params.get("user")}

    def tool_env(self) -> tuple[dict[str, str], PrivateFile | None]:
        """Environment for a libpq tool, and the passfile to remove after it ran."""
        if not self.password:
            return child_env(), None
        escaped = self.password.replace("\\", "\\\\").replace(":", "\\:")
        passfile = PrivateFile(f"*:*:*:*:{escaped}\n", name="pgpass")
        return child_env({"PGPASSFILE": passfile.path}, drop=("PGPASSWORD",)), passfile


def _options(options: Mapping[str, Any] | None, allowed: set[str]) -> dict[str, Any]:
    opts = dict(options or {})
    unknown = sorted(set(opts) - allowed)
    if unknown:
        raise InvalidSourceOptions(KIND, f"unknown option(s) {', '.join(unknown)}",
                                   allowed=", ".join(sorted(allowed)) or "(none)")
    return opts


def _jobs(value: Any, default: int) -> int:
    jobs = default if value is None else value
    if not isinstance(jobs, int) or isinstance(jobs, bool) or jobs < 1:
        raise InvalidSourceOptions(KIND, f"jobs must be a positive integer, not {jobs!r}")
    return jobs


def read_position(conn: str) -> dict[str, Any]:
    """WAL position now: ``{"lsn", "timeline", "in_recovery"}``; None values if unknown.

    Best effort: a source that cannot be reached gives Nones (the dump itself will then
    fail with the tool's own message). On a standby the replayed LSN is given.
    """
    try:
        with psycopg.connect(conn, connect_timeout=10, autocommit=True) as db:
            (in_recovery,) = db.execute("SELECT pg_is_in_recovery()").fetchone()
            if not in_recovery:
                lsn, timeline = db.execute(
                    "SELECT pg_current_wal_lsn()::text, ('x' || substr("
                    "pg_walfile_name(pg_current_wal_lsn()), 1, 8))::bit(32)::int").fetchone()
            else:
                (lsn,) = db.execute("SELECT pg_last_wal_replay_lsn()::text").fetchone()
                try:
                    (timeline,) = db.execute(
                        "SELECT timeline_id FROM pg_control_checkpoint()").fetchone()
                except psycopg.Error:
                    timeline = None
            return {"lsn": lsn, "timeline": timeline, "in_recovery": in_recovery}
    except psycopg.Error:
        return {"lsn": None, "timeline": None, "in_recovery": None}


def dump(conn: str, options: Mapping[str, Any] | None = None) -> ProcessProducer:
    """Start ``pg_dump --format=custom --compress=0`` and stream its stdout.

    Raises InvalidSourceOptions for ``jobs`` other than 1, ToolNotInstalled when pg_dump
    is missing; the producer's ``close()`` raises SourceToolFailed with pg_dump's stderr
    tail when it fails (unknown database, authentication, permission, killed).
    """
    opts = _options(options, {"jobs"})
    if _jobs(opts.get("jobs"), 1) != 1:
        raise InvalidSourceOptions(KIND, "pg_dump runs parallel jobs only for the directory "
                                         "format, which cannot be streamed",
                                   hint="remove 'jobs' from the dump options (restore "
                                        "still runs in parallel)")
    target = _Target(conn)
    pg_dump = require_tool("pg_dump", **target.facts)
    position = read_position(conn)
    env, passfile = target.tool_env()
    argv = [pg_dump, "--format=custom", "--compress=0", "--no-password",
            f"--dbname={target.tool_dbname}"]
    cleanup = [passfile.remove] if passfile else []
    snapshot = _SnapshotFingerprint.open(conn, target)
    if snapshot is None:  # cannot export a snapshot here: fingerprint after the dump
        return ProcessProducer(argv, tool="pg_dump", env=env, position=position,
                               facts=target.facts, secrets=[target.password], cleanup=cleanup)
    producer = _SnapshotDumpProducer(argv + [f"--snapshot={snapshot.snapshot_id}"], snapshot,
                                     tool="pg_dump", env=env, position=position, facts=target.facts,
                                     secrets=[target.password], cleanup=[snapshot.finish, *cleanup])
    snapshot.start()
    return producer


class _SnapshotFingerprint:
    """A repeatable-read transaction that exports its snapshot to pg_dump and fingerprints
    the same snapshot on a thread while the dump runs, so the recorded fingerprint is that
    of exactly the data dumped (a busy database cannot fail a deep check spuriously).
    The transaction stays open until the dump is finished and the fingerprint is done."""

    def __init__(self, db: psycopg.Connection, target: "_Target", snapshot_id: str) -> None:
        self.db, self.target, self.snapshot_id = db, target, snapshot_id
        self.result: dict | None = None
        self.error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="drfleet-pg-fingerprint", daemon=True)

    @classmethod
    def open(cls, conn: str, target: "_Target") -> "_SnapshotFingerprint | None":
        """Export a snapshot; None where that is impossible (e.g. an old standby)."""
        try:
            db = psycopg.connect(conn, connect_timeout=10)
        except psycopg.Error:
            return None  # pg_dump will report the connection failure with its own words
        try:
            db.isolation_level = psycopg.IsolationLevel.REPEATABLE_READ
            db.read_only = True
            (snapshot_id,) = db.execute("SELECT pg_export_snapshot()").fetchone()
            return cls(db, target, snapshot_id)
        except psycopg.Error:
            db.close()
            return None

    def start(self) -> None:
        self._thread.start()

    def _run(self) -> None:
        try:
            self.result = _fingerprint_in(self.db)
        except psycopg.Error as exc:
            self.error = _fingerprint_failed(exc, self.target)
        except BaseException as exc:  # noqa: BLE001 - reported to the caller's thread
            self.error = exc

    def cancel(self) -> None:
        try:
            self.db.cancel_safe(timeout=5)
        except (psycopg.Error, AttributeError):
            pass

    def finish(self) -> None:
        self._thread.join()
        self.db.close()


class _SnapshotDumpProducer(ProcessProducer):
    """pg_dump in an exported snapshot; ``fingerprint`` is that snapshot's fingerprint
    (raises FingerprintFailed if it could not be taken). Read it after ``close()``."""

    def __init__(self, argv, snapshot: _SnapshotFingerprint, **kwargs) -> None:
        self._snapshot = snapshot
        super().__init__(argv, **kwargs)

    def _terminate(self) -> None:
        self._snapshot.cancel()
        super()._terminate()

    @property
    def fingerprint(self) -> dict:
        self._snapshot.finish()
        if self._snapshot.error is not None:
            raise self._snapshot.error
        return self._snapshot.result


def restore(conn: str, stream: BinaryIO, options: Mapping[str, Any] | None = None) -> None:
    """Restore a custom-format dump read from ``stream`` into ``conn``.

    ``mode: stream`` (the default): the stream is spooled to a private temp file on a
    thread while ``pg_restore`` processes follow the spool as it grows: one creates the
    schema in one transaction (``--section=pre-data --single-transaction``, from the
    archive's table of contents at the start), then ``jobs`` of them load the table data
    in parallel (the data entries dealt out in stream order), then ``pg_restore -j N
    --section=post-data`` builds indexes, constraints and triggers from the finished
    spool. Decrypting overlaps loading. If the stream fails part-way (a corrupt chunk, a
    hash mismatch at its end), the loaders are stopped.
    ``mode: spool``: the whole dump is spooled (and the stream's checks passed) before
    pg_restore touches the target: the schema in one transaction, then data and post-data
    with ``-j N``. With ``clean``: spooled, then one ``--single-transaction`` pg_restore.
    On any failure, what the restore created is dropped (see the module doc) and the error
    carries ``target_state``.

    Raises RestoreFailed with pg_restore's stderr tail when it exits non-zero (or when
    the stream is empty), ToolNotInstalled when pg_restore is missing, InvalidSourceOptions
    for an unknown mode. Errors raised by reading ``stream`` propagate (pg_restore killed).
    """
    opts = _options(options, {"jobs", "clean", "temp_dir", "mode"})
    jobs = _jobs(opts.get("jobs"), DEFAULT_RESTORE_JOBS)
    mode = "spool" if opts.get("clean") else opts.get("mode", "stream")
    if mode not in ("stream", "spool"):
        raise InvalidSourceOptions(KIND, f"unknown restore mode {mode!r}", hint="use 'stream' or 'spool'")
    target = _Target(conn)
    pg_restore = require_tool("pg_restore", **target.facts)
    base = [pg_restore, "--no-owner", "--exit-on-error", "--no-password", f"--dbname={target.tool_dbname}"]
    env, passfile = target.tool_env()
    run = functools.partial(_run_restore, env=env, target=target)
    before = _catalog_before(conn)
    try:
        with tempfile.TemporaryDirectory(prefix="drfleet-pgrestore-", dir=opts.get("temp_dir")) as spool_dir:
            path = os.path.join(spool_dir, "dump.pgc")
            if mode == "stream":
                first = stream.read(COPY_CHUNK)
                _refuse_empty(len(first), target)
                _stream_schema_and_data(base, run, GrowingSpool(stream, path, first), spool_dir, jobs)
                run(base + [f"--jobs={jobs}", "--section=post-data", path])
            else:
                with open(path, "wb") as out:
                    shutil.copyfileobj(stream, out, COPY_CHUNK)
                    _refuse_empty(out.tell(), target)
                if opts.get("clean"):
                    run(base + ["--clean", "--if-exists", "--single-transaction", path])
                else:
                    run(base + ["--section=pre-data", "--single-transaction", path])
                    run(base + [f"--jobs={jobs}", "--section=data", "--section=post-data", path])
    except BaseException as exc:
        state = _undo_state(conn, before, atomic=bool(opts.get("clean")))
        if isinstance(exc, DrfleetError):
            raise with_target_state(exc, state) from None
        exc.add_note(f"target_state: {state}")
        raise
    finally:
        if passfile:
            passfile.remove()


def _catalog_before(conn: str) -> pg_undo.CatalogSnapshot | None:
    """What the target holds before the restore (None when it cannot be read: pg_restore
    will then say why, and nothing was touched)."""
    try:
        return pg_undo.CatalogSnapshot.take(conn)
    except psycopg.Error:
        return None


def _undo_state(conn: str, before: pg_undo.CatalogSnapshot | None, *, atomic: bool) -> str:
    """Drop what a failed restore created; say what state the target database is in."""
    if before is None:
        return "as it was: the restore could not reach the database"
    try:
        created, left = pg_undo.undo(conn, before)
    except psycopg.Error as exc:
        return (f"unknown: the database could not be read after the failure "
                f"({scrub_text(' '.join(str(exc).split()), [_Target(conn).password])}); check it by hand")
    if left:
        return (f"{len(left)} object(s) the restore created could not be dropped and are left in it: "
                f"{', '.join(left[:20])}{' ...' if len(left) > 20 else ''}")
    if atomic or not created:
        return "as it was: nothing the restore did was kept"
    return f"as it was: the {created} object(s) the restore had created (with their rows) were dropped again"


def _run_restore(argv: list[str], stdin: BinaryIO | None = None, *, env, target: "_Target") -> None:
    """Run one pg_restore; raise RestoreFailed with its stderr tail if it fails."""
    returncode, tail = run_tool(argv, stdin=stdin, env=env, secrets=[target.password])
    if returncode != 0:
        raise RestoreFailed("pg_restore", returncode, tail, **target.facts)


def _stream_schema_and_data(base: list[str], run, spool: GrowingSpool, spool_dir: str, jobs: int) -> None:
    """Schema, then the data entries on ``jobs`` parallel loaders, all following ``spool``;
    returns once the spool is complete (its stream read to the end and checked)."""
    spool.start()
    try:
        run(base + ["--section=pre-data", "--single-transaction"], spool.follower())
        listing = os.path.join(spool_dir, "data.list")
        run([base[0], "--list", "--section=data", f"--file={listing}"], spool.follower())
        with open(listing, encoding="utf-8") as fh:
            entries = [line for line in fh if line.strip() and not line.startswith(";")]
        shares = [entries[i::jobs] for i in range(min(jobs, len(entries)))]
        loaders = []
        for number, share in enumerate(shares):
            share_path = os.path.join(spool_dir, f"data-{number}.list")
            with open(share_path, "w", encoding="utf-8") as fh:
                fh.writelines(share)
            loaders.append(_Loader(run, base + ["--section=data", f"--use-list={share_path}"],
                                   spool.follower(), spool.cancel))
        for loader in loaders:
            loader.start()
        for loader in loaders:
            loader.join()
        errors = [loader.error for loader in loaders if loader.error is not None]
        if errors:  # the stream's own error (corrupt chunk, wrong hash) first, then a loader's
            spool.close()
            raise spool.error or next((e for e in errors if not isinstance(e, SpoolCancelled)), errors[0])
        spool.wait()
    except BaseException:
        spool.cancel()
        raise
    finally:
        spool.close()


class _Loader(threading.Thread):
    """One data-loading pg_restore on a thread; a failure cancels the shared spool (so the
    other loaders stop) and is kept in ``error``."""

    def __init__(self, run, argv: list[str], stdin: BinaryIO, cancel) -> None:
        super().__init__(name="drfleet-pg-loader", daemon=True)
        self.run_restore, self.argv, self.stdin, self.cancel = run, argv, stdin, cancel
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            self.run_restore(self.argv, self.stdin)
        except BaseException as exc:  # noqa: BLE001 - raised by the restoring thread
            self.error = exc
            self.cancel()


def _refuse_empty(size: int, target: "_Target") -> None:
    if size == 0:
        raise RestoreFailed("pg_restore", None, [], message="the dump stream is empty", **target.facts)


def fingerprint(conn: str, options: Mapping[str, Any] | None = None, *,
                like: Mapping[str, Any] | None = None) -> dict:
    """Per user table (every schema but pg_* and information_schema): row count and an
    order-independent checksum of the rows, read in one repeatable-read snapshot with
    fixed output settings; plus the sorted table list and one digest. ``dump`` takes the
    same fingerprint inside pg_dump's own snapshot. ``like``: a fingerprint recorded
    earlier, whose per-table methods are reused (so a backup taken by an older drfleet
    still verifies).

    Raises FingerprintFailed (scrubbed of the password) when the database cannot be read.
    """
    _options(options, set())
    target = _Target(conn)
    try:
        with psycopg.connect(conn, connect_timeout=10) as db:
            db.isolation_level = psycopg.IsolationLevel.REPEATABLE_READ
            db.read_only = True
            return _fingerprint_in(db, like)
    except psycopg.Error as exc:
        raise _fingerprint_failed(exc, target) from None


def _fingerprint_in(db: psycopg.Connection, like: Mapping[str, Any] | None = None) -> dict:
    """The fingerprint of what ``db``'s (open, repeatable-read) transaction sees.

    Each table is summed with DEFAULT_FINGERPRINT_METHOD, or with the method ``like`` (an
    earlier fingerprint) recorded for it; the method is recorded per table, so two
    fingerprints only compare equal when they were taken the same way. A method the server
    refuses (hash_record_extended before PostgreSQL 14, a type without a hash) falls back to
    the next one.
    """
    for statement in _DETERMINISTIC_SESSION:
        db.execute(statement)
    recorded = (like or {}).get("per_table") or {}
    per_table = {}
    for schema, name in db.execute(_USER_TABLES).fetchall():
        table = sql.Identifier(schema, name)
        wanted = (recorded.get(f"{schema}.{name}") or {}).get("method")
        order = [wanted if wanted in _TABLE_SUMS else DEFAULT_FINGERPRINT_METHOD]
        order += [m for m in _TABLE_SUMS if m not in order]
        for method in order:
            try:
                with db.transaction():  # a savepoint: a refused method leaves the snapshot usable
                    row_hash = _row_hash(db, table) if method == "column-hash" else sql.SQL("")
                    query = sql.SQL(_TABLE_SUMS[method]).format(table=table, row_hash=row_hash)
                    rows, total = db.execute(query).fetchone()
                break
            except (psycopg.errors.UndefinedFunction, psycopg.errors.FeatureNotSupported):
                continue
        checksum = hashlib.sha256(f"{method}:{total}".encode()).hexdigest()[:32]
        per_table[f"{schema}.{name}"] = {"rows": rows, "checksum": checksum, "method": method}
    per_table = dict(sorted(per_table.items()))
    digest = hashlib.sha256(json.dumps(per_table, sort_keys=True).encode()).hexdigest()
    return {"kind": KIND, "tables": list(per_table), "per_table": per_table, "digest": digest}


def _fingerprint_failed(exc: psycopg.Error, target: "_Target") -> FingerprintFailed:
    reason = scrub_text(" ".join(str(exc).split()) or exc.__class__.__name__, [target.password])
    return FingerprintFailed(KIND, reason, **target.facts)


def tool_versions() -> dict[str, str]:
    """Versions of pg_dump and pg_restore on this worker ("not installed" if missing)."""
    return {"pg_dump": tool_version("pg_dump"), "pg_restore": tool_version("pg_restore")}
