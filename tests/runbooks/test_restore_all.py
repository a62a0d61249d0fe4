"""``drfleet restore --all``: every dataset of a service, a region or the plan restored to
one point in time, in dependency order, with --dry-run, progress and one summary; a failure
stops the rest; and ``restore --at`` of a MongoDB dataset from the CLI (dump + oplog)."""

from __future__ import annotations

import copy
import json
import textwrap
import time
from datetime import datetime, timezone

import pytest
from click.testing import CliRunner

from drfleet.backup_format.layout import backup_time
from drfleet.cli.main import main
from drfleet.datapath.backup import OBJECT_NAME, run_backup
from drfleet.plan.loader import load_plan
from tests.fixtures.fleet import write_plan
from tests.runbooks.test_drills_every_kind import OPLOG, keys, mongomock_world


@pytest.fixture
def world(tmp_path, redis_url, monkeypatch):
    monkeypatch.setenv("DRFLEET_STATE_URL", redis_url)
    monkeypatch.setenv("DRFLEET_BROKER_URL", redis_url)
    trees = {}
    datasets = ""
    for name, priority in (("assets", 5), ("config", 1)):
        trees[name] = tmp_path / "src" / name
        trees[name].mkdir(parents=True)
        datasets += textwrap.dedent(f"""\
            {name}:
              kind: files
              region: eu-central
              source: {{path: {trees[name]}}}
              key: content
              rpo: 24h
              rto: 30m
              priority: {priority}
              policies:
                - {{name: daily, trigger: daily, keep: 30 days, copies: [home-region]}}
            """)
    path = write_plan(tmp_path / "plan", datasets=datasets, extra=textwrap.dedent("""\
        recovery:
          services:
            app:
              region: eu-central
              health: ["true"]
              restore: {config: "host:{root}/etc/app"}
        """))
    keys(tmp_path / "plan")
    monkeypatch.setenv("DRFLEET_PLAN", str(path))
    return path, trees


def backup_all(plan, trees, text):
    ids = {}
    for name, tree in trees.items():
        (tree / "state.txt").write_text(text)
        ids[name] = run_backup(plan, name, "daily", region="eu-central")["backup_id"]
    return ids


def run(*args):
    return CliRunner().invoke(main, ["restore", *args, "--json"], catch_exceptions=False)


def test_restore_all_to_one_point_in_time_in_dependency_order(world, tmp_path):
    path, trees = world
    plan = load_plan(path)
    first = backup_all(plan, trees, "monday\n")
    time.sleep(1.1)
    between = datetime.now(timezone.utc).isoformat()
    time.sleep(1.1)
    backup_all(plan, trees, "tuesday\n")

    dry = run("--all", "--at", between, "--to", str(tmp_path / "out"), "--dry-run", "--plan", str(path))
    assert dry.exit_code == 0, dry.output
    planned = json.loads(dry.stdout)
    assert [s["dataset"] for s in planned["steps"]] == ["config", "assets"]      # priority 1 before 5
    assert {s["dataset"]: s["backup_id"] for s in planned["steps"]} == first
    assert not (tmp_path / "out").exists()

    done = run("--all", "--at", between, "--to", str(tmp_path / "out"), "--plan", str(path))
    assert done.exit_code == 0, done.output
    summary = json.loads(done.stdout)
    assert (summary["restored"], summary["failed"], summary["scope"]) == (2, 0, "the whole plan")
    assert "[1/2] config restored in" in done.stderr and "[2/2] assets restored in" in done.stderr
    for name in trees:
        assert (tmp_path / "out" / name / "state.txt").read_text() == "monday\n"
        assert backup_time(first[name]) <= datetime.fromisoformat(between)


def test_a_failed_restore_stops_the_rest_and_the_summary_says_so(world, tmp_path):
    path, trees = world
    plan = load_plan(path)
    ids = backup_all(plan, trees, "monday\n")
    obj = tmp_path / "plan" / "stores" / "eu-central" / "datasets" / "config" / "backups" / ids["config"] / OBJECT_NAME
    data = bytearray(obj.read_bytes())
    data[len(data) // 2] ^= 1
    obj.write_bytes(bytes(data))
    done = run("--all", "--to", str(tmp_path / "out"), "--plan", str(path))
    assert done.exit_code == 1
    summary = json.loads(done.stdout)
    assert [(s["dataset"], s["status"]) for s in summary["steps"]] == [("config", "failed"), ("assets", "not-started")]
    assert summary["steps"][0]["error"]


def test_restore_all_refuses_what_it_cannot_do_clearly(world, tmp_path):
    path, trees = world
    no_backups = run("--all", "--to", str(tmp_path / "out"), "--dry-run", "--plan", str(path))
    assert no_backups.exit_code == 1 and "no backup at or before" in no_backups.stderr
    assert "config" in no_backups.stderr and "assets" in no_backups.stderr
    no_dir = run("--all", "--dry-run", "--plan", str(path))
    assert no_dir.exit_code == 1 and "needs --to DIR" in no_dir.stderr
    host = run("--all", "--service", "app", "--dry-run", "--plan", str(path))
    assert host.exit_code == 1 and "server-failure" in host.stderr
    region = run("--all", "--region", "atlantis", "--to", "x", "--dry-run", "--plan", str(path))
    assert region.exit_code == 1 and "region 'atlantis' is not in the plan" in region.stderr
    bad_at = run("--all", "--at", "yesterday-ish", "--to", "x", "--dry-run", "--plan", str(path))
    assert bad_at.exit_code == 1 and "is not a time" in bad_at.stderr


def test_mongodb_restore_at_from_the_cli_replays_the_oplog_to_the_timestamp(tmp_path, redis_url, monkeypatch):
    from drfleet.pitr.oplog import apply_entry, capture_slice
    from drfleet.providers.datasources import mongodb

    monkeypatch.setenv("DRFLEET_STATE_URL", redis_url)
    factory = mongomock_world(monkeypatch)
    monkeypatch.setenv("CLI_MONGODB_URI", "mongodb://source:27017/shop")
    monkeypatch.setenv("CLI_MONGODB_TARGET", "mongodb://restored:27017/shop")
    datasets = textwrap.dedent("""\
        mongodb:
          kind: mongodb
          region: eu-central
          connection: {env: CLI_MONGODB_URI}
          key: database
          rpo: 6 hours
          rto: 15m
          policies:
            - {name: weekly-full, trigger: weekly, keep: 4 weeks, copies: [home-region]}
            - {name: oplog, trigger: every 6 hours, mode: oplog, keep: 7 days, copies: [home-region]}
        """)
    path = write_plan(tmp_path / "plan", datasets=datasets,
                      keys=f"database: {{file: {tmp_path}/plan/keys/database.keyring}}\n")
    keys(tmp_path / "plan")
    plan = load_plan(path)
    source = factory("mongodb://source:27017/shop")
    for entry in OPLOG[:2]:
        apply_entry(source, entry)
    source["local"]["oplog.rs"].insert_many(copy.deepcopy(OPLOG[:2]))
    run_backup(plan, "mongodb", "weekly-full", region="eu-central")
    for entry in OPLOG[2:]:
        apply_entry(source, entry)
        source["local"]["oplog.rs"].insert_one(copy.deepcopy(entry))
    capture_slice(plan, "mongodb", source, server_side=False)
    at = f"{OPLOG[3]['ts'].time}:1"    # after the update and the delete, before the last insert
    done = CliRunner().invoke(main, ["restore", "mongodb", "--at", at, "--to", "env:CLI_MONGODB_TARGET",
                                     "--json", "--plan", str(path)], catch_exceptions=False)
    assert done.exit_code == 0, done.output
    assert json.loads(done.stdout)["applied"] == 2
    restored = factory("mongodb://restored:27017/shop")["shop"]["orders"]
    assert sorted((d["_id"], d["qty"]) for d in restored.find({})) == [(1, 3)]
    assert mongodb  # the data source the CLI went through
