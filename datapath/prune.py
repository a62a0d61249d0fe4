"""Prune: delete what retention (``datapath.retention``) does not keep, one location at a time.

For each storage location, under that location's prune lock:

1. For each dataset: read the committed backups (manifests), the legal holds (every store)
   and the verification results, and let ``retention.decide`` judge them. A dataset whose
   manifests or holds cannot all be read is skipped, with the problem reported: deciding on
   a partial view could delete the parent of a backup it did not see.
2. Record the ids about to go in ``drfleet:prune:pending:{location}`` (Redis), then delete
   their manifests, one audit record (``prune.delete``, with the reasons) per backup. From this point the
   backup no longer exists for any reader (docs/format.md, "Committing and deleting").
3. Delete their objects. Objects without a manifest whose id is pending (a prune
   interrupted after step 2) go at once; other objects without a manifest (a killed
   backup) go once a prune has seen them manifest-less for ``orphan_grace`` seconds
   (first sightings in ``drfleet:prune:orphans:{location}``), long enough for any write in
   progress (a backup or a copy puts its objects before its manifest) to finish. Each such
   cleanup is audited as ``prune.orphan``.

A dry run does steps 1 only, takes no lock and writes nothing.

The lock is a Redis lock (``drfleet:lock:prune:{location}``: SET NX with a random token
and a TTL, released and extended only by the token's owner). A second prune of the same
location waits ``wait_seconds`` and then raises PruneBusy: two prunes deciding on two views
of the same catalog could together delete what neither alone would (one keeps backup A as
the newest verified, the other, after a verification finished, keeps B and deletes A).
The holder extends the TTL as it goes and checks it still owns the lock before each chunk
of deletions; if it lost it (paused longer than the TTL), it stops with PruneLockLost
(``datapath.prune_lock``). The lock lives in Redis rather than in the store because prune
already needs Redis (audit, verification results) and Redis gives an atomic TTL; holds,
which must outlive Redis, live in the store.

Deletions run on a small thread pool (DRFLEET_PRUNE_THREADS, default 8; store deletes are
latency-bound), CHUNK at a time; all manifests of a dataset go before any of its objects,
and each chunk's deletions are audited in one round trip once they are done.
"""

from __future__ import annotations

import logging
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Callable

import redis

from drfleet import settings
from drfleet.backup_format.layout import manifests_prefix, parse_manifest_key
from drfleet.backup_format.manifest import Manifest
from drfleet.datapath.catalog import read_manifest
from drfleet.datapath.errors import DataPathError
from drfleet.datapath.holds import HoldsUnreadable, held_backup_ids
from drfleet.datapath.locations import store_for
from drfleet.datapath.prune_lock import LOCK_TTL_SECONDS, PruneBusy, PruneLock, PruneLockLost  # noqa: F401 (re-exported)
from drfleet.datapath.retention import Candidate, Decision, decide
from drfleet.errors import DrfleetError
from drfleet.plan.models import Plan
from drfleet.providers.storage import Store, innermost
from drfleet.state import audit, verifications
from drfleet.state.store import key, state_client

logger = logging.getLogger("drfleet.prune")

PRUNE_THREADS = settings.PRUNE_THREADS.get()  # store deletions in flight
CHUNK = 256  # deletions between two lock checks


class PruneStateUnavailable(DataPathError):
    hint = "start or reach the fleet's Redis (DRFLEET_STATE_URL); prune needs its lock, verification results and audit log"


class PruneIncomplete(DataPathError):
    hint = "fix what the failed locations name and run the prune again; what was deleted is in `drfleet audit`"


def default_orphan_grace() -> int:
    """Seconds an object must stay manifest-less before prune removes it (``settings.orphan_grace_seconds``)."""
    return settings.orphan_grace_seconds()


def locations_of_region(plan: Plan, region: str) -> list[str]:
    """The locations a region's prune looks after: those in the region, and offsite ones
    with no region when ``region`` is the primary."""
    return [name for name, loc in plan.storage.items()
            if loc.region == region or (loc.region is None and region == plan.primary_region)]


@dataclass(frozen=True)
class PrunedDataset:
    """One dataset just pruned at one location, for ``after_dataset``: the decision, the
    committed manifests by backup id, and the report to add deletions and problems to."""

    plan: Plan
    store: Store
    location: str
    dataset: str
    decision: Decision
    manifests: dict[str, Manifest]
    report: "LocationReport"
    actor: str
    client: redis.Redis | None = None  # the fleet-state client the prune runs with (audit records go there)


@dataclass
class LocationReport:
    """What one prune did (or, dry, would do) at one location."""

    location: str
    dry_run: bool
    decisions: dict[str, Decision] = field(default_factory=dict)
    deleted: list[str] = field(default_factory=list)      # "dataset/backup_id"
    orphans: list[str] = field(default_factory=list)      # removed, or (dry) pending removal
    problems: list[str] = field(default_factory=list)
    reaped: int = 0  # writers' leftovers removed: temp files, incomplete multipart uploads
    locked: list[str] = field(default_factory=list)  # "dataset/backup_id until DATE": Object Lock

    def to_dict(self, *, verdicts: bool = True) -> dict:
        out = {"location": self.location, "dry_run": self.dry_run,
               "kept": sum(len(d.kept) for d in self.decisions.values()),
               "deleted": self.deleted if not self.dry_run else
               [f"{v.backup.dataset}/{v.backup.backup_id}" for d in self.decisions.values() for v in d.deleted],
               "orphans": self.orphans, "problems": self.problems, "reaped": self.reaped,
               "locked": self.locked}
        if verdicts:
            out["verdicts"] = [{"dataset": v.backup.dataset, "backup_id": v.backup.backup_id,
                                "policy": v.backup.policy, "created_at": v.backup.created_at.isoformat(),
                                "keep": v.keep, "reasons": v.reasons}
                               for d in self.decisions.values() for v in d.verdicts]
        return out


def prune_location(plan: Plan, location: str, *, dataset: str | None = None, dry_run: bool = False,
                   now: datetime | None = None, actor: str = "api", store: Store | None = None,
                   client: redis.Redis | None = None, wait_seconds: float = 0.0,
                   lock_ttl: float = LOCK_TTL_SECONDS, orphan_grace: float | None = None,
                   on_decided: Callable[[str, Decision], None] | None = None,
                   after_dataset: Callable[["PrunedDataset"], None] | None = None) -> LocationReport:
    """Prune ``location`` (every dataset, or ``dataset``) as of ``now`` (default: the clock).

    Returns a LocationReport; per-dataset read problems are reported there, not raised.
    Raises PruneBusy / PruneLockLost (above), the store's errors when a deletion fails (what
    was deleted so far is audited; run again to finish), and PruneStateUnavailable when the
    fleet's Redis cannot be reached. ``store`` replaces the plan's store (tests); ``on_decided`` is
    called after each dataset's decision, before anything of it is deleted; ``after_dataset``
    after its backups were deleted, still under the prune lock (``pitr.prune`` passes the
    WAL retention this way).
    """
    try:
        return _prune_location(plan, location, dataset=dataset, dry_run=dry_run, now=now, actor=actor,
                               store=store, client=client, wait_seconds=wait_seconds, lock_ttl=lock_ttl,
                               orphan_grace=orphan_grace, on_decided=on_decided, after_dataset=after_dataset)
    except redis.RedisError as exc:
        raise PruneStateUnavailable(f"cannot prune {location}: the fleet state (Redis) is unreachable",
                                    location=location, error=str(exc)) from exc


def _prune_location(plan, location, *, dataset, dry_run, now, actor, store, client, wait_seconds, lock_ttl,
                    orphan_grace, on_decided, after_dataset) -> LocationReport:
    now = now or datetime.now(timezone.utc)
    store = store or store_for(plan, location, role="prune")
    client = client or state_client()
    grace = default_orphan_grace() if orphan_grace is None else orphan_grace
    report = LocationReport(location, dry_run)
    lock = None if dry_run else PruneLock(location, client=client, ttl=lock_ttl).acquire(wait_seconds)
    try:
        with ThreadPoolExecutor(PRUNE_THREADS, thread_name_prefix="prune") as pool:
            for ds in [dataset] if dataset else list(plan.datasets):
                plan.dataset(ds)
                _prune_dataset(plan, store, location, ds, now=now, actor=actor, client=client, lock=lock,
                               grace=grace, report=report, on_decided=on_decided, after_dataset=after_dataset,
                               pool=pool)
        if not dry_run:
            report.reaped = _reap_writer_leftovers(store, location, grace, report)
    finally:
        if lock:
            lock.release()
        report.deleted.sort()
    logger.info("prune of %s%s: %d deleted, %d orphans, %d problems", location, " (dry run)" if dry_run else "",
                len(report.deleted), len(report.orphans), len(report.problems))
    return report


def _reap_writer_leftovers(store, location: str, grace: float, report: LocationReport) -> int:
    """Remove what killed writers left that is not an object: the filesystem store's temp
    files and S3's incomplete multipart uploads, once older than ``grace`` (so a writer
    still running is never touched). Failures are reported, not raised."""
    inner = innermost(store)
    reaped = 0
    for method in ("reap_partials", "abort_incomplete_uploads"):
        reap = getattr(inner, method, None)
        if reap is None:
            continue
        try:
            reaped += reap(grace)
        except DrfleetError as exc:
            report.problems.append(f"{location}: {method} failed: {exc.message}")
    if reaped:
        logger.info("prune of %s: removed %d writers' leftovers older than %ds", location, reaped, grace)
    return reaped


def _prune_dataset(plan, store, location, dataset, *, now, actor, client, lock, grace, report, on_decided,
                   after_dataset, pool):
    manifests, problems = _committed(store, dataset)
    refused: list[str] = []
    try:
        held = held_backup_ids(plan, dataset, refused=refused)
    except HoldsUnreadable as exc:
        problems.append(exc.message)
    report.problems += [f"{dataset}: {note}" for note in refused]
    if problems:
        report.problems += [f"{dataset}: {p}" for p in problems]
        report.problems.append(f"{dataset}: nothing of it was pruned at {location} (incomplete view)")
        return
    results = verifications.results(dataset, client=client)
    verified = {r.backup_id for r in results if r.ok}  # as verifications.verified_backup_ids
    recorded_here = {r.backup_id for r in results if r.location == location}
    decision = decide([Candidate(m.dataset, m.backup_id, m.policy, m.created_at, tuple(m.parents),
                                 m.backup_id in verified, m.backup_id in held) for m, _ in manifests],
                      plan, now)
    manifest_keys = {m.backup_id: k for m, k in manifests}
    report.decisions[dataset] = decision
    if on_decided:
        on_decided(dataset, decision)
    objects = _objects_by_backup(store, dataset)
    committed = set(manifest_keys)
    if lock is None:
        report.orphans += [f"{dataset}/{b}" for b in sorted(set(objects) - committed)]
        return
    pending_key = key("prune", "pending", location)
    pending = {f.decode().split("/", 1)[1] for f in client.hkeys(pending_key)
               if f.decode().startswith(dataset + "/")}
    doomed = _unlocked(store, dataset, decision.deleted, lambda v: [manifest_keys[v.backup.backup_id]],
                       lambda v: v.backup.backup_id, report)
    if doomed:
        client.hset(pending_key, mapping={f"{dataset}/{v.backup.backup_id}": now.isoformat() for v in doomed})

    def audit_deleted(verdicts) -> None:
        audit.record_many("prune.delete", [
            {"dataset": dataset, "backup_id": v.backup.backup_id, "location": location, "policy": v.backup.policy,
             "reasons": "; ".join(v.reasons)} for v in verdicts], actor=actor, outcome="succeeded", client=client)
        report.deleted.extend(f"{dataset}/{v.backup.backup_id}" for v in verdicts)

    # manifests first: the backups stop existing here; each chunk's deletions are audited
    # (those that succeeded, even when another in the chunk failed)
    _in_chunks(pool, lock, lambda v: store.delete(manifest_keys[v.backup.backup_id]), doomed,
               after_chunk=audit_deleted)
    gone = [v.backup.backup_id for v in doomed]
    _in_chunks(pool, lock, store.delete, [k for b in gone for k in objects.pop(b, [])])  # then objects
    _forget(client, pending_key, location, dataset, gone + sorted(pending - committed - set(objects)),
            recorded_here)
    _remove_orphans(store, location, dataset, objects, committed, pending, now=now, grace=grace, actor=actor,
                    client=client, lock=lock, pending_key=pending_key, report=report, pool=pool,
                    recorded_here=recorded_here)
    if after_dataset:
        after_dataset(PrunedDataset(plan, store, location, dataset, decision,
                                    {m.backup_id: m for m, _ in manifests}, report, actor, client))


def _remove_orphans(store, location, dataset, objects, committed, pending, *, now, grace, actor, client,
                    lock, pending_key, report, pool, recorded_here):
    """Remove objects without a manifest: at once when an interrupted prune left them
    (pending), else once first seen more than ``grace`` seconds ago."""
    orphans_key = key("prune", "orphans", location)
    seen = {f.decode(): float(v) for f, v in client.hgetall(orphans_key).items()
            if f.decode().startswith(dataset + "/")}
    orphans = set(objects) - committed
    no_longer = [f for f in seen if f.split("/", 1)[1] not in orphans]
    if no_longer:
        client.hdel(orphans_key, *no_longer)
    first_sightings = {f"{dataset}/{b}": now.timestamp() for b in orphans
                       if b not in pending and f"{dataset}/{b}" not in seen}
    if first_sightings:
        client.hset(orphans_key, mapping=first_sightings)
    due = sorted(b for b in orphans if b in pending
                 or (f"{dataset}/{b}" in seen and now.timestamp() - seen[f"{dataset}/{b}"] >= grace))
    due = _unlocked(store, dataset, due, lambda b: objects[b], lambda b: b, report)
    _in_chunks(pool, lock, store.delete, [k for b in due for k in objects[b]])

    audit.record_many("prune.orphan", [
        {"dataset": dataset, "backup_id": b, "location": location, "objects": len(objects[b]),
         "reason": "interrupted prune" if b in pending else "objects without a manifest"} for b in due],
        actor=actor, outcome="succeeded", client=client)
    if due:
        client.hdel(orphans_key, *(f"{dataset}/{b}" for b in due))
        _forget(client, pending_key, location, dataset, due, recorded_here)
    report.orphans += [f"{dataset}/{b}" for b in due]


def _unlocked(store, dataset: str, items: list, keys_of: Callable, name_of: Callable,
              report: LocationReport) -> list:
    """``items`` without those whose objects are still under an S3 Object Lock retention
    (by the real clock: the server enforces it); those are reported under ``locked`` and
    left for a prune after the retention ends, so prune never tries to delete early."""
    retained_until = getattr(innermost(store), "retained_until", None)
    if retained_until is None or not getattr(innermost(store), "lock_mode", None):
        return items
    wall = datetime.now(timezone.utc)
    free = []
    for item in items:
        until = max((u for u in map(retained_until, keys_of(item)) if u is not None), default=None)
        if until is not None and until > wall:
            report.locked.append(f"{dataset}/{name_of(item)} until {until.isoformat()}")
        else:
            free.append(item)
    return free


def _in_chunks(pool: ThreadPoolExecutor, lock: PruneLock, fn: Callable, items: list, *,
               after_chunk: Callable[[list], None] | None = None) -> None:
    """``fn(item)`` for every item, CHUNK at a time, each chunk split over the pool's
    threads; the lock is checked before each chunk and ``after_chunk`` gets the items of
    the chunk that succeeded. A thread stops at its first failure; the first failure is
    raised once the whole chunk has ended."""
    for start in range(0, len(items), CHUNK):
        lock.check()
        chunk = items[start:start + CHUNK]
        results = list(pool.map(_run_slice, [fn] * PRUNE_THREADS,
                                [chunk[i::PRUNE_THREADS] for i in range(PRUNE_THREADS)]))
        if after_chunk:
            after_chunk([item for done, _ in results for item in done])
        for _, error in results:
            if error is not None:
                raise error


def _run_slice(fn: Callable, items: list) -> tuple[list, BaseException | None]:
    done = []
    for item in items:
        try:
            fn(item)
        except Exception as exc:  # noqa: BLE001 - handed back to _in_chunks, which raises it
            return done, exc
        done.append(item)
    return done, None


def _forget(client, pending_key: str, location: str, dataset: str, backup_ids: list[str],
            recorded_here: set[str]) -> None:
    """Drop the pending marks of backups gone from ``location``, and the verification
    results recorded for them here (``recorded_here``: the ids that have one)."""
    if not backup_ids:
        return
    pipe = client.pipeline(transaction=False)
    pipe.hdel(pending_key, *(f"{dataset}/{b}" for b in backup_ids))
    for backup_id in recorded_here.intersection(backup_ids):
        verifications.forget(dataset, backup_id, location, client=pipe)
    pipe.execute()


def _committed(store: Store, dataset: str):
    """(manifests, problems): every readable manifest of ``dataset`` in ``store`` with the
    key it was read from, oldest first (the checks of ``catalog.read_manifest``). Read in
    this thread: parsing is CPU-bound, threads only contend for the GIL."""
    manifests, problems = [], []
    try:
        infos = list(store.list(manifests_prefix(dataset)))
    except DrfleetError as exc:
        return [], [f"cannot list manifests: {exc.message}"]
    for info in infos:
        try:
            _dataset, backup_id = parse_manifest_key(info.key)
            manifest = read_manifest(store, dataset, backup_id, size=info.size)
            manifests.append((manifest, info.key))
        except DrfleetError as exc:
            problems.append(f"{info.key}: {exc.message}")
    return manifests, problems


def _objects_by_backup(store: Store, dataset: str) -> dict[str, list[str]]:
    """Every object key under ``datasets/{dataset}/backups/``, grouped by backup id."""
    prefix = f"datasets/{dataset}/backups/"
    grouped: dict[str, list[str]] = {}
    for info in store.list(prefix):
        backup_id = info.key[len(prefix):].split("/", 1)[0]
        grouped.setdefault(backup_id, []).append(info.key)
    return grouped


def prune_region(plan: Plan, region: str, **options) -> list[LocationReport]:
    """Prune every location ``locations_of_region`` gives, each on its own: a busy location
    is reported as a problem (the other prune does the job); after trying them all, raises
    PruneIncomplete naming the locations that failed (a store or the state unreachable)."""
    reports, failed = [], []
    for location in locations_of_region(plan, region):
        try:
            reports.append(prune_location(plan, location, **options))
        except PruneBusy as exc:
            busy = LocationReport(location, options.get("dry_run", False))
            busy.problems.append(exc.message)
            reports.append(busy)
        except DrfleetError as exc:
            failed.append(f"{location}: {str(exc).splitlines()[0]}")
    if failed:
        raise PruneIncomplete(f"prune of region {region} failed at {len(failed)} location(s)", region=region,
                              failed=failed, pruned=", ".join(r.location for r in reports) or "none")
    return reports
