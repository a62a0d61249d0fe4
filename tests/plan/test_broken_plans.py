"""Broken plans fail with every problem reported at once, each naming its field and line."""

import copy
import json
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner

from drfleet.cli.main import main
from drfleet.plan.loader import PlanInvalid, load_plan_text

BASE = {
    "version": 1, "name": "t",
    "regions": [{"name": "eu", "primary": True}, {"name": "us"}],
    "storage": {"eu-store": {"kind": "filesystem", "region": "eu", "path": "/srv/eu"},
                "us-store": {"kind": "filesystem", "region": "us", "path": "/srv/us"},
                "off": {"kind": "s3", "offsite": True, "bucket": "b"}},
    "keys": {"db": {"file": "/etc/k"}},
    "datasets": {"app-db": {"kind": "postgres", "region": "eu", "connection": {"env": "APP_DB_URL"},
                            "key": "db", "rpo": "5m", "rto": "15m",
                            "policies": [{"name": "hourly", "trigger": "hourly", "keep": "24h",
                                          "copies": ["primary-region"]}]}},
}


def broken(mutate) -> PlanInvalid:
    doc = copy.deepcopy(BASE)
    mutate(doc)
    with pytest.raises(PlanInvalid) as info:
        load_plan_text(yaml.safe_dump(doc, sort_keys=False))
    return info.value


def only_issue(exc: PlanInvalid):
    assert len(exc.issues) == 1, [str(i) for i in exc.issues]
    return exc.issues[0]


def test_the_base_plan_is_valid():
    load_plan_text(yaml.safe_dump(BASE))


def test_unknown_key_category_names_the_field():
    issue = only_issue(broken(lambda d: d["datasets"]["app-db"].update(key="nope")))
    assert issue.path == "datasets.app-db.key" and "unknown key category 'nope'" in issue.message


def test_inline_password_is_rejected_without_echoing_it():
    exc = broken(lambda d: d["datasets"]["app-db"].update(connection="postgresql://app:hunter2@db/app"))
    issue = only_issue(exc)
    assert issue.path == "datasets.app-db.connection"
    assert "inline connection strings are not allowed" in issue.message
    assert "hunter2" not in str(exc)


def test_inline_password_field_is_rejected():
    issue = only_issue(broken(lambda d: d["datasets"]["app-db"].update(password="hunter2")))
    assert issue.path == "datasets.app-db.password" and "inline secret" in issue.message


def test_sovereignty_violation_is_rejected():
    def mutate(d):
        d["datasets"]["app-db"]["region_only"] = True
        d["datasets"]["app-db"]["policies"][0]["copies"] = ["home-region", "all-regions"]
    issue = only_issue(broken(mutate))
    assert issue.path == "datasets.app-db.policies[0].copies[1]"
    assert "data sovereignty" in issue.message and "us-store" in issue.message


def test_region_only_copy_target_makes_the_dataset_sovereign():
    def mutate(d):
        d["datasets"]["app-db"]["policies"].append(
            {"name": "weekly", "trigger": "weekly", "keep": "30d", "copies": ["offsite"]})
        d["datasets"]["app-db"]["policies"][0]["copies"] = ["region-only"]
    issue = only_issue(broken(mutate))
    assert issue.path == "datasets.app-db.policies[1].copies[0]" and "off" in issue.message


def test_offsite_location_in_the_home_jurisdiction_keeps_sovereignty():
    doc = copy.deepcopy(BASE)
    doc["storage"]["off"]["jurisdiction"] = "eu"
    doc["datasets"]["app-db"]["region_only"] = True
    doc["datasets"]["app-db"]["policies"][0]["copies"] = ["home-region", "offsite"]
    load_plan_text(yaml.safe_dump(doc))


def test_bad_cron_names_the_cron_field():
    issue = only_issue(broken(lambda d: d["datasets"]["app-db"]["policies"][0].update(trigger="0 25 * * *")))
    assert issue.path == "datasets.app-db.policies[0].trigger" and "hour field" in issue.message


def test_negative_retention_is_rejected():
    issue = only_issue(broken(lambda d: d["datasets"]["app-db"]["policies"][0].update(keep="-3 days")))
    assert issue.path == "datasets.app-db.policies[0].keep" and "positive" in issue.message


def test_unknown_region_is_rejected():
    issue = only_issue(broken(lambda d: d["datasets"]["app-db"].update(region="mars")))
    assert issue.path == "datasets.app-db.region" and "unknown region 'mars'" in issue.message


def test_every_problem_is_reported_at_once():
    def mutate(d):
        d["datasets"]["app-db"].update(key="nope", region="mars")
        d["datasets"]["app-db"]["policies"][0].update(trigger="every 7 hours", keep="0 versions")
    exc = broken(mutate)
    paths = sorted(i.path for i in exc.issues)
    assert paths == ["datasets.app-db.key", "datasets.app-db.policies[0].keep",
                     "datasets.app-db.policies[0].trigger", "datasets.app-db.region"]


def test_two_primaries_are_rejected():
    issue = only_issue(broken(lambda d: d["regions"][1].update(primary=True)))
    assert issue.path == "regions" and "exactly one region" in issue.message


def test_plan_check_reports_lines_and_exits_2(tmp_path: Path):
    doc = copy.deepcopy(BASE)
    doc["datasets"]["app-db"]["key"] = "nope"
    doc["datasets"]["app-db"]["policies"][0]["trigger"] = "fortnightly"
    path = tmp_path / "plan.yaml"
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    text = path.read_text().splitlines()
    key_line = next(i for i, line in enumerate(text, 1) if "key: nope" in line)
    result = CliRunner().invoke(main, ["plan", "check", str(path)])
    assert result.exit_code == 2
    assert f"line {key_line}: datasets.app-db.key: unknown key category 'nope'" in result.output
    assert "datasets.app-db.policies[0].trigger" in result.output and "fortnightly" in result.output


def test_plan_schema_is_json_schema_with_the_plan_sections():
    result = CliRunner().invoke(main, ["plan", "schema"])
    assert result.exit_code == 0
    schema = json.loads(result.output)
    assert set(schema["properties"]) >= {"regions", "storage", "keys", "datasets", "drills", "objectives"}
    assert "Policy" in schema["$defs"]


def test_plan_check_also_checks_the_runbooks_recovery_section(tmp_path: Path):
    doc = copy.deepcopy(BASE)
    doc["recovery"] = {"services": {"api": {"region": "atlantis"}}}
    path = tmp_path / "plan.yaml"
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    result = CliRunner().invoke(main, ["plan", "check", str(path)])
    assert result.exit_code == 2
    assert "recovery.services.api.health: Field required" in result.output
