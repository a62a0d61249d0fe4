"""A files backup through the whole data path and back."""

import os

import pytest

from drfleet.datapath.backup import run_backup
from drfleet.datapath.catalog import list_backups
from drfleet.datapath.restore import restore_backup
from drfleet.providers.datasources import open_source


def test_backup_commits_objects_then_manifest_and_restores_the_same_tree(files_plan, tmp_path):
    plan, src = files_plan
    result = run_backup(plan, "site", "hourly", region="eu-central", slot="2026-11-21T10:00:00+00:00")
    assert result["status"] == "committed"
    listing = list_backups(plan, "site")
    assert [r.backup_id for r in listing.backups] == [result["backup_id"]] and not listing.problems
    m = listing.backups[0].manifest
    assert m.slot == "2026-11-21T10:00:00+00:00" and m.kind == "files"
    assert m.keys[0]["category"] == "content"
    target = tmp_path / "restored"
    restore_backup(plan, result["backup_id"], str(target))
    files = open_source("files")
    assert files.fingerprint(str(target)) == files.fingerprint(str(src)) == m.fingerprint
    assert os.readlink(target / "link") == "img/a.bin"


def test_a_failed_producer_leaves_no_backup_and_no_object(files_plan, tmp_path):
    plan, src = files_plan
    os.chmod(src / "img" / "a.bin", 0)
    if os.geteuid() == 0:  # root reads anything: make the source vanish instead
        import shutil
        shutil.rmtree(src)
    with pytest.raises(Exception) as info:
        run_backup(plan, "site", "hourly", region="eu-central")
    assert "site" in str(info.value) or str(src) in str(info.value)
    store_root = tmp_path / "plan" / "stores" / "eu-central"
    leftovers = [p for p in store_root.rglob("*") if p.is_file()] if store_root.exists() else []
    assert leftovers == []
    assert list_backups(plan, "site").backups == []


def test_the_read_that_reaches_the_end_refuses_a_plaintext_that_fails_its_hash(files_plan):
    """A consumer that spools the stream first (pg_restore) learns of a bad plaintext
    before it starts, not after: the last read raises, naming the backup."""
    import shutil

    from drfleet.datapath.errors import IntegrityError
    from drfleet.datapath.locations import store_for
    from drfleet.datapath.reading import BackupReader, data_key_for

    plan, _ = files_plan
    result = run_backup(plan, "site", "hourly", region="eu-central")
    record = list_backups(plan, "site").backups[0]
    m = record.manifest
    good = BackupReader(store_for(plan, record.location), m, data_key_for(plan, m))
    shutil.copyfileobj(good, open(os.devnull, "wb"))  # the untouched manifest reads clean
    key = data_key_for(plan, m)
    wrong = m.model_copy(update={"plaintext_sha256": "0" * 64})  # a compression bug: every tag valid
    bad = BackupReader(store_for(plan, record.location), wrong, key)
    with pytest.raises(IntegrityError) as info:
        shutil.copyfileobj(bad, open(os.devnull, "wb"))
    assert result["backup_id"] in str(info.value)


def test_a_tree_with_symlinks_out_of_it_backs_up_verifies_drills_and_restores_alike(files_plan, tmp_path,
                                                                                     redis_url, monkeypatch):
    """Symlinks pointing outside the tree (/etc/hostname, ../outside, /etc) are common in
    /etc and certificate directories: restore, deep verification and a restore drill all
    bring them back as symlinks, with hard links kept, and never write through them."""
    import random

    from drfleet.datapath.verify import verify_backup
    from drfleet.runbooks.drills import run_drill

    monkeypatch.setenv("DRFLEET_STATE_URL", redis_url)
    monkeypatch.setenv("DRFLEET_BROKER_URL", redis_url)
    plan, src = files_plan
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "victim").write_text("untouched")
    (src / "hostname").symlink_to("/etc/hostname")
    (src / "etc").symlink_to("/etc")
    (src / "img" / "up").symlink_to("../../../../outside")
    (src / "victim").symlink_to(outside / "victim")
    os.link(src / "img" / "a.bin", src / "a-hardlink.bin")
    backup_id = run_backup(plan, "site", "hourly", region="eu-central")["backup_id"]

    report = verify_backup(plan, f"site/{backup_id}", depth="deep")
    assert report["ok"], report["problems"]
    drill = run_drill(plan, "restore", region="eu-central", dataset="site", actor="test", rng=random.Random(1))
    assert drill.result == "passed", drill.reason
    target = tmp_path / "restored"
    restore_backup(plan, f"site/{backup_id}", str(target))
    for name in ("hostname", "etc", "img/up", "victim", "link"):
        assert os.readlink(target / name) == os.readlink(src / name), name
    one, two = os.stat(target / "img" / "a.bin"), os.stat(target / "a-hardlink.bin")
    assert one.st_ino == two.st_ino
    assert open_source("files").fingerprint(str(target)) == open_source("files").fingerprint(str(src))
    assert sorted(p.name for p in outside.iterdir()) == ["victim"]
    assert (outside / "victim").read_text() == "untouched"


def test_a_postgres_restore_that_meets_a_corrupt_chunk_leaves_no_empty_tables(tmp_path, pg_cluster, monkeypatch):
    """The finding: a corrupt chunk part-way used to leave the schema's empty tables in the
    target without a word. Now the target is as it was, and the error says so."""
    from drfleet.backup_format.keyring import create_keyring
    from drfleet.datapath.catalog import find_backup
    from drfleet.plan.loader import load_plan
    from tests.fixtures.fleet import write_plan

    pg_cluster.create_database("pg_corrupt_src")
    pg_cluster.psql("CREATE SCHEMA shop; CREATE TABLE shop.orders (id int PRIMARY KEY, note text); "
                    "INSERT INTO shop.orders SELECT g, md5(g::text) || md5((-g)::text) || md5((7 * g)::text) "
                    "|| md5((13 * g)::text) FROM generate_series(1, 60000) g",
                    "pg_corrupt_src")
    pg_cluster.create_database("pg_corrupt_target")
    monkeypatch.setenv("APP_DB_URL", pg_cluster.dsn("pg_corrupt_src"))
    monkeypatch.setenv("TARGET_DB_URL", pg_cluster.dsn("pg_corrupt_target", secret=True))
    datasets = ("app-db:\n  kind: postgres\n  region: eu-central\n  connection: {env: APP_DB_URL}\n"
                "  key: content\n  rpo: 1h\n  rto: 15m\n  policies:\n"
                "    - {name: hourly, trigger: hourly, keep: 24 hours, copies: [home-region]}\n")
    plan_path = write_plan(tmp_path / "plan", datasets=datasets)
    (tmp_path / "plan" / "keys").mkdir(mode=0o700)
    create_keyring(tmp_path / "plan" / "keys" / "content.keyring", "content")
    plan = load_plan(plan_path)
    backup_id = run_backup(plan, "app-db", "hourly", region="eu-central")["backup_id"]
    m = find_backup(plan, f"app-db/{backup_id}").manifest
    obj = tmp_path / "plan" / "stores" / "eu-central" / "datasets" / "app-db" / "backups" / backup_id / m.objects[0].name
    assert obj.stat().st_size > 3 << 20, "the dump must span several chunks"
    data = bytearray(obj.read_bytes())
    data[len(data) * 4 // 5] ^= 0x01
    obj.write_bytes(bytes(data))
    with pytest.raises(Exception) as info:
        restore_backup(plan, f"app-db/{backup_id}", "env:TARGET_DB_URL")
    assert "target_state: as it was" in str(info.value)
    assert pg_cluster.psql("SELECT table_name FROM information_schema.tables WHERE table_schema = 'shop'",
                           "pg_corrupt_target") == []
