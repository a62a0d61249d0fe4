"""The report tells the truth about point-in-time recovery, against a real primary that
archives its WAL with ``drfleet wal push``: archived WAL from a base backup is the newest
recovery point (a test that fails if the WAL point is ignored), and point-in-time drills
restore the base backup plus WAL to a random one of several points and compare the result
with the fingerprint taken at that very point."""

from __future__ import annotations

import random
import time

import pytest

from drfleet.datapath.backup import run_backup
from drfleet.datapath.catalog import find_backup
from drfleet.pitr.archive import newest_recoverable_time
from drfleet.pitr.basebackup import run_base_backup
from drfleet.pitr.wal import _home_store, list_records
from drfleet.pitr.walnames import parse_lsn, segment_of_lsn
from drfleet.providers.datasources import open_source
from drfleet.report.build import build_report
from drfleet.report.rpo import rpo_now, wal_point
from drfleet.runbooks.pitr_drills import pitr_drill
from tests.fixtures.util import wait_for

pytestmark = pytest.mark.timeout(600)


@pytest.fixture(scope="module")
def points(pitr_module_setup):
    """A base backup, then three batches of rows; after each, the WAL position and the
    fingerprint of the database at that moment; all WAL archived."""
    s = pitr_module_setup
    s.sql("CREATE TABLE ledger (id int PRIMARY KEY, batch int NOT NULL, note text)")
    run_base_backup(s.plan, s.dataset)
    out = []
    for batch in (1, 2, 3):
        s.sql(f"INSERT INTO ledger SELECT g, {batch}, md5(g::text) FROM generate_series({batch * 100}, "
              f"{batch * 100 + 99}) g")
        lsn = s.sql("SELECT pg_current_wal_insert_lsn()::text")[0][0]
        out.append((lsn, open_source("postgres").fingerprint(s.dsn())))
    s.switch_and_wait()
    return out


@pytest.fixture
def state(redis_url, monkeypatch, pitr_module_setup):
    monkeypatch.setenv("DRFLEET_STATE_URL", redis_url)
    monkeypatch.setenv("DRFLEET_PLAN", str(pitr_module_setup.plan_path))
    return redis_url


def test_archived_wal_is_the_newest_recovery_point_even_without_a_verified_backup(pitr_module_setup, points, state):
    s = pitr_module_setup
    plan = s.plan
    reached = newest_recoverable_time(plan, s.dataset)
    assert reached is not None and reached <= time.time()
    assert wal_point(plan, s.dataset) == reached
    now = time.time()
    row = rpo_now(plan, s.dataset, now=now, points=[])            # no verified backup at all
    assert (row["newest_recovery_point"], row["source"]) == (reached, "archived WAL")
    assert row["met"] is True and row["lag_seconds"] == pytest.approx(now - reached)
    older = rpo_now(plan, s.dataset, now=now, points=[now - 6 * 3600])   # a 6-hour-old verified dump
    assert older["source"] == "archived WAL" and older["met"] is True
    report = build_report(plan, now=now)
    assert not any("RPO of auth-db" in line for line in report["unmet"]), report["unmet"]


def test_a_point_in_time_drill_matches_the_fingerprint_taken_at_a_random_point(pitr_module_setup, points, state):
    s = pitr_module_setup
    lsn, fingerprint = random.choice(points)
    record = pitr_drill(s.plan, s.dataset, at=lsn, expected=fingerprint)
    assert record.result == "passed", record.reason
    assert record.scenario == "pitr" and record.rto_seconds > 0 and record.rpo_seconds is not None
    assert [st.name.split(": ", 1)[1].split(" to ")[0] for st in record.steps] == [
        "restore base backup + WAL", "compare fingerprint", "remove scratch cluster"]


def test_a_point_in_time_drill_against_another_points_fingerprint_fails_naming_the_table(
        pitr_module_setup, points, state):
    s = pitr_module_setup
    (first_lsn, _), (_, second_fingerprint) = points[0], points[1]
    record = pitr_drill(s.plan, s.dataset, at=first_lsn, expected=second_fingerprint)
    assert record.result == "failed"
    assert "compare fingerprint failed" in record.reason and "ledger" in record.reason, record.reason


def test_a_random_point_drill_uses_a_logical_backups_position_and_fingerprint(pitr_module_setup, points, state):
    s = pitr_module_setup
    backup = run_backup(s.plan, s.dataset, "hourly", region="eu-central")
    position = find_backup(s.plan, f"{s.dataset}/{backup['backup_id']}").manifest.source_position["lsn"]
    needed = segment_of_lsn(parse_lsn(position), 1).name
    for n in (1, 2):                                                  # WAL past the dump's position, archived
        s.sql(f"INSERT INTO ledger VALUES ({9000 + n}, 9, 'after the dump')")
        s.switch_and_wait()
    wait_for(lambda: needed in {name for name, _ in list_records(_home_store(s.plan, s.dataset), s.dataset)},
             timeout=60, what=f"{needed} in the archive")
    record = pitr_drill(s.plan, s.dataset, rng=random.Random(7))
    assert record.result == "passed", record.reason
    assert record.datasets[0].backup_id == backup["backup_id"]
