"""The achieved RPO: 0 while everything written is archived, the age of the newest
archived WAL once the primary has written more; exported as a Prometheus gauge."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

from prometheus_client import REGISTRY

from drfleet.pitr.rpo import lag_from, measure_archive_lag
from drfleet.pitr.walnames import Segment, parse_lsn

SIZE = 16 << 20


def test_nothing_written_since_the_newest_archived_segment_is_no_lag():
    now = datetime(2026, 1, 1, tzinfo=timezone.utc)
    newest = Segment(1, 5)
    assert lag_from((newest.segno + 1) * SIZE, 1, newest.name, now - timedelta(hours=3), now, SIZE) == 0.0


def test_writes_beyond_the_newest_archived_segment_are_at_risk_since_it_was_stored():
    now = datetime(2026, 1, 1, tzinfo=timezone.utc)
    newest = Segment(1, 5)
    lsn = (newest.segno + 1) * SIZE + 4096
    assert lag_from(lsn, 1, newest.name, now - timedelta(seconds=90), now, SIZE) == 90.0
    assert lag_from(lsn, 1, None, None, now, SIZE) == float("inf")


def test_the_lag_of_a_real_primary_is_measured_and_exported(pitr_setup):
    s = pitr_setup
    s.sql("CREATE TABLE t (id int)")
    s.sql("INSERT INTO t VALUES (1)")
    s.switch_and_wait()
    quiet = measure_archive_lag(s.plan, s.dataset)
    assert quiet.newest_archived is not None and quiet.rpo_target_seconds == 300
    s.sql("INSERT INTO t SELECT generate_series(1, 1000)")
    s.sql("CHECKPOINT")  # the write position past the new segment's start (commits are asynchronous here)
    busy = measure_archive_lag(s.plan, s.dataset)
    assert busy.lag_seconds >= 0 and parse_lsn("0/0") == 0
    assert busy.current_wal > busy.newest_archived
    assert any("archive_timeout" in w for w in busy.warnings)  # the fixture leaves it at 0
    assert REGISTRY.get_sample_value("drfleet_wal_archive_lag_seconds", {"dataset": s.dataset}) == busy.lag_seconds
    assert REGISTRY.get_sample_value("drfleet_wal_rpo_target_seconds", {"dataset": s.dataset}) == 300
