"""Prometheus metrics of the workers.

Two kinds, both served by ``workers.metrics_server`` from the worker's main process:

* Event metrics (counters, histograms, the running-tasks gauge) defined here and updated in
  whichever prefork child runs the task. They are multiprocess-safe when
  PROMETHEUS_MULTIPROC_DIR is set before this module is imported (``drfleet up`` and
  compose/ set it; the exporter refuses to start without it).
* Fleet-state gauges (``backup_job_success``, ``backup_last_success_timestamp``, RPO lag,
  drill results, ...) computed at scrape time from Redis state (``state.outcomes``,
  ``state.verifications``, ``state.drills``), so they survive worker restarts.

The task signals below record each backup's and copy's outcome in ``state.outcomes`` and
in the event metrics; they never raise into Celery. Setting DRFLEET_METRICS_PORT starts
the exporter when a worker starts (``worker_init``, main process only).
"""

from __future__ import annotations

import logging
import os
import time

from celery import signals
from prometheus_client import Counter, Gauge, Histogram

logger = logging.getLogger("drfleet.metrics")

SECONDS_BUCKETS = (0.01, 0.1, 1, 10, 60, 300, 1800, 3600, 4 * 3600, 12 * 3600)

task_runs = Counter("drfleet_task_runs_total", "Task executions by outcome",
                    ["task", "region", "outcome"])
task_duration = Histogram("drfleet_task_duration_seconds", "Task wall time", ["task"],
                          buckets=SECONDS_BUCKETS)
task_rejected = Counter("drfleet_task_rejected_total", "Tasks refused (wrong region)",
                        ["task", "region"])
task_duplicates = Counter("drfleet_task_duplicates_total",
                          "Tasks skipped because their job (dataset, policy, slot) already ran",
                          ["task"])
tasks_running = Gauge("drfleet_tasks_running", "Tasks executing right now", ["task"],
                      multiprocess_mode="livesum")

backup_runs = Counter("backup_runs_total", "Backup runs by outcome",
                      ["dataset", "policy", "region", "outcome"])
backup_duration = Histogram("backup_duration_seconds", "Wall time of successful backups",
                            ["dataset", "policy", "region"], buckets=SECONDS_BUCKETS)
backup_bytes = Counter("backup_bytes_total", "Plaintext bytes of successful backups",
                       ["dataset", "policy", "region"])
copy_runs = Counter("backup_copy_runs_total", "Copies to other locations by outcome",
                    ["dataset", "location", "outcome"])
verifications = Counter("backup_verifications_total", "Verification results (ok, damaged, size-anomaly)",
                        ["dataset", "depth", "result"])
size_anomalies = Counter("backup_size_anomalies_total", "Backups flagged far smaller or larger than recent ones",
                         ["dataset", "policy"])
drill_runs = Counter("drfleet_drill_runs_total", "Drills by result", ["kind", "result"])
drill_duration = Histogram("drfleet_drill_duration_seconds", "Drill wall time (the measured RTO)",
                           ["kind"], buckets=SECONDS_BUCKETS)


def observe_verification(dataset: str, depth: str, *, ok: bool, anomaly: bool = False,
                         policy: str | None = None) -> None:
    verifications.labels(dataset, depth, "ok" if ok else ("size-anomaly" if anomaly else "damaged")).inc()
    if anomaly:
        size_anomalies.labels(dataset, policy or "-").inc()


def observe_drill(kind: str, result: str, seconds: float | None) -> None:
    drill_runs.labels(kind, result).inc()
    if seconds is not None and result in ("passed", "failed"):
        drill_duration.labels(kind).observe(seconds)


@signals.task_prerun.connect
def _task_started(sender=None, task=None, **_):
    tasks_running.labels(getattr(task, "name", "?")).inc()


@signals.task_postrun.connect
def _task_ended(sender=None, task=None, kwargs=None, retval=None, state=None, **_):
    name = getattr(task, "name", "?")
    tasks_running.labels(name).dec()
    try:
        if name == "drfleet.backup":
            record_backup_outcome(kwargs or {}, retval, state)
        elif name == "drfleet.copy":
            record_copy_outcome(kwargs or {}, retval, state)
    except Exception:  # noqa: BLE001 - metrics must never fail a task
        logger.exception("could not record the outcome of %s", name)


def _skipped(retval) -> bool:
    return isinstance(retval, dict) and retval.get("status") in ("duplicate", "already-succeeded")


def record_backup_outcome(kwargs: dict, retval, state: str | None) -> None:
    """Count a finished backup run and store it as the dataset/policy's last outcome."""
    from state import outcomes

    dataset, policy, region = kwargs.get("dataset"), kwargs.get("policy"), kwargs.get("region") or "-"
    if not dataset or not policy or state not in ("SUCCESS", "FAILURE") or _skipped(retval):
        return
    ok = state == "SUCCESS" and isinstance(retval, dict) and retval.get("status") == "committed"
    backup_runs.labels(dataset, policy, region, "succeeded" if ok else "failed").inc()
    seconds = size = None
    if ok:
        seconds, size = float(retval.get("seconds") or 0), int(retval.get("plaintext_size") or 0)
        backup_duration.labels(dataset, policy, region).observe(seconds)
        backup_bytes.labels(dataset, policy, region).inc(size)
    outcomes.record_backup(dataset, policy, region, ok=ok, seconds=seconds, size=size, at=time.time())


def record_copy_outcome(kwargs: dict, retval, state: str | None) -> None:
    """Count a finished copy attempt and store it as the dataset/location's last copy
    outcome. A retry (the store is down) counts as a failed upload until one succeeds."""
    from state import outcomes

    ret = retval if isinstance(retval, dict) else {}
    backup_ref = str(kwargs.get("backup_id") or "")
    dataset = kwargs.get("dataset") or ret.get("dataset") or (backup_ref.split("/", 1)[0] if "/" in backup_ref else None)
    location = kwargs.get("location") or ret.get("location")
    if not dataset or not location or state not in ("SUCCESS", "FAILURE", "RETRY") or _skipped(retval):
        return
    ok = state == "SUCCESS" and ret.get("ok") is not False
    copy_runs.labels(dataset, location, "succeeded" if ok else ("retrying" if state == "RETRY" else "failed")).inc()
    reason = ""
    if not ok:
        from datapath.drills import error_text
        reason = error_text(retval) if isinstance(retval, BaseException) else str(retval or state)
    outcomes.record_copy(dataset, location, ok=ok, reason=reason)


@signals.worker_init.connect
def _start_exporter(sender=None, **_):
    """Main worker process: serve /metrics when DRFLEET_METRICS_PORT is set."""
    port = os.environ.get("DRFLEET_METRICS_PORT")
    if port:
        from workers.metrics_server import start_exporter
        start_exporter(int(port), addr=os.environ.get("DRFLEET_METRICS_ADDR", "127.0.0.1"))


@signals.worker_process_shutdown.connect
def _child_exits(pid=None, **_):
    """A prefork child leaving: drop its live gauges (the exporter also sweeps children
    that were killed without reaching this)."""
    directory = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
    if directory:
        from prometheus_client import multiprocess
        multiprocess.mark_process_dead(pid or os.getpid(), directory)
