"""MongoDB point-in-time recovery: oplog slices between dumps, and restore to a timestamp.

Capture: ``capture_slice`` reads ``local.oplog.rs`` from the last captured timestamp on
(``{"ts": {"$gte": after}}`` in natural order, optionally a tailable cursor with
``oplog_replay``; ``server_side=False`` filters here instead, for mongomock), checks that the first entry is exactly ``after`` (otherwise the
oplog rolled over between slices and entries were lost: OplogGap), that timestamps
strictly increase, and stores the entries (BSON, one after another) as a backup of the
format with label ``type: oplog-slice`` and ``source_position`` ``{after_ts, first_ts,
last_ts, entries}``. Consecutive slices chain through ``after_ts``.

Restore: ``restore_to_timestamp`` restores the newest full dump taken before the target
(the data source's own restore), then replays, in order, the entries of the chained
slices after the dump's position and up to the target. Replay is idempotent (inserts
upsert, updates and deletes by ``_id``), as oplog application is on a server.

Timestamps are ``[seconds, increment]`` pairs (BSON Timestamp).
"""

from __future__ import annotations

import io
from datetime import datetime, timezone
from typing import Any, Iterable, Iterator

import bson
from bson.timestamp import Timestamp

from drfleet.pitr.errors import OplogError, OplogGap
from drfleet.pitr.storing import Description, commit_stream
from drfleet.plan.models import Plan

SLICE_LABEL = "oplog-slice"
MAX_INCREMENT = 0xFFFFFFFF


def ts_pair(value: Any) -> tuple[int, int]:
    """A Timestamp, [t, i] or (t, i) as a (t, i) tuple."""
    if isinstance(value, Timestamp):
        return (value.time, value.inc)
    if isinstance(value, (list, tuple)) and len(value) == 2:
        return (int(value[0]), int(value[1]))
    raise OplogError(f"{value!r} is not an oplog timestamp")


def parse_ts(text: str) -> tuple[int, int]:
    """``latest``-free forms: ``SECONDS:INCREMENT`` or an ISO 8601 time (every entry of
    that second and before). Raises OplogError."""
    text = text.strip()
    if ":" in text and text.replace(":", "").isdigit():
        seconds, inc = text.split(":")
        return (int(seconds), int(inc))
    try:
        moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise OplogError(f"{text!r} is neither SECONDS:INCREMENT nor an ISO 8601 time") from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=timezone.utc)
    return (int(moment.timestamp()), MAX_INCREMENT)


def read_oplog(client: Any, after: tuple[int, int] | None, *, tailable: bool = False,
               server_side: bool = True, limit: int | None = None) -> Iterator[dict]:
    """Oplog entries after ``after`` (all when None), oldest first.

    ``server_side``: the server filters (``ts >= after``) and returns natural order, with a
    tailable cursor when ``tailable``; otherwise every entry is read in natural order and
    older ones are skipped here (mongomock cannot compare Timestamps). Raises OplogGap when
    ``after`` is given but the oplog no longer holds it (rolled over), OplogError when
    timestamps do not strictly increase.
    """
    collection = client["local"]["oplog.rs"]
    if server_side:
        import pymongo
        query = {"ts": {"$gte": Timestamp(*after)}} if after else {}
        kwargs: dict[str, Any] = {"sort": [("$natural", 1)]}
        if tailable:
            kwargs = {"cursor_type": pymongo.CursorType.TAILABLE_AWAIT, "oplog_replay": True}
        cursor = collection.find(query, **kwargs)
    else:
        cursor = collection.find({})
    previous = None
    count = 0
    for entry in cursor:
        ts = ts_pair(entry["ts"])
        if after is not None and previous is None:
            if ts < after and not server_side:
                continue
            if ts != after:
                raise OplogGap(f"the oplog no longer holds {list(after)}: it continues at {list(ts)}",
                               last_captured=list(after), oplog_continues_at=list(ts))
            previous = ts
            continue
        if previous is not None and ts <= previous:
            raise OplogError(f"oplog timestamps go backwards ({list(previous)} then {list(ts)})")
        previous = ts
        yield entry
        count += 1
        if limit is not None and count >= limit:
            return
    if after is not None and previous is None:
        raise OplogGap(f"the oplog no longer holds {list(after)} (it is empty or rolled over)",
                       last_captured=list(after))


def slices(plan: Plan, dataset: str, location: str | None = None) -> list[Any]:
    """The committed oplog slices of ``dataset`` (BackupRecords) at ``location`` (default:
    home), oldest first."""
    from drfleet.datapath.catalog import list_backups
    from drfleet.datapath.locations import home_location
    listing = list_backups(plan, dataset, locations=[location or home_location(plan, dataset)])
    found = [r for r in listing.backups if r.manifest.labels.get("type") == SLICE_LABEL]
    return sorted(found, key=lambda r: ts_pair(r.manifest.source_position["first_ts"]))


def full_dumps(plan: Plan, dataset: str, location: str | None = None) -> list[Any]:
    from drfleet.datapath.catalog import list_backups
    from drfleet.datapath.locations import home_location
    listing = list_backups(plan, dataset, locations=[location or home_location(plan, dataset)])
    return [r for r in listing.backups if r.manifest.labels.get("type") != SLICE_LABEL]


def dump_position(manifest: Any) -> tuple[int, int]:
    """Where replay starts for a dump: its recorded last write, else its start time
    (the pymongo dump is not a snapshot: replaying from its start is what covers it)."""
    last = (manifest.source_position or {}).get("last_write")
    if last and last.get("ts"):
        return ts_pair(last["ts"])
    return (int(manifest.started_at.timestamp()), 0)


def capture_slice(plan: Plan, dataset: str, client: Any, *, after: tuple[int, int] | None = None,
                  policy: str | None = None, region: str | None = None, max_entries: int | None = None,
                  tailable: bool = False, server_side: bool = True) -> dict | None:
    """Store the oplog entries after ``after`` (default: the last slice's ``last_ts``, else
    the newest dump's position, else the whole oplog) as one slice. Returns its summary,
    or None when there is nothing new. Raises OplogGap / OplogError (nothing committed)."""
    ds = plan.dataset(dataset)
    if ds.kind != "mongodb":
        raise OplogError(f"dataset {dataset} is of kind {ds.kind}, not mongodb", dataset=dataset)
    parents: list[str] = []
    if after is None:
        previous = slices(plan, dataset)
        if previous:
            after = ts_pair(previous[-1].manifest.source_position["last_ts"])
            parents = [previous[-1].backup_id]
        else:
            dumps = full_dumps(plan, dataset)
            if dumps:
                parents = [dumps[-1].backup_id]
                last = (dumps[-1].manifest.source_position or {}).get("last_write")
                if last and last.get("ts"):
                    after = ts_pair(last["ts"])
    entries = list(read_oplog(client, after, tailable=tailable, server_side=server_side, limit=max_entries))
    if not entries:
        return None
    body = b"".join(_bson(entry) for entry in entries)
    policy = policy or next((p.name for p in ds.policies if p.mode == "oplog"), ds.policies[0].name)
    position = {"after_ts": list(after) if after else None, "first_ts": list(ts_pair(entries[0]["ts"])),
                "last_ts": list(ts_pair(entries[-1]["ts"])), "entries": len(entries)}
    manifest = commit_stream(plan, dataset, io.BytesIO(body),
                             Description(kind="mongodb", policy=policy, labels={"type": SLICE_LABEL},
                                         source_position=position, parents=parents),
                             region=region or ds.region)
    from drfleet.datapath.locations import home_location
    return {"backup_id": manifest.backup_id, "dataset": dataset, "policy": policy,
            "location": home_location(plan, dataset), **position}


def _bson(entry: Any) -> bytes:
    raw = getattr(entry, "raw", None)
    return raw if isinstance(raw, bytes) else bson.encode(entry)


def read_slice(plan: Plan, record: Any) -> Iterator[dict]:
    """The entries of a stored slice, decoded, in order (every check of the data path)."""
    from drfleet.datapath.locations import store_for
    from drfleet.datapath.reading import BackupReader, data_key_for
    reader = BackupReader(store_for(plan, record.location), record.manifest, data_key_for(plan, record.manifest))
    data = reader.read()
    reader.finish()
    yield from bson.decode_all(data)


def chain_entries(plan: Plan, dataset: str, start: tuple[int, int], target: tuple[int, int],
                  location: str | None = None) -> Iterator[dict]:
    """Entries with start < ts <= target from the chained slices (at ``location``, default
    home). Raises OplogGap when the slices do not cover (start, target] without a break."""
    covered_to = None
    for record in slices(plan, dataset, location):
        pos = record.manifest.source_position
        last = ts_pair(pos["last_ts"])
        after = ts_pair(pos["after_ts"]) if pos.get("after_ts") else None
        if last <= start:
            covered_to = last
            continue
        if covered_to is None and after is not None and after > start:
            raise OplogGap(f"no oplog slice covers the time after the dump ({list(start)}): the first "
                           f"one starts after {list(after)}", dataset=dataset)
        if covered_to is not None and after != covered_to:
            raise OplogGap(f"oplog slices do not chain: one ends at {list(covered_to)}, the next "
                           f"starts after {list(after) if after else None}", dataset=dataset,
                           backup_id=record.backup_id)
        for entry in read_slice(plan, record):
            ts = ts_pair(entry["ts"])
            if start < ts <= target:
                yield entry
        covered_to = last
        if last >= target:
            return
    if covered_to is None or covered_to < target:
        raise OplogGap(f"the oplog slices end at {list(covered_to) if covered_to else None}, "
                       f"before the target {list(target)}", dataset=dataset)


def restore_to_timestamp(plan: Plan, dataset: str, target_conn: str, at: str | tuple[int, int], *,
                         client_factory: Any = None, location: str | None = None) -> dict:
    """Restore ``dataset`` into ``target_conn`` as it was at ``at`` (``latest``, ``T:I`` or
    an ISO time): the newest dump before it, then the oplog up to it, both from
    ``location``'s copies (default: home; another region's when home is lost). Returns a summary.
    Raises OplogGap, OplogError, BackupNotFound-like OplogError when no dump precedes it."""
    from drfleet.datapath.restore import restore_backup
    from drfleet.providers.datasources import mongodb

    if at == "latest":
        chain = slices(plan, dataset, location)
        if not chain:
            raise OplogError(f"no oplog slices of {dataset}", dataset=dataset)
        target = ts_pair(chain[-1].manifest.source_position["last_ts"])
    else:
        target = ts_pair(at) if isinstance(at, (tuple, list)) else parse_ts(at)
    dumps = [r for r in full_dumps(plan, dataset, location) if dump_position(r.manifest) <= target]
    if not dumps:
        raise OplogError(f"no dump of {dataset} precedes {list(target)}", dataset=dataset,
                         hint="take a dump first: restores start from a dump")
    dump = dumps[-1]
    restore_backup(plan, f"{dataset}/{dump.backup_id}", target_conn, location=location)
    client = (client_factory or mongodb._client_factory)(target_conn)
    applied = 0
    for entry in chain_entries(plan, dataset, dump_position(dump.manifest), target, location):
        apply_entry(client, entry)
        applied += 1
    return {"dataset": dataset, "dump": dump.backup_id, "target_ts": list(target), "applied": applied,
            "location": dump.location}


# --- applying entries ------------------------------------------------------------------

def _split_ns(ns: str) -> tuple[str, str]:
    db, _, coll = ns.partition(".")
    return db, coll


def apply_entry(client: Any, entry: dict) -> None:
    """Apply one oplog entry. Supports i, u ($set/$unset, replacement, $v:2 diffs), d, n
    and the commands create, drop, dropDatabase, applyOps. Raises OplogError otherwise."""
    op, ns, o = entry["op"], entry.get("ns", ""), entry.get("o", {})
    db_name, coll_name = _split_ns(ns)
    if op == "n":
        return
    if op == "i":
        client[db_name][coll_name].replace_one({"_id": o["_id"]}, dict(o), upsert=True)
    elif op == "u":
        selector = {"_id": entry["o2"]["_id"]}
        collection = client[db_name][coll_name]
        if o.get("$v") == 2 and "diff" in o:
            update = diff_to_update(o["diff"])
            if update:
                collection.update_one(selector, update)
        elif any(key.startswith("$") for key in o):
            collection.update_one(selector, {k: v for k, v in o.items() if k != "$v"})
        else:
            collection.replace_one(selector, dict(o), upsert=True)
    elif op == "d":
        client[db_name][coll_name].delete_one({"_id": o["_id"]})
    elif op == "c":
        _apply_command(client, db_name, o)
    else:
        raise OplogError(f"oplog entry with unknown op {op!r}", ns=ns)


def diff_to_update(diff: dict, prefix: str = "") -> dict:
    """A ``$v: 2`` update diff (u: set, i: insert, d: delete, sFIELD: sub-diff) as $set/$unset."""
    sets: dict[str, Any] = {}
    unsets: dict[str, Any] = {}
    for section, content in diff.items():
        if section in ("u", "i"):
            sets.update({f"{prefix}{k}": v for k, v in content.items()})
        elif section == "d":
            unsets.update({f"{prefix}{k}": "" for k in content})
        elif section.startswith("s") and isinstance(content, dict):
            if content.get("a") is True:  # array diff: not replayed field by field
                raise OplogError(f"array diffs are not supported (field {prefix}{section[1:]})")
            nested = diff_to_update(content, f"{prefix}{section[1:]}.")
            sets.update(nested.get("$set", {}))
            unsets.update(nested.get("$unset", {}))
    update = {}
    if sets:
        update["$set"] = sets
    if unsets:
        update["$unset"] = unsets
    return update


def _apply_command(client: Any, db_name: str, o: dict) -> None:
    if "applyOps" in o:
        for inner in o["applyOps"]:
            apply_entry(client, inner)
    elif "create" in o:
        if o["create"] not in client[db_name].list_collection_names():
            client[db_name].create_collection(o["create"])
    elif "drop" in o:
        client[db_name].drop_collection(o["drop"])
    elif "dropDatabase" in o:
        client.drop_database(db_name)
    else:
        raise OplogError(f"oplog command {next(iter(o), '?')!r} is not supported by replay", database=db_name)


def replay(client: Any, entries: Iterable[dict]) -> int:
    """Apply ``entries`` in order; returns how many."""
    count = 0
    for entry in entries:
        apply_entry(client, entry)
        count += 1
    return count
