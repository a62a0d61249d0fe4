"""The achieved RPO of a WAL-archived dataset, measured and exported as metrics.

What a crash of the primary would lose right now is everything written since the last
archived WAL file: if the primary has written since the newest archived segment ended,
the lag is the age of that newest archived file (its record's ``pushed_at``); if it has
not, nothing is at risk and the lag is 0. The primary's view (``pg_stat_archiver``:
last archived file and time, failures) is reported beside the store's, and the lag is
compared with the dataset's RPO target. ``archive_timeout`` must be below the target for
an idle-but-not-silent primary to meet it; that is reported too.

Gauges (``drfleet.metrics``):
``drfleet_wal_archive_lag_seconds{dataset}``, ``drfleet_wal_rpo_target_seconds{dataset}``,
``drfleet_wal_last_archived_timestamp_seconds{dataset}``, ``drfleet_wal_archive_failures{dataset}``.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from datetime import datetime, timezone
from typing import Any

from drfleet import metrics
from drfleet.plan.models import Plan


@dataclass(frozen=True)
class ArchiveLag:
    dataset: str
    lag_seconds: float
    rpo_target_seconds: int | None
    within_target: bool
    current_wal: str | None
    newest_archived: str | None
    newest_archived_at: str | None
    server_last_archived: str | None
    server_failed_count: int | None
    archive_timeout_seconds: int | None
    warnings: tuple[str, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "warnings": list(self.warnings)}


def lag_from(current_lsn: int, current_timeline: int, newest_name: str | None, newest_at: datetime | None,
             now: datetime, segment_size: int) -> float:
    """The lag given the primary's position and the newest archived segment (pure)."""
    from drfleet.pitr.walnames import Segment
    if newest_name is None or newest_at is None:
        return float("inf")
    newest = Segment.parse(newest_name, segment_size)
    end_of_newest = (newest.segno + 1) * segment_size
    if current_timeline == newest.timeline and current_lsn <= end_of_newest:
        return 0.0  # nothing written beyond what is archived
    return max(0.0, (now - newest_at).total_seconds())


def measure_archive_lag(plan: Plan, dataset: str, *, conn: str | None = None,
                        now: datetime | None = None) -> ArchiveLag:
    """Measure, export and return the archive lag of ``dataset``. Raises what connecting
    to the primary and reading the store raise."""
    import psycopg

    from drfleet.datapath.sources import source_for
    from drfleet.pitr.archive import scan_archive
    from drfleet.pitr.wal import _home_store, read_record
    from drfleet.pitr.walnames import parse_lsn

    conn = conn or source_for(plan, dataset)[1]
    with psycopg.connect(conn, connect_timeout=10, autocommit=True) as db:
        lsn, walfile = db.execute("SELECT pg_current_wal_lsn()::text, pg_walfile_name(pg_current_wal_lsn())").fetchone()
        last_wal, failed = db.execute("SELECT last_archived_wal, failed_count FROM pg_stat_archiver").fetchone()
        timeout, = db.execute("SELECT setting::int FROM pg_settings WHERE name = 'archive_timeout'").fetchone()
    store = _home_store(plan, dataset)
    state = scan_archive(plan, dataset, store=store, read_histories=False)
    newest = state.newest()
    newest_at = read_record(store, dataset, newest.name).pushed_at if newest else None
    now = now or datetime.now(timezone.utc)
    lag = lag_from(parse_lsn(lsn), int(walfile[:8], 16), newest.name if newest else None, newest_at, now,
                   state.segment_size)
    try:
        target = plan.rpo_for(dataset)
    except (KeyError, TypeError):
        target = None
    warnings = []
    if target is not None and (timeout == 0 or timeout >= target):
        warnings.append(f"archive_timeout is {timeout}s: a primary writing little may not switch WAL files "
                        f"within the {target}s RPO target; set archive_timeout below it")
    if failed:
        warnings.append(f"the archiver has failed {failed} time(s) (pg_stat_archiver)")
    metrics.archive_lag.labels(dataset).set(lag)
    if target is not None:
        metrics.rpo_target.labels(dataset).set(target)
    if newest_at:
        metrics.last_archived.labels(dataset).set(newest_at.timestamp())
    metrics.archive_failures.labels(dataset).set(failed or 0)
    return ArchiveLag(dataset=dataset, lag_seconds=lag if lag != float("inf") else -1.0,
                      rpo_target_seconds=target, within_target=target is None or lag <= target,
                      current_wal=walfile, newest_archived=newest.name if newest else None,
                      newest_archived_at=newest_at.isoformat() if newest_at else None,
                      server_last_archived=last_wal, server_failed_count=failed,
                      archive_timeout_seconds=timeout, warnings=tuple(warnings))
