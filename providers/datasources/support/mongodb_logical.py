"""drfleet's logical MongoDB dump format, written and read with pymongo (no mongodump).

Layout: the magic line ``DRFLEET-MONGO-BSON/1\\n``, then records, each one tag byte and
one BSON document (BSON documents carry their own int32 length prefix):

    C  collection header  {db, name, type, options, indexes}   (indexes: listIndexes specs)
    D  one document of the last collection, as the server's raw BSON bytes
    E  end                {collections, documents}             (counts, checked on restore)

Views get a header (``type: "view"``, options with viewOn/pipeline) and no documents.
``system.*`` collections are skipped. The dump is not a point-in-time snapshot across
collections (like mongodump without --oplog). A stream without the end record is
refused as truncated.
"""

from __future__ import annotations

import struct
from typing import Any, BinaryIO, Callable, Iterable

import bson
from bson.raw_bson import RawBSONDocument

from drfleet.providers.datasources.errors import RestoreFailed

MAGIC = b"DRFLEET-MONGO-BSON/1\n"
TOOL = "mongodb logical dump (pymongo)"
COLLECTION, DOCUMENT, END = b"C", b"D", b"E"
BATCH_DOCUMENTS = 1000
BATCH_BYTES = 8 << 20
SKIP_INDEX_KEYS = ("v", "key", "name", "ns")


def document_bytes(doc: Any) -> bytes:
    """The BSON of ``doc``: the server's own bytes for a RawBSONDocument, else encoded."""
    raw = getattr(doc, "raw", None)
    return raw if isinstance(raw, bytes) else bson.encode(doc)


def user_collections(db: Any) -> list[dict]:
    """listCollections entries of ``db`` except system.*, sorted by name."""
    specs = [s for s in db.list_collections() if not s["name"].startswith("system.")]
    return sorted(specs, key=lambda s: s["name"])


def write_dump(client: Any, databases: Iterable[str], sink: BinaryIO) -> None:
    """Write every user collection of ``databases`` to ``sink`` in the format above."""
    sink.write(MAGIC)
    collections = documents = 0
    for db_name in databases:
        db = client[db_name]
        for spec in user_collections(db):
            kind = spec.get("type", "collection")
            coll = db[spec["name"]]
            header = {"db": db_name, "name": spec["name"], "type": kind,
                      "options": spec.get("options") or {},
                      "indexes": [] if kind == "view" else list(coll.list_indexes())}
            sink.write(COLLECTION + bson.encode(header))
            collections += 1
            if kind == "view":
                continue
            for doc in coll.find({}, batch_size=BATCH_DOCUMENTS):
                sink.write(DOCUMENT + document_bytes(doc))
                documents += 1
    sink.write(END + bson.encode({"collections": collections, "documents": documents}))


def _read_exact(stream: BinaryIO, size: int) -> bytes:
    data = stream.read(size)
    while len(data) < size:
        more = stream.read(size - len(data))
        if not more:
            break
        data += more
    return data


class LogicalRestore:
    """Reads the format from a stream into ``client``; see ``run``. With ``write=False``
    (and no client) it only checks the stream -- structure, single database when
    ``target_db`` is named, announced counts -- writing nothing."""

    def __init__(self, client: Any, *, target_db: str | None, drop: bool,
                 failed: Callable[..., RestoreFailed], write: bool = True) -> None:
        self.client = client
        self.write = write
        self.target_db = target_db
        self.drop = drop
        self.failed = failed
        # A client reading raw BSON (ours) takes raw BSON: the bytes go back unchanged.
        options = getattr(client, "codec_options", None)
        self._raw = getattr(options, "document_class", dict) is RawBSONDocument
        self._source_dbs: set[str] = set()
        self._coll = None
        self._indexes: list[dict] = []
        self._batch: list[Any] = []
        self._batch_bytes = 0
        self._counts = {"collections": 0, "documents": 0}

    def run(self, stream: BinaryIO) -> dict[str, int]:
        """Restore everything; return the counts. Raises RestoreFailed on a bad stream."""
        if _read_exact(stream, len(MAGIC)) != MAGIC:
            raise self.failed("the stream is not a drfleet MongoDB dump")
        while True:
            tag = stream.read(1)
            if not tag:
                raise self.failed("the dump is truncated: it ends without its end record")
            head = _read_exact(stream, 4)
            size = struct.unpack("<i", head)[0] if len(head) == 4 else 0
            record = head + _read_exact(stream, size - 4) if size >= 5 else b""
            if size < 5 or len(record) != size:
                raise self.failed("the dump is truncated or corrupt inside a record")
            if tag == DOCUMENT:
                self._add_document(record)
            elif tag == COLLECTION:
                self._finish_collection()
                self._start_collection(bson.decode(record))
            elif tag == END:
                self._finish_collection()
                expected = bson.decode(record)
                if {k: expected.get(k) for k in self._counts} != self._counts:
                    raise self.failed(f"restored {self._counts} but the dump announced "
                                      f"{dict(expected)}")
                return dict(self._counts)
            else:
                raise self.failed(f"unknown record tag {tag!r}")

    def _start_collection(self, header: dict) -> None:
        self._source_dbs.add(header["db"])
        if self.target_db and len(self._source_dbs) > 1:
            raise self.failed("the dump holds several databases but the target URL names one",
                              hint="restore into a URL without a database name")
        self._counts["collections"] += 1
        if not self.write:
            self._coll = None if header.get("type") == "view" else header["name"]
            return
        db = self.client[self.target_db or header["db"]]
        name = header["name"]
        if self.drop:
            db.drop_collection(name)
        if name not in db.list_collection_names():
            db.create_collection(name, **dict(header.get("options") or {}))
        self._coll = None if header.get("type") == "view" else db[name]
        self._indexes = [spec for spec in header.get("indexes", []) if spec.get("name") != "_id_"]

    def _add_document(self, record: bytes) -> None:
        if self._coll is None:
            raise self.failed("a document record comes before any collection record")
        if not self.write:
            self._counts["documents"] += 1
            return
        self._batch.append(RawBSONDocument(record) if self._raw else bson.decode(record))
        self._batch_bytes += len(record)
        self._counts["documents"] += 1
        if len(self._batch) >= BATCH_DOCUMENTS or self._batch_bytes >= BATCH_BYTES:
            self._flush()

    def _flush(self) -> None:
        if self._batch:
            self._coll.insert_many(self._batch, ordered=True, bypass_document_validation=True)
        self._batch, self._batch_bytes = [], 0

    def _finish_collection(self) -> None:
        if self._coll is None or not self.write:
            self._coll = None
            return
        self._flush()
        for spec in self._indexes:  # after the data, as mongorestore does
            options = {k: v for k, v in spec.items() if k not in SKIP_INDEX_KEYS}
            self._coll.create_index(list(spec["key"].items()), name=spec["name"], **options)
        self._coll, self._indexes = None, []
