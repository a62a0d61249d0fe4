"""compose/grafana: the dashboard's every query names only metrics the workers' exporter
really serves (the fleet-state collector and the metrics drfleet's tasks update), uses the
provisioned data source, and compose mounts what the provisioning files point at."""

from __future__ import annotations

import json
import re
from pathlib import Path

import yaml

from tests.compose.test_alert_rules import exported  # noqa: F401 - the fixture: what the exporter serves

ROOT = Path(__file__).resolve().parents[2]
GRAFANA = ROOT / "compose" / "grafana"
DASHBOARD = GRAFANA / "dashboards" / "drfleet.json"
METRIC = re.compile(r"\b((?:backup|drfleet)_[a-z_]+)\b")


def queries() -> list[str]:
    doc = json.loads(DASHBOARD.read_text())
    return [t["expr"] for p in doc["panels"] for t in p["targets"]]


def served_by_tasks() -> set[str]:
    """Sample names of drfleet.metrics once the tasks that update them have run."""
    from prometheus_client import REGISTRY

    from drfleet import metrics
    metrics.observe_drill("restore", "passed", 12.0)
    metrics.backup_duration.labels("site", "hourly", "eu-central").observe(3.0)
    metrics.queue_depth.labels("eu-central.data").set(2)
    metrics.archive_lag.labels("auth-db").set(4)
    metrics.rpo_target.labels("auth-db").set(300)
    metrics.replication_lag.labels("auth-db", "eu-central").set(1)
    metrics.observe_service_check("site", "eu-central", "http", healthy=True, seconds=0.1, error_ratio=0.0)
    return {s.name for f in REGISTRY.collect() for s in f.samples}


def test_every_dashboard_query_names_a_metric_the_exporter_serves(exported):  # noqa: F811
    from drfleet.state import drills
    from drfleet.state.drills import DatasetOutcome, DrillRecord
    from drfleet.workers.metrics_server import FleetStateCollector
    from tests.compose.test_alert_rules import NOW

    # a passed drill too, so the collector serves measured RTOs
    drills.save(DrillRecord(kind="full", region="eu-central", started_at=NOW - 30, result="passed", rto_seconds=20.0,
                            datasets=[DatasetOutcome("site", ok=True, rto_seconds=20.0)]))
    after = [s.name for f in FleetStateCollector(region="eu-central", clock=lambda: NOW).collect() for s in f.samples]
    served = {name for name, _, _ in exported} | set(after) | served_by_tasks()
    named = {m for q in queries() for m in METRIC.findall(q)}
    assert len(named) >= 12, named
    assert named <= served, sorted(named - served)


def test_the_dashboard_covers_what_operators_watch():
    text = " ".join(queries())
    for metric in ("backup_job_success", "drfleet_rpo_lag_seconds", "drfleet_rto_target_seconds",
                   "drfleet_wal_archive_lag_seconds", "drfleet_drill_success", "drfleet_queue_depth",
                   "drfleet_service_up"):
        assert metric in text, metric


def test_panels_use_the_provisioned_data_source_and_compose_mounts_the_provisioning():
    source = yaml.safe_load((GRAFANA / "provisioning" / "datasources" / "prometheus.yml").read_text())
    uid = source["datasources"][0]["uid"]
    doc = json.loads(DASHBOARD.read_text())
    assert {p["datasource"]["uid"] for p in doc["panels"]} == {uid}
    assert len({p["id"] for p in doc["panels"]}) == len(doc["panels"])
    provider = yaml.safe_load((GRAFANA / "provisioning" / "dashboards" / "drfleet.yml").read_text())
    compose = yaml.safe_load((ROOT / "compose" / "docker-compose.yml").read_text())
    mounts = compose["services"]["grafana"]["volumes"]
    assert f"./grafana/dashboards:{provider['providers'][0]['options']['path']}:ro" in mounts
    assert "./grafana/provisioning:/etc/grafana/provisioning:ro" in mounts
