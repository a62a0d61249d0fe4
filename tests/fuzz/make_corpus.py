"""Write the seed corpus of tests/fuzz (run once; the files are committed):
``.venv/bin/python -m tests.fuzz.make_corpus``. Seeds are deterministic: a fixed data key
(``corpus/KEY.hex``, test material only) and fixed contents. ``--inputs`` writes only the
seeds of the keyring, file-index and API-payload readers."""

from __future__ import annotations

import io
import json
import shutil
import sys
import tarfile
from datetime import datetime, timezone
from pathlib import Path

from drfleet.backup_format.datakey import DataKey
from drfleet.backup_format.envelope import encrypt_bytes
from drfleet.backup_format.keyring import Keyring, MasterKey, make_key_id
from drfleet.backup_format.manifest import Manifest
from drfleet.providers.datasources.support.files_index import Entry, IndexWriter
from tests.backup_format.conftest import manifest_fields
from tests.fuzz.conftest import CORPUS

ROOT = Path(__file__).resolve().parents[2]
KEY = bytes(range(32))


def _tar(members: list[tuple[tarfile.TarInfo, bytes | None]]) -> bytes:
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for info, data in members:
            if data is not None:
                info.size = len(data)
            tar.addfile(info, io.BytesIO(data) if data is not None else None)
    return out.getvalue()


def _member(name: str, kind: bytes = tarfile.REGTYPE, **attrs) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type, info.mode, info.mtime = kind, attrs.pop("mode", 0o644), 1_700_000_000
    for key, value in attrs.items():
        setattr(info, key, value)
    return info


def write_input_seeds() -> None:
    """Seeds of the keyring, file-index and API-payload readers."""
    for reader in ("keyring", "index", "api"):
        shutil.rmtree(CORPUS / reader, ignore_errors=True)
        (CORPUS / reader).mkdir(parents=True)
    created = datetime(2024, 5, 1, tzinfo=timezone.utc)
    keys = [MasterKey(make_key_id("content", created, bytes([n]) * 32), "content", bytes([n]) * 32, created)
            for n in (1, 2)]
    document = Keyring("content", keys, keys[1].id).to_document()
    (CORPUS / "keyring" / "two-keys.json").write_text(json.dumps(document, indent=2) + "\n")
    writer = IndexWriter(root="/srv/site", exclude=["*.tmp"], scan_started_ns=1_700_000_000_000_000_000)
    for entry in (Entry(".", "dir", 0o755, 0, 0, 0, 1, 1, 10, 3, ""),
                  Entry("docs", "dir", 0o755, 0, 0, 0, 1, 1, 11, 2, ""),
                  Entry("docs/a \"quoted\" [name].txt", "file", 0o644, 0, 0, 6, 1, 1, 12, 1, "ab" * 32),
                  Entry("link", "symlink", 0o777, 0, 0, 9, 1, 1, 13, 1, "/etc/hostname")):
        writer.add(entry)
    with writer.document() as doc:
        (CORPUS / "index" / "four-entries.jsonl").write_bytes(doc.read())
    writer.close()
    (CORPUS / "api" / "servers.json").write_text(json.dumps(
        {"servers": [{"id": 42, "name": "web-1", "status": "running", "public_net": {"ipv4": {"ip": "192.0.2.1"}},
                      "labels": {"drfleet": "yes"}}], "meta": {"pagination": {"next_page": None}}}))
    (CORPUS / "api" / "error.json").write_text(json.dumps({"error": {"code": "rate_limit_exceeded",
                                                                     "message": "slow down"}}))


def main() -> None:
    if "--inputs" in sys.argv[1:]:
        write_input_seeds()
        return
    shutil.rmtree(CORPUS, ignore_errors=True)
    for reader in ("plan", "manifest", "envelope", "tar"):
        (CORPUS / reader).mkdir(parents=True)
    (CORPUS / "KEY.hex").write_text(KEY.hex() + "\n")
    for example in sorted((ROOT / "examples").glob("*.yaml")):
        shutil.copy(example, CORPUS / "plan" / example.name)
    key = DataKey(KEY)
    (CORPUS / "manifest" / "signed.json").write_bytes(Manifest(**manifest_fields()).sign(key).to_bytes())
    (CORPUS / "envelope" / "three-chunks.dfe").write_bytes(
        encrypt_bytes(key, "data-0000.zst.dfe", b"drfleet " * 40, chunk_size=128))
    (CORPUS / "envelope" / "empty.dfe").write_bytes(encrypt_bytes(key, "data-0000.zst.dfe", b""))
    (CORPUS / "tar" / "tree.tar").write_bytes(_tar([
        (_member(".", tarfile.DIRTYPE, mode=0o755), None),
        (_member("docs", tarfile.DIRTYPE, mode=0o755), None),
        (_member("docs/readme.txt"), b"hello\n"),
        (_member("docs/link", tarfile.SYMTYPE, linkname="readme.txt"), None),
        (_member("docs/hard", tarfile.LNKTYPE, linkname="docs/readme.txt"), None),
    ]))
    (CORPUS / "tar" / "hostile.tar").write_bytes(_tar([
        (_member("ok.txt"), b"fine\n"),
        (_member("../escape.txt"), b"no\n"),
        (_member("/abs.txt"), b"no\n"),
        (_member("out", tarfile.SYMTYPE, linkname="../../etc"), None),
        (_member("out/passwd"), b"no\n"),
    ]))
    write_input_seeds()


if __name__ == "__main__":
    main()
