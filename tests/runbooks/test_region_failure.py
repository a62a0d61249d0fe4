"""Region failure and the drill entry point, run inline (``run_failover_drill``: the same
steps and records as a Celery run, in this process), plus ``--dry-run`` and the CLI."""

from __future__ import annotations

import uuid
from pathlib import Path

import boto3
from click.testing import CliRunner

from drfleet.cli.main import main
from drfleet.datapath.backup import run_backup
from drfleet.plan.loader import load_plan
from drfleet.providers.clouds.base import ServerSpec
from drfleet.runbooks.records import RunStore
from drfleet.runbooks.runner import run_failover_drill


def region_world(world, s3_server, tmp_path, monkeypatch):
    web2, _ = world.cloud.create_server(ServerSpec(name="web-2"))
    (Path(web2.root) / "healthy").write_text("ok\n")
    with open(world.known_hosts, "a") as known:
        known.write(f"[127.0.0.1]:{web2.ssh_port} {web2.host_key}\n")
    zone = f"z{uuid.uuid4().hex[:8]}.example.com"
    r53 = boto3.session.Session().client("route53", endpoint_url=s3_server.endpoint_url, region_name="us-east-1",
                                         aws_access_key_id="k", aws_secret_access_key="s")
    zone_id = r53.create_hosted_zone(Name=zone, CallerReference=uuid.uuid4().hex)["HostedZone"]["Id"]
    for name in ("www", "api"):
        r53.change_resource_record_sets(HostedZoneId=zone_id, ChangeBatch={"Changes": [{"Action": "CREATE",
            "ResourceRecordSet": {"Name": f"{name}.{zone}.", "Type": "A", "TTL": 120,
                                  "ResourceRecords": [{"Value": "192.0.2.10"}]}}]})
    monkeypatch.setenv("R53_KEY", s3_server.access_key_id)
    monkeypatch.setenv("R53_SECRET", s3_server.secret_access_key)
    src = tmp_path / "src" / "uploads"
    src.mkdir(parents=True)
    (src / "a.txt").write_text("upload\n")
    datasets = f"""\
uploads:
  kind: files
  region: eu-central
  source: {{path: {src}}}
  key: content
  rpo: 1h
  rto: 15m
  policies:
    - {{name: daily, trigger: daily, keep: 7 days, copies: [all-regions]}}
"""
    health = '[sh, -c, "test -f {root}/healthy"]'
    recovery = f"""\
dns: {{provider: route53, zone: {zone}, endpoint_url: "{s3_server.endpoint_url}", region: us-east-1,
      access_key: {{env: R53_KEY}}, secret_key: {{env: R53_SECRET}}}}
services:
  site: {{region: eu-central, host: web-1, instances: {{us-east: web-2}}, dns: {{name: www}}, health: {health}, critical: true}}
  api: {{region: eu-central, host: web-1, instances: {{us-east: web-2}}, dns: {{name: api}}, health: {health}}}
restore_targets:
  uploads: {{us-east: {tmp_path / "restored" / "uploads"}}}
fallback_region: us-east
"""
    path = world.write(datasets=datasets, services=recovery, hosts=[world.host_line("web-2", web2, "us-east")],
                       roots={"web-2": web2.root})
    monkeypatch.setenv("DRFLEET_PLAN", str(path))
    return load_plan(path), r53, zone_id, zone


def test_region_failure_drill_fails_over_dns_and_restores_from_another_regions_copy(
        world, s3_server, tmp_path, monkeypatch) -> None:
    plan, r53, zone_id, zone = region_world(world, s3_server, tmp_path, monkeypatch)
    run_backup(plan, "uploads", "daily", region="eu-central", location="us-east-store")  # the copy elsewhere
    world.cloud.power_off(world.web1.id)                                                  # eu-central is gone

    report = run_failover_drill(plan, "region-failure", region="eu-central")

    assert report["result"] == "succeeded", [(s["name"], s["status"], s["error"]) for s in report["steps"]]
    assert report["rto_seconds"] > 0 and report["end"] >= report["start"]
    steps = {s["name"]: s for s in report["steps"]}
    assert list(steps) == ["confirm-region-down", "failover-site", "failover-api", "check-sync", "restore-uploads",
                           "check-traffic", "verify"]
    assert steps["check-sync"]["output"]["datasets"]["uploads"]["location"] == "us-east-store"
    assert steps["check-traffic"]["output"]["answers"]["site"]["values"] == ["127.0.0.1"]
    assert steps["confirm-region-down"]["output"]["down"] == ["api", "site"]
    assert steps["failover-site"]["output"]["host"] == "web-2"
    assert steps["restore-uploads"]["output"]["location"] == "us-east-store"
    assert (tmp_path / "restored" / "uploads" / "a.txt").read_text() == "upload\n"
    sets = r53.list_resource_record_sets(HostedZoneId=zone_id)["ResourceRecordSets"]
    answers = {s["Name"]: [r["Value"] for r in s["ResourceRecords"]] for s in sets if s["Type"] == "A"}
    assert answers[f"www.{zone}."] == answers[f"api.{zone}."] == ["127.0.0.1"]


def test_a_region_whose_services_answer_is_not_failed_over(world, s3_server, tmp_path, monkeypatch) -> None:
    plan, *_ = region_world(world, s3_server, tmp_path, monkeypatch)
    (Path(world.web1.root) / "healthy").write_text("ok\n")

    report = run_failover_drill(plan, "region-failure", region="eu-central")

    assert report["result"] == "failed"
    statuses = [s["status"] for s in report["steps"]]
    assert statuses == ["failed"] + ["pending"] * 6
    assert "only 0 service(s) of region eu-central are down" in report["steps"][0]["error"]


def test_dry_run_prints_the_steps_and_sends_nothing(world, s3_server, tmp_path, monkeypatch) -> None:
    region_world(world, s3_server, tmp_path, monkeypatch)
    runner = CliRunner()

    region = runner.invoke(main, ["runbook", "start", "region-failure", "--region", "eu-central", "--dry-run"])
    catastrophic = runner.invoke(main, ["runbook", "start", "catastrophic", "--dry-run"])

    assert region.exit_code == 0, region.output
    assert "failover-site" in region.output and "candidates=['web-2']" in region.output
    assert "restore-uploads" in region.output and "not-region:eu-central" in region.output
    assert catastrophic.exit_code == 0, catastrophic.output
    lines = [line.split()[1] for line in catastrophic.output.splitlines()[1:]]
    assert lines == ["provision-site", "provision-api", "verify-site", "verify-api", "dns-site", "dns-api"]
    assert RunStore().list_runs() == []


def test_cli_status_approve_and_list(world, s3_server, tmp_path, monkeypatch) -> None:
    plan, *_ = region_world(world, s3_server, tmp_path, monkeypatch)
    report = run_failover_drill(plan, "region-failure", region="eu-central")   # a finished run to look at
    runner = CliRunner()

    status = runner.invoke(main, ["runbook", "status", report["run_id"]])
    listing = runner.invoke(main, ["runbook", "list"])
    bad = runner.invoke(main, ["runbook", "approve", report["run_id"], "verify"])
    unknown = runner.invoke(main, ["runbook", "status", "no-such-run"])

    assert status.exit_code == 0 and "confirm-region-down" in status.output
    assert report["run_id"] in listing.output
    assert bad.exit_code == 1 and "needs no approval" in bad.output
    assert unknown.exit_code == 1 and "no runbook run" in unknown.output
