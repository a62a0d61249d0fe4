"""``drfleet drill run|list`` and ``drfleet report``: the CLI in this process, drills on a
real worker (or --local), state in a real Redis."""

import json
import time

import pytest
from click.testing import CliRunner

from drfleet.cli.main import main


@pytest.fixture
def site_fleet(fleet, fleet_plan):
    from drfleet.backup_format.keyring import create_keyring
    keys = fleet_plan.parent / "keys"
    keys.mkdir(mode=0o700, exist_ok=True)
    create_keyring(keys / "content.keyring", "content")
    fleet.worker("eu-central", lane="data")
    return fleet, str(fleet_plan)


def run(*args):
    return CliRunner().invoke(main, list(args), catch_exceptions=False)


def record_of(output: str) -> dict:
    return json.loads(output[output.index("{"):])


def test_drill_run_wait_list_report_and_audit(site_fleet, tmp_path):
    _, plan = site_fleet
    assert run("backup", "site", "--wait", "--plan", plan).exit_code == 0

    passed = run("drill", "run", "restore", "--dataset", "site", "--wait", "--json", "--plan", plan)
    assert passed.exit_code == 0, passed.output
    record = record_of(passed.output)
    assert record["result"] == "passed" and record["datasets"][0]["dataset"] == "site"

    failed = run("drill", "run", "region", "--local", "--json", "--plan", plan)
    assert failed.exit_code == 1
    assert "no usable backup of site outside region eu-central" in record_of(failed.output)["reason"]

    listed = run("drill", "list", "--plan", plan)
    assert listed.exit_code == 0
    lines = listed.stdout.splitlines()[2:]  # under the header and its rule; newest first
    assert len(lines) == 2 and " region " in lines[0] and " failed " in lines[0]
    assert " restore " in lines[1] and " passed " in lines[1]

    audited = run("audit", "--action", "drill", "--json", "--plan", plan)
    assert [json.loads(line)["outcome"] for line in audited.output.splitlines()] == ["failed", "passed"]  # newest first

    # The month under review is the one the drill was recorded in, never the calendar's today.
    month = time.strftime("%Y-%m", time.gmtime(record["started_at"]))
    html = tmp_path / "report.html"
    report = run("report", "--json", "--html", str(html), "--month", month, "--plan", plan)
    doc = json.loads(report.stdout)
    assert {r["dataset"] for r in doc["rpo"]} == {"site"}
    assert [r["drill"] for r in doc["rto"]] == ["restore"]
    assert doc["month"]["drills"]["passed"] == 1 and doc["month"]["drills"]["failed"] == 1
    assert doc["month"]["backups"]["runs"] == 1 and doc["month"]["backups"]["success_rate"] == 1.0
    assert html.read_text().count("<svg") == 2

    text = run("report", "--month", month, "--plan", plan)
    assert f"Monthly review {month}" in text.output and "success rate 100.0%" in text.output


def test_bad_input_is_a_clear_error(site_fleet):
    _, plan = site_fleet
    bad_month = run("report", "--month", "2026-13", "--plan", plan)
    assert bad_month.exit_code == 1 and "is not a month" in bad_month.output and "YYYY-MM" in bad_month.output
    unknown = run("drill", "run", "restore", "--dataset", "nope", "--plan", plan)
    assert unknown.exit_code == 1 and "dataset 'nope' is not in plan" in unknown.output
    bad_kind = run("drill", "run", "chaos", "--plan", plan)
    assert bad_kind.exit_code == 2 and "chaos" in bad_kind.output
