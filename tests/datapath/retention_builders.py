"""Builders for the retention/prune/hold tests: committed backups laid out in real stores
at simulated times (a signed manifest and small objects), and stores that fail or record."""

from __future__ import annotations

import hashlib
import os
import textwrap
import threading
from datetime import datetime

from drfleet.backup_format.datakey import DataKey
from drfleet.backup_format.layout import manifest_key, manifests_prefix, new_backup_id, object_key
from drfleet.backup_format.manifest import Manifest
from drfleet.plan.loader import load_plan
from drfleet.providers.storage import StoreUnavailable
from drfleet.providers.storage.wrappers import StoreWrapper
from tests.fixtures.fleet import write_plan


def plan_with(directory, policies: str, *, dataset: str = "site", extra_datasets: str = ""):
    """A plan with one files dataset in eu-central whose policies are ``policies`` (YAML list items)."""
    datasets = textwrap.dedent(f"""\
        {dataset}:
          kind: files
          region: eu-central
          source: {{path: {directory}/src}}
          key: content
          rpo: 1h
          rto: 1h
          policies:
        """) + textwrap.indent(textwrap.dedent(policies), "    ") + textwrap.dedent(extra_datasets)
    return load_plan(write_plan(directory, datasets=datasets))


def put_backup(stores, dataset: str, policy: str, when: datetime, *, parents=(), objects: int = 2) -> str:
    """Commit a small backup made at ``when`` into every store of ``stores`` (a copy is the
    same bytes in another store); returns its id."""
    backup_id = new_backup_id(when)
    blobs = {f"data-{i:04d}.zst.dfe": os.urandom(48) for i in range(objects)}
    manifest = Manifest(
        backup_id=backup_id, dataset=dataset, kind="files", policy=policy, region="eu-central", slot=None,
        created_at=when, started_at=when, finished_at=when, plaintext_size=1, plaintext_sha256="ab" * 32,
        compression={"algorithm": "zstd", "level": 3}, parents=list(parents),
        objects=[{"name": n, "size": len(b), "sha256": hashlib.sha256(b).hexdigest(), "plaintext_size": 1}
                 for n, b in blobs.items()],
    ).sign(DataKey.generate())
    for store in stores:
        for name, blob in blobs.items():
            store.put_bytes(object_key(dataset, backup_id, name), blob)
        store.put_bytes(manifest_key(dataset, backup_id), manifest.to_bytes())
    return backup_id


def committed(store, dataset: str = "site") -> set[str]:
    """Ids with a manifest in ``store``."""
    prefix = manifests_prefix(dataset)
    return {info.key[len(prefix):-len(".json")] for info in store.list(prefix)}


def with_objects(store, dataset: str = "site") -> set[str]:
    """Ids with at least one object in ``store``."""
    prefix = f"datasets/{dataset}/backups/"
    return {info.key[len(prefix):].split("/", 1)[0] for info in store.list(prefix)}


class RecordingStore(StoreWrapper):
    """Records every deleted key, in order."""

    def __init__(self, inner):
        super().__init__(inner)
        self.deleted: list[str] = []
        self.lock = threading.Lock()

    def delete(self, key: str) -> None:
        self.inner.delete(key)
        with self.lock:
            self.deleted.append(key)


class FailingStore(RecordingStore):
    """Deletes ``allowed`` keys (matching ``only``), then every further delete raises
    StoreUnavailable, like a store that went away mid-prune."""

    def __init__(self, inner, *, allowed: int, only: str = ""):
        super().__init__(inner)
        self.allowed, self.only = allowed, only

    def delete(self, key: str) -> None:
        if self.only in key:
            with self.lock:
                if self.allowed <= 0:
                    raise StoreUnavailable(self.name, key, "connection reset (injected)")
                self.allowed -= 1
        super().delete(key)
