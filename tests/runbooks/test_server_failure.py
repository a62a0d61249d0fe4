"""Server failure end to end on this machine: the local host running ``site`` dies; the
service-failure runbook finds it unhealthy, cannot restart it, provisions a new local host,
pushes the configuration over SSH, restores the PostgreSQL database and the files from the
latest backups, switches the DNS record on Route 53 (moto), and verifies health."""

from __future__ import annotations

import uuid
from pathlib import Path

import boto3
import psycopg

from drfleet.datapath.backup import run_backup
from drfleet.plan.loader import load_plan
from drfleet.runbooks.records import RunStore
from tests.runbooks.world import steps_by_status


def test_a_dead_host_is_replaced_restored_and_dns_switched(world, monkeypatch, pg_cluster, s3_server, tmp_path) -> None:
    from drfleet.tasks.runbooks import service_failure

    # the service's data: a database and a file tree, backed up before the failure
    source_dsn = pg_cluster.create_database("site_src")
    pg_cluster.psql("CREATE TABLE items (id int PRIMARY KEY, name text); "
                    "INSERT INTO items VALUES (1, 'a'), (2, 'b'), (3, 'c')", db="site_src")
    restored_dsn = pg_cluster.create_database("site_restored")
    files = tmp_path / "src" / "site-files"
    files.mkdir(parents=True)
    (files / "index.html").write_text("<h1>site</h1>\n")
    config = tmp_path / "config" / "site"
    config.mkdir(parents=True)
    (config / "config.yaml").write_text("database: site_restored\n")

    # DNS: www -> the old host's address, TTL 300
    zone = f"z{uuid.uuid4().hex[:8]}.example.com"
    r53 = boto3.session.Session().client("route53", endpoint_url=s3_server.endpoint_url, region_name="us-east-1",
                                         aws_access_key_id="k", aws_secret_access_key="s")
    zone_id = r53.create_hosted_zone(Name=zone, CallerReference=uuid.uuid4().hex)["HostedZone"]["Id"]
    r53.change_resource_record_sets(HostedZoneId=zone_id, ChangeBatch={"Changes": [{"Action": "CREATE",
        "ResourceRecordSet": {"Name": f"www.{zone}.", "Type": "A", "TTL": 300,
                              "ResourceRecords": [{"Value": "192.0.2.10"}]}}]})

    world.env.update(SITE_DB_URL=source_dsn, SITE_DB_RESTORED_URL=restored_dsn,
                     R53_KEY=s3_server.access_key_id, R53_SECRET=s3_server.secret_access_key)
    for k, v in world.env.items():
        monkeypatch.setenv(k, v)
    count_sql = f"psql -tA -c 'select count(*) from items' postgresql://postgres@127.0.0.1:{pg_cluster.port}/site_restored"
    datasets = f"""\
site-db:
  kind: postgres
  region: eu-central
  connection: {{env: SITE_DB_URL}}
  key: content
  rpo: 1h
  rto: 15m
  priority: 1
  policies:
    - {{name: daily, trigger: daily, keep: 7 days, copies: [home-region]}}
site-files:
  kind: files
  region: eu-central
  source: {{path: {files}}}
  key: content
  rpo: 1h
  rto: 15m
  priority: 2
  policies:
    - {{name: daily, trigger: daily, keep: 7 days, copies: [home-region]}}
"""
    services = f"""\
dns: {{provider: route53, zone: {zone}, endpoint_url: "{s3_server.endpoint_url}", region: us-east-1,
      access_key: {{env: R53_KEY}}, secret_key: {{env: R53_SECRET}}}}
services:
  site:
    region: eu-central
    host: web-1
    dns: {{name: www, type: A}}
    health: [sh, -c, "test -s {{root}}/srv/site/config.yaml && test -f {{root}}/srv/site/files/index.html && test \\"$({count_sql})\\" = 3"]
    restart: [systemctl, restart, site]
    config: {{local: {config}, remote: "{{root}}/srv/site"}}
    restore: {{site-db: "env:SITE_DB_RESTORED_URL", site-files: "host:{{root}}/srv/site/files"}}
"""
    plan = load_plan(world.write(datasets=datasets, services=services))
    for dataset in ("site-db", "site-files"):
        run_backup(plan, dataset, "daily", region="eu-central")
    world.start_fleet(monkeypatch, "eu-central")

    world.cloud.power_off(world.web1.id)                    # the host running the service dies
    run_id = service_failure("site").apply_async().run_id
    run = world.wait_run(run_id, timeout=180)

    store = RunStore()
    records = store.step_records(run_id)
    assert run.status == "succeeded", records
    print(f"\nserver failure recovered: RTO {run.rto_seconds:.1f}s (run {run_id})")
    assert steps_by_status(run_id) == {
        "check-health": "succeeded", "restart": "succeeded", "provision": "succeeded",
        "push-config": "succeeded", "restore-site-db": "succeeded", "restore-site-files": "succeeded",
        "route-traffic": "succeeded", "verify": "succeeded"}
    assert records["check-health"]["output"]["healthy"] is False
    assert records["restart"]["output"]["restarted"] is False

    new = world.cloud.list_servers(f"drfleet-run={run_id}")
    assert len(new) == 1 and new[0].is_running and new[0].id != world.web1.id
    root = Path(new[0].root)
    assert (root / "srv/site/config.yaml").read_text() == "database: site_restored\n"
    assert (root / "srv/site/files/index.html").read_text() == "<h1>site</h1>\n"
    with psycopg.connect(restored_dsn) as conn:
        assert conn.execute("SELECT name FROM items ORDER BY id").fetchall() == [("a",), ("b",), ("c",)]

    dns = records["route-traffic"]["output"]
    assert dns["old_values"] == ["192.0.2.10"] and dns["new_values"] == ["127.0.0.1"] and dns["old_ttl"] == 300
    assert dns["clients_may_hold_old_until"] == dns["switched_at"] + 300
    sets = r53.list_resource_record_sets(HostedZoneId=zone_id)["ResourceRecordSets"]
    www = next(s for s in sets if s["Name"] == f"www.{zone}." and s["Type"] == "A")
    assert [r["Value"] for r in www["ResourceRecords"]] == ["127.0.0.1"]
    assert run.rto_seconds == round(run.verified_at - run.created_at, 3)
