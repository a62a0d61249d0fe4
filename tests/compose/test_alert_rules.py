"""compose/prometheus/alerts.yml: each rule's expression fires on the synthetic series it
is meant for and stays quiet otherwise (tests/compose/promql.py evaluates it), the rules
fire on what the workers' exporter really serves from fleet state, and ``promtool check
rules`` accepts the file where promtool is installed."""

import shutil
import subprocess
import time
from pathlib import Path

import pytest
import yaml

from tests.compose.promql import Evaluator, firing, tokenize

ROOT = Path(__file__).resolve().parents[2]
RULES_FILE = ROOT / "compose" / "prometheus" / "alerts.yml"
H = 3600.0
NOW = 10 * H  # small, so promtool can replay the cases from time 0 (see the last test)


def rules() -> dict[str, dict]:
    doc = yaml.safe_load(RULES_FILE.read_text())
    return {r["alert"]: r for group in doc["groups"] for r in group["rules"]}


def labels(**kw) -> frozenset:
    return frozenset(kw.items())


SITE = {"dataset": "site", "policy": "hourly", "region": "eu-central"}
DB = {"dataset": "db", "policy": "daily", "region": "us-east"}


def both_instances(name, lbls, value):
    """The same fleet-state series from two workers of one region (data and control lane)."""
    return [(name, {**lbls, "instance": "w1:9808"}, value), (name, {**lbls, "instance": "w2:9808"}, value)]


SVC = {"region": "eu-central", "kind": "http"}
CASES = {
    "ServiceDown": [
        (both_instances("drfleet_service_up", {"service": "api", **SVC}, 0)
         + both_instances("drfleet_service_up", {"service": "web", **SVC}, 1),
         {labels(service="api", region="eu-central")}),
        (both_instances("drfleet_service_up", {"service": "api", **SVC}, 1), set()),
    ],
    "ServiceErrorRateHigh": [
        ([("drfleet_service_error_ratio", {"service": "api", "region": "eu-central"}, 0.7),
          ("drfleet_service_error_ratio", {"service": "web", "region": "eu-central"}, 0.5)],
         {labels(service="api", region="eu-central")}),
        ([("drfleet_service_error_ratio", {"service": "api", "region": "eu-central"}, 0.1)], set()),
    ],
    "RegionServicesDown": [
        # two services down in eu-central (each exported by two workers), one in us-east
        (both_instances("drfleet_service_up", {"service": "api", **SVC}, 0)
         + both_instances("drfleet_service_up", {"service": "web", **SVC}, 0)
         + [("drfleet_service_up", {"service": "logs", "region": "us-east", "kind": "tcp"}, 0),
            ("drfleet_service_up", {"service": "db", "region": "us-east", "kind": "tcp"}, 1)],
         {labels(region="eu-central")}),
        (both_instances("drfleet_service_up", {"service": "api", **SVC}, 0)
         + both_instances("drfleet_service_up", {"service": "web", **SVC}, 1), set()),
    ],
    "DatabaseUnreachable": [
        ([("drfleet_database_up", {"dataset": "auth-db", "region": "eu-central"}, 0),
          ("drfleet_database_up", {"dataset": "ghost-db", "region": "eu-central"}, 1)],
         {labels(dataset="auth-db", region="eu-central")}),
        ([("drfleet_database_up", {"dataset": "auth-db", "region": "eu-central"}, 1)], set()),
    ],
    "ReplicationLagHigh": [
        ([("drfleet_replication_lag_seconds", {"dataset": "auth-db", "region": "eu-central"}, 300),
          ("drfleet_replication_lag_seconds", {"dataset": "ghost-db", "region": "eu-central"}, 2)],
         {labels(dataset="auth-db", region="eu-central")}),
        ([("drfleet_replication_lag_seconds", {"dataset": "auth-db", "region": "eu-central"}, 0)], set()),
    ],
    "BackupFailed": [
        (both_instances("backup_job_success", SITE, 0) + both_instances("backup_job_success", DB, 1),
         {labels(**SITE)}),
        (both_instances("backup_job_success", SITE, 1), set()),
    ],
    "BackupMissing": [
        # last success 2h ago, allowed 1.5h: missing; db's last success 1h ago of 36h allowed: fine
        (both_instances("backup_last_success_timestamp", SITE, NOW - 2 * H)
         + both_instances("backup_max_age_seconds", SITE, 1.5 * H)
         + both_instances("backup_tracked_since_timestamp", SITE, NOW - 100 * H)
         + both_instances("backup_last_success_timestamp", DB, NOW - H)
         + both_instances("backup_max_age_seconds", DB, 36 * H)
         + both_instances("backup_tracked_since_timestamp", DB, NOW - 100 * H),
         {labels(**SITE)}),
        # never succeeded: missing once drfleet has expected it for longer than allowed
        (both_instances("backup_max_age_seconds", SITE, 1.5 * H)
         + both_instances("backup_tracked_since_timestamp", SITE, NOW - 2 * H)
         + both_instances("backup_max_age_seconds", DB, 36 * H)
         + both_instances("backup_tracked_since_timestamp", DB, NOW - 2 * H),
         {labels(**SITE)}),
        (both_instances("backup_last_success_timestamp", SITE, NOW - H)
         + both_instances("backup_max_age_seconds", SITE, 1.5 * H)
         + both_instances("backup_tracked_since_timestamp", SITE, NOW - 100 * H), set()),
    ],
    "BackupSizeAnomaly": [
        ([("backup_size_anomaly", {"dataset": "site", "policy": "hourly"}, 1),
          ("backup_size_anomaly", {"dataset": "db", "policy": "daily"}, 0)],
         {labels(dataset="site", policy="hourly")}),
        ([("backup_size_anomaly", {"dataset": "site", "policy": "hourly"}, 0)], set()),
    ],
    "BackupRemoteUploadFailed": [
        ([("backup_copy_success", {"dataset": "site", "location": "offsite"}, 0),
          ("backup_copy_success", {"dataset": "site", "location": "us-east-store"}, 1)],
         {labels(dataset="site", location="offsite")}),
        ([("backup_copy_success", {"dataset": "site", "location": "offsite"}, 1)], set()),
    ],
    "RPOAboveTarget": [
        (both_instances("drfleet_rpo_lag_seconds", {"dataset": "site", "region": "eu-central"}, 2 * H)
         + both_instances("drfleet_rpo_target_seconds", {"dataset": "site", "region": "eu-central"}, H)
         + both_instances("drfleet_rpo_lag_seconds", {"dataset": "db", "region": "us-east"}, 60)
         + both_instances("drfleet_rpo_target_seconds", {"dataset": "db", "region": "us-east"}, 300),
         {labels(dataset="site", region="eu-central")}),
        (both_instances("drfleet_rpo_lag_seconds", {"dataset": "site", "region": "eu-central"}, H)
         + both_instances("drfleet_rpo_target_seconds", {"dataset": "site", "region": "eu-central"}, H), set()),
    ],
    "DrillFailed": [
        ([("drfleet_drill_success", {"kind": "restore"}, 1), ("drfleet_drill_success", {"kind": "region"}, 0)],
         {labels(kind="region")}),
        ([("drfleet_drill_success", {"kind": "restore"}, 1)], set()),
    ],
    "DrfleetStateUnreadable": [
        ([("drfleet_state_up", {"instance": "w1:9808"}, 0), ("drfleet_state_up", {"instance": "w2:9808"}, 1)],
         {labels(instance="w1:9808")}),
        ([("drfleet_state_up", {"instance": "w1:9808"}, 1)], set()),
    ],
}


def test_every_rule_the_issue_asks_for_exists_and_has_cases():
    assert set(rules()) == set(CASES)
    # the detection signals both seeds list: health failures, error rate, several failures in one
    # region, database connectivity, replication lag; backups failed, missing, anomalous, not uploaded
    for name in ("ServiceDown", "ServiceErrorRateHigh", "RegionServicesDown", "DatabaseUnreachable",
                 "ReplicationLagHigh", "BackupFailed", "BackupMissing", "BackupSizeAnomaly",
                 "BackupRemoteUploadFailed", "RPOAboveTarget", "DrillFailed"):
        assert rules()[name]["annotations"]["summary"]


@pytest.mark.parametrize("alert,case", [(a, i) for a, cases in CASES.items() for i in range(len(cases))])
def test_each_rule_fires_exactly_for_the_series_it_is_about(alert, case):
    series, expected = CASES[alert][case]
    assert firing(rules()[alert]["expr"], series, NOW) == expected


def test_the_evaluator_refuses_what_it_does_not_understand_and_many_to_many_matches():
    with pytest.raises(SyntaxError):
        Evaluator([], NOW).eval("rate(backup_bytes_total[5m]) > 0")
    dup = [("a", {"x": "1", "i": "1"}, 1), ("a", {"x": "1", "i": "2"}, 1), ("b", {"x": "1"}, 0)]
    with pytest.raises(ValueError, match="many-to-many"):
        Evaluator(dup, NOW).eval("a > on (x) b")
    assert Evaluator([], NOW).eval("time() - 10") == NOW - 10


@pytest.fixture
def exported(tmp_path, redis_url, monkeypatch):
    """What the exporter's fleet-state collector serves after a bad day: a failed backup,
    a backup that never ran, a size anomaly, a failed copy, a failed drill."""
    from drfleet.state import drills, outcomes, verifications
    from drfleet.state.drills import DrillRecord
    from drfleet.workers.metrics_server import FleetStateCollector
    from tests.fixtures.fleet import write_plan

    datasets = """\
site:
  kind: files
  region: eu-central
  source: {path: /srv/site}
  key: content
  rpo: 1h
  rto: 15m
  policies:
    - {name: hourly, trigger: hourly, keep: 24 hours, copies: [home-region, offsite]}
quiet:
  kind: files
  region: eu-central
  source: {path: /srv/quiet}
  key: content
  rpo: 1 day
  rto: 15m
  policies:
    - {name: daily, trigger: daily, keep: 7 days, copies: [home-region]}
"""
    plan = write_plan(tmp_path / "plan", datasets=datasets)
    monkeypatch.setenv("DRFLEET_PLAN", str(plan))
    monkeypatch.setenv("DRFLEET_STATE_URL", redis_url)
    from drfleet.state.store import key, state_client
    state_client().hset(key("outcome", "tracked"), mapping={"site|hourly": NOW - 10 * H, "site|*": NOW - 10 * H,
                                                            "quiet|daily": NOW - H, "quiet|*": NOW - H})
    outcomes.record_backup("site", "hourly", "eu-central", ok=True, seconds=3, size=100, at=NOW - 3 * H)
    outcomes.record_backup("site", "hourly", "eu-central", ok=False, at=NOW - 5)
    outcomes.record_size_check("site", "hourly", flagged=True, backup_id="x", size=29, baseline=1e6)
    outcomes.record_copy("site", "offsite", ok=False, reason="upload cut")
    backup_id = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime(NOW - 3 * H)) + "-00000001"
    verifications.record_result("site", backup_id, "eu-central-store", depth="quick", ok=True)
    drills.save(DrillRecord(kind="restore", region="eu-central", started_at=NOW - 60, result="failed",
                            reason="restore failed"))
    families = list(FleetStateCollector(region="eu-central", clock=lambda: NOW).collect())
    # what health checks put in the worker's own metrics (tasks.health -> drfleet.metrics)
    from prometheus_client import REGISTRY

    from drfleet import metrics
    metrics.observe_service_check("site", "eu-central", "http", healthy=False, seconds=0.1, error_ratio=1.0)
    metrics.database_up.labels("site-db", "eu-central").set(0)
    metrics.replication_lag.labels("site-db", "eu-central").set(120)
    own = [s for f in REGISTRY.collect() if f.name.startswith(("drfleet_service", "drfleet_database",
                                                               "drfleet_replication"))
           for s in f.samples if not s.name.endswith("_created")]
    return [(s.name, s.labels, s.value) for f in families for s in f.samples] + [
        (s.name, s.labels, s.value) for s in own]


def test_the_rules_fire_on_what_the_exporter_serves_from_fleet_state(exported):
    fired = {name: firing(rule["expr"], exported, NOW) for name, rule in rules().items()}
    site = labels(dataset="site", policy="hourly", region="eu-central")
    assert fired["BackupFailed"] == {site}
    assert fired["BackupMissing"] == {site}  # last success 3h ago, hourly allows 1.5h; quiet is young
    assert fired["BackupSizeAnomaly"] == {labels(dataset="site", policy="hourly")}
    assert fired["BackupRemoteUploadFailed"] == {labels(dataset="site", location="offsite")}
    assert fired["RPOAboveTarget"] == {labels(dataset="site", region="eu-central")}
    assert fired["DrillFailed"] == {labels(kind="restore")}
    assert fired["DrfleetStateUnreadable"] == set()
    assert fired["ServiceDown"] == {labels(service="site", region="eu-central")}
    assert fired["ServiceErrorRateHigh"] == {labels(service="site", region="eu-central")}
    assert fired["DatabaseUnreachable"] == fired["ReplicationLagHigh"] == {labels(dataset="site-db", region="eu-central")}
    assert fired["RegionServicesDown"] == set()   # one service down is not a region failure


def test_every_metric_a_rule_reads_is_one_the_exporter_serves(exported):
    served = {name for name, _, _ in exported}
    words = {t for rule in rules().values() for t in tokenize(rule["expr"])
             if t.startswith(("backup_", "drfleet_"))}
    assert words and words <= served, words - served


@pytest.mark.skipif(shutil.which("promtool") is None, reason="promtool is not installed (Prometheus' own rule checker)")
def test_promtool_accepts_the_rules_and_the_prometheus_config():
    done = subprocess.run(["promtool", "check", "rules", str(RULES_FILE)], capture_output=True, text=True)
    assert done.returncode == 0, done.stdout + done.stderr
    assert f"{len(CASES)} rules found" in done.stdout
    config = RULES_FILE.parent / "prometheus.yml"
    done = subprocess.run(["promtool", "check", "config", str(config)], capture_output=True, text=True)
    assert done.returncode == 0, done.stdout + done.stderr


@pytest.mark.skipif(shutil.which("promtool") is None, reason="promtool is not installed (Prometheus' own rule checker)")
def test_promtool_agrees_with_the_evaluator_on_every_case(tmp_path):
    """Replay every case through Prometheus' own engine (``promtool test rules``): each
    series constant from time 0, evaluated 10 minutes after NOW so ``for: 5m`` has passed."""
    stripped = {"groups": [{"name": "drfleet", "rules": [
        {k: v for k, v in rule.items() if k in ("alert", "expr", "for", "labels")} for rule in rules().values()]}]}
    (tmp_path / "rules.yml").write_text(yaml.safe_dump(stripped))
    steps = int(NOW / 300) + 2  # 5-minute steps
    tests = []
    for alert, cases in CASES.items():
        rule_labels = rules()[alert]["labels"]
        for series, expected in cases:
            tests.append({
                "interval": "5m",
                "input_series": [{"series": name + "{" + ",".join(f'{k}="{v}"' for k, v in sorted(lbls.items())) + "}",
                                  "values": f"{value:g}+0x{steps}"} for name, lbls, value in series],
                "alert_rule_test": [{"eval_time": f"{steps * 5}m", "alertname": alert,
                                     "exp_alerts": [{"exp_labels": {**dict(e), **rule_labels}}
                                                    for e in sorted(expected, key=sorted)]}]})
    (tmp_path / "tests.yml").write_text(yaml.safe_dump({"rule_files": ["rules.yml"], "evaluation_interval": "5m",
                                                        "tests": tests}))
    done = subprocess.run(["promtool", "test", "rules", str(tmp_path / "tests.yml")], capture_output=True,
                          text=True, timeout=300)
    assert done.returncode == 0, (done.stdout + done.stderr)[-4000:]
