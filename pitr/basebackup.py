"""Physical base backups: ``pg_basebackup --format=tar --pgdata=- --wal-method=none``
streamed through the data path into the dataset's home store.

The WAL a base backup needs (from its start to its stop segment) is not in the tar: it
comes from the archive. pg_basebackup waits until the server has archived the stop
segment, so a committed base backup is restorable as long as its archive is. The start
and stop LSN and timeline come from the tar's ``backup_label`` and the ``backup_manifest``
pg_basebackup injects into it, and are recorded in
the manifest's ``source_position``; the backup label (``drfleet DATASET TIME``) is also
in the archived ``.backup`` history file, so the two can be matched.
"""

from __future__ import annotations

import re
from datetime import datetime, timezone
from typing import Any

from drfleet.datapath.errors import WrongRegion
from drfleet.pitr.errors import BaseBackupFailed, NotAPostgresDataset
from drfleet.pitr.storing import Description, commit_stream
from drfleet.pitr.tarwatch import TarWatcher, WatchedReader
from drfleet.pitr.walnames import format_lsn, parse_lsn, segment_of_lsn
from drfleet.plan.models import Plan
from drfleet.statuses import JobStatus

BASEBACKUP_LABEL = "basebackup"
_START = re.compile(r"START WAL LOCATION: ([0-9A-F]+/[0-9A-F]+)")
_TIMELINE = re.compile(r"START TIMELINE: (\d+)")


def _policy_for(plan: Plan, dataset: str, policy: str | None) -> str:
    ds = plan.dataset(dataset)
    if policy:
        plan.policy(dataset, policy)
        return policy
    for p in ds.policies:
        if p.mode == "wal":
            return p.name
    return ds.policies[0].name


def parse_positions(backup_label: bytes | None, backup_manifest: bytes | None,
                    segment_size: int) -> dict[str, Any]:
    """``source_position`` from the tar's backup_label (start LSN, timeline) and
    backup_manifest (``WAL-Ranges``: end LSN). Raises BaseBackupFailed when either is
    missing or unreadable."""
    import json
    if not backup_label or not backup_manifest:
        raise BaseBackupFailed("the base backup's tar lacks backup_label or backup_manifest",
                               found=", ".join(n for n, v in (("backup_label", backup_label),
                                                              ("backup_manifest", backup_manifest)) if v) or "neither")
    label = backup_label.decode("utf-8", "replace")
    start, tli = _START.search(label), _TIMELINE.search(label)
    try:
        ranges = json.loads(backup_manifest)["WAL-Ranges"]
        stop_lsn = max(parse_lsn(r["End-LSN"]) for r in ranges)
    except (ValueError, KeyError, TypeError) as exc:
        raise BaseBackupFailed(f"the backup_manifest has no readable WAL-Ranges ({exc})") from None
    if not start or not tli:
        raise BaseBackupFailed("the backup_label has no START WAL LOCATION / START TIMELINE")
    start_lsn, timeline = parse_lsn(start.group(1)), int(tli.group(1))
    return {"start_lsn": format_lsn(start_lsn), "stop_lsn": format_lsn(stop_lsn), "timeline": timeline,
            "start_wal": segment_of_lsn(start_lsn, timeline, segment_size).name,
            "stop_wal": segment_of_lsn(max(stop_lsn - 1, start_lsn), timeline, segment_size).name,
            "segment_size": segment_size}


def server_facts(conn: str) -> dict[str, Any]:
    """system identifier, version, segment size and archive settings of the server."""
    import psycopg
    with psycopg.connect(conn, connect_timeout=10, autocommit=True) as db:
        system_id, = db.execute("SELECT system_identifier::text FROM pg_control_system()").fetchone()
        version, = db.execute("SHOW server_version_num").fetchone()
        seg, = db.execute("SELECT setting::bigint FROM pg_settings WHERE name = 'wal_segment_size'").fetchone()
        unit, = db.execute("SELECT unit FROM pg_settings WHERE name = 'wal_segment_size'").fetchone()
        archive_mode, = db.execute("SHOW archive_mode").fetchone()
    size = int(seg) * (8192 if unit == "8kB" else 1)
    return {"system_identifier": system_id, "server_version_num": int(version),
            "wal_segment_size": size, "archive_mode": archive_mode}


def run_base_backup(plan: Plan, dataset: str, *, policy: str | None = None, region: str | None = None,
                    slot: str | None = None, task_id: str | None = None) -> dict:
    """Take a base backup of PostgreSQL ``dataset`` and commit it; return a summary.

    Raises NotAPostgresDataset, WrongRegion, BaseBackupFailed (archive_mode off, or
    pg_basebackup failed: its stderr tail), and the data path's keyring/store errors. In
    every failure case no manifest is written.
    """
    from drfleet.datapath.sources import source_for
    from drfleet.providers.datasources.postgres import _Target
    from drfleet.providers.datasources.support.producer import ProcessProducer
    from drfleet.providers.datasources.support.tools import require_tool, tool_version

    ds = plan.dataset(dataset)
    if ds.kind != "postgres":
        raise NotAPostgresDataset(f"dataset {dataset} is of kind {ds.kind}", dataset=dataset)
    region = region or ds.region
    if ds.region != region:
        raise WrongRegion(f"dataset {dataset} lives in {ds.region}, not {region}", dataset=dataset)
    policy = _policy_for(plan, dataset, policy)
    _, conn, _ = source_for(plan, dataset)
    facts = server_facts(conn)
    if facts["archive_mode"] == "off":
        raise BaseBackupFailed("archive_mode is off: a base backup without archived WAL cannot be restored",
                               dataset=dataset)
    target = _Target(conn)
    binary = require_tool("pg_basebackup", **target.facts)
    env, passfile = target.tool_env()
    label = f"drfleet {dataset} {datetime.now(timezone.utc):%Y%m%dT%H%M%SZ}"
    argv = [binary, f"--dbname={target.tool_dbname}", "--pgdata=-", "--format=tar", "--wal-method=none",
            "--checkpoint=fast", "--verbose", "--no-password", f"--label={label}"]
    producer = ProcessProducer(argv, tool="pg_basebackup", env=env, facts={"dataset": dataset, **target.facts},
                               secrets=[target.password], cleanup=[passfile.remove] if passfile else [])

    def finish(description: Description) -> None:
        producer.close()  # raises SourceToolFailed with the stderr tail
        description.source_position.update(parse_positions(
            watcher.members.get("backup_label"), watcher.members.get("backup_manifest"),
            facts["wal_segment_size"]))

    description = Description(kind="postgres", policy=policy, labels={"type": BASEBACKUP_LABEL, "label": label},
                              fingerprint={k: facts[k] for k in ("system_identifier", "server_version_num",
                                                                   "wal_segment_size")},
                              tool_versions={"pg_basebackup": tool_version("pg_basebackup")})
    if task_id:
        description.labels["task_id"] = task_id
    watcher = TarWatcher({"backup_label", "backup_manifest"})
    manifest = commit_stream(plan, dataset, WatchedReader(producer, watcher), description, region=region, slot=slot,
                             finish=finish, abort=producer.kill)
    return {"status": JobStatus.COMMITTED, "backup_id": manifest.backup_id, "dataset": dataset, "policy": policy,
            "type": BASEBACKUP_LABEL, **manifest.source_position,
            "plaintext_size": manifest.plaintext_size, "stored_size": manifest.objects[0].size}


def list_base_backups(plan: Plan, dataset: str, *, location: str | None = None) -> list:
    """Committed base backups of ``dataset`` (BackupRecords), oldest first; home store
    first unless ``location`` is given."""
    from drfleet.datapath.catalog import list_backups
    from drfleet.datapath.locations import home_location
    listing = list_backups(plan, dataset, locations=[location or home_location(plan, dataset)])
    return [r for r in listing.backups if r.manifest.labels.get("type") == BASEBACKUP_LABEL]
