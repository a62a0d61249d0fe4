"""Point-in-time recovery against a real primary archiving with `drfleet wal push`:
rows before the target are there, none after; by time, by LSN and to the latest WAL."""

from __future__ import annotations

import json
import os
import time

import pytest
from click.testing import CliRunner

from drfleet.cli.main import main
from drfleet.pitr.basebackup import run_base_backup
from drfleet.pitr.recovery import restore_to

pytestmark = pytest.mark.timeout(600)


@pytest.fixture(scope="module")
def history(pitr_module_setup):
    """A base backup, then three batches of rows with a time and an LSN noted between them."""
    s = pitr_module_setup
    s.sql("CREATE TABLE events (id int PRIMARY KEY, batch int NOT NULL)")
    backup = run_base_backup(s.plan, s.dataset)
    s.sql("INSERT INTO events SELECT g, 1 FROM generate_series(1, 100) g")
    time.sleep(0.3)
    after_batch1 = s.sql("SELECT to_char(clock_timestamp() AT TIME ZONE 'UTC', "
                         "'YYYY-MM-DD\"T\"HH24:MI:SS.US\"Z\"')")[0][0]
    time.sleep(0.3)
    s.sql("INSERT INTO events SELECT g, 2 FROM generate_series(101, 200) g")
    after_batch2 = s.sql("SELECT pg_current_wal_insert_lsn()::text")[0][0]
    s.sql("INSERT INTO events SELECT g, 3 FROM generate_series(201, 300) g")
    s.switch_and_wait()
    return {"backup": backup, "time": after_batch1, "lsn": after_batch2}


def _batches(setup, port):
    return setup.sql("SELECT batch, count(*) FROM events GROUP BY batch ORDER BY batch", port=port)


def test_base_backup_records_its_wal_positions(pitr_module_setup, history):
    backup = history["backup"]
    assert backup["type"] == "basebackup" and backup["timeline"] == 1
    assert backup["start_wal"].startswith("00000001") and backup["start_wal"] <= backup["stop_wal"]
    from drfleet.datapath.catalog import find_backup
    manifest = find_backup(pitr_module_setup.plan, backup["backup_id"]).manifest
    assert manifest.kind == "postgres" and manifest.labels["type"] == "basebackup"
    assert manifest.source_position["start_lsn"] == backup["start_lsn"]


def test_restore_to_a_time_has_every_row_before_it_and_none_after(pitr_module_setup, history):
    s = pitr_module_setup
    result = restore_to(s.plan, s.dataset, s.new_dir("at-time"), history["time"], plan_path=str(s.plan_path))
    assert result["status"] == "recovered"
    assert _batches(s, result["port"]) == [(1, 100)]
    s.sql("INSERT INTO events VALUES (1000, 9)", port=result["port"])  # promoted: accepts writes


def test_restore_to_an_lsn_stops_there(pitr_module_setup, history):
    s = pitr_module_setup
    result = restore_to(s.plan, s.dataset, s.new_dir("at-lsn"), history["lsn"], plan_path=str(s.plan_path))
    assert _batches(s, result["port"]) == [(1, 100), (2, 100)]


def test_restore_latest_through_the_cli_has_every_archived_row(pitr_module_setup, history):
    s = pitr_module_setup
    target = s.new_dir("at-latest")
    run = CliRunner().invoke(main, ["restore", s.dataset, "--to", target, "--at", "latest",
                                    "--json", "--plan", str(s.plan_path)])
    assert run.exit_code == 0, run.output
    result = json.loads(run.stdout)
    assert _batches(s, result["port"]) == [(1, 100), (2, 100), (3, 100)]
    assert os.path.exists(os.path.join(target, "recovery.signal")) is False  # recovery finished


def test_a_target_before_every_base_backup_is_refused(pitr_module_setup, history):
    from drfleet.pitr.errors import NoBaseBackup
    s = pitr_module_setup
    with pytest.raises(NoBaseBackup) as caught:
        restore_to(s.plan, s.dataset, s.new_dir("too-early"), "2001-01-01T00:00:00Z", plan_path=str(s.plan_path))
    assert "auth-db" in str(caught.value)
    assert not os.path.exists(s.new_dir("too-early"))


def test_a_deep_verify_of_a_base_backup_rereads_it_in_full_and_says_how_to_prove_it(pitr_module_setup, history):
    from drfleet.datapath.verify import verify_backup
    report = verify_backup(pitr_module_setup.plan, history["backup"]["backup_id"], depth="deep")
    assert report["ok"] is True, report["problems"]
    assert "drfleet restore DATASET --to DIR --at latest" in report["note"]


def test_prune_deletes_only_the_wal_that_no_kept_base_backup_needs(pitr_module_setup, history, redis_url):
    import redis

    from drfleet.datapath.locations import home_location
    from drfleet.pitr.prune import prune_location
    from drfleet.pitr.wal import _home_store, list_records

    s = pitr_module_setup
    store = _home_store(s.plan, s.dataset)
    before = sorted(name for name, _ in list_records(store, s.dataset))
    start = history["backup"]["start_wal"]
    assert any(name < start for name in before if len(name) == 24), "WAL older than the base backup exists"
    report = prune_location(s.plan, home_location(s.plan, s.dataset), dry_run=False,
                            client=redis.Redis.from_url(redis_url))
    after = sorted(name for name, _ in list_records(store, s.dataset))
    segments = [name for name in after if len(name) == 24]
    assert segments and min(segments) == start
    assert set(before) - set(after) == {name for name in before if len(name) == 24 and name < start}
    assert f"{s.dataset}/wal/{sorted(before)[0]}" in report.deleted
    result = restore_to(s.plan, s.dataset, s.new_dir("after-wal-prune"), "latest", plan_path=str(s.plan_path))
    assert [row[0] for row in _batches(s, result["port"])] == [1, 2, 3]
