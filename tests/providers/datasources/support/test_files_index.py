"""The files source's tree dump with a file index: what a change is, what the archive of
an incremental holds, how an index reads back, and that the fingerprint computed from
the index is the fingerprint of the live tree."""

from __future__ import annotations

import io
import json
import os
import tarfile
import time

import pytest

from drfleet.providers.datasources import files
from drfleet.providers.datasources.support import files_index
from drfleet.providers.datasources.support.files_extract import Extractor
from drfleet.providers.datasources.support.files_index import FileIndex, IndexInvalid

WINDOW_NS = 50_000_000


@pytest.fixture(autouse=True)
def short_racy_window(monkeypatch):
    monkeypatch.setattr(files_index, "RACY_WINDOW_NS", WINDOW_NS)


def settle() -> None:
    time.sleep(2 * WINDOW_NS / 1e9)


def dump(root, previous=None, **kwargs):
    """(member names in the archive, parsed index, scan) of one dump_tree run."""
    with files.dump_tree(str(root), previous=previous, **kwargs) as producer:
        data = producer.read()
    scan = producer.scan
    with tarfile.open(fileobj=io.BytesIO(data), mode="r:") as tar:
        names = tar.getnames()
    with scan.index.document() as document:
        index = FileIndex.parse(io.BytesIO(document.read()))
    scan.index.close()
    return names, index, scan


@pytest.fixture
def tree(tmp_path):
    root = tmp_path / "tree"
    (root / "sub").mkdir(parents=True)
    (root / "sub" / "a.txt").write_text("a\n")
    (root / "b.bin").write_bytes(os.urandom(10_000))
    os.symlink("sub/a.txt", root / "link")
    os.link(root / "b.bin", root / "b-again.bin")
    settle()
    return root


def test_a_first_dump_stores_everything_and_its_fingerprint_is_the_trees(tree):
    names, index, scan = dump(tree)
    assert sorted(names) == [".", "b-again.bin", "b.bin", "link", "sub", "sub/a.txt"]
    assert set(index.entries) == set(names)
    assert index.entries["link"].value == "sub/a.txt"
    assert index.entries["b-again.bin"].value == index.entries["b.bin"].value
    assert scan.fingerprint == files.fingerprint(str(tree))
    assert (scan.entries, scan.stored, scan.deleted) == (6, 6, 0)


def test_the_next_dump_stores_only_changes_and_counts_deletions(tree):
    _, first, _ = dump(tree)
    settle()
    (tree / "sub" / "a.txt").write_text("a changed\n")
    os.unlink(tree / "link")
    os.symlink("b.bin", tree / "link")
    (tree / "sub" / "new.txt").write_text("new\n")
    os.chmod(tree / "b.bin", 0o600)  # both names of the inode change together
    settle()  # else the next dump stores them once more (changed within the racy window)
    names, second, scan = dump(tree, previous=first)
    assert sorted(names) == [".", "b-again.bin", "b.bin", "link", "sub", "sub/a.txt", "sub/new.txt"]
    settle()
    os.unlink(tree / "sub" / "new.txt")
    names, third, scan = dump(tree, previous=second)
    assert sorted(names) == ["sub"] and scan.deleted == 1 and "sub/new.txt" not in third.entries
    assert scan.fingerprint == files.fingerprint(str(tree))


def test_a_file_replaced_by_one_with_the_same_size_and_mtime_is_a_change(tree):
    _, first, _ = dump(tree)
    settle()
    before = os.stat(tree / "sub" / "a.txt")
    (tree / "replacement").write_text("A\n")
    os.utime(tree / "replacement", ns=(before.st_atime_ns, before.st_mtime_ns))
    os.rename(tree / "replacement", tree / "sub" / "a.txt")
    names, _, _ = dump(tree, previous=first)
    assert "sub/a.txt" in names


def test_entries_changed_close_to_the_previous_scan_are_stored_again_unless_quiescent(tree):
    _, racy_parent, _ = dump(tree)
    # As if that scan had started within the window after the tree was last changed:
    earliest_change = min(e.ctime_ns for e in racy_parent.entries.values())
    racy_parent.header["scan_started_ns"] = earliest_change + WINDOW_NS // 2
    names, _, _ = dump(tree, previous=racy_parent)
    assert len(names) == 6
    racy_parent.header["quiescent"] = True
    names, _, _ = dump(tree, previous=racy_parent)
    assert names == []


def test_non_utf8_names_survive_the_index(tmp_path):
    root = tmp_path / "tree"
    root.mkdir()
    name = os.fsdecode(b"caf\xe9.txt")
    (root / name).write_text("bytes name\n")
    _, index, scan = dump(root)
    assert name in index.entries
    assert scan.fingerprint == files.fingerprint(str(root))


@pytest.mark.parametrize("document, reason", [
    (b"", "no header line"),
    (b'{"format":"other","version":1}\n', "not a drfleet-file-index"),
    (b'{"format":"drfleet-file-index","version":9,"entries":0,"scan_started_ns":1}\n', "unknown index version 9"),
    (b'{"format":"drfleet-file-index","version":1,"entries":1,"scan_started_ns":1}\n["x"]\n', "line 2"),
    (b'{"format":"drfleet-file-index","version":1,"entries":2,"scan_started_ns":1}\n'
     b'[".","dir",493,0,0,0,1,1,1,2,""]\n', "announces 2 entries, 1 follow"),
])
def test_an_unreadable_index_is_refused_with_the_reason(document, reason):
    with pytest.raises(IndexInvalid) as info:
        FileIndex.parse(io.BytesIO(document), source="store:x")
    assert reason in str(info.value) and "store:x" in str(info.value)


def test_a_large_tree_fingerprint_keeps_the_digest_and_drops_the_listing(tmp_path, monkeypatch):
    root = tmp_path / "tree"
    root.mkdir()
    for number in range(12):
        (root / f"f{number}").write_text(str(number))
    small = files.fingerprint(str(root))
    monkeypatch.setattr(files, "FINGERPRINT_ENTRIES_LIMIT", 10)
    large = files.fingerprint(str(root))
    assert large == {"kind": "files", "count": 13, "digest": small["digest"]}
    assert dump(root)[2].fingerprint == large


def test_deferred_directory_metadata_keeps_read_only_directories_writable_until_the_end(tmp_path):
    root = tmp_path / "tree"
    (root / "ro").mkdir(parents=True)
    (root / "ro" / "f").write_text("f")
    os.chmod(root / "ro", 0o555)
    try:
        with files.dump(str(root)) as producer:
            archive = producer.read()
    finally:
        os.chmod(root / "ro", 0o755)
    target = tmp_path / "out"
    target.mkdir()
    extractor = Extractor(str(target), owners=False)
    extractor.extract(io.BytesIO(archive), directory_metadata=False)
    assert os.stat(target / "ro").st_mode & 0o777 == 0o700
    extractor.apply_directory_metadata(extractor.directories)
    assert os.stat(target / "ro").st_mode & 0o777 == 0o555
    os.chmod(target / "ro", 0o755)


def test_index_lines_are_the_documented_json_arrays(tree):
    with files.dump_tree(str(tree), root_id="web1:/srv/tree") as producer:
        producer.read()
    with producer.scan.index.document() as document:
        lines = document.read().decode("ascii").splitlines()
    producer.scan.index.close()
    header = json.loads(lines[0])
    assert header["root"] == "web1:/srv/tree" and header["entries"] == len(lines) - 1 == 6
    first = json.loads(lines[1])
    assert first[0] == "." and first[1] == "dir" and len(first) == 11


def test_the_digest_is_the_sha256_of_the_sorted_entries_as_json(tree):
    """The documented definition, which the streamed rendering must match byte for byte."""
    import hashlib

    fingerprint = files.fingerprint(str(tree))
    expected = hashlib.sha256(json.dumps(fingerprint["entries"], sort_keys=True).encode()).hexdigest()
    assert fingerprint["digest"] == expected == dump(tree)[2].fingerprint["digest"]
