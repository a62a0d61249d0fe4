"""File-level base backups on a real cluster archiving with `drfleet wal push`: a chain
full -> differential -> incremental restored at each point; delta restore repairing
exactly what was damaged; a broken chain found by verify and refused before restoring;
targets refused before any write."""

from __future__ import annotations

import json
import os
import time

import pytest
from click.testing import CliRunner

from drfleet.cli.main import main
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


@pytest.mark.parametrize("point", [pytest.param(0, id="full", marks=pytest.mark.slow),
                                   pytest.param(1, id="differential", marks=pytest.mark.slow),
                                   pytest.param(2, id="incremental")])
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
    run = CliRunner().invoke(main, ["restore", f"{s.dataset}/{incr['backup_id']}", "--to", target, "--at",
                                    incr["stop_lsn"], "--delta", "--workers", "2", "--plan", str(s.plan_path), "--json"])
    assert run.exit_code == 0, run.output
    result = json.loads(run.output)
    assert result["delta"] is True
    assert result["written"] == sorted(["PG_VERSION", relation, other, "postgresql.auto.conf"])
    assert result["removed"] == ["stray-file"]
    assert _fingerprint(s, result["port"]) == chain[2][1]


# --- broken chains: found by verify, refused before anything is written ----------------------

def _object_path(setup, backup_id, name="data-0000.zst.dfe"):
    return setup.store / "datasets" / setup.dataset / "backups" / backup_id / name


def _manifest_path(setup, backup_id):
    return setup.store / "datasets" / setup.dataset / "manifests" / f"{backup_id}.json"


def test_a_missing_object_in_the_middle_of_the_chain_is_found_and_refused(pitr_module_setup, chain):
    from drfleet.datapath.errors import IntegrityError
    from drfleet.datapath.verify import verify_backup
    s = pitr_module_setup
    (_, _), (diff, _), (incr, _) = chain
    piece = _object_path(s, diff["backup_id"])
    aside = piece.with_name("aside")
    piece.rename(aside)
    try:
        report = verify_backup(s.plan, incr["backup_id"], depth="quick")
        assert not report["ok"] and diff["backup_id"] in report["problems"][0]
        target = s.new_dir("refused-missing")
        with pytest.raises(IntegrityError) as caught:
            restore_to(s.plan, f"{s.dataset}/{incr['backup_id']}", target, "latest", plan_path=str(s.plan_path))
        assert caught.value.facts["backup_id"] == diff["backup_id"]
        assert not os.path.exists(target)
    finally:
        aside.rename(piece)
    assert verify_backup(s.plan, incr["backup_id"], depth="full")["ok"]


def test_a_corrupt_parent_is_found_by_a_full_verify(pitr_module_setup, chain):
    from drfleet.datapath.verify import verify_backup
    s = pitr_module_setup
    (full, _), _, (incr, _) = chain
    piece = _object_path(s, full["backup_id"])
    original = piece.read_bytes()
    damaged = bytearray(original)
    damaged[len(damaged) // 2] ^= 0xFF
    piece.write_bytes(bytes(damaged))
    try:
        report = verify_backup(s.plan, incr["backup_id"], depth="full")
        assert not report["ok"]
        assert any(full["backup_id"] in problem for problem in report["problems"])
    finally:
        piece.write_bytes(original)


def test_a_pruned_or_tampered_parent_is_refused_before_any_write(pitr_module_setup, chain):
    from drfleet.backup_format.errors import ManifestTampered
    from drfleet.datapath.tree_restore import ChainBroken
    s = pitr_module_setup
    _, (diff, _), (incr, _) = chain
    manifest = _manifest_path(s, diff["backup_id"])
    original = manifest.read_bytes()
    target = s.new_dir("refused-chain")
    try:
        manifest.unlink()  # pruned
        with pytest.raises(ChainBroken) as caught:
            restore_to(s.plan, f"{s.dataset}/{incr['backup_id']}", target, "latest", plan_path=str(s.plan_path))
        assert caught.value.facts["missing"] == diff["backup_id"]
        assert caught.value.facts["backup_id"] == incr["backup_id"]
        assert not os.path.exists(target)
        manifest.write_bytes(original.replace(b'"backup_type":"differential"', b'"backup_type":"differentiaX"'))
        with pytest.raises(ManifestTampered):
            restore_to(s.plan, f"{s.dataset}/{incr['backup_id']}", target, "latest", plan_path=str(s.plan_path))
        assert not os.path.exists(target)
    finally:
        manifest.write_bytes(original)


def test_retention_keeps_the_parents_of_a_kept_incremental(pitr_module_setup, chain):
    from datetime import datetime, timedelta, timezone

    from drfleet.datapath.retention import Candidate, decide
    s = pitr_module_setup
    now = datetime.now(timezone.utc) + timedelta(days=30)
    records = [find_backup(s.plan, b["backup_id"]).manifest for b, _ in chain]
    candidates = [Candidate(m.dataset, m.backup_id, m.policy, now - timedelta(days=20 if i < 2 else 0),
                            tuple(m.parents)) for i, m in enumerate(records)]
    verdicts = {v.backup.backup_id: v for v in decide(candidates, s.plan, now).verdicts}
    assert all(v.keep for v in verdicts.values())
    for parent in records[:2]:
        assert any(r == f"needed by incremental {records[2].backup_id}" for r in verdicts[parent.backup_id].reasons)


# --- delta restore targets refused before any write --------------------------------------------

def test_a_delta_restore_into_another_cluster_is_refused(pitr_module_setup, chain, tmp_path):
    import struct

    from drfleet.pitr.errors import DeltaTargetRefused
    s = pitr_module_setup
    incr = chain[2][0]
    other = tmp_path / "other"
    (other / "global").mkdir(parents=True)
    (other / "PG_VERSION").write_text("15\n")
    (other / "global" / "pg_control").write_bytes(struct.pack("=Q", 7000000000000000001) + bytes(100))
    before = sorted(p.name for p in other.rglob("*"))
    with pytest.raises(DeltaTargetRefused) as caught:
        restore_to(s.plan, f"{s.dataset}/{incr['backup_id']}", str(other), "latest",
                   plan_path=str(s.plan_path), delta=True)
    facts = caught.value.facts
    assert facts["directory_system_identifier"] == "7000000000000000001"
    assert facts["backup_system_identifier"] == find_backup(s.plan, incr["backup_id"]).manifest.fingerprint[
        "system_identifier"]
    assert facts["data_dir"] == str(other)
    assert sorted(p.name for p in other.rglob("*")) == before


def test_a_delta_restore_into_a_running_server_is_refused(pitr_module_setup, chain):
    from drfleet.pitr.errors import DeltaTargetRefused
    s = pitr_module_setup
    incr = chain[2][0]
    with pytest.raises(DeltaTargetRefused) as caught:
        restore_to(s.plan, f"{s.dataset}/{incr['backup_id']}", str(s.data_dir), "latest",
                   plan_path=str(s.plan_path), delta=True)
    assert caught.value.facts["pid"] > 0 and caught.value.facts["data_dir"] == str(s.data_dir)
    assert _fingerprint(s)[0] > 0  # the primary still serves


def test_a_standby_that_is_not_in_recovery_is_refused(pitr_module_setup, chain):
    from drfleet.pitr.errors import NotAStandby
    s = pitr_module_setup
    manifests = set(os.listdir(_manifest_path(s, "x").parent))
    backups = set(os.listdir(_object_path(s, "x").parent.parent))
    with pytest.raises(NotAStandby) as caught:
        run_physical_backup(s.plan, s.dataset, backup_type="incremental", standby_conn=s.dsn())
    assert caught.value.facts["standby_data_directory"] == str(s.data_dir)
    assert set(os.listdir(_manifest_path(s, "x").parent)) == manifests
    assert set(os.listdir(_object_path(s, "x").parent.parent)) == backups


# --- from a standby; killed mid-backup ------------------------------------------------------------

@pytest.mark.slow
def test_a_backup_from_a_standby_restores_and_promotes(pitr_module_setup, chain, tmp_path, monkeypatch):
    from drfleet.pitr import cluster
    from drfleet.pitr.standby import create_standby
    from tests.fixtures.util import wait_for
    s = pitr_module_setup
    monkeypatch.setenv("DRFLEET_HOME", str(tmp_path / "home"))
    standby = create_standby(s.plan, s.dataset, data_dir=s.new_dir("standby"))
    try:
        s.sql("INSERT INTO items SELECT g, 'from the standby' FROM generate_series(200000, 200500) g")
        expected = _fingerprint(s)
        wait_for(lambda: _fingerprint(s, standby.port) == expected, timeout=60, what="the standby to catch up")
        from drfleet.plan.loader import load_plan
        text = s.plan_path.read_text().replace(
            "    key: auth\n", "    key: auth\n    standby_connection: {env: PITR_STANDBY_URL}\n", 1) + (
            "      - {name: standby-incr, trigger: hourly, keep: 2 days, copies: [home-region], "
            "physical: incremental, from_standby: true, workers: 2}\n")
        (tmp_path / "plan.yaml").write_text(text)
        monkeypatch.setenv("PITR_STANDBY_URL", s.dsn(standby.port))
        plan = load_plan(tmp_path / "plan.yaml")
        backup = run_physical_backup(plan, s.dataset, backup_type="incremental", policy="standby-incr")
        assert backup["from_standby"] is True and backup["backup_type"] == "incremental"
        result = restore_to(s.plan, f"{s.dataset}/{backup['backup_id']}", s.new_dir("from-standby"),
                            backup["stop_lsn"], plan_path=str(s.plan_path))
        assert result["status"] == "recovered"
        assert s.sql("SELECT pg_is_in_recovery()", port=result["port"]) == [(False,)]
        assert _fingerprint(s, result["port"]) == expected
        s.sql("INSERT INTO items VALUES (300000, 'written after promotion')", port=result["port"])
        cluster.stop(result["data_dir"], mode="immediate")
    finally:
        cluster.stop(standby.data_dir, mode="immediate")


_KILLED_CHILD = """
import sys, time
from drfleet.plan.loader import load_plan
from drfleet.pitr import physical
store = physical.PieceWriter._store
def stored_then_wait(self, number, piece):
    store(self, number, piece)
    print("STORED", flush=True)
    time.sleep(120)
physical.PieceWriter._store = stored_then_wait
physical.run_physical_backup(load_plan(sys.argv[1]), sys.argv[2], backup_type="incremental", workers=1)
"""


@pytest.mark.slow
def test_sigkill_mid_incremental_leaves_nothing_visible(pitr_module_setup, chain):
    import signal
    import subprocess
    import sys

    from drfleet.pitr.basebackup import list_base_backups
    s = pitr_module_setup
    s.sql("UPDATE items SET v = v || 'k'")  # > one piece of changed files
    s.sql("CHECKPOINT")
    before = [r.backup_id for r in list_base_backups(s.plan, s.dataset)]
    child = subprocess.Popen([sys.executable, "-c", _KILLED_CHILD, str(s.plan_path), s.dataset],
                             stdout=subprocess.PIPE, text=True)
    try:
        assert child.stdout.readline().strip() == "STORED"
        assert s.sql("SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'client backend' "
                     "AND state IS NOT NULL")[0][0] >= 2  # the child's backup connection is open
    finally:
        child.send_signal(signal.SIGKILL)
        child.wait(30)
    assert [r.backup_id for r in list_base_backups(s.plan, s.dataset)] == before
    run = CliRunner().invoke(main, ["wal", "basebackup", s.dataset, "--local", "--type", "incremental",
                                    "--workers", "2", "--plan", str(s.plan_path)])
    assert run.exit_code == 0, run.output
    after = json.loads(run.output)
    assert after["parents"][-1] == before[-1]
    from drfleet.datapath.verify import verify_backup
    assert verify_backup(s.plan, after["backup_id"], depth="full")["ok"]


def test_a_restore_without_at_names_the_command_that_restores_a_base_backup(pitr_module_setup, chain, tmp_path):
    from drfleet.datapath.errors import RestoreTargetInvalid
    from drfleet.datapath.restore import restore_backup
    s = pitr_module_setup
    incr = chain[2][0]
    with pytest.raises(RestoreTargetInvalid) as caught:
        restore_backup(s.plan, f"{s.dataset}/{incr['backup_id']}", str(tmp_path / "t"))
    assert "--at latest" in caught.value.hint and not (tmp_path / "t").exists()
