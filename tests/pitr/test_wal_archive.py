"""The WAL archive without a server: push and fetch round trips, idempotent re-push,
refusing a different file under an archived name, damaged objects, gaps, and retention."""

from __future__ import annotations

import os
import types

import pytest
from click.testing import CliRunner

from drfleet.cli.main import main
from drfleet.pitr.archive import check_archive, prune_wal, wal_needed_from
from drfleet.pitr.errors import WalConflict, WalNotArchived, WalRecordInvalid
from drfleet.pitr.wal import _home_store, list_objects, list_records, push_wal, read_record, read_wal, record_key
from drfleet.pitr.walnames import Segment

SEGMENT_SIZE = 16 << 20


def _segment_file(directory, name: str, seed: int = 0) -> str:
    path = os.path.join(directory, name)
    with open(path, "wb") as handle:
        handle.write(bytes([seed % 256]) * 4096 + os.urandom(4096) + bytes(SEGMENT_SIZE - 8192))
    return path


def _push_cli(setup, path):
    return CliRunner().invoke(main, ["wal", "push", "--plan", str(setup.plan_path), "--dataset", setup.dataset, path])


def _fetch_cli(setup, name, destination):
    return CliRunner().invoke(main, ["wal", "fetch", "--plan", str(setup.plan_path), "--dataset", setup.dataset,
                                     name, destination])


def test_a_pushed_segment_comes_back_byte_for_byte_and_is_stored_encrypted(wal_archive_setup, tmp_path):
    s = wal_archive_setup
    path = _segment_file(tmp_path, "000000010000000000000003")
    assert _push_cli(s, path).exit_code == 0
    restored = tmp_path / "restored" / "RECOVERYXLOG"
    restored.parent.mkdir()
    run = _fetch_cli(s, "000000010000000000000003", str(restored))
    assert run.exit_code == 0, run.output
    assert restored.read_bytes() == open(path, "rb").read()
    [key] = list(list_objects(_home_store(s.plan, s.dataset), s.dataset))
    stored = (s.store / key).read_bytes()
    assert open(path, "rb").read()[4096:8192] not in stored
    assert key.startswith("datasets/auth-db/wal/00000001/000000010000000000000003.")


def test_pushing_the_same_segment_twice_is_harmless(wal_archive_setup, tmp_path):
    s = wal_archive_setup
    path = _segment_file(tmp_path, "000000010000000000000004")
    first = push_wal(s.plan, s.dataset, path)
    second = push_wal(s.plan, s.dataset, path)
    assert (first.status, second.status) == ("archived", "already-archived")
    store = _home_store(s.plan, s.dataset)
    assert len(list(list_objects(store, s.dataset))) == 1


def test_a_different_segment_under_an_archived_name_is_refused_loudly(wal_archive_setup, tmp_path):
    s = wal_archive_setup
    original = _segment_file(tmp_path, "000000010000000000000005", seed=1)
    push_wal(s.plan, s.dataset, original)
    other_dir = tmp_path / "other"
    other_dir.mkdir()
    impostor = _segment_file(other_dir, "000000010000000000000005", seed=2)
    with pytest.raises(WalConflict):
        push_wal(s.plan, s.dataset, impostor)
    run = _push_cli(s, impostor)
    assert run.exit_code == 1
    assert "a different 000000010000000000000005 is already archived" in run.output
    assert read_wal(s.plan, s.dataset, "000000010000000000000005") == open(original, "rb").read()


def test_fetching_what_is_not_archived_exits_non_zero_and_writes_nothing(wal_archive_setup, tmp_path):
    s = wal_archive_setup
    run = _fetch_cli(s, "00000002.history", str(tmp_path / "RECOVERYHISTORY"))
    assert run.exit_code == 1
    assert "not archived" in run.output
    assert not (tmp_path / "RECOVERYHISTORY").exists()


def test_a_damaged_object_is_never_handed_to_postgres(wal_archive_setup, tmp_path):
    s = wal_archive_setup
    push_wal(s.plan, s.dataset, _segment_file(tmp_path, "000000010000000000000006"))
    store = _home_store(s.plan, s.dataset)
    [key] = list(list_objects(store, s.dataset))
    damaged = bytearray((s.store / key).read_bytes())
    damaged[1000] ^= 0x01
    (s.store / key).write_bytes(bytes(damaged))
    with pytest.raises(WalRecordInvalid):
        read_wal(s.plan, s.dataset, "000000010000000000000006")
    run = _fetch_cli(s, "000000010000000000000006", str(tmp_path / "out"))
    assert run.exit_code == 1 and not (tmp_path / "out").exists()


def test_push_without_a_plan_or_dataset_is_a_clear_error(tmp_path, monkeypatch):
    monkeypatch.delenv("DRFLEET_PLAN", raising=False)
    monkeypatch.delenv("DRFLEET_WAL_DATASET", raising=False)
    run = CliRunner().invoke(main, ["wal", "push", str(tmp_path / "000000010000000000000001")])
    assert run.exit_code == 1
    assert "needs a plan and a dataset" in run.output


def test_a_file_that_is_not_wal_is_refused(wal_archive_setup, tmp_path):
    (tmp_path / "notes.txt").write_text("hello")
    run = _push_cli(wal_archive_setup, str(tmp_path / "notes.txt"))
    assert run.exit_code == 1 and "is not the name of a PostgreSQL WAL file" in run.output


def test_history_files_round_trip(wal_archive_setup, tmp_path):
    s = wal_archive_setup
    (tmp_path / "00000002.history").write_text("1\t0/5000000\tno recovery target specified\n")
    push_wal(s.plan, s.dataset, str(tmp_path / "00000002.history"))
    assert read_wal(s.plan, s.dataset, "00000002.history").startswith(b"1\t0/5000000")
    store = _home_store(s.plan, s.dataset)
    assert ("00000002.history" in [name for name, _ in list_records(store, s.dataset)])


def test_check_finds_gaps_and_timelines_without_history(wal_archive_setup, tmp_path):
    s = wal_archive_setup
    for segno in (1, 2, 3, 6):
        push_wal(s.plan, s.dataset, _segment_file(tmp_path, Segment(1, segno).name, seed=segno))
    push_wal(s.plan, s.dataset, _segment_file(tmp_path, Segment(3, 7).name))
    report = check_archive(s.plan, s.dataset)
    assert not report["ok"]
    assert report["gaps"] == [{"timeline": 1, "after": Segment(1, 3).name, "before": Segment(1, 6).name,
                               "missing": 2, "first_missing": Segment(1, 4).name}]
    assert any("timeline 3 has segments but no 00000003.history" in p for p in report["timeline_problems"])
    run = CliRunner().invoke(main, ["wal", "check", s.dataset, "--plan", str(s.plan_path)])
    assert run.exit_code == 1 and "GAP on timeline 1: 2 segment(s) missing from 000000010000000000000004" in run.output


def test_retention_deletes_only_wal_no_kept_base_backup_needs(wal_archive_setup, tmp_path):
    s = wal_archive_setup
    for segno in range(1, 7):
        push_wal(s.plan, s.dataset, _segment_file(tmp_path, Segment(1, segno).name, seed=segno))
    (tmp_path / "00000002.history").write_text("1\t0/1000000\tx\n")
    push_wal(s.plan, s.dataset, str(tmp_path / "00000002.history"))
    kept = [types.SimpleNamespace(labels={"type": "basebackup"},
                                  source_position={"start_wal": Segment(1, 4).name, "segment_size": SEGMENT_SIZE}),
            types.SimpleNamespace(labels={"type": "basebackup"},
                                  source_position={"start_wal": Segment(1, 5).name, "segment_size": SEGMENT_SIZE})]
    assert wal_needed_from(s.plan, s.dataset, kept) == Segment(1, 4).name
    assert prune_wal(s.plan, s.dataset, [], dry_run=False)["kept_all"] is True
    result = prune_wal(s.plan, s.dataset, kept)
    assert result["deleted"] == [Segment(1, n).name for n in (1, 2, 3)]
    store = _home_store(s.plan, s.dataset)
    left = sorted(name for name, _ in list_records(store, s.dataset))
    assert left == sorted(["00000002.history"] + [Segment(1, n).name for n in (4, 5, 6)])
    assert len(list(list_objects(store, s.dataset))) == 4  # no object without its record
    with pytest.raises(WalNotArchived):
        read_wal(s.plan, s.dataset, Segment(1, 3).name)
    assert read_record(store, s.dataset, Segment(1, 4).name).name == Segment(1, 4).name
    assert record_key(s.dataset, "00000002.history").endswith("00000002/00000002.history.json")


def test_wal_prune_shows_what_would_go_and_asks_unless_yes(tmp_path, monkeypatch):
    from tests.fixtures.fleet import write_plan
    plan = write_plan(tmp_path / "plan")
    calls = []

    def fake_prune_wal(plan, dataset, kept, dry_run=False):
        calls.append(dry_run)
        return {"dataset": dataset, "deleted": ["000000010000000000000001"], "dry_run": dry_run}

    monkeypatch.setattr("drfleet.pitr.archive.prune_wal", fake_prune_wal)
    args = ["wal", "prune", "site", "--keep", "20261101T000000Z-0000abcd", "--plan", str(plan)]
    declined = CliRunner().invoke(main, args, input="n\n")
    assert declined.exit_code == 1 and calls == [True]
    assert "delete these 1 archived WAL files?" in declined.stderr
    assert CliRunner().invoke(main, args + ["--yes"]).exit_code == 0 and calls == [True, False]


@pytest.mark.parametrize("body", [b"[" * 100_000 + b"]" * 100_000, b'{"pad": "' + b"a" * (1 << 17) + b'"}'])
def test_a_record_bomb_is_refused_as_an_invalid_record(wal_archive_setup, body):
    s = wal_archive_setup
    store = _home_store(s.plan, s.dataset)
    store.put_bytes(record_key(s.dataset, "000000010000000000000009"), body)
    with pytest.raises(WalRecordInvalid):
        read_wal(s.plan, s.dataset, "000000010000000000000009")
