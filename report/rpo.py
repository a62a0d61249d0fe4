"""RPO now and over time, per dataset.

A recovery point is a backup whose latest verification succeeded in at least one
location (``state.verifications``), dated by the start time in its backup id; archived
WAL counts too when the PITR module provides ``pitr.newest_recovery_time(plan, dataset)``
(an epoch, a datetime or None). RPO lag now = now - newest recovery point. A dataset that
has no recovery point at all is at risk since drfleet started tracking it (``tracked_since``).
"""

from __future__ import annotations

import importlib
import logging
from datetime import datetime

from drfleet.backup_format.layout import backup_time
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


def archived_wal_point(plan: Plan, dataset: str) -> float | None:
    """The newest point archived WAL reaches, if the PITR module offers one."""
    try:
        pitr = importlib.import_module("pitr")
    except ImportError:
        return None
    fn = getattr(pitr, "newest_recovery_time", None)
    if not callable(fn):
        return None
    try:
        value = fn(plan, dataset)
    except Exception as exc:  # noqa: BLE001 - the report still shows backups
        logger.warning("pitr.newest_recovery_time(%s) failed: %s", dataset, exc)
        return None
    if isinstance(value, datetime):
        return value.timestamp()
    return float(value) if value is not None else None


def rpo_now(plan: Plan, dataset: str, *, now: float, points: list[float] | None = None,
            tracked_since: float | None = None, client=None) -> dict:
    """Target, newest recovery point, lag, margin (target - lag) and whether it is met."""
    points = recovery_points(dataset, client=client) if points is None else points
    newest = points[-1] if points else None
    wal = archived_wal_point(plan, dataset)
    if wal is not None and (newest is None or wal > newest):
        newest = wal
    target = target_or_none(plan.rpo_for, dataset)
    if newest is not None:
        lag = max(0.0, now - newest)
    elif tracked_since is not None:
        lag = max(0.0, now - tracked_since)
    else:
        lag = None
    margin = (target - lag) if (target is not None and lag is not None) else None
    return {"dataset": dataset, "region": plan.dataset(dataset).region, "target_seconds": target,
            "newest_recovery_point": newest, "lag_seconds": lag, "margin_seconds": margin,
            "met": None if margin is None or newest is None else margin >= 0,
            "recovery_points": len(points)}


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
