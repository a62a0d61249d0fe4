"""MongoDB: mongodump/mongorestore archives when the tools are here, else a pymongo dump.

Tool path (``mongodump`` on PATH, or ``method: "tools"``): ``mongodump --archive`` to
stdout and ``mongorestore --archive --drop`` from stdin. The URI (with its password) is
never in argv: it is written to a 0600 YAML file passed as ``--config`` (supported by
the MongoDB Database Tools since 100.3.0; older mongodump versions are not supported).
``mongodump_argv``/``mongorestore_argv`` build the argv.

pymongo path (otherwise, or ``method: "pymongo"``): drfleet's own logical format (see
``mongodb_logical``): collections with their options and index specs, documents as raw
BSON. ``restore`` recognises which of the two formats a stream holds and uses the
matching path. The pymongo client comes from ``_client_factory(uri)`` (tests replace it).

Databases: the URL's database if it names one, else every database but admin, local and
config; option ``databases`` (a list) overrides both for the pymongo path. A pymongo
restore into a URL naming a database puts the (single-database) dump into that
database. Users and roles are not dumped.

Options: ``method`` ("auto" | "tools" | "pymongo"), ``databases``, ``oplog`` (tools
path: --oplog / --oplogReplay), ``drop`` (restore, default True: drop each collection
before restoring it), ``temp_dir`` (restore: where the dump is spooled).

A restore touches the target only after the whole dump was read and checked: it is
spooled to a private temporary file (in ``temp_dir``; room for the whole uncompressed
dump) while every chunk's tag and the backup's hash are checked, and a drfleet-format
dump is read through once more for its structure and announced counts. A corrupt or
truncated backup therefore fails with the target untouched; a failure of the restore
itself after that (the server refusing a write) says which state the target is in. ``position`` is best effort: ``{"last_write": {"ts": [secs, inc],
"term": n}}`` from ``hello`` on a replica set, else ``{"last_write": None}``.

fingerprint: per collection the document count, a SHA-256 over the documents' BSON in
``_id`` order, and the sorted index keys (name, key, unique/sparse/TTL); views give their
type only. Keys are ``collection`` when the URL names a database, else ``db.collection``.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from typing import Any, BinaryIO, Mapping
from urllib.parse import unquote

import pymongo
import pymongo.errors
from bson.raw_bson import RawBSONDocument

from drfleet.errors import DrfleetError
from drfleet.providers.datasources.errors import (
    FingerprintFailed,
    InvalidSourceOptions,
    RestoreFailed,
    with_target_state,
)
from drfleet.providers.datasources.support import mongodb_logical as logical
from drfleet.providers.datasources.support.credentials import PrivateFile, scrub_text, scrub_url, url_password
from drfleet.providers.datasources.support.producer import ProcessProducer, Producer, ThreadProducer
from drfleet.providers.datasources.support.tools import require_tool, run_tool, tool_version

KIND = "mongodb"
SYSTEM_DATABASES = ("admin", "local", "config")
ARCHIVE_MAGIC = b"\x6d\xe2\x99\x81"  # mongodump --archive: int32 0x8199e26d, little endian
OPTIONS = {"method", "databases", "oplog", "drop", "temp_dir"}
SPOOL_CHUNK = 1 << 20


def _client_factory(uri: str) -> Any:
    """A pymongo client that returns documents as the server's raw BSON."""
    return pymongo.MongoClient(uri, document_class=RawBSONDocument, appname="drfleet",
                               serverSelectionTimeoutMS=10_000)


def _options(options: Mapping[str, Any] | None) -> dict[str, Any]:
    opts = dict(options or {})
    unknown = sorted(set(opts) - OPTIONS)
    if unknown:
        raise InvalidSourceOptions(KIND, f"unknown option(s) {', '.join(unknown)}",
                                   allowed=", ".join(sorted(OPTIONS)))
    if opts.get("method", "auto") not in ("auto", "tools", "pymongo"):
        raise InvalidSourceOptions(KIND, "method must be 'auto', 'tools' or 'pymongo'")
    return opts


def _facts(conn: str) -> dict[str, Any]:
    """``{"hosts", "database"}`` of a mongodb:// or mongodb+srv:// URL (no DNS lookups)."""
    scheme, sep, rest = conn.partition("://")
    if not sep or scheme not in ("mongodb", "mongodb+srv"):
        raise InvalidSourceOptions(KIND, "the connection is not a mongodb:// URL",
                                   uri=scrub_url(conn))
    netloc, _, path = rest.partition("/")
    hosts = netloc.rpartition("@")[2]
    database = unquote(path.partition("?")[0]) or None
    return {"hosts": hosts or None, "database": database}


# --- tool path ----------------------------------------------------------------------

def tool_config(conn: str) -> PrivateFile:
    """A 0600 YAML file holding ``uri: <conn>`` for the tools' ``--config`` flag."""
    return PrivateFile(f"uri: {json.dumps(conn)}\n", name="mongo-tools.yaml")


def mongodump_argv(config_path: str, options: Mapping[str, Any] | None = None,
                   executable: str = "mongodump") -> list[str]:
    """argv of a mongodump writing an archive to stdout; the URI is in ``config_path``."""
    argv = [executable, "--archive", f"--config={config_path}"]
    if (options or {}).get("oplog"):
        argv.append("--oplog")
    return argv


def mongorestore_argv(config_path: str, options: Mapping[str, Any] | None = None,
                      executable: str = "mongorestore") -> list[str]:
    """argv of a mongorestore reading an archive from stdin; the URI is in ``config_path``."""
    opts = options or {}
    argv = [executable, "--archive", f"--config={config_path}"]
    if opts.get("drop", True):
        argv.append("--drop")
    if opts.get("oplog"):
        argv.append("--oplogReplay")
    return argv


def _use_tools(opts: dict[str, Any]) -> bool:
    method = opts.get("method", "auto")
    return method == "tools" or (method == "auto" and shutil.which("mongodump") is not None)


# --- the functions of a data source ---------------------------------------------------

def read_position(client: Any) -> dict[str, Any]:
    """``{"last_write": {...}}`` from ``hello`` on a replica set; None when unknown."""
    try:
        hello = client.admin.command("hello")
        optime = hello["lastWrite"]["opTime"]
        ts = optime["ts"]
        return {"last_write": {"ts": [ts.time, ts.inc], "term": int(optime.get("t", -1))}}
    except (pymongo.errors.PyMongoError, NotImplementedError, KeyError, TypeError):
        return {"last_write": None}  # standalone server, no permission, or a test double


def _databases(client: Any, conn: str, opts: dict[str, Any]) -> list[str]:
    if opts.get("databases"):
        return sorted(opts["databases"])
    named = _facts(conn)["database"]
    if named:
        return [named]
    return sorted(n for n in client.list_database_names() if n not in SYSTEM_DATABASES)


def dump(conn: str, options: Mapping[str, Any] | None = None) -> Producer:
    """Start a dump of ``conn`` (see module doc for the two paths).

    Raises ToolNotInstalled (method "tools" without mongodump), InvalidSourceOptions;
    the producer's ``close()`` raises SourceToolFailed with mongodump's stderr tail, or
    the pymongo error, when the dump fails.
    """
    opts = _options(options)
    facts = _facts(conn)
    client = _client_factory(conn)
    if _use_tools(opts):
        try:
            position = read_position(client)
        finally:
            client.close()
        executable = require_tool("mongodump", **facts)
        config = tool_config(conn)
        return ProcessProducer(mongodump_argv(config.path, opts, executable), tool="mongodump",
                               position=position, facts=facts, secrets=[url_password(conn)],
                               cleanup=[config.remove])
    position = read_position(client)
    databases = _databases(client, conn, opts)
    return ThreadProducer(lambda sink: logical.write_dump(client, databases, sink),
                          tool=logical.TOOL, position=position, facts=facts,
                          cleanup=[client.close])


def restore(conn: str, stream: BinaryIO, options: Mapping[str, Any] | None = None) -> None:
    """Restore a dump made by ``dump`` (either format) into ``conn``, once the whole of it
    was read and checked (see the module doc).

    Raises RestoreFailed with mongorestore's stderr tail, or naming what is wrong with a
    drfleet-format stream (truncated, counts differ, several databases into one);
    ToolNotInstalled when an archive needs mongorestore and it is missing; errors of
    ``stream`` (a corrupt chunk) propagate. Every error raised after the stream was opened
    carries ``target_state``: untouched, or partly restored.
    """
    opts = _options(options)
    facts = _facts(conn)
    untouched = "untouched: the whole dump is read and checked before the target is changed"
    with tempfile.TemporaryDirectory(prefix="drfleet-mongorestore-", dir=opts.get("temp_dir")) as spool_dir:
        path = os.path.join(spool_dir, "dump")
        try:
            with open(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600), "wb") as out:
                shutil.copyfileobj(stream, out, SPOOL_CHUNK)  # to the end: every check of the backup
        except DrfleetError as exc:
            raise with_target_state(exc, untouched) from None
        with open(path, "rb") as spooled:
            head = spooled.read(len(logical.MAGIC))
            spooled.seek(0)
            if head.startswith(ARCHIVE_MAGIC):
                _restore_archive(conn, spooled, opts, facts)
            else:
                _restore_logical(conn, spooled, opts, facts, untouched)


def _restore_archive(conn: str, spooled: BinaryIO, opts: dict, facts: dict) -> None:
    executable = require_tool("mongorestore", **facts)
    with tool_config(conn) as config:
        returncode, tail = run_tool(mongorestore_argv(config.path, opts, executable),
                                    stdin=spooled, secrets=[url_password(conn)])
    if returncode != 0:
        raise with_target_state(RestoreFailed("mongorestore", returncode, tail, **facts), _PARTLY)


_PARTLY = ("partly restored: collections of the dump may have been dropped (drop) and restored "
           "in part; restore again (drop replaces them) or from another backup")


def _restore_logical(conn: str, spooled: BinaryIO, opts: dict, facts: dict, untouched: str) -> None:
    def failed(message: str, hint: str | None = None) -> RestoreFailed:
        return RestoreFailed(logical.TOOL, None, [], message=message, hint=hint, **facts)

    try:  # the structure and the announced counts, before anything is written
        logical.LogicalRestore(None, target_db=facts["database"], drop=False, failed=failed,
                               write=False).run(spooled)
    except RestoreFailed as exc:
        raise with_target_state(exc, untouched) from None
    spooled.seek(0)
    client = _client_factory(conn)
    try:
        logical.LogicalRestore(client, target_db=facts["database"], drop=opts.get("drop", True),
                               failed=failed).run(spooled)
    except RestoreFailed as exc:
        raise with_target_state(exc, _PARTLY) from None
    except pymongo.errors.PyMongoError as exc:
        raise with_target_state(RestoreFailed(logical.TOOL, None, [scrub_text(str(exc), [url_password(conn)])],
                                              **facts), _PARTLY) from None
    finally:
        client.close()


def fingerprint(conn: str, options: Mapping[str, Any] | None = None, *,
                like: Mapping[str, Any] | None = None) -> dict:
    """Per-collection counts, document checksums and index keys (see module doc).

    Raises FingerprintFailed when the server cannot be read.
    """
    opts = _options(options)
    named = _facts(conn)["database"]
    client = _client_factory(conn)
    collections: dict[str, Any] = {}
    try:
        for db_name in _databases(client, conn, opts):
            db = client[db_name]
            for spec in logical.user_collections(db):
                key = spec["name"] if named else f"{db_name}.{spec['name']}"
                if spec.get("type", "collection") == "view":
                    collections[key] = {"type": "view"}
                    continue
                collections[key] = _collection_fingerprint(db[spec["name"]])
    except pymongo.errors.PyMongoError as exc:
        raise FingerprintFailed(KIND, scrub_text(str(exc), [url_password(conn)]),
                                **_facts(conn)) from None
    finally:
        client.close()
    collections = dict(sorted(collections.items()))
    digest = hashlib.sha256(json.dumps(collections, sort_keys=True).encode()).hexdigest()
    return {"kind": KIND, "collections": collections, "digest": digest}


def _collection_fingerprint(coll: Any) -> dict[str, Any]:
    digest, count = hashlib.sha256(), 0
    for doc in coll.find({}, sort=[("_id", 1)], batch_size=logical.BATCH_DOCUMENTS):
        data = logical.document_bytes(doc)
        digest.update(data)  # BSON is self-delimiting: its length is its first 4 bytes
        count += 1
    indexes = sorted(_index_summary(spec) for spec in coll.list_indexes())
    return {"documents": count, "checksum": digest.hexdigest(), "indexes": indexes}


def _index_summary(spec: Mapping[str, Any]) -> list:
    keys = [[field, value if isinstance(value, (int, str)) else float(value)]
            for field, value in spec["key"].items()]
    extras = {k: spec[k] for k in ("unique", "sparse", "expireAfterSeconds") if k in spec}
    return [spec["name"], keys, json.loads(json.dumps(extras, default=str, sort_keys=True))]


def tool_versions() -> dict[str, str]:
    """mongodump/mongorestore versions when installed, and the pymongo/bson version."""
    versions = {"pymongo": pymongo.version, "bson-format": logical.MAGIC.decode().strip()}
    for tool in ("mongodump", "mongorestore"):
        versions[tool] = tool_version(tool)
    return versions
