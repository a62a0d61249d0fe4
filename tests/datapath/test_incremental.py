"""Full and incremental backups of a local file tree: what each day's backup stores, and
that restoring day N gives exactly day N's tree (content, modes, owners, mtimes, symlinks,
hard links, deleted files gone) from the chain its manifest names."""

from __future__ import annotations

import hashlib
import io
import os
import shutil
import tarfile
import textwrap
import time
from pathlib import Path

import pytest

from drfleet.backup_format.keyring import create_keyring
from drfleet.backup_format.layout import manifest_key
from drfleet.datapath.backup import run_backup
from drfleet.datapath.catalog import find_backup, list_backups
from drfleet.datapath.locations import store_for
from drfleet.datapath.reading import BackupReader, data_key_for
from drfleet.datapath.restore import describe_restore, restore_backup
from drfleet.datapath.tree_restore import ChainBroken
from drfleet.datapath.verify import verify_backup
from drfleet.plan.loader import load_plan
from drfleet.providers.datasources import files
from drfleet.providers.datasources.errors import FileUnreadable
from drfleet.providers.datasources.support import files_index
from drfleet.providers.datasources.support.files_index import FileIndex
from tests.fixtures.fleet import write_plan

RACY_WINDOW_NS = 50_000_000


def settle() -> None:
    """Let the test's racy window pass, so an entry last changed before now counts as
    settled for the next backup (the window itself is shortened for the tests)."""
    time.sleep(2 * RACY_WINDOW_NS / 1e9)


@pytest.fixture(autouse=True)
def short_racy_window(monkeypatch):
    monkeypatch.setattr(files_index, "RACY_WINDOW_NS", RACY_WINDOW_NS)


def make_plan(root, src, *, policies: str | None = None):
    policies = policies or textwrap.dedent("""\
        - {name: weekly-full, trigger: "weekly on sunday at 03:00", keep: 4 weeks, copies: [home-region]}
        - {name: daily-incremental, trigger: "daily at 02:00", mode: incremental, keep: 30 days, copies: [home-region]}
    """)
    datasets = (f"uploads:\n  kind: files\n  region: eu-central\n  source: {{path: {src}}}\n"
                f"  key: content\n  rpo: 24h\n  rto: 30m\n  policies:\n{textwrap.indent(policies, '    ')}")
    path = write_plan(root, datasets=datasets)
    (root / "keys").mkdir(mode=0o700, exist_ok=True)
    create_keyring(root / "keys" / "content.keyring", "content")
    create_keyring(root / "keys" / "offsite.keyring", "offsite")
    return load_plan(path)


def snapshot(root) -> dict:
    """Everything a restore must reproduce, per relative path."""
    found = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in [".", *dirnames, *filenames] if dirpath == str(root) else [*dirnames, *filenames]:
            path = os.path.normpath(os.path.join(dirpath, name))
            st = os.lstat(path)
            facts = [st.st_mode, st.st_uid, st.st_gid, st.st_mtime_ns]
            if os.path.islink(path):
                facts.append(("link", os.readlink(path)))
            elif os.path.isfile(path):
                facts.append(("file", hashlib.sha256(open(path, "rb").read()).hexdigest()))
            found[os.path.relpath(path, root)] = tuple(facts)
    return found


def inode_groups(root) -> list[set[str]]:
    groups: dict[int, set[str]] = {}
    for dirpath, _, filenames in os.walk(root):
        for name in filenames:
            path = os.path.join(dirpath, name)
            st = os.lstat(path)
            if st.st_nlink > 1:
                groups.setdefault(st.st_ino, set()).add(os.path.relpath(path, root))
    return sorted(groups.values(), key=sorted)


@pytest.fixture
def tree_plan(tmp_path):
    src = tmp_path / "src"
    (src / "docs" / "old").mkdir(parents=True)
    (src / "media").mkdir()
    (src / "docs" / "a.txt").write_text("alpha\n")
    (src / "docs" / "b.txt").write_text("bravo\n")
    (src / "docs" / "old" / "c.txt").write_text("charlie\n")
    (src / "media" / "big.bin").write_bytes(os.urandom(300_000))
    (src / "media" / "private.key").write_bytes(b"k" * 32)
    os.chmod(src / "media" / "private.key", 0o600)
    os.symlink("docs/a.txt", src / "current")
    os.link(src / "docs" / "b.txt", src / "docs" / "b-hardlink.txt")
    (src / "locked").mkdir()
    (src / "locked" / "inside.txt").write_text("read-only dir\n")
    os.chmod(src / "locked", 0o555)
    plan = make_plan(tmp_path / "plan", src)
    yield plan, src
    for path in src.rglob("*"):
        if path.is_dir() and not path.is_symlink():
            os.chmod(path, 0o755)


def backup(plan, policy: str) -> dict:
    result = run_backup(plan, "uploads", policy, region="eu-central")
    settle()
    return result


def test_a_week_of_incrementals_restores_every_day_exactly(tree_plan, tmp_path):
    plan, src = tree_plan
    settle()
    days = []
    full = backup(plan, "weekly-full")
    days.append((full, snapshot(src)))

    # Monday: content, mode, owner and mtime changes; a new file, a deleted file, a
    # re-pointed symlink, a directory replaced by a file, a new empty directory.
    (src / "docs" / "a.txt").write_text("alpha, revised\n")
    os.chmod(src / "media" / "private.key", 0o400)
    os.chown(src / "docs" / "b.txt", 1234, 5678)
    os.utime(src / "media" / "big.bin", ns=(1_500_000_000_000_000_000, 1_500_000_000_000_000_000))
    (src / "new.txt").write_text("new on monday\n")
    (src / "media" / "private.key").unlink()
    os.unlink(src / "current")
    os.symlink("docs/b.txt", src / "current")
    shutil.rmtree(src / "docs" / "old")
    (src / "docs" / "old").write_text("old is a file now\n")
    (src / "empty").mkdir()
    monday = backup(plan, "daily-incremental")
    days.append((monday, snapshot(src)))

    # Tuesday: the file becomes a directory again, a file moves, the read-only dir gains
    # a file (through a writable window), the hard link is broken.
    (src / "docs" / "old").unlink()
    (src / "docs" / "old").mkdir()
    (src / "docs" / "old" / "d.txt").write_text("delta\n")
    os.rename(src / "new.txt", src / "empty" / "moved.txt")
    os.chmod(src / "locked", 0o755)
    (src / "locked" / "second.txt").write_text("second\n")
    os.chmod(src / "locked", 0o555)
    os.unlink(src / "docs" / "b-hardlink.txt")
    (src / "docs" / "b-hardlink.txt").write_text("bravo\n")
    tuesday = backup(plan, "daily-incremental")
    days.append((tuesday, snapshot(src)))

    assert full["mode"] == "full" and full["parents"] == []
    assert monday["mode"] == "incremental" and monday["parents"] == [full["backup_id"]]
    assert tuesday["parents"] == [full["backup_id"], monday["backup_id"]]
    assert monday["stored_entries"] < monday["entries"] and monday["deleted_entries"] == 2
    for number, (result, expected) in enumerate(days):
        target = tmp_path / f"restored-{number}"
        summary = restore_backup(plan, f"uploads/{result['backup_id']}", str(target))
        assert summary["chain"] == [*result["parents"], result["backup_id"]]
        assert snapshot(target) == expected, f"day {number}"
    assert inode_groups(tmp_path / "restored-0") == [{"docs/b.txt", "docs/b-hardlink.txt"}]
    assert inode_groups(tmp_path / "restored-2") == []


def test_an_incremental_stores_only_what_changed_and_the_whole_index(tree_plan):
    plan, src = tree_plan
    settle()
    backup(plan, "weekly-full")
    (src / "docs" / "a.txt").write_text("changed\n")
    result = backup(plan, "daily-incremental")
    record = find_backup(plan, f"uploads/{result['backup_id']}")
    stream = BackupReader(store_for(plan, record.location), record.manifest, data_key_for(plan, record.manifest))
    data = stream.read()
    with tarfile.open(fileobj=io.BytesIO(data), mode="r:") as tar:
        names = tar.getnames()
        end = tar.offset
    # The changed file only: rewritten in place, its directory did not change.
    assert names == ["docs/a.txt"]
    rest = data[end:].lstrip(b"\0")
    index = FileIndex.parse(io.BytesIO(rest))
    assert set(index.entries) == set(snapshot(src))
    assert index.entries["docs/a.txt"].value == hashlib.sha256(b"changed\n").hexdigest()
    assert record.manifest.labels["mode"] == "incremental"
    assert [o.name for o in record.manifest.objects] == ["data-0000.zst.dfe", "index-0000.zst.dfe"]


def test_an_unchanged_tree_still_commits_a_small_backup(tree_plan, tmp_path):
    plan, src = tree_plan
    settle()
    full = backup(plan, "weekly-full")
    quiet = backup(plan, "daily-incremental")
    assert quiet["status"] == "committed" and quiet["stored_entries"] == 0
    assert quiet["deleted_entries"] == 0 and quiet["entries"] == full["entries"]
    assert quiet["stored_size"] < full["stored_size"] / 10
    restore_backup(plan, f"uploads/{quiet['backup_id']}", str(tmp_path / "t"))
    assert snapshot(tmp_path / "t") == snapshot(src)


def test_a_file_rewritten_with_the_same_size_and_mtime_is_still_seen(tree_plan, tmp_path):
    plan, src = tree_plan
    settle()
    backup(plan, "weekly-full")
    before = os.lstat(src / "docs" / "a.txt")
    (src / "docs" / "a.txt").write_text("ALPHA\n")  # same size
    os.utime(src / "docs" / "a.txt", ns=(before.st_atime_ns, before.st_mtime_ns))
    result = backup(plan, "daily-incremental")
    assert result["stored_entries"] >= 1
    restore_backup(plan, f"uploads/{result['backup_id']}", str(tmp_path / "t"))
    assert (tmp_path / "t" / "docs" / "a.txt").read_text() == "ALPHA\n"


def test_an_incremental_with_no_earlier_backup_is_a_full_saying_why(tree_plan):
    plan, _ = tree_plan
    result = backup(plan, "daily-incremental")
    assert result["mode"] == "full" and result["parents"] == []
    assert "no earlier backup" in result["full_reason"]
    manifest = find_backup(plan, f"uploads/{result['backup_id']}").manifest
    assert manifest.labels["full_reason"] == result["full_reason"]


def test_the_fingerprint_of_each_day_is_that_days_tree_and_deep_verify_restores_the_chain(tree_plan):
    plan, src = tree_plan
    settle()
    backup(plan, "weekly-full")
    (src / "docs" / "b.txt").write_text("bravo two\n")
    (src / "docs" / "a.txt").unlink()
    monday = backup(plan, "daily-incremental")
    monday_fingerprint = files.fingerprint(str(src))
    (src / "late.txt").write_text("after monday\n")
    manifest = find_backup(plan, f"uploads/{monday['backup_id']}").manifest
    assert manifest.fingerprint == monday_fingerprint
    report = verify_backup(plan, f"uploads/{monday['backup_id']}", depth="deep")
    assert report["ok"], report["problems"]


def test_a_missing_link_is_named_by_restore_and_verify(tree_plan, tmp_path):
    plan, src = tree_plan
    settle()
    backup(plan, "weekly-full")
    (src / "docs" / "a.txt").write_text("one\n")
    monday = backup(plan, "daily-incremental")
    (src / "docs" / "a.txt").write_text("two\n")
    tuesday = backup(plan, "daily-incremental")
    store = store_for(plan, "eu-central-store")
    store.delete(manifest_key("uploads", monday["backup_id"]))
    with pytest.raises(ChainBroken) as info:
        restore_backup(plan, f"uploads/{tuesday['backup_id']}", str(tmp_path / "t"))
    assert monday["backup_id"] in str(info.value)
    assert not (tmp_path / "t").exists()
    report = verify_backup(plan, f"uploads/{tuesday['backup_id']}", depth="quick")
    assert not report["ok"] and monday["backup_id"] in report["problems"][0]


def test_dry_run_lists_the_chain(tree_plan, tmp_path):
    plan, src = tree_plan
    settle()
    full = backup(plan, "weekly-full")
    (src / "x").write_text("x")
    monday = backup(plan, "daily-incremental")
    described = describe_restore(plan, f"uploads/{monday['backup_id']}", str(tmp_path / "t"))
    assert described["chain"] == [full["backup_id"], monday["backup_id"]]
    assert not (tmp_path / "t").exists()


def test_a_failing_incremental_leaves_no_backup_and_no_object(tree_plan, monkeypatch, tmp_path):
    plan, src = tree_plan
    settle()
    backup(plan, "weekly-full")
    (src / "media" / "big.bin").write_bytes(os.urandom(1000))  # changed, so it must be read
    real_walk = files._walk

    def vanishing_walk(root, exclude=()):
        for path, member, st in real_walk(root, exclude):
            if member == "media/big.bin":
                os.unlink(path)
            yield path, member, st

    monkeypatch.setattr(files, "_walk", vanishing_walk)
    with pytest.raises(FileUnreadable) as info:
        run_backup(plan, "uploads", "daily-incremental", region="eu-central")
    assert "media/big.bin" in str(info.value)
    assert len(list_backups(plan, "uploads").backups) == 1
    objects = list((tmp_path / "plan" / "stores" / "eu-central").rglob("*.dfe"))
    assert len(objects) == 2  # the full's archive and index only


def test_a_files_backup_still_restores_without_drfleet(tree_plan, tmp_path):
    """docs/format.md: drfleet-decrypt --object data-0000.zst.dfe | zstd -d | tar -x."""
    import subprocess
    import sys
    from pathlib import Path

    plan, src = tree_plan
    result = backup(plan, "weekly-full")
    store = tmp_path / "plan" / "stores" / "eu-central" / "datasets" / "uploads"
    script = Path(__file__).resolve().parents[2] / "tools" / "drfleet-decrypt"
    out = tmp_path / "by-hand"
    out.mkdir()
    pipeline = (f"{sys.executable} {script} --keyring {tmp_path}/plan/keys/content.keyring "
                f"--manifest {store}/manifests/{result['backup_id']}.json "
                f"--objects-dir {store}/backups/{result['backup_id']} --object data-0000.zst.dfe "
                f"| zstd -d -q | tar -x -C {out}")
    completed = subprocess.run(["bash", "-o", "pipefail", "-c", pipeline], capture_output=True, text=True)
    assert completed.returncode == 0, completed.stderr
    assert files.fingerprint(str(out)) == files.fingerprint(str(src))


def _week(plan, src):
    """A full and two incrementals; Monday deletes a file that Sunday had."""
    settle()
    full = backup(plan, "weekly-full")
    (src / "docs" / "old" / "c.txt").unlink()
    (src / "docs" / "a.txt").write_text("monday\n")
    monday = backup(plan, "daily-incremental")
    (src / "docs" / "a.txt").write_text("tuesday\n")
    tuesday = backup(plan, "daily-incremental")
    return full, monday, tuesday


def _data_object(plan, backup_id):
    m = find_backup(plan, f"uploads/{backup_id}").manifest
    root = plan.storage["eu-central-store"].path
    return Path(root) / "datasets" / "uploads" / "backups" / backup_id / m.objects[0].name


@pytest.mark.parametrize("existing", [False, True], ids=["new-target", "empty-target"])
def test_a_damaged_middle_link_leaves_the_target_as_it_was(tree_plan, tmp_path, existing):
    plan, src = tree_plan
    _, monday, tuesday = _week(plan, src)
    damaged = _data_object(plan, monday["backup_id"])
    data = bytearray(damaged.read_bytes())
    data[len(data) // 2] ^= 0x01  # same size: only reading it finds out
    damaged.write_bytes(bytes(data))
    target = tmp_path / "restore" / "uploads"
    if existing:
        target.mkdir(parents=True)
    with pytest.raises(Exception) as info:
        restore_backup(plan, f"uploads/{tuesday['backup_id']}", str(target))
    assert "left as it was" in str(info.value) and "data-0000" in str(info.value)
    assert f"backup_id: {monday['backup_id']}" in str(info.value)
    if existing:
        assert target.is_dir() and list(target.iterdir()) == []
        assert "still an empty directory" in str(info.value)
    else:
        assert not target.exists() and "was not created" in str(info.value)
    assert list(target.parent.iterdir()) == ([target] if existing else []), "a staging directory was left"


def test_a_truncated_link_is_refused_before_the_target_is_touched(tree_plan, tmp_path):
    plan, src = tree_plan
    _, monday, tuesday = _week(plan, src)
    damaged = _data_object(plan, monday["backup_id"])
    damaged.write_bytes(damaged.read_bytes()[:-100])
    target = tmp_path / "restore"
    with pytest.raises(Exception) as info:
        restore_backup(plan, f"uploads/{tuesday['backup_id']}", str(target))
    assert monday["backup_id"] in str(info.value) and "untouched" in str(info.value)
    assert not target.exists()
