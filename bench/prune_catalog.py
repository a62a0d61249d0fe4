"""Prune over a catalog of 10,000 backups on a filesystem store. Target: under 5 s.

One dataset, 400 days of hourly backups (keep 7 days) and a daily one (keep 30 versions):
10,000 committed backups, each a signed manifest and one object, laid out directly in the
store's directory (setup is not timed). Times, against a private redis-server:

* ``decide_seconds``: the pure retention decision over the 10,000 backups;
* ``dry_run_seconds``: reading every manifest and the holds, deciding, deleting nothing;
* ``prune_seconds``: the real prune: lock, read, decide, delete ~9,800 manifests (each
  audited) and then their objects; ``prune_cpu_seconds`` is this process's CPU time during
  it, and the load average is printed too, since on a shared 2-CPU machine the wall time
  mostly measures the neighbours.

Run: ``.venv/bin/python bench/prune_catalog.py [--backups N]`` (about 30 s in all).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

PLAN = """\
version: 1
name: bench
regions:
  - {{name: eu-central, primary: true}}
storage:
  home: {{kind: filesystem, region: eu-central, path: {root}/store}}
keys:
  content: {{file: {root}/content.keyring}}
datasets:
  orders:
    kind: files
    region: eu-central
    source: {{path: {root}/src}}
    key: content
    rpo: 1h
    rto: 1h
    policies:
      - {{name: hourly, trigger: hourly, keep: 7 days, copies: [home-region]}}
      - {{name: daily, trigger: "daily at 02:00", keep: 30 versions, copies: [home-region]}}
"""


def _free_port() -> int:
    import socket
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _lay_out(store_root: Path, count: int, now: datetime) -> None:
    """``count`` committed backups of ``orders``, newest at ``now``, one per hour; the one
    made at 02:00 each day belongs to the daily policy."""
    from drfleet.backup_format.datakey import DataKey
    from drfleet.backup_format.layout import manifest_key, new_backup_id, object_key
    from drfleet.backup_format.manifest import Manifest

    data_key = DataKey.generate()
    blob = os.urandom(256)
    digest = hashlib.sha256(blob).hexdigest()
    for k in range(count):
        when = now - timedelta(hours=k)
        backup_id = new_backup_id(when)
        manifest = Manifest(
            backup_id=backup_id, dataset="orders", kind="files", policy="daily" if when.hour == 2 else "hourly",
            region="eu-central", slot=None, created_at=when, started_at=when, finished_at=when,
            plaintext_size=1, plaintext_sha256=digest, compression={"algorithm": "zstd", "level": 3},
            objects=[{"name": "data-0000.zst.dfe", "size": len(blob), "sha256": digest, "plaintext_size": 1}],
        ).sign(data_key)
        for key, data in ((object_key("orders", backup_id, "data-0000.zst.dfe"), blob),
                          (manifest_key("orders", backup_id), manifest.to_bytes())):
            path = store_root / key
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(data)


def run(backups: int = 10_000) -> dict:
    if shutil.which("redis-server") is None:
        raise SystemExit("redis-server is not installed (run `make test` once to install it)")
    root = Path(tempfile.mkdtemp(prefix="drfleet-bench-prune-"))
    port = _free_port()
    redis_proc = subprocess.Popen(["redis-server", "--bind", "127.0.0.1", "--port", str(port), "--save", "",
                                   "--appendonly", "no", "--dir", str(root)],
                                  stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        os.environ["DRFLEET_STATE_URL"] = f"redis://127.0.0.1:{port}/0"
        import redis

        from drfleet.datapath.catalog import list_backups
        from drfleet.datapath.prune import prune_location
        from drfleet.datapath.retention import Candidate, decide
        from drfleet.plan.loader import load_plan_text

        client = redis.Redis(port=port)
        deadline = time.monotonic() + 10
        while True:
            try:
                client.ping()
                break
            except redis.ConnectionError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.05)

        plan = load_plan_text(PLAN.format(root=root))
        now = datetime(2026, 11, 21, 12, tzinfo=timezone.utc)
        started = time.perf_counter()
        _lay_out(root / "store", backups, now)
        setup = time.perf_counter() - started

        manifests = [r.manifest for r in list_backups(plan, "orders").backups]
        candidates = [Candidate(m.dataset, m.backup_id, m.policy, m.created_at, tuple(m.parents)) for m in manifests]
        started = time.perf_counter()
        decision = decide(candidates, plan, now)
        decide_seconds = time.perf_counter() - started

        started = time.perf_counter()
        dry = prune_location(plan, "home", now=now, dry_run=True, client=client)
        dry_seconds = time.perf_counter() - started

        load_before = os.getloadavg()[0]
        started, cpu_started = time.perf_counter(), time.process_time()
        report = prune_location(plan, "home", now=now, client=client)
        prune_seconds = time.perf_counter() - started
        prune_cpu_seconds = time.process_time() - cpu_started
        assert len(report.deleted) == len(decision.deleted) == len(dry.to_dict()["deleted"])
        audited = client.xlen("drfleet:audit")
        return {"backups": backups, "kept": len(decision.kept), "deleted": len(report.deleted),
                "audit_records": audited, "setup_seconds": round(setup, 2),
                "decide_seconds": round(decide_seconds, 4), "dry_run_seconds": round(dry_seconds, 3),
                "prune_seconds": round(prune_seconds, 3), "prune_cpu_seconds": round(prune_cpu_seconds, 3),
                "load_average_1m": round(load_before, 2), "cpus": os.cpu_count(), "target_seconds": 5.0,
                "within_target": prune_seconds < 5.0}
    finally:
        redis_proc.terminate()
        redis_proc.wait(10)
        shutil.rmtree(root, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backups", type=int, default=10_000)
    figures = run(parser.parse_args().backups)
    print(json.dumps(figures))
    print(f"prune of {figures['backups']:,} backups ({figures['deleted']:,} deleted): "
          f"{figures['prune_seconds']:.2f} s (target < 5 s); pure decision {figures['decide_seconds'] * 1000:.1f} ms; "
          f"dry run {figures['dry_run_seconds']:.2f} s; this process used {figures['prune_cpu_seconds']:.2f} s of CPU "
          f"during the prune (load average {figures['load_average_1m']} on {figures['cpus']} CPUs)")


if __name__ == "__main__":
    main()
