"""``copies check``: compare every copy of every backup with its manifest, and re-seed a
missing or damaged copy from a good one.

For each dataset, every storage location's manifests are listed; each backup found
anywhere is checked at every location that holds it and every location its policy names:

* ``ok``: the manifest parses and authenticates (MAC under the data key), and every
  object is present with the recorded size and SHA-256 (objects in a cold storage class
  the store will not serve are checked by size only, and say so);
* ``missing``: the policy names the location, but no manifest is there;
* ``damaged``: the manifest is unreadable or fails its MAC, or an object is missing,
  truncated or differs from its hash;
* ``unverifiable``: the manifest cannot be authenticated here (no keyring for it);
* ``unreachable``: the store could not be read (StoreUnavailable and friends).

With ``repair``, each missing or damaged copy is re-seeded from a good copy (the home
store's first) by ``datapath.copy.copy_backup``, which streams, hashes, checks what it
stored and writes the manifest last (and never removes a manifest, so the set of committed
backups only grows). The copy is then checked again; only a copy that now checks ``ok``
counts as repaired. A missing copy of a backup that its policy's retention no longer keeps
(and that is not on legal hold, not the dataset's newest backup, not another's parent) is reported as
``expired`` and not re-seeded: prune may be removing it location by location.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime

from drfleet.backup_format.errors import KeyringError, ManifestError
from drfleet.backup_format.layout import manifests_prefix, object_key, parse_manifest_key
from drfleet.backup_format.manifest import Manifest
from drfleet.datapath.catalog import read_manifest
from drfleet.datapath.copy import CHUNK, copy_backup
from drfleet.datapath.locations import copy_locations, home_location, store_for
from drfleet.datapath.reading import data_key_for
from drfleet.errors import DrfleetError
from drfleet.plan.models import Plan
from drfleet.providers.storage import ObjectArchived, ObjectNotFound, StoreError

BAD = ("missing", "damaged")


@dataclass
class CopyState:
    location: str
    status: str
    problems: list[str] = field(default_factory=list)
    expected: bool = True
    repaired: bool = False
    repair_error: str | None = None


@dataclass
class BackupCopies:
    dataset: str
    backup_id: str
    policy: str | None
    copies: list[CopyState] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return all(c.status in ("ok", "expired") for c in self.copies)


@dataclass
class CopiesReport:
    backups: list[BackupCopies] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)  # locations that could not be listed

    @property
    def ok(self) -> bool:
        """Every copy was good as found."""
        return not self.problems and all(b.ok for b in self.backups)

    @property
    def healthy(self) -> bool:
        """Every copy is good now: good as found, or repaired."""
        return not self.problems and all(c.status in ("ok", "expired") or c.repaired
                                         for b in self.backups for c in b.copies)

    @property
    def repaired(self) -> list[str]:
        return [f"{b.dataset}/{b.backup_id}@{c.location}" for b in self.backups for c in b.copies if c.repaired]

    def as_dict(self) -> dict:
        return {"ok": self.ok, "healthy": self.healthy, "repaired": self.repaired, "problems": self.problems,
                "backups": [asdict(b) | {"ok": b.ok} for b in self.backups]}


def check_copy(plan: Plan, location: str, dataset: str, backup_id: str) -> tuple[CopyState, Manifest | None]:
    """Check one copy against its own manifest; never raises for what it finds."""
    state = CopyState(location, "ok")
    try:
        store = store_for(plan, location)
        manifest = read_manifest(store, dataset, backup_id)
    except ObjectNotFound:
        return CopyState(location, "missing", ["no manifest"]), None
    except ManifestError as exc:
        return CopyState(location, "damaged", [f"manifest: {exc.message}"]), None
    except StoreError as exc:
        return CopyState(location, "unreachable", [exc.message]), None
    try:
        data_key_for(plan, manifest)
    except ManifestError as exc:
        return CopyState(location, "damaged", [f"manifest: {exc.message}"]), None
    except KeyringError as exc:
        state = CopyState(location, "unverifiable", [f"manifest not authenticated: {exc.message}"])
    try:
        for obj in manifest.objects:
            problem = _object_problem(store, object_key(dataset, backup_id, obj.name), obj.size, obj.sha256)
            if problem:
                state.status = "damaged"
                state.problems.append(problem)
    except StoreError as exc:
        return CopyState(location, "unreachable", [exc.message]), manifest
    return state, manifest


def _object_problem(store, key: str, size: int, sha256: str) -> str | None:
    digest, done = hashlib.sha256(), 0
    try:
        with store.open(key) as reader:
            while chunk := reader.read(CHUNK):
                digest.update(chunk)
                done += len(chunk)
    except ObjectNotFound:
        return f"{key}: missing"
    except ObjectArchived:
        stored = store.stat(key).size
        return None if stored == size else f"{key}: {stored} bytes (archived), manifest says {size}"
    if done != size:
        return f"{key}: {done} bytes, manifest says {size}"
    if digest.hexdigest() != sha256:
        return f"{key}: sha256 {digest.hexdigest()} differs from the manifest's {sha256}"
    return None


def check_copies(plan: Plan, dataset: str | None = None, *, repair: bool = True,
                 now: datetime | None = None,
                 progress: Callable[[int, int, str], None] | None = None) -> CopiesReport:
    """Check (and with ``repair``, re-seed) every copy of every backup of ``dataset`` (or
    of every dataset). ``progress(done, total, what)`` is called after each copy checked
    (``total``: the copies listed so far). Raises only UnknownPlanName for a dataset not in
    the plan."""
    report = CopiesReport()
    now = now or datetime.now(UTC)
    done = total = 0
    for ds in [dataset] if dataset else sorted(plan.datasets):
        plan.dataset(ds)
        where = _listing(plan, ds, report)
        total += sum(len(ids) for ids in where.values())
        states: dict[str, dict[str, tuple[CopyState, Manifest | None]]] = {}
        for backup_id in sorted(set().union(*where.values()) if where else ()):
            states[backup_id] = {}
            for loc, ids in where.items():
                if backup_id in ids:
                    states[backup_id][loc] = check_copy(plan, loc, ds, backup_id)
                    done += 1
                    if progress:
                        progress(done, total, f"{ds}/{backup_id}@{loc}")
        manifests = [m for copies in states.values() for _, m in copies.values() if m is not None]
        held = _held(plan, ds, set(states))
        for backup_id, copies in states.items():
            report.backups.append(_settle(plan, ds, backup_id, copies, where, manifests, repair, now,
                                          held=backup_id in held))
    return report


def _listing(plan: Plan, dataset: str, report: CopiesReport) -> dict[str, set[str]]:
    """Backup ids with a manifest, per reachable location."""
    where: dict[str, set[str]] = {}
    for location in plan.storage:
        try:
            keys = [info.key for info in store_for(plan, location).list(manifests_prefix(dataset))]
        except DrfleetError as exc:
            report.problems.append(f"{location}: cannot list {dataset}: {exc.message}")
            continue
        ids = set()
        for key in keys:
            try:
                ids.add(parse_manifest_key(key)[1])
            except DrfleetError:
                report.problems.append(f"{location}: {key} is not a manifest key")
        where[location] = ids
    return where


def _held(plan: Plan, dataset: str, backup_ids: set[str]) -> set[str]:
    """Backups on legal hold; all of them when the holds cannot be read (the safe side)."""
    if not backup_ids:
        return set()
    from drfleet.datapath.holds import held_backup_ids
    try:
        return held_backup_ids(plan, dataset)
    except DrfleetError:
        return backup_ids


def _settle(plan, dataset, backup_id, copies, where, manifests, repair, now, *, held) -> BackupCopies:
    manifest = next((m for state, m in copies.values() if state.status == "ok" and m), None) \
        or next((m for _, m in copies.values() if m), None)
    policy = manifest.policy if manifest else None
    expected = _expected_locations(plan, dataset, policy)
    result = BackupCopies(dataset, backup_id, policy)
    for location in sorted(set(copies) | expected, key=lambda loc: (loc not in expected, loc)):
        if location in copies:
            state = copies[location][0]
        elif location in where:
            state = CopyState(location, "missing", ["no manifest"])
        else:
            state = CopyState(location, "unreachable", ["the store could not be listed"])
        state.expected = location in expected
        if state.status == "missing" and manifest and not held and _past_retention(plan, manifest, manifests, now):
            state.status, state.problems = "expired", ["past its policy's retention: not re-seeded"]
        result.copies.append(state)
    if repair:
        good = [s.location for s in result.copies if s.status == "ok"]
        home = _home(plan, dataset)
        good.sort(key=lambda loc: (loc != home, plan.storage[loc].offsite, loc))
        for state in result.copies:
            if state.status in BAD and good:
                _reseed(plan, dataset, backup_id, state, good)
            elif state.status in BAD:
                state.repair_error = "no good copy to re-seed from"
    return result


def _reseed(plan: Plan, dataset: str, backup_id: str, state: CopyState, sources: list[str]) -> None:
    """Re-seed one copy from the first good copy that can be read (a copy in a cold
    storage class cannot, until it is restored on the provider's side)."""
    errors = []
    for source in sources:
        try:
            copy_backup(plan, f"{dataset}/{backup_id}", state.location, source=source,
                        repair=state.status == "damaged")
            break
        except DrfleetError as exc:
            errors.append(f"from {source}: {str(exc).splitlines()[0]}")
    else:
        state.repair_error = "; ".join(errors)
        return
    after, _ = check_copy(plan, state.location, dataset, backup_id)
    if after.status == "ok":
        state.repaired = True
        state.problems.append(f"re-seeded from {source}")
    else:
        state.repair_error = "still " + after.status + ": " + "; ".join(after.problems)


def _expected_locations(plan: Plan, dataset: str, policy: str | None) -> set[str]:
    try:
        return {loc for loc, _ in copy_locations(plan, dataset, policy)} if policy else set()
    except DrfleetError:
        return set()  # a policy gone from the plan: only the copies that exist are checked


def _home(plan: Plan, dataset: str) -> str | None:
    try:
        return home_location(plan, dataset)
    except KeyError:
        return None


def _past_retention(plan: Plan, manifest: Manifest, manifests: list[Manifest], now: datetime) -> bool:
    """True when retention no longer keeps this backup anywhere: past its policy's window
    or versions, not the dataset's newest backup, and no other backup's parent."""
    newest = max((m.created_at, m.backup_id) for m in manifests)
    if (manifest.created_at, manifest.backup_id) == newest or \
            any(manifest.backup_id in m.parents for m in manifests):
        return False
    try:
        keep = plan.policy(manifest.dataset, manifest.policy).keep
    except DrfleetError:
        return False
    if keep.keep_seconds is not None:
        return (now - manifest.created_at).total_seconds() > keep.keep_seconds
    if keep.keep_versions is not None:
        series = sorted({(m.created_at, m.backup_id) for m in manifests if m.policy == manifest.policy},
                        reverse=True)
        return (manifest.created_at, manifest.backup_id) not in series[:keep.keep_versions]
    return False
