"""The DR report from real Redis state: RPO from verified recovery points, RTO from drill
records, the monthly review from the audit log, and the HTML page (inline SVG, no script),
which headless Chromium renders to a screenshot."""

import os
import shutil
import subprocess
import time
from datetime import datetime, timezone

import pytest

from drfleet.plan.loader import load_plan
from drfleet.report.build import build_report
from drfleet.report.html import render_html
from drfleet.report.monthly import MonthInvalid, month_review
from drfleet.report.rpo import freshness_series, trend
from drfleet.state import audit, drills, verifications
from drfleet.state.drills import DatasetOutcome, DrillRecord
from tests.fixtures.fleet import write_plan
from tests.fixtures.plans import dataset, policy

HOUR = 3600.0
NOW = datetime(2026, 11, 21, 12, 0, tzinfo=timezone.utc).timestamp()

DATASETS = (dataset("site", policy("hourly", "hourly", "24 hours"), source="/srv/site")
            + dataset("ledger", policy("hourly", "hourly", "24 hours"), region="us-east", source="/srv/ledger",
                    rpo="5m", rto="1m"))


@pytest.fixture
def plan(tmp_path, redis_url, monkeypatch):
    monkeypatch.setenv("DRFLEET_STATE_URL", redis_url)
    return load_plan(write_plan(tmp_path / "plan", datasets=DATASETS))


def backup_id_at(epoch: float, n: int = 0) -> str:
    return time.strftime("%Y%m%dT%H%M%SZ", time.gmtime(epoch)) + f"-{n:08x}"


def verified(dataset, epoch, ok=True, n=0):
    verifications.record_result(dataset, backup_id_at(epoch, n), "eu-central-store", depth="quick", ok=ok)


def drill(kind, started, dataset, rto, ok=True, region="eu-central"):
    record = DrillRecord(kind=kind, region=region, started_at=started, ended_at=started + rto,
                         result="passed" if ok else "failed", reason="" if ok else "restore failed: boom",
                         rto_seconds=rto if ok else None,
                         datasets=[DatasetOutcome(dataset, ok=ok, rto_seconds=rto if ok else None)])
    return drills.save(record)


def test_freshness_climbs_between_recovery_points_and_drops_at_each():
    series = freshness_series([100.0, 400.0, 500.0], 200.0, 600.0)
    assert series == [(200.0, 100.0), (400.0, 300.0), (400.0, 0.0), (500.0, 100.0), (500.0, 0.0), (600.0, 100.0)]
    assert freshness_series([], 0.0, 10.0) == []


def test_trend_compares_the_later_value_with_the_earlier():
    assert trend(100, 50) == "improving" and trend(100, 150) == "worsening"
    assert trend(100, 105) == "steady" and trend(None, 5) == "-"


def test_rpo_is_the_age_of_the_newest_verified_recovery_point_against_the_target(plan):
    for i in range(1, 10):
        verified("site", NOW - i * HOUR / 2, n=i)
    verified("site", NOW - 60, ok=False, n=99)  # damaged: not a recovery point
    verified("ledger", NOW - 2 * HOUR)
    doc = build_report(plan, now=NOW, window_days=1)
    rows = {r["dataset"]: r for r in doc["rpo"]}
    assert rows["site"]["lag_seconds"] == HOUR / 2 and rows["site"]["margin_seconds"] == HOUR / 2
    assert rows["site"]["met"] is True and rows["site"]["recovery_points"] == 9
    assert rows["ledger"]["lag_seconds"] == 2 * HOUR and rows["ledger"]["margin_seconds"] == 300 - 2 * HOUR
    assert rows["ledger"]["met"] is False
    assert rows["site"]["series"][-1] == (NOW, HOUR / 2)


def test_rto_rows_give_latest_worst_margin_and_trend_per_dataset_and_drill(plan):
    drill("restore", NOW - 5 * HOUR, "site", 300)
    drill("restore", NOW - 3 * HOUR, "site", 600)
    drill("restore", NOW - 1 * HOUR, "site", 200)
    drill("region", NOW - 2 * HOUR, "site", 100, ok=False)
    doc = build_report(plan, now=NOW, window_days=1)
    [row] = doc["rto"]
    assert (row["dataset"], row["drill"], row["scenario"]) == ("site", "restore", "single-service")
    assert (row["target_seconds"], row["latest_seconds"], row["worst_seconds"]) == (900, 200, 600)
    assert row["margin_seconds"] == 700 and row["worst_margin_seconds"] == 300 and row["trend"] == "improving"
    kinds = {k["kind"]: k for k in doc["drills"]}
    assert kinds["region"]["latest_result"] == "failed" and kinds["region"]["failed"] == 1
    assert kinds["restore"]["passed"] == 3 and kinds["restore"]["worst_seconds"] == 600


def test_the_monthly_review_counts_backups_drills_and_integrity_of_that_month(plan):
    month = time.strftime("%Y-%m", time.gmtime())
    for seconds, outcome in ((10, "succeeded"), (30, "succeeded"), (20, "succeeded"), (5, "failed")):
        audit.record("drfleet.backup", actor="beat", outcome=outcome, dataset="site", seconds=seconds)
    for outcome in ("ok", "ok", "damaged", "size-anomaly"):
        audit.record("verification", actor="api", outcome=outcome, dataset="site")
    drill("restore", time.time() - 10, "site", 120)
    drill("full", time.time() - 5, "site", 0, ok=False)
    review = month_review(month)
    assert review["backups"]["runs"] == 4 and review["backups"]["success_rate"] == 0.75
    assert review["backups"]["completion_seconds"]["median"] == 20
    assert review["backups"]["completion_seconds"]["max"] == 30
    assert review["drills"]["passed"] == 1 and review["drills"]["failed"] == 1
    assert review["drills"]["recovery_seconds"]["max"] == 120
    assert review["drills"]["failures"][0]["reason"] == "restore failed: boom"
    assert review["integrity"] == {"verifications": 4, "ok": 2, "damaged": 1, "size_anomalies": 1, "ok_rate": 0.5}
    assert month_review("2026-01")["backups"]["runs"] == 0
    with pytest.raises(MonthInvalid, match="YYYY-MM"):
        month_review("November")


def report_doc(plan):
    for i in range(48):
        if i % 7 != 3:  # some gaps, so the sawtooth rises above the 1h target
            verified("site", NOW - i * HOUR - 60, n=i)
        verified("ledger", NOW - (i + 1) * HOUR, n=i)  # 5m target: missed
    for day in range(6):
        drill("restore", NOW - day * 8 * HOUR, "site", 200 + 150 * day)
        drill("restore", NOW - day * 8 * HOUR - 60, "ledger", 40 + 10 * day)
    drill("region", NOW - 30 * HOUR, "site", 1200, ok=False)
    return build_report(plan, now=NOW, window_days=2)


def test_the_html_report_has_inline_svg_charts_and_no_script(plan):
    page = render_html(report_doc(plan))
    assert page.startswith("<!doctype html>")
    assert page.count("<svg") == 2 + 2  # freshness per dataset, RTO per dataset and drill
    assert "<script" not in page.lower() and "src=" not in page and "<link" not in page
    assert "site: freshness vs RPO target" in page and "ledger (restore drill): RTO vs target" in page
    assert "missed" in page and "met" in page


CHROMIUM = "/usr/bin/chromium"


@pytest.mark.skipif(not os.path.exists(CHROMIUM),
                    reason="headless Chromium is not installed (/usr/bin/chromium; apt-get install -y chromium)")
def test_headless_chromium_renders_the_html_report_to_a_screenshot(plan, tmp_path):
    page = tmp_path / "report.html"
    page.write_text(render_html(report_doc(plan)))
    shot = tmp_path / "report.png"
    done = subprocess.run([CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
                           "--disable-dev-shm-usage", f"--user-data-dir={tmp_path / 'profile'}",
                           "--window-size=1200,1400", f"--screenshot={shot}", page.as_uri()],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    data = shot.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    width, height = int.from_bytes(data[16:20], "big"), int.from_bytes(data[20:24], "big")
    assert (width, height) == (1200, 1400)
    keep = os.environ.get("DRFLEET_REPORT_SCREENSHOT")
    if keep:
        shutil.copy(shot, keep)
