"""Every runbook scenario's ``--dry-run`` against both shipped plans, through the real CLI:
every service, every database, every region, every host with services, catastrophic. No
"has no entry under recovery.databases" error; the region failure lists its DNS switches,
its restores and the datasets that cannot survive; bad recovery sections are refused with
the path of each problem and nothing secret echoed."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner

from drfleet.cli.main import main
from drfleet.plan.loader import PlanInvalid, validate_document
from drfleet.plan.recovery import RecoveryConfigInvalid, recovery_config
from drfleet.runbooks.scenarios import SCENARIOS, build_steps

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
PLANS = ("microservices.yaml", "plugspace.yaml")


def load(name):
    return validate_document(yaml.safe_load((EXAMPLES / name).read_text()), source=name)


def runs(name):
    """(scenario, options) for everything the plan's recovery section names."""
    plan = load(name)
    rec = recovery_config(plan)
    out = [("service-failure", ["--service", s]) for s in rec.services]
    out += [("database-failure", ["--dataset", d]) for d in rec.databases if plan.datasets[d].kind == "postgres"]
    out += [("database-corruption", ["--dataset", d]) for d in rec.databases]
    out += [("region-failure", ["--region", r]) for r in plan.region_names]
    out += [("server-failure", ["--host", h]) for h in sorted({s.host for s in rec.services.values() if s.host})]
    out.append(("catastrophic", []))
    return out


def dry_run(name, scenario, options):
    return CliRunner().invoke(main, ["runbook", "start", scenario, *options, "--dry-run",
                                     "--plan", str(EXAMPLES / name)])


@pytest.mark.parametrize("name", PLANS)
def test_every_scenario_of_the_shipped_plans_dry_runs(name):
    cases = runs(name)
    assert {s for s, _ in cases} >= set(SCENARIOS) - ({"database-failure"} if name == "plugspace.yaml" else set())
    for scenario, options in cases:
        result = dry_run(name, scenario, options)
        assert result.exit_code == 0, (scenario, options, result.output)
        assert "(dry run, nothing sent)" in result.output and " 1. " in result.output
        assert "has no entry under recovery" not in result.output


def test_the_readme_command_dry_runs_on_the_first_plan():
    result = dry_run("microservices.yaml", "database-failure", ["--dataset", "auth-db"])
    assert result.exit_code == 0, result.output
    assert "promote-standby" in result.output and "[needs approval]" in result.output
    assert "redirect-clients" in result.output and "new-standby" in result.output


def test_region_failure_lists_dns_switches_restores_and_what_cannot_survive():
    out = dry_run("microservices.yaml", "region-failure", ["--region", "eu-central"]).output
    for step in ("failover-auth", "failover-ghost", "check-sync", "restore-auth-db", "restore-ghost-db",
                 "check-traffic", "verify"):
        assert f" {step} " in out, (step, out)
    assert "note: user-uploads cannot survive the loss of eu-central" in out
    us = dry_run("microservices.yaml", "region-failure", ["--region", "us-east"]).output
    assert "note: analytics-db cannot survive the loss of us-east" in us and "(region-only)" in us
    assert "restore-analytics-db" not in us
    plugspace = dry_run("plugspace.yaml", "region-failure", ["--region", "eu-central"]).output
    assert "failover-api" in plugspace and "restore-mongodb" in plugspace and "check-traffic" in plugspace


def test_the_second_seeds_runbooks_have_their_steps():
    plan = load("plugspace.yaml")
    service = [s.name for s in build_steps(plan, "service-failure", service="api")]
    assert service[:6] == ["check-health", "restart", "collect-logs", "check-resources", "restart-all", "recheck"]
    corruption = build_steps(plan, "database-corruption", dataset="mongodb")
    assert [s.name for s in corruption] == ["stop-api", "choose-backup", "restore", "verify-counts", "start-api"]
    assert [s.name for s in corruption if s.destructive] == ["restore"]
    server = [s.name for s in build_steps(plan, "server-failure", host="app-eu-1")]
    assert server[:2] == ["confirm-host-down", "provision"]
    for step in ("setup-api", "setup-mongodb", "setup-nginx", "restore-mongodb", "restore-redis",
                 "restore-app-files", "restore-ssl-certificates", "start-api", "verify-api", "dns-api"):
        assert step in server, step
    assert server.index("provision") < server.index("setup-api") < server.index("restore-mongodb") \
        < server.index("start-api") < server.index("verify-api") < server.index("dns-api")


def test_the_shipped_plans_name_every_cloud_provider():
    providers = {c.provider for name in PLANS for c in recovery_config(load(name)).clouds.values()}
    assert providers == {"hetzner", "digitalocean", "linode", "vultr"}
    for name in PLANS:
        result = CliRunner().invoke(main, ["plan", "check", str(EXAMPLES / name)])
        assert result.exit_code == 0, result.output


def broken(mutate):
    doc = yaml.safe_load((EXAMPLES / "microservices.yaml").read_text())
    mutate(doc["recovery"])
    return validate_document(doc, source="broken")


@pytest.mark.parametrize("mutate,problem", [
    (lambda r: r["services"]["auth"].update(host="nowhere-1"), "recovery.services.auth: unknown host 'nowhere-1'"),
    (lambda r: r["databases"]["auth-db"].update(applications=["ghosts"]),
     "recovery.databases.auth-db.applications: unknown service 'ghosts'"),
    (lambda r: r["restore_targets"].update({"no-such-db": {"us-east": "env:X"}}),
     "recovery.restore_targets: unknown dataset 'no-such-db'"),
    (lambda r: r["services"]["ghost"]["dns"].update(name="blog.example.org"),
     "recovery.services.ghost.dns: record 'blog.example.org' is not in DNS zone 'example.com'"),
    (lambda r: r["restore_targets"].update({"analytics-db": {"eu-central": "env:ANALYTICS_EU_URL"}}),
     "recovery.restore_targets.analytics-db.eu-central: data sovereignty: analytics-db is region-only (us-east)"),
    (lambda r: r["databases"]["analytics-db"]["new_standby"].update(host="db-eu-2"),
     "recovery.databases.analytics-db.new_standby.host: data sovereignty: db-eu-2 is in eu-central"),
])
def test_a_recovery_section_naming_what_the_plan_lacks_is_refused_with_its_path(mutate, problem):
    with pytest.raises(RecoveryConfigInvalid) as exc:
        recovery_config(broken(mutate))
    assert any(p.startswith(problem) for p in exc.value.facts["problems"]), exc.value.facts["problems"]


@pytest.mark.parametrize("probe,says", [
    ({"http": "ftp://10.0.1.5/health"}, "http must be an http:// or https:// URL with a host"),
    ({"http": "http://"}, "http must be an http:// or https:// URL with a host"),
    ({"http": "http://admin:hunter2@10.0.1.5/health"}, "holds a password in the URL"),   # the loader's check
    ({"http": "http://10.0.1.5:99999/"}, "http has an invalid port"),
    ({"tcp": "10.0.1.5"}, "tcp must be HOST:PORT"),
    ({"tcp": "10.0.1.5:1", "http": "http://x/"}, "give exactly one of http, tcp or command"),
])
def test_a_health_check_with_a_bad_url_is_refused_without_echoing_secrets(probe, says):
    with pytest.raises((RecoveryConfigInvalid, PlanInvalid)) as exc:
        recovery_config(broken(lambda r: r["services"]["auth"].update(probe=probe)))
    text = str(exc.value)
    assert says in text and "hunter2" not in text


def test_plan_check_refuses_a_sovereignty_breaking_recovery_target(tmp_path):
    doc = yaml.safe_load((EXAMPLES / "microservices.yaml").read_text())
    doc["recovery"]["restore_targets"]["analytics-db"] = {"eu-central": "env:ANALYTICS_EU_URL"}
    path = tmp_path / "plan.yaml"
    path.write_text(yaml.safe_dump(doc))
    result = CliRunner().invoke(main, ["plan", "check", str(path)])
    assert result.exit_code == 2 and "data sovereignty" in result.output


def test_plan_check_names_the_datasets_that_cannot_survive_their_region():
    out = CliRunner().invoke(main, ["plan", "check", str(EXAMPLES / "microservices.yaml")]).output
    assert "note: analytics-db cannot survive the loss of us-east" in out


@pytest.fixture(autouse=True)
def no_fleet_broker(monkeypatch):
    """The CLI would otherwise adopt a local fleet's broker URL left in DRFLEET_HOME (and
    keep it in os.environ); nothing here needs a broker."""
    monkeypatch.setenv("DRFLEET_BROKER_URL", "redis://127.0.0.1:9/0")
    monkeypatch.setenv("DRFLEET_PLAN", "")

