"""The worker's side of the Prometheus metrics: the Celery signals that feed them.

Two kinds, both served by ``workers.metrics_server`` from the worker's main process:

* Event metrics (counters, histograms, the running-tasks gauge) defined in
  ``drfleet.metrics`` and updated in whichever prefork child runs the task. They are multiprocess-safe when
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

from drfleet import settings
from drfleet.errors import error_text
from drfleet.metrics import backup_bytes, backup_duration, backup_runs, copy_runs, tasks_running
from drfleet.statuses import JobStatus

logger = logging.getLogger("drfleet.metrics")


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
    return isinstance(retval, dict) and retval.get("status") in (JobStatus.DUPLICATE, JobStatus.ALREADY_SUCCEEDED)


def record_backup_outcome(kwargs: dict, retval, state: str | None) -> None:
    """Count a finished backup run and store it as the dataset/policy's last outcome."""
    from drfleet.state import outcomes

    dataset, policy, region = kwargs.get("dataset"), kwargs.get("policy"), kwargs.get("region") or "-"
    if not dataset or not policy or state not in ("SUCCESS", "FAILURE") or _skipped(retval):
        return
    ok = state == "SUCCESS" and isinstance(retval, dict) and retval.get("status") == JobStatus.COMMITTED
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
    from drfleet.state import outcomes

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
        reason = error_text(retval) if isinstance(retval, BaseException) else str(retval or state)
    outcomes.record_copy(dataset, location, ok=ok, reason=reason)


@signals.worker_init.connect
def _start_exporter(sender=None, **_):
    """Main worker process: serve /metrics when DRFLEET_METRICS_PORT is set."""
    port = settings.METRICS_PORT.get()
    if port:
        from drfleet.workers.metrics_server import start_exporter
        start_exporter(int(port), addr=settings.METRICS_ADDR.get())


@signals.worker_process_shutdown.connect
def _child_exits(pid=None, **_):
    """A prefork child leaving: drop its live gauges (the exporter also sweeps children
    that were killed without reaching this)."""
    directory = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
    if directory:
        from prometheus_client import multiprocess
        multiprocess.mark_process_dead(pid or os.getpid(), directory)
