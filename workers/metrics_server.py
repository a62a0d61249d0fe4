"""The worker's Prometheus exporter: ``/metrics`` served by the worker's main process.

It joins two sources (see ``workers.metrics``):

* the multiprocess files every prefork child writes under PROMETHEUS_MULTIPROC_DIR
  (``MultiProcessCollector``); before each scrape, the files of children that died without
  saying so (killed, crashed) are swept with ``mark_process_dead``, so a dead child's live
  gauges stop counting;
* ``FleetStateCollector``: gauges computed at scrape time from Redis state and the plan,
  limited to the datasets and drills of this worker's region (DRFLEET_REGION; all when
  unset), so several regions' exporters never report the same series.

Environment: DRFLEET_METRICS_PORT (the worker starts the exporter when set),
DRFLEET_METRICS_ADDR (default 127.0.0.1), PROMETHEUS_MULTIPROC_DIR (required; one
directory per worker, emptied by whoever starts the worker).
"""

from __future__ import annotations

import logging
import os
import re
import time
from pathlib import Path

from prometheus_client import CollectorRegistry, start_http_server
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.multiprocess import MultiProcessCollector, mark_process_dead

from drfleet import settings
from drfleet.errors import DrfleetError
from drfleet.statuses import DrillResult

logger = logging.getLogger("drfleet.metrics")

_DB_FILE = re.compile(r"_(\d+)\.db$")


class MetricsDirMissing(DrfleetError):
    hint = ("set PROMETHEUS_MULTIPROC_DIR to an empty directory (one per worker) before the worker starts; "
            "without it every prefork child would keep its own numbers and the exporter would see none")


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def sweep_dead_processes(directory: str | Path) -> list[int]:
    """Call ``mark_process_dead`` for every pid with files in ``directory`` that is no
    longer running; returns those pids."""
    pids = {int(m.group(1)) for p in Path(directory).glob("*.db") if (m := _DB_FILE.search(p.name))}
    dead = sorted(pid for pid in pids if not pid_alive(pid))
    for pid in dead:
        mark_process_dead(pid, str(directory))
    return dead


class SweepingMultiProcessCollector(MultiProcessCollector):
    def collect(self):
        sweep_dead_processes(self._path)
        return super().collect()


class FleetStateCollector:
    """Gauges from Redis state and the plan, computed on each scrape."""

    def __init__(self, region: str | None = None, clock=time.time) -> None:
        self.region, self.clock = region, clock

    def collect(self):
        up = GaugeMetricFamily("drfleet_state_up", "1 when the state Redis and the plan could be read")
        try:
            families = list(self._families(self.clock()))
        except Exception as exc:  # noqa: BLE001 - a scrape must still answer
            logger.warning("fleet state metrics unavailable: %s", exc)
            up.add_metric([], 0)
            yield up
            return
        up.add_metric([], 1)
        yield up
        yield from families

    def _mine(self, region: str | None) -> bool:
        return self.region is None or region == self.region

    def _families(self, now: float):
        from drfleet.report.rpo import rpo_now, target_or_none
        from drfleet.state import drills, outcomes
        from drfleet.state.store import key, state_client
        from drfleet.workers.plan_context import current_plan

        plan = current_plan()
        client = state_client()
        g = _Gauges()
        tracked = _tracked_since(client, key("outcome", "tracked"), plan, now)
        for row in outcomes.backups(client=client):
            if not self._mine(row["region"]):
                continue
            labels = [row["dataset"], row["policy"], row["region"]]
            g.add("backup_job_success", "1 when the last backup run of the dataset/policy succeeded",
                  ["dataset", "policy", "region"], labels, 1 if row["ok"] else 0)
            if row.get("last_success_at"):
                g.add("backup_last_success_timestamp", "Unix time of the last successful backup",
                      ["dataset", "policy", "region"], labels, row["last_success_at"])
            if row.get("bytes") is not None:
                g.add("backup_last_size_bytes", "Plaintext size of the last successful backup",
                      ["dataset", "policy", "region"], labels, row["bytes"])
            if row.get("seconds") is not None:
                g.add("backup_last_duration_seconds", "Wall time of the last successful backup",
                      ["dataset", "policy", "region"], labels, row["seconds"])
        for name, ds in plan.datasets.items():
            if not self._mine(ds.region):
                continue
            for policy in ds.policies:
                labels = [name, policy.name, ds.region]
                interval = _interval(policy.trigger)
                if interval:
                    g.add("backup_max_age_seconds", "Oldest the last successful backup may be before it "
                          "counts as missing (schedule interval plus half of it)",
                          ["dataset", "policy", "region"], labels, interval * 1.5)
                    g.add("backup_tracked_since_timestamp", "Unix time drfleet started expecting this backup",
                          ["dataset", "policy", "region"], labels, tracked[f"{name}|{policy.name}"])
            rpo = rpo_now(plan, name, now=now, tracked_since=tracked.get(f"{name}|*"), client=client)
            if rpo["target_seconds"] is not None:
                g.add("drfleet_rpo_target_seconds", "RPO target of the dataset", ["dataset", "region"],
                      [name, ds.region], rpo["target_seconds"])
            if rpo["lag_seconds"] is not None:
                g.add("drfleet_rpo_lag_seconds", "Age of the newest verified recovery point",
                      ["dataset", "region"], [name, ds.region], rpo["lag_seconds"])
            rto = target_or_none(plan.rto_for, name)
            if rto is not None:
                g.add("drfleet_rto_target_seconds", "RTO target of the dataset", ["dataset", "region"],
                      [name, ds.region], rto)
        regions = {n: d.region for n, d in plan.datasets.items()}
        for row in outcomes.size_checks(client=client):
            if self._mine(regions.get(row["dataset"])):
                g.add("backup_size_anomaly", "1 when the last verified backup was far smaller or larger "
                      "than the recent ones", ["dataset", "policy"], [row["dataset"], row["policy"]],
                      1 if row["flagged"] else 0)
        for row in outcomes.copies(client=client):
            if self._mine(regions.get(row["dataset"])):
                g.add("backup_copy_success", "1 when the last copy of the dataset to the location succeeded",
                      ["dataset", "location"], [row["dataset"], row["location"]], 1 if row["ok"] else 0)
        for kind in ("restore", "failover", "region", "full"):
            record = drills.latest(kind, client=client)
            if record is None or not self._mine(record.region):
                continue
            g.add("drfleet_drill_last_timestamp", "Unix time the latest drill of this kind started",
                  ["kind", "result"], [kind, record.result], record.started_at)
            if record.result in (DrillResult.PASSED, DrillResult.FAILED):
                g.add("drfleet_drill_success", "1 when the latest drill of this kind passed", ["kind"], [kind],
                      1 if record.passed else 0)
            if record.rto_seconds is not None:
                g.add("drfleet_drill_rto_seconds", "Measured RTO of the latest drill of this kind", ["kind"],
                      [kind], record.rto_seconds)
            for outcome in record.datasets:
                if outcome.rto_seconds is not None:
                    g.add("drfleet_drill_dataset_rto_seconds", "Measured RTO per dataset in the latest drill",
                          ["kind", "dataset"], [kind, outcome.dataset], outcome.rto_seconds)
        return g.families.values()


class _Gauges:
    def __init__(self) -> None:
        self.families: dict[str, GaugeMetricFamily] = {}

    def add(self, name: str, documentation: str, labels: list[str], values: list[str], value: float) -> None:
        family = self.families.get(name)
        if family is None:
            family = self.families[name] = GaugeMetricFamily(name, documentation, labels=labels)
        family.add_metric([str(v) for v in values], float(value))


def _interval(trigger) -> float | None:
    """Seconds between scheduled runs (the longest gap for a cron), None if unscheduled."""
    if trigger.kind == "interval":
        return float(trigger.interval_seconds)
    if trigger.kind == "cron":
        from datetime import datetime, timedelta, timezone

        start = datetime(2026, 1, 1, tzinfo=timezone.utc)
        fires = trigger.fires_between(start, start + timedelta(days=400), limit=2000)
        gaps = [(b - a).total_seconds() for a, b in zip(fires, fires[1:])]
        return max(gaps) if gaps else None
    return None


def _tracked_since(client, name: str, plan, now: float) -> dict[str, float]:
    """When drfleet first expected each backup ("{dataset}|{policy}") and each dataset's
    recovery points ("{dataset}|*"): set once, kept in Redis."""
    fields = [f"{n}|{p.name}" for n, d in plan.datasets.items() for p in d.policies] + [f"{n}|*" for n in plan.datasets]
    pipe = client.pipeline()
    for field in fields:
        pipe.hsetnx(name, field, now)
    pipe.execute()
    values = client.hmget(name, fields)
    return {f: float(v) for f, v in zip(fields, values) if v is not None}


def build_registry(directory: str | None, region: str | None) -> CollectorRegistry:
    """The exporter's registry; raises MetricsDirMissing without a multiprocess directory."""
    if not directory or not Path(directory).is_dir():
        raise MetricsDirMissing("PROMETHEUS_MULTIPROC_DIR is not set to an existing directory",
                                PROMETHEUS_MULTIPROC_DIR=directory or "(unset)")
    registry = CollectorRegistry()
    SweepingMultiProcessCollector(registry, path=directory)
    registry.register(FleetStateCollector(region))
    return registry


def start_exporter(port: int, *, addr: str = "127.0.0.1"):
    """Serve /metrics on ``addr:port`` from a daemon thread; returns the server, or None
    (logged) when the directory is missing or the port is taken, so the worker still runs."""
    try:
        registry = build_registry(os.environ.get("PROMETHEUS_MULTIPROC_DIR"), settings.REGION.get())
        sweep_dead_processes(os.environ["PROMETHEUS_MULTIPROC_DIR"])
        server, _thread = start_http_server(port, addr=addr, registry=registry)
    except (DrfleetError, OSError) as exc:
        logger.error("metrics exporter not started on %s:%s: %s", addr, port, exc)
        return None
    logger.info("metrics exporter serving http://%s:%s/metrics", addr, port)
    return server
