"""File-level base backups on a real cluster archiving with `drfleet wal push`: a chain
full -> differential -> incremental restored at each point; delta restore repairing
exactly what was damaged; a broken chain found by verify and refused before restoring;
targets refused before any write."""

from __future__ import annotations

import os
import time

import pytest

from drfleet.datapath.catalog import find_backup
from drfleet.pitr.physical import run_physical_backup
from drfleet.pitr.recovery import restore_to

pytestmark = pytest.mark.timeout(600)


def _fingerprint(setup, port=None):
    return setup.sql("SELECT count(*), md5(coalesce(string_agg(id::text || ':' || v, ',' ORDER BY id), '')) "
                     "FROM items", port=port)[0]


def _change(setup, first, last):
    setup.sql(f"UPDATE items SET v = v || 'x' WHERE id BETWEEN {first} AND {last}")
    setup.sql(f"INSERT INTO items SELECT g, repeat('n', 50) FROM generate_series({last + 100000}, {last + 100200}) g")
    setup.sql("CHECKPOINT")


@pytest.fixture(scope="module")
def chain(pitr_module_setup):
    """full, differential, incremental; the data fingerprint at each."""
    s = pitr_module_setup
    s.sql("CREATE TABLE items (id int PRIMARY KEY, v text NOT NULL)")
    s.sql("INSERT INTO items SELECT g, repeat(md5(g::text), 4) FROM generate_series(1, 60000) g")
    s.sql("CREATE TABLE other (id int)")
    s.sql("INSERT INTO other SELECT generate_series(1, 50000)")
    s.sql("CHECKPOINT")
    time.sleep(2.1)  # older than the racy window of the next backup's comparison
    points = []
    full = run_physical_backup(s.plan, s.dataset, backup_type="full", workers=2)
    points.append((full, _fingerprint(s)))
    _change(s, 1, 500)
    diff = run_physical_backup(s.plan, s.dataset, backup_type="differential", workers=2)
    points.append((diff, _fingerprint(s)))
    _change(s, 501, 900)
    incr = run_physical_backup(s.plan, s.dataset, backup_type="incremental", workers=2)
    points.append((incr, _fingerprint(s)))
    s.sql("INSERT INTO items VALUES (999999, 'after every backup')")
    s.switch_and_wait()
    return points


def test_the_chain_references_unchanged_files(chain):
    (full, _), (diff, _), (incr, _) = chain
    assert full["backup_type"] == "full" and full["parents"] == [] and full["referenced_files"] == 0
    assert diff["backup_type"] == "differential" and diff["parents"] == [full["backup_id"]]
    assert incr["backup_type"] == "incremental" and incr["parents"] == [full["backup_id"], diff["backup_id"]]
    for later in (diff, incr):
        assert later["referenced_files"] > later["stored_files"] > 0
        assert later["stored_bytes_files"] < full["stored_bytes_files"] / 2


@pytest.mark.parametrize("point", [0, 1, 2], ids=["full", "differential", "incremental"])
def test_each_point_restores_to_its_fingerprint(pitr_module_setup, chain, point):
    s = pitr_module_setup
    backup, expected = chain[point]
    result = restore_to(s.plan, f"{s.dataset}/{backup['backup_id']}", s.new_dir(f"point-{point}"),
                        backup["stop_lsn"], plan_path=str(s.plan_path), workers=2)
    assert result["status"] == "recovered" and result["chain"][-1] == backup["backup_id"]
    assert _fingerprint(s, result["port"]) == expected
    from drfleet.pitr import cluster
    cluster.stop(result["data_dir"], mode="immediate")


def test_delta_restore_repairs_exactly_what_was_damaged(pitr_module_setup, chain):
    s = pitr_module_setup
    incr = chain[2][0]
    target = s.new_dir("delta")
    restore_to(s.plan, f"{s.dataset}/{incr['backup_id']}", target, "latest", plan_path=str(s.plan_path), start=False)
    relation = s.sql("SELECT pg_relation_filepath('items')")[0][0]
    other = s.sql("SELECT pg_relation_filepath('other')")[0][0]
    os.unlink(os.path.join(target, "PG_VERSION"))
    with open(os.path.join(target, relation), "r+b") as handle:
        handle.truncate(8192)
    with open(os.path.join(target, other), "r+b") as handle:
        handle.seek(100)
        handle.write(b"damage")
    with open(os.path.join(target, "stray-file"), "w") as handle:
        handle.write("not in the backup")
    os.unlink(os.path.join(target, "recovery.signal"))
    result = restore_to(s.plan, f"{s.dataset}/{incr['backup_id']}", target, incr["stop_lsn"],
                        plan_path=str(s.plan_path), delta=True, workers=2)
    assert result["delta"] is True
    assert result["written"] == sorted(["PG_VERSION", relation, other, "postgresql.auto.conf"])
    assert result["removed"] == ["stray-file"]
    assert _fingerprint(s, result["port"]) == chain[2][1]
