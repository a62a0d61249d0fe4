"""Plans for the copy tests: two regions, the default offsite store, an offsite vault with
its own key category, an offsite store under eu-central law, and optional S3 locations."""

from __future__ import annotations

from pathlib import Path

from tests.fixtures.fleet import write_plan
from tests.fixtures.plans import dataset, policy


def _items(copies: str) -> list[str]:
    """The copy targets of a flow list's text (``home-region, "offsite:cold"``)."""
    return [item.strip().strip('"') for item in copies.split(",") if item.strip()]


def datasets(*, copies, src) -> str:
    return (dataset("site", policy("hourly", "hourly", "24 hours", copies=_items(copies)), source=src)
            + dataset("secret",
                    policy("hourly", "hourly", "24 hours", copies=["home-region", "offsite:eu-vault"]),
                    source=src, region_only=True))


STORAGE = """\
vault: {{kind: filesystem, offsite: true, default: false, path: {root}/stores/vault, key: offsite}}
eu-vault: {{kind: filesystem, offsite: true, default: false, jurisdiction: eu-central, path: {root}/stores/eu-vault}}
"""


def make_copy_plan(root: Path, *, copies: str = 'all-regions, "offsite:vault"', storage: str = "",
                   with_keyrings: bool = True):
    """Write the plan (and keyrings, and a small source tree) under ``root``; return the
    loaded plan and the source directory."""
    from drfleet.backup_format.keyring import create_keyring
    from drfleet.plan.loader import load_plan

    src = root / "src" / "site"
    (src / "img").mkdir(parents=True, exist_ok=True)
    (src / "img" / "a.bin").write_bytes(bytes(range(256)) * 4000)
    (src / "index.html").write_text("hello\n")
    path = write_plan(root, datasets=datasets(src=src, copies=copies),
                      storage=STORAGE.format(root=root) + storage)
    if with_keyrings:
        (root / "keys").mkdir(mode=0o700, exist_ok=True)
        create_keyring(root / "keys" / "content.keyring", "content")
        create_keyring(root / "keys" / "offsite.keyring", "offsite")
    return load_plan(path), src


def store_dir(root: Path, location: str) -> Path:
    """The directory of a filesystem location (write_plan puts REGION-store in stores/REGION)."""
    return root / "stores" / location.removesuffix("-store")


def store_files(root: Path, location: str) -> list[Path]:
    """Every file under a filesystem location of the plan (an empty list if none)."""
    base = store_dir(root, location)
    return sorted(p for p in base.rglob("*") if p.is_file()) if base.exists() else []


def manifests_at(root: Path, location: str, dataset: str = "site") -> list[str]:
    base = store_dir(root, location) / "datasets" / dataset / "manifests"
    return sorted(p.stem for p in base.glob("*.json")) if base.exists() else []


def object_file(root: Path, location: str, backup_id: str, dataset: str = "site") -> Path:
    return store_dir(root, location) / "datasets" / dataset / "backups" / backup_id / "data-0000.zst.dfe"


def manifest_file(root: Path, location: str, backup_id: str, dataset: str = "site") -> Path:
    return store_dir(root, location) / "datasets" / dataset / "manifests" / f"{backup_id}.json"
