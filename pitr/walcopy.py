"""WAL wherever the plan sends the backups: copies of the archive to every location the
dataset's policies name, the copy lag, and what losing a region would cost right now.

The archive is written to the dataset's home store only (``wal push`` is PostgreSQL's
archive_command and must be quick). ``copy_wal`` then brings each other location up to
date, file by file, in the order docs/format.md prescribes: the sealed object first (its
stored SHA-256 checked before anything is written), the record last, put-if-absent. The
object is not re-encrypted; the record's wrapped data key is re-wrapped for the
destination's key category (an offsite location's own keys) and the record carries only
that category's entry, exactly as a backup copy's manifest does. The record's MAC does not
cover ``keys``, so it stays valid. A copy killed at any moment leaves an object without a
record (a leftover the WAL prune removes) or the whole file.

A region-only (``sovereign``) dataset's WAL never leaves its region: such locations are
not targets, and naming one explicitly raises SovereigntyViolation before anything is read.

Gauges (``drfleet.metrics``): ``drfleet_wal_copy_lag_seconds{dataset,location}`` (how much
newer the home archive's newest file is than the location's), and
``drfleet_wal_region_loss_seconds{dataset,region}`` (what losing the region now would lose).
"""

from __future__ import annotations

import hashlib
import logging
import time
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from typing import Any

from drfleet import metrics
from drfleet.backup_format.datakey import wrap_data_key
from drfleet.datapath.copy import check_sovereignty
from drfleet.datapath.locations import copy_locations, home_location, key_category_for_location, keyring_for, store_for
from drfleet.errors import DrfleetError
from drfleet.pitr.errors import WalRecordInvalid
from drfleet.pitr.wal import (
    WalRecord,
    _existing,
    _home_store,
    data_key_of,
    list_records,
    object_key,
    read_record,
    record_key,
)
from drfleet.plan.models import Plan
from drfleet.plan.rules import location_region
from drfleet.providers.storage import ObjectExists, ObjectNotFound, Store

logger = logging.getLogger("drfleet.wal")


@dataclass
class WalCopyResult:
    dataset: str
    location: str
    copied: list[str] = field(default_factory=list)
    already: int = 0
    bytes: int = 0
    seconds: float = 0.0
    lag_seconds: float = 0.0  # after the pass: home's newest pushed_at minus the location's

    def as_dict(self) -> dict[str, Any]:
        return {**asdict(self), "copied": len(self.copied), "copied_files": self.copied[-20:]}


def wal_locations(plan: Plan, dataset: str) -> list[str]:
    """The locations the archive of ``dataset`` is kept at: home first, then every other
    location any of its policies copies to, except those a region-only dataset may not use."""
    _home_store(plan, dataset)  # NotAPostgresDataset for other kinds
    out = [home_location(plan, dataset)]
    for policy in plan.dataset(dataset).policies:
        for location, _cold in copy_locations(plan, dataset, policy.name):
            if location in out:
                continue
            try:
                check_sovereignty(plan, dataset, location)
            except DrfleetError:
                continue
            out.append(location)
    return out


def wal_store(plan: Plan, dataset: str, location: str | None = None) -> Store:
    """The archive at ``location`` (home when None). Raises UnknownLocation for a location
    that is not in the plan."""
    if location is None:
        return _home_store(plan, dataset)
    check_sovereignty(plan, dataset, location)
    return store_for(plan, location)


def _newest_pushed_at(store: Store, dataset: str, names: set[str]) -> datetime | None:
    from drfleet.pitr.walnames import is_segment
    segments = sorted(n for n in names if is_segment(n))
    if not segments:
        return None
    return read_record(store, dataset, segments[-1]).pushed_at


def copy_wal(plan: Plan, dataset: str, location: str, *, source: Store | None = None) -> WalCopyResult:
    """Copy every archived file of ``dataset`` the location lacks from the home archive.

    Raises SovereigntyViolation / UnknownLocation before reading anything; WalRecordInvalid
    when a source object does not match its record (that file is not copied, nothing of it
    is visible at the destination); WalConflict when the destination holds a different file
    under the same name; WrongKey and store errors. Idempotent: a second pass copies nothing.
    """
    started = time.monotonic()
    check_sovereignty(plan, dataset, location)
    home = home_location(plan, dataset)
    if location == home:
        raise DrfleetError(f"{location} is {dataset}'s home location: its archive is the source, not a copy",
                           dataset=dataset, location=location)
    src = source or _home_store(plan, dataset)
    dst = store_for(plan, location)
    have = {name for name, _ in list_records(dst, dataset)}
    names = {name for name, _ in list_records(src, dataset)}
    result = WalCopyResult(dataset, location, already=len(names & have))
    category = key_category_for_location(plan, dataset, location)
    for name in sorted(names - have):  # oldest first: a cut pass leaves no hole behind it
        result.bytes += _copy_one(plan, src, dst, dataset, name, category, location)
        result.copied.append(name)
    src_newest = _newest_pushed_at(src, dataset, names)
    dst_newest = _newest_pushed_at(dst, dataset, have | set(result.copied))
    result.lag_seconds = (max(0.0, (src_newest - dst_newest).total_seconds()) if src_newest and dst_newest
                          else 0.0 if src_newest is None else float("inf"))
    result.seconds = round(time.monotonic() - started, 3)
    metrics.wal_copy_lag.labels(dataset, location).set(result.lag_seconds)
    if result.copied:
        logger.info("wal copy %s -> %s: %d file(s), %d bytes", dataset, location, len(result.copied), result.bytes)
    return result


def _copy_one(plan: Plan, src: Store, dst: Store, dataset: str, name: str, category: str, location: str) -> int:
    record = read_record(src, dataset, name)
    data_key = data_key_of(plan, record)  # checks the record's MAC
    key = object_key(dataset, name, record.object)
    try:
        sealed = src.get_bytes(key)
    except ObjectNotFound:
        raise WalRecordInvalid("the record names an object that is missing", dataset=dataset,
                               wal_file=name, object=key, store=src.name) from None
    if len(sealed) != record.stored_size or hashlib.sha256(sealed).hexdigest() != record.stored_sha256:
        raise WalRecordInvalid("archived object does not match its record's size/SHA-256; not copied",
                               dataset=dataset, wal_file=name, object=key, store=src.name)
    keys = [entry for entry in record.keys if entry.get("category") == category]
    if not keys:
        keys = [wrap_data_key(data_key, keyring_for(plan, category).active)]
    copy = WalRecord(**{**record.__dict__, "keys": keys})
    dst.put_bytes(key, sealed)
    try:
        dst.put_bytes(record_key(dataset, name), copy.to_bytes(), if_absent=True)
    except ObjectExists:
        # another pass copied it meanwhile; same content is fine, different raises WalConflict
        winner = _existing(dst, dataset, name, record.plaintext_sha256, record.plaintext_size)
        if winner is not None and winner.object != record.object:
            dst.delete(key)
    except BaseException:
        dst.delete(key)
        raise
    return len(sealed)


def copy_wal_everywhere(plan: Plan, dataset: str) -> list[WalCopyResult]:
    """``copy_wal`` to every location of ``wal_locations`` but home; one location failing
    does not stop the others (its error is raised after they ran)."""
    results, errors = [], []
    source = _home_store(plan, dataset)
    for location in wal_locations(plan, dataset)[1:]:
        try:
            results.append(copy_wal(plan, dataset, location, source=source))
        except DrfleetError as exc:
            errors.append(exc)
            logger.error("wal copy %s -> %s failed: %s", dataset, location, exc)
    if errors:
        raise errors[0]
    return results


@dataclass(frozen=True)
class RegionLoss:
    region: str
    loses_seconds: float | None  # None: the dataset's primary is not there, nothing is lost
    survivor: str | None         # the location a restore would use
    newest_surviving: str | None

    def describe(self, dataset: str) -> str:
        if self.loses_seconds is None:
            return f"if {self.region} is lost now, {dataset} loses nothing (its primary runs elsewhere)"
        if self.survivor is None:
            return f"if {self.region} is lost now, {dataset} loses everything: no WAL outside {self.region}"
        return (f"if {self.region} is lost now, {dataset} loses {self.loses_seconds:.0f} s "
                f"(newest WAL outside it: {self.newest_surviving} at {self.survivor})")


def region_losses(plan: Plan, dataset: str, *, now: datetime | None = None) -> list[RegionLoss]:
    """For every region of the plan: what ``dataset`` would lose if that region were lost
    now, counting only WAL archived at locations outside it (the primary's own region takes
    the primary, its home store and its unarchived WAL with it). Exports the gauge."""
    now = now or datetime.now(timezone.utc)
    ds = plan.dataset(dataset)
    out = []
    for region in plan.region_names:
        if region != ds.region:
            out.append(RegionLoss(region, None, None, None))
            metrics.wal_region_loss.labels(dataset, region).set(0)
            continue
        best: tuple[datetime, str, str] | None = None
        for location in wal_locations(plan, dataset):
            if location_region(plan.storage[location].model_dump()) == region:
                continue
            store = store_for(plan, location)
            names = {n for n, _ in list_records(store, dataset)}
            pushed = _newest_pushed_at(store, dataset, names)
            if pushed and (best is None or pushed > best[0]):
                from drfleet.pitr.walnames import is_segment
                best = (pushed, location, max(n for n in names if is_segment(n)))
        loses = max(0.0, (now - best[0]).total_seconds()) if best else float("inf")
        out.append(RegionLoss(region, loses, best[1] if best else None, best[2] if best else None))
        metrics.wal_region_loss.labels(dataset, region).set(loses)
    return out
