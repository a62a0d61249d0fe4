"""Targets missed or without data make the report fail; RTO per scenario comes from
runbook runs and drills; charts stay readable from seconds to days."""

from __future__ import annotations

import time
from dataclasses import dataclass

import pytest
from click.testing import CliRunner

from drfleet.cli.main import main
from drfleet.plan.loader import load_plan
from drfleet.report.build import build_report
from drfleet.report.html import axis, render_html
from drfleet.report.rto import scenario_rows
from drfleet.state import verifications
from drfleet.state.drills import DatasetOutcome, DrillRecord
from tests.fixtures.fleet import write_plan
from tests.fixtures.plans import dataset, policy

DATASETS = (dataset("site", policy("hourly", "hourly", "24 hours"), source="/srv/site",
                    scenario="single-service"))


@dataclass
class Run:
    run_id: str
    scenario: str
    status: str
    created_at: float
    rto_seconds: float | None


@pytest.fixture
def plan_path(tmp_path, redis_url, monkeypatch):
    monkeypatch.setenv("DRFLEET_STATE_URL", redis_url)
    monkeypatch.setenv("DRFLEET_BROKER_URL", redis_url)
    path = write_plan(tmp_path / "plan", datasets=DATASETS,
                      extra="objectives: {rto: {single-service: 5 minutes, region: 1 hour}}\n")
    return path


def test_rto_per_scenario_comes_from_runbook_runs_and_drills(plan_path):
    plan = load_plan(plan_path)
    now = time.time()
    runs = [Run("r1", "service-failure", "succeeded", now - 100, 42.0),
            Run("r2", "service-failure", "failed", now - 50, None)]
    drills = [DrillRecord(kind="region", region="eu-central", started_at=now - 10, result="passed",
                          rto_seconds=4000.0, datasets=[DatasetOutcome("site", ok=True, rto_seconds=4000.0)])]
    rows = {r["scenario"]: r for r in scenario_rows(plan, drills, runs)}
    assert (rows["single-service"]["worst_seconds"], rows["single-service"]["met"]) == (42.0, True)
    assert rows["single-service"]["latest_source"] == "runbook service-failure r1"
    assert (rows["region"]["worst_seconds"], rows["region"]["met"]) == (4000.0, False)


def test_a_target_without_data_or_missed_makes_report_exit_1_and_says_which(plan_path):
    plan = load_plan(plan_path)
    report = build_report(plan)
    assert "RPO of site: no recovery point (no data)" in report["unmet"]
    assert "RTO of scenario single-service: never measured in this window (no data)" in report["unmet"]
    result = CliRunner().invoke(main, ["report", "--plan", str(plan_path)])
    assert result.exit_code == 1
    assert "target(s) missed or without data" in result.output and "RPO of site" in result.output


def test_with_every_target_measured_and_met_report_exits_0(plan_path):
    now = time.time()
    backup_id = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime(now - 60)) + "-00000001"
    verifications.record_result("site", backup_id, "eu-central-store", depth="quick", ok=True)
    plan = load_plan(plan_path)
    runs = [Run("r1", "service-failure", "succeeded", now - 100, 42.0),
            Run("r2", "region-failure", "succeeded", now - 100, 600.0)]
    assert build_report(plan, runs=runs)["unmet"] == []


def test_charts_switch_to_a_log_scale_when_values_span_seconds_to_days():
    assert axis([3, 2 * 86400])[0] == "log"
    scale, top, ticks = axis([100, 200, 300])
    assert scale == "linear" and ticks == sorted(ticks) and ticks[-1] <= top
    report = {"plan": "p", "generated_at": 0, "window": {"start": 0, "end": 86400 * 3},
              "rpo": [{"dataset": "d", "region": "r", "target_seconds": 300, "lag_seconds": 172800,
                       "margin_seconds": -172500, "met": False, "peak_seconds": 172800, "trend": "-",
                       "series": [(0, 0), (172800, 172800)]}],
              "rto": [], "scenarios": [], "drills": [], "unmet": ["RPO of d: missed"]}
    page = render_html(report)
    assert 'data-scale="log"' in page
    from drfleet.plan.durations import format_duration
    assert f">{format_duration(300)}<" in page and f">{format_duration(86400)}<" in page   # ticks of both scales
    assert "Targets missed or without data" in page
