"""RPO now and over time, per dataset.

A recovery point is a backup whose latest verification succeeded in at least one
location (``state.verifications``), dated by the start time in its backup id. Point-in-time
recovery counts too: for a dataset with a ``mode: wal`` policy, the newest moment archived
WAL reaches from a base backup without a gap (``pitr.archive.newest_recoverable_time``);
for a MongoDB dataset with a ``mode: oplog`` policy, the last timestamp of the newest oplog
slice chained without a break to a dump (``oplog_point``). RPO lag now = now - the newest
of those. A dataset that has no recovery point at all is at risk since drfleet started
tracking it (``tracked_since``).
"""

from __future__ import annotations

import logging

from drfleet.backup_format.layout import backup_time
from drfleet.errors import DrfleetError
from drfleet.plan.models import Plan
from drfleet.state import verifications

logger = logging.getLogger("drfleet.report")


def target_or_none(fn, dataset: str) -> int | None:
    """``plan.rpo_for``/``plan.rto_for`` without raising when the plan names no target."""
    try:
        return fn(dataset)
    except KeyError:
        return None


def recovery_points(dataset: str, *, client=None) -> list[float]:
    """Epoch times of the dataset's verified recovery points, oldest first, no repeats."""
    points = set()
    for backup_id in verifications.verified_backup_ids(dataset, client=client):
        try:
            points.add(backup_time(backup_id).timestamp())
        except Exception:  # noqa: BLE001 - an id that is not ours is not a recovery point
            continue
    return sorted(points)


def _has_mode(plan: Plan, dataset: str, mode: str) -> bool:
    return any(p.mode == mode for p in plan.dataset(dataset).policies)


def wal_point(plan: Plan, dataset: str) -> float | None:
    """The newest moment archived WAL restores ``dataset`` to (None without a ``mode: wal``
    policy, a base backup, or a readable archive: the failure is logged, the report goes on)."""
    if plan.dataset(dataset).kind != "postgres" or not _has_mode(plan, dataset, "wal"):
        return None
    from drfleet.pitr.archive import newest_recoverable_time
    try:
        return newest_recoverable_time(plan, dataset)
    except (DrfleetError, OSError) as exc:
        logger.warning("WAL archive of %s unreadable for the report: %s", dataset, exc)
        return None


def oplog_point(plan: Plan, dataset: str) -> float | None:
    """The newest oplog timestamp (epoch seconds) reachable from the newest MongoDB dump
    through slices chained without a break; None without an ``oplog`` policy, a dump or
    slices after it."""
    if plan.dataset(dataset).kind != "mongodb" or not _has_mode(plan, dataset, "oplog"):
        return None
    from drfleet.pitr.oplog import dump_position, full_dumps, slices, ts_pair
    try:
        dumps = full_dumps(plan, dataset)
        if not dumps:
            return None
        position = dump_position(dumps[-1].manifest)
        reached = None
        for record in slices(plan, dataset):
            pos = record.manifest.source_position
            after = ts_pair(pos["after_ts"]) if pos.get("after_ts") else None
            last = ts_pair(pos["last_ts"])
            if last <= position:
                continue
            if after is None or after > position:
                break   # a slice that starts after where the chain got to: a gap
            position, reached = last, last
        return float(reached[0]) if reached else None
    except (DrfleetError, OSError, KeyError) as exc:
        logger.warning("oplog slices of %s unreadable for the report: %s", dataset, exc)
        return None


def region_loss(plan: Plan, dataset: str, *, now: float) -> dict[str, float | None] | None:
    """For a ``mode: wal`` dataset: seconds of writes losing each region now would cost,
    counting only WAL copied outside it (``pitr.walcopy.region_losses``): None for a region
    without the primary, ``"all"`` when no WAL is kept outside the primary's region. None
    without a WAL policy or a readable archive (logged)."""
    if not _has_mode(plan, dataset, "wal"):
        return None
    from datetime import datetime, timezone

    from drfleet.pitr.walcopy import region_losses
    try:
        losses = region_losses(plan, dataset, now=datetime.fromtimestamp(now, timezone.utc))
    except Exception as exc:  # noqa: BLE001 - a report of many datasets goes on
        logger.warning("WAL copies of %s unreadable for the report: %s", dataset, exc)
        return None
    return {x.region: "all" if x.loses_seconds == float("inf") else x.loses_seconds for x in losses}


def rpo_now(plan: Plan, dataset: str, *, now: float, points: list[float] | None = None,
            tracked_since: float | None = None, client=None) -> dict:
    """Target, newest recovery point, lag, margin (target - lag) and whether it is met."""
    points = recovery_points(dataset, client=client) if points is None else points
    newest, source = (points[-1], "verified backup") if points else (None, None)
    for name, point in (("archived WAL", wal_point(plan, dataset)), ("oplog", oplog_point(plan, dataset))):
        if point is not None and (newest is None or point > newest):
            newest, source = point, name
    target = target_or_none(plan.rpo_for, dataset)
    if newest is not None:
        lag = max(0.0, now - newest)
    elif tracked_since is not None:
        lag = max(0.0, now - tracked_since)
    else:
        lag = None
    margin = (target - lag) if (target is not None and lag is not None) else None
    return {"dataset": dataset, "region": plan.dataset(dataset).region, "target_seconds": target,
            "newest_recovery_point": newest, "source": source, "lag_seconds": lag, "margin_seconds": margin,
            "met": None if margin is None or newest is None else margin >= 0,
            "recovery_points": len(points), "if_region_lost": region_loss(plan, dataset, now=now)}


def freshness_series(points: list[float], start: float, end: float) -> list[tuple[float, float]]:
    """(time, age of the newest recovery point at that time) over [start, end]: a sawtooth
    that climbs until each new recovery point and drops to zero there. Before the first
    recovery point the age is unknown, so the series starts at it."""
    ordered = sorted(p for p in points if p <= end)
    earlier = [p for p in ordered if p < start]
    last = earlier[-1] if earlier else None
    series: list[tuple[float, float]] = [(start, start - last)] if last is not None else []
    for p in ordered[len(earlier):]:
        if last is not None:
            series.append((p, p - last))
        series.append((p, 0.0))
        last = p
    if last is not None:
        series.append((end, end - last))
    return series


def peak(series: list[tuple[float, float]], start: float, end: float) -> float | None:
    values = [v for t, v in series if start <= t <= end]
    return max(values) if values else None


def trend(earlier: float | None, later: float | None, *, tolerance: float = 0.1) -> str:
    """``improving`` when the later value is lower by more than ``tolerance`` (relative),
    ``worsening`` when higher, ``steady`` otherwise, ``-`` without two values."""
    if earlier is None or later is None:
        return "-"
    if earlier == 0:
        return "steady" if later == 0 else "worsening"
    change = (later - earlier) / earlier
    if change < -tolerance:
        return "improving"
    if change > tolerance:
        return "worsening"
    return "steady"
