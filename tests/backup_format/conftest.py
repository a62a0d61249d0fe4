"""Shared builders for the backup format tests: keyrings on disk, data keys, manifests,
and a minimal writer that lays a whole backup out in a directory (objects + manifest)."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
import zstandard

from drfleet.backup_format.envelope import DataKey, encrypt_bytes, wrap_data_key
from drfleet.backup_format.keyring import Keyring, create_keyring, load_keyring
from drfleet.backup_format.manifest import Manifest

FIXED_TIME = datetime(2024, 5, 1, 3, 15, tzinfo=timezone.utc)
BACKUP_ID = "20240501T031500Z-9f2c01ab"


@pytest.fixture
def keyring_path(tmp_path: Path) -> Path:
    path = tmp_path / "keys" / "pii.keyring.json"
    path.parent.mkdir()
    create_keyring(path, "pii")
    return path


@pytest.fixture
def keyring(keyring_path: Path) -> Keyring:
    return load_keyring("pii", file=keyring_path)


@pytest.fixture
def data_key() -> DataKey:
    return DataKey.generate()


def manifest_fields(**overrides: Any) -> dict[str, Any]:
    """Valid fields for a one-object postgres manifest; ``overrides`` replace any of them."""
    fields: dict[str, Any] = dict(
        backup_id=BACKUP_ID, dataset="orders", kind="postgres", policy="hourly", region="eu-west-1",
        slot="2024-05-01T03:00Z", created_at=FIXED_TIME + timedelta(minutes=3),
        started_at=FIXED_TIME, finished_at=FIXED_TIME + timedelta(minutes=2, microseconds=250),
        source_position={"lsn": "0/3000060", "timeline": 1}, plaintext_size=1000,
        plaintext_sha256=hashlib.sha256(b"dump").hexdigest(),
        compression={"algorithm": "zstd", "level": 3},
        objects=[{"name": "data-0000.zst.dfe", "size": 120, "sha256": "ab" * 32, "plaintext_size": 76}],
        fingerprint={"tables": 12, "rows": {"orders": 40}}, parents=[],
        tool_versions={"pg_dump": "16.2", "drfleet": "0.1.0"}, labels={"team": "payments"},
    )
    fields.update(overrides)
    return fields


@dataclass
class WrittenBackup:
    dump: bytes
    manifest: Manifest
    manifest_path: Path
    objects_dir: Path
    data_key: DataKey


def write_backup(directory: Path, keyring: Keyring, dump: bytes, *, pieces: int = 3,
                 chunk_size: int = 4096) -> WrittenBackup:
    """Compress ``dump``, split the zstd stream into ``pieces`` objects, seal and store them,
    then write the signed manifest: objects first, manifest last."""
    compressed = zstandard.ZstdCompressor(level=3).compress(dump)
    step = -(-len(compressed) // pieces)
    data_key = DataKey.generate()
    objects_dir = directory / "objects"
    objects_dir.mkdir(parents=True)
    entries = []
    for number in range(pieces):
        name = f"data-{number:04d}.zst.dfe"
        plaintext = compressed[number * step: (number + 1) * step]
        stored = encrypt_bytes(data_key, name, plaintext, chunk_size=chunk_size)
        (objects_dir / name).write_bytes(stored)
        entries.append({"name": name, "size": len(stored), "sha256": hashlib.sha256(stored).hexdigest(),
                        "plaintext_size": len(plaintext)})
    manifest = Manifest(**manifest_fields(
        objects=entries, plaintext_size=len(dump), plaintext_sha256=hashlib.sha256(dump).hexdigest(),
        keys=[wrap_data_key(data_key, keyring.active)])).sign(data_key)
    manifest_path = directory / f"{manifest.backup_id}.json"
    manifest_path.write_bytes(manifest.to_bytes())
    return WrittenBackup(dump, manifest, manifest_path, objects_dir, data_key)
