"""Write the seed corpus of tests/fuzz (run once; the files are committed):
``.venv/bin/python -m tests.fuzz.make_corpus``. Seeds are deterministic: a fixed data key
(``corpus/KEY.hex``, test material only) and fixed contents."""

from __future__ import annotations

import io
import shutil
import tarfile
from pathlib import Path

from drfleet.backup_format.datakey import DataKey
from drfleet.backup_format.envelope import encrypt_bytes
from drfleet.backup_format.manifest import Manifest
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


def main() -> None:
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


if __name__ == "__main__":
    main()
