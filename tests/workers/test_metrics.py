"""Prometheus metrics served by a real prefork worker: backup outcomes (the second plan's
``backup_job_success`` and ``backup_last_success_timestamp``), durations and bytes,
verification results, RPO lag, drills; multiprocess files of dead children swept."""

import os
import subprocess
import sys
import time
import urllib.request

import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.fixtures.fleet import Fleet, write_plan
from tests.fixtures.plans import dataset, policy
from tests.fixtures.util import free_port, wait_for


def datasets(*, missing, src) -> str:
    return (dataset("site", policy("hourly", "hourly", "24 hours", copies=["home-region", "offsite:broken"]),
                    source=src)
            + dataset("gone", policy("daily", "daily at 02:00", "7 days"), source=missing))


def scrape(port: int) -> dict:
    """{(name, frozenset(labels)): value} of every sample the exporter serves."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
        text = response.read().decode()
    return {(s.name, frozenset(s.labels.items())): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}


def value(samples: dict, name: str, **labels) -> float | None:
    return samples.get((name, frozenset(labels.items())))


@pytest.fixture
def metrics_fleet(tmp_path, redis_url, monkeypatch):
    from drfleet.backup_format.keyring import create_keyring

    src = tmp_path / "site"
    src.mkdir()
    (src / "index.html").write_text("hello\n" * 1000)
    (tmp_path / "not-a-dir").write_text("a file where the broken location's parent should be\n")
    plan_path = write_plan(tmp_path / "plan", datasets=datasets(src=src, missing=tmp_path / "missing"),
                           storage=f"broken: {{kind: filesystem, offsite: true, path: {tmp_path}/not-a-dir/store}}\n")
    (tmp_path / "plan" / "keys").mkdir(mode=0o700)
    create_keyring(tmp_path / "plan" / "keys" / "content.keyring", "content")
    for name, val in {"DRFLEET_PLAN": str(plan_path), "DRFLEET_BROKER_URL": redis_url,
                      "DRFLEET_STATE_URL": redis_url}.items():
        monkeypatch.setenv(name, val)
    from drfleet.workers import app
    app.conf.broker_url = app.conf.result_backend = redis_url
    metrics_dir = tmp_path / "metrics"
    metrics_dir.mkdir()
    port = free_port()
    fleet = Fleet(tmp_path, redis_url, plan_path)
    fleet.worker("eu-central", concurrency=2, env={"PROMETHEUS_MULTIPROC_DIR": str(metrics_dir),
                                                  "DRFLEET_METRICS_PORT": str(port), "DRFLEET_COPY_RETRIES": "0"})
    wait_for(lambda: scrape(port), timeout=30, what="the metrics exporter")
    yield fleet, port, metrics_dir
    fleet.stop()


def test_backup_outcomes_durations_bytes_and_rpo_are_served(metrics_fleet):
    from drfleet.tasks.backup import backup
    from drfleet.tasks.restore import verify

    _, port, _ = metrics_fleet
    before = time.time()
    ok = backup.apply_async(kwargs={"dataset": "site", "policy": "hourly", "region": "eu-central",
                                    "slot": "s1"}).get(timeout=120)
    with pytest.raises(Exception):
        backup.apply_async(kwargs={"dataset": "gone", "policy": "daily", "region": "eu-central",
                                   "slot": "s1"}).get(timeout=120)
    verify.apply_async(kwargs={"backup_id": f"site/{ok['backup_id']}", "region": "eu-central",
                               "depth": "full"}).get(timeout=120)
    s = scrape(port)
    site = {"dataset": "site", "policy": "hourly", "region": "eu-central"}
    gone = {"dataset": "gone", "policy": "daily", "region": "eu-central"}
    assert value(s, "backup_job_success", **site) == 1
    assert value(s, "backup_job_success", **gone) == 0
    assert value(s, "backup_last_success_timestamp", **site) >= before
    assert value(s, "backup_last_success_timestamp", **gone) is None
    assert value(s, "backup_last_size_bytes", **site) == ok["plaintext_size"]
    assert value(s, "backup_duration_seconds_count", **site) == 1
    assert value(s, "backup_bytes_total", **site) == ok["plaintext_size"]
    assert value(s, "backup_runs_total", **gone, outcome="failed") == 1
    assert value(s, "backup_max_age_seconds", **site) == 1.5 * 3600
    assert value(s, "backup_max_age_seconds", **gone) == 1.5 * 86400
    assert value(s, "backup_verifications_total", dataset="site", depth="full", result="ok") == 1
    assert value(s, "drfleet_rpo_target_seconds", dataset="site", region="eu-central") == 3600
    lag = value(s, "drfleet_rpo_lag_seconds", dataset="site", region="eu-central")
    assert 0 <= lag < 3600
    assert value(s, "drfleet_tasks_running", task="drfleet.backup") == 0
    assert value(s, "drfleet_state_up") == 1
    failed_copy = wait_for(lambda: value(scrape(port), "backup_copy_success", dataset="site", location="broken")
                           is not None, timeout=60, what="the failed copy's outcome")
    assert failed_copy and value(scrape(port), "backup_copy_success", dataset="site", location="broken") == 0
    from drfleet.state import outcomes
    [copy] = outcomes.copies()
    assert copy["location"] == "broken" and not copy["ok"] and "Not a directory" in copy["reason"], copy


def test_drill_results_are_served(metrics_fleet):
    from drfleet.tasks.backup import backup
    from drfleet.tasks.drills import drill

    _, port, _ = metrics_fleet
    backup.apply_async(kwargs={"dataset": "site", "policy": "hourly", "region": "eu-central",
                               "slot": "s1"}).get(timeout=120)
    passed = drill.apply_async(kwargs={"kind": "restore", "region": "eu-central", "dataset": "site",
                                       "slot": "manual:a"}).get(timeout=120)
    failed = drill.apply_async(kwargs={"kind": "region", "region": "eu-central", "slot": "manual:b"}).get(timeout=120)
    assert (passed["result"], failed["result"]) == ("passed", "failed")
    s = scrape(port)
    assert value(s, "drfleet_drill_success", kind="restore") == 1
    assert value(s, "drfleet_drill_success", kind="region") == 0
    assert value(s, "drfleet_drill_rto_seconds", kind="restore") == passed["rto_seconds"]
    assert value(s, "drfleet_drill_dataset_rto_seconds", kind="restore", dataset="site") == passed["rto_seconds"]
    assert value(s, "drfleet_drill_runs_total", kind="region", result="failed") == 1
    assert value(s, "drfleet_drill_duration_seconds_count", kind="restore") == 1


WRITER = """
import os, sys
from prometheus_client import Counter, Gauge
Gauge("drfleet_tasks_running", "Tasks executing right now", ["task"], multiprocess_mode="livesum").labels("ghost").inc()
Counter("drfleet_drill_runs_total", "Drills by result", ["kind", "result"]).labels("ghost", "passed").inc()
print(os.getpid())
"""


def test_the_live_gauges_of_a_dead_process_stop_counting_and_its_counters_stay(metrics_fleet):
    _, port, metrics_dir = metrics_fleet
    done = subprocess.run([sys.executable, "-c", WRITER], capture_output=True, text=True, check=True,
                          env=dict(os.environ, PROMETHEUS_MULTIPROC_DIR=str(metrics_dir)))
    pid = int(done.stdout)
    assert (metrics_dir / f"gauge_livesum_{pid}.db").exists()
    s = scrape(port)
    assert value(s, "drfleet_tasks_running", task="ghost") is None
    assert value(s, "drfleet_drill_runs_total", kind="ghost", result="passed") == 1
    assert not (metrics_dir / f"gauge_livesum_{pid}.db").exists()
    assert (metrics_dir / f"counter_{pid}.db").exists()


def test_the_exporter_refuses_to_start_without_a_multiprocess_directory(tmp_path):
    from drfleet.workers.metrics_server import MetricsDirMissing, build_registry

    with pytest.raises(MetricsDirMissing, match="PROMETHEUS_MULTIPROC_DIR") as info:
        build_registry(None, "eu-central")
    assert "one per worker" in str(info.value)
    with pytest.raises(MetricsDirMissing):
        build_registry(str(tmp_path / "nope"), None)
