"""A pg_dump killed mid-stream fails the backup: no manifest, no object left behind."""

import subprocess
import threading

import pytest

from drfleet.backup_format.keyring import create_keyring
from drfleet.datapath.backup import run_backup
from drfleet.datapath.catalog import list_backups
from drfleet.plan.loader import load_plan
from drfleet.providers.datasources.errors import SourceToolFailed
from tests.fixtures.fleet import write_plan
from tests.fixtures.util import wait_for

DATASET = """\
big-db:
  kind: postgres
  region: eu-central
  connection: {env: BIG_DB_URL}
  key: content
  rpo: 5m
  rto: 15m
  policies:
    - {name: hourly, trigger: hourly, keep: 24 hours, copies: [home-region]}
"""


def test_pg_dump_killed_mid_stream_leaves_no_backup(pg_cluster, tmp_path, monkeypatch):
    dsn = pg_cluster.create_database("bigdb")
    pg_cluster.psql("CREATE TABLE payload AS SELECT g AS id, repeat(md5(g::text), 40) AS v "
                    "FROM generate_series(1, 200000) g", "bigdb")
    monkeypatch.setenv("BIG_DB_URL", dsn)
    plan_path = write_plan(tmp_path / "plan", datasets=DATASET)
    (tmp_path / "plan" / "keys").mkdir(mode=0o700)
    create_keyring(tmp_path / "plan" / "keys" / "content.keyring", "content")
    plan = load_plan(plan_path)

    def kill_pg_dump():
        def pid():
            out = subprocess.run(["pgrep", "-f", f"pg_dump.*{pg_cluster.port}|pg_dump.*bigdb"],
                                 capture_output=True, text=True).stdout.split()
            return out[0] if out else None
        victim = wait_for(pid, timeout=60, interval=0.01, what="pg_dump to start")
        subprocess.run(["kill", "-9", victim])

    killer = threading.Thread(target=kill_pg_dump, daemon=True)
    killer.start()
    with pytest.raises(SourceToolFailed) as info:
        run_backup(plan, "big-db", "hourly", region="eu-central")
    killer.join()
    assert "pg_dump" in str(info.value)
    store = tmp_path / "plan" / "stores" / "eu-central"
    assert [p for p in store.rglob("*") if p.is_file()] == [] if store.exists() else True
    assert list_backups(plan, "big-db").backups == []
