"""The catastrophic runbook end to end on this machine: every region is gone (its hosts
powered off, its storage unreachable); only the offsite copies survive, wrapped with their
own key category. The runbook provisions replacement ``local`` hosts in the fallback
region, pushes configuration, restores every dataset from the offsite copies - the
critical service's first, then by priority - into a real PostgreSQL database and onto the
new hosts over SSH, verifies each service and switches its DNS record (moto Route 53).

Run twice: inline (``run_failover_drill``, what the drills report uses) and as a Celery
chain on a real worker of the fallback region."""

from __future__ import annotations

import shutil
import uuid
from pathlib import Path

import boto3
import psycopg
import pytest

from drfleet.datapath.backup import run_backup
from drfleet.datapath.copy import copy_backup
from drfleet.plan.loader import load_plan
from drfleet.providers.clouds.base import ServerSpec
from drfleet.runbooks.records import RunStore
from drfleet.runbooks.runner import run_failover_drill

RESTORE_ORDER = ["restore-app-db", "restore-app-files", "restore-site-files"]


def disaster_world(world, monkeypatch, pg_cluster, s3_server, tmp_path):
    """Two services, one per region, three datasets; backed up, copied offsite, then every
    region dies. Returns (plan, route53 client, zone id, zone, restored dsn)."""
    web2, _ = world.cloud.create_server(ServerSpec(name="web-2"))
    with open(world.known_hosts, "a") as known:
        known.write(f"[127.0.0.1]:{web2.ssh_port} {web2.host_key}\n")

    source_db = f"app_src_{uuid.uuid4().hex[:6]}"
    source_dsn = pg_cluster.create_database(source_db)
    pg_cluster.psql("CREATE TABLE orders (id int PRIMARY KEY, item text); "
                    "INSERT INTO orders VALUES (1, 'disk'), (2, 'tape')", db=source_db)
    restored_db = f"app_restored_{uuid.uuid4().hex[:6]}"
    restored_dsn = pg_cluster.create_database(restored_db)
    for name, text in (("app-files", "invoice\n"), ("site-files", "<h1>site</h1>\n")):
        src = tmp_path / "src" / name
        src.mkdir(parents=True)
        (src / "data.txt").write_text(text)
    config = tmp_path / "config" / "app"
    config.mkdir(parents=True)
    (config / "app.conf").write_text(f"database={restored_db}\n")

    zone = f"z{uuid.uuid4().hex[:8]}.example.com"
    r53 = boto3.session.Session().client("route53", endpoint_url=s3_server.endpoint_url, region_name="us-east-1",
                                         aws_access_key_id="k", aws_secret_access_key="s")
    zone_id = r53.create_hosted_zone(Name=zone, CallerReference=uuid.uuid4().hex)["HostedZone"]["Id"]
    for name, old in (("app", "192.0.2.10"), ("www", "192.0.2.20")):
        r53.change_resource_record_sets(HostedZoneId=zone_id, ChangeBatch={"Changes": [{"Action": "CREATE",
            "ResourceRecordSet": {"Name": f"{name}.{zone}.", "Type": "A", "TTL": 60,
                                  "ResourceRecords": [{"Value": old}]}}]})

    world.env.update(APP_DB_URL=source_dsn, APP_DB_RESTORED_URL=restored_dsn,
                     R53_KEY=s3_server.access_key_id, R53_SECRET=s3_server.secret_access_key)
    for k, v in world.env.items():
        monkeypatch.setenv(k, v)

    def dataset(name, kind, region, source, priority):
        return (f"{name}:\n  kind: {kind}\n  region: {region}\n  {source}\n  key: content\n  rpo: 1h\n"
                f"  rto: 15m\n  priority: {priority}\n  policies:\n"
                f"    - {{name: daily, trigger: daily, keep: 7 days, copies: [home-region]}}\n")
    # site-files has the best dataset priority, but site is not critical: app's data comes first
    datasets = (dataset("app-db", "postgres", "eu-central", "connection: {env: APP_DB_URL}", 5)
                + dataset("app-files", "files", "eu-central", f"source: {{path: {tmp_path / 'src/app-files'}}}", 6)
                + dataset("site-files", "files", "us-east", f"source: {{path: {tmp_path / 'src/site-files'}}}", 1))
    rows = (f"psql -tA -c 'select count(*) from orders' "
            f"postgresql://postgres@127.0.0.1:{pg_cluster.port}/{restored_db}")
    app_health = (f'[sh, -c, "test -s {{root}}/etc/app/app.conf && test -f {{root}}/srv/app/files/data.txt '
                  f'&& test \\"$({rows})\\" = 2"]')
    recovery = f"""\
dns: {{provider: route53, zone: {zone}, endpoint_url: "{s3_server.endpoint_url}", region: us-east-1,
      access_key: {{env: R53_KEY}}, secret_key: {{env: R53_SECRET}}}}
fallback_region: us-east
services:
  site:
    region: us-east
    host: web-2
    dns: {{name: www}}
    health: [sh, -c, "test -f {{root}}/srv/site/data.txt"]
    restore: {{site-files: "host:{{root}}/srv/site"}}
  app:
    region: eu-central
    host: web-1
    dns: {{name: app}}
    health: {app_health}
    config: {{local: {config}, remote: "{{root}}/etc/app"}}
    restore: {{app-db: "env:APP_DB_RESTORED_URL", app-files: "host:{{root}}/srv/app/files"}}
    critical: true
"""
    vault = tmp_path / "vault"
    storage = f"vault: {{kind: filesystem, offsite: true, path: {vault}, key: offsite}}\n"
    path = world.write(datasets=datasets, services=recovery, storage=storage,
                       hosts=[world.host_line("web-2", web2, "us-east")], roots={"web-2": web2.root})
    monkeypatch.setenv("DRFLEET_PLAN", str(path))
    plan = load_plan(path)

    for name in ("app-db", "app-files", "site-files"):
        result = run_backup(plan, name, "daily", region=plan.dataset(name).region)
        copy = copy_backup(plan, f"{name}/{result['backup_id']}", "vault")
        assert copy.status == "copied" and copy.key_category == "offsite"

    # the catastrophe: every host of every region dies and every regional store is lost
    world.cloud.power_off(world.web1.id)
    world.cloud.power_off(web2.id)
    stores = tmp_path / "plan" / "stores"
    for region in ("eu-central", "us-east"):
        shutil.move(stores / region, tmp_path / f"lost-{region}")
    return plan, r53, zone_id, zone, restored_dsn


def assert_recovered(world, run_id, records, r53, zone_id, zone, restored_dsn, rto, how):
    print(f"\ncatastrophic recovery ({how}): RTO {rto:.1f}s (run {run_id})")
    assert {name: rec["status"] for name, rec in records.items()} == dict.fromkeys([
        "provision-app", "provision-site", "push-config-app", *RESTORE_ORDER,
        "verify-app", "verify-site", "dns-app", "dns-site"], "succeeded")

    restores = sorted(RESTORE_ORDER, key=lambda name: float(records[name]["started_at"]))
    assert restores == RESTORE_ORDER                      # critical service first, then priority
    assert max(float(records[n]["finished_at"]) for n in RESTORE_ORDER) <= min(
        float(records[n]["started_at"]) for n in ("verify-app", "verify-site"))
    assert max(float(records[n]["finished_at"]) for n in ("verify-app", "verify-site")) <= min(
        float(records[n]["started_at"]) for n in ("dns-app", "dns-site"))
    assert {records[n]["output"]["location"] for n in RESTORE_ORDER} == {"vault"}

    new = {s.labels["drfleet-service"]: s for s in world.cloud.list_servers(f"drfleet-run={run_id}")}
    assert sorted(new) == ["app", "site"] and all(s.is_running for s in new.values())
    for service, server in new.items():
        out = records[f"provision-{service}"]["output"]
        assert out["region"] == "us-east" and out["server_id"] == server.id
    app_root, site_root = Path(new["app"].root), Path(new["site"].root)
    assert (app_root / "srv/app/files/data.txt").read_text() == "invoice\n"
    assert (app_root / "etc/app/app.conf").exists()
    assert (site_root / "srv/site/data.txt").read_text() == "<h1>site</h1>\n"
    with psycopg.connect(restored_dsn) as conn:
        assert conn.execute("SELECT item FROM orders ORDER BY id").fetchall() == [("disk",), ("tape",)]

    assert records["dns-app"]["output"]["old_values"] == ["192.0.2.10"]
    assert records["dns-site"]["output"]["old_values"] == ["192.0.2.20"]
    sets = r53.list_resource_record_sets(HostedZoneId=zone_id)["ResourceRecordSets"]
    answers = {s["Name"]: [r["Value"] for r in s["ResourceRecords"]] for s in sets if s["Type"] == "A"}
    assert answers[f"app.{zone}."] == answers[f"www.{zone}."] == ["127.0.0.1"]


def test_catastrophic_drill_rebuilds_everything_from_offsite_copies(
        world, monkeypatch, pg_cluster, s3_server, tmp_path) -> None:
    plan, r53, zone_id, zone, restored_dsn = disaster_world(world, monkeypatch, pg_cluster, s3_server, tmp_path)

    report = run_failover_drill(plan, "catastrophic")

    assert report["result"] == "succeeded", [(s["name"], s["status"], s["error"]) for s in report["steps"]]
    assert [s["name"] for s in report["steps"]][:2] == ["provision-app", "provision-site"]
    records = RunStore().step_records(report["run_id"])
    assert_recovered(world, report["run_id"], records, r53, zone_id, zone, restored_dsn,
                     report["rto_seconds"], "inline drill")
    assert report["rto_seconds"] == round(report["verified_at"] - report["start"], 3)


@pytest.mark.timeout(180)
def test_catastrophic_runbook_on_a_fallback_region_worker(world, monkeypatch, pg_cluster, s3_server, tmp_path) -> None:
    from drfleet.tasks.runbooks import catastrophic

    _, r53, zone_id, zone, restored_dsn = disaster_world(world, monkeypatch, pg_cluster, s3_server, tmp_path)
    world.start_fleet(monkeypatch, "us-east")              # the only region that still has workers

    run_id = catastrophic().apply_async().run_id
    run = world.wait_run(run_id, timeout=150)

    records = RunStore().step_records(run_id)
    assert run.status == "succeeded", records
    assert_recovered(world, run_id, records, r53, zone_id, zone, restored_dsn, run.rto_seconds, "celery")
    assert {rec["task_id"] for rec in records.values()}.isdisjoint({None, "", "local"})


def test_offsite_only_never_falls_back_to_regional_copies(world, tmp_path) -> None:
    from drfleet.datapath.errors import BackupNotFound
    from drfleet.plan.recovery import recovery_config
    from drfleet.runbooks.actions import StepContext
    from drfleet.runbooks.actions.restore import newest_backup
    from drfleet.runbooks.steps import StepSpec

    plan = load_plan(world.write(services="services: {}\n"))
    run_backup(plan, "site", "hourly", region="eu-central")                 # a regional copy only
    regional_only = plan.model_copy(update={"storage": {n: loc for n, loc in plan.storage.items() if not loc.offsite}})
    spec = StepSpec("restore-site", "restore", "site", "us-east", {"dataset": "site", "locations": "offsite"})

    def newest(p):
        return newest_backup(StepContext(p, recovery_config(p), "run", spec, {}), "site", "offsite")

    with pytest.raises(BackupNotFound, match="no backup of site"):
        newest(plan)                                                        # the offsite store is empty
    with pytest.raises(BackupNotFound, match="no storage location of the plan may serve site") as no_offsite:
        newest(regional_only)                                               # no offsite store at all
    assert "offsite: true" in no_offsite.value.hint


def test_a_dataset_two_services_restore_is_restored_once_per_target(world, tmp_path) -> None:
    from drfleet.runbooks.scenarios import build_steps

    health = '[sh, -c, "true"]'
    services = f"""\
fallback_region: us-east
services:
  api: {{region: eu-central, health: {health}, critical: true,
         restore: {{site: "env:SITE_DB_URL"}}}}
  admin: {{region: eu-central, health: {health}, restore: {{site: "env:SITE_DB_URL"}}}}
  web: {{region: eu-central, health: {health}, restore: {{site: "host:{{root}}/srv/site"}}}}
"""
    plan = load_plan(world.write(services=services))

    steps = build_steps(plan, "catastrophic")

    restores = [(s.name, s.target, s.params["target"]) for s in steps if s.action == "restore"]
    assert restores == [("restore-site", "api", "env:SITE_DB_URL"),
                        ("restore-site-for-web", "web", "host:{root}/srv/site")]
