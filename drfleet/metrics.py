"""drfleet's Prometheus metrics: every counter, histogram and gauge a process updates, in
one place, and the ``observe_*`` helpers that update them.

Updated in whichever process does the work (a prefork child, the CLI, a drill); they are
multiprocess-safe when PROMETHEUS_MULTIPROC_DIR is set before this module is imported
(``drfleet up`` and compose/ set it). The worker's Celery signals that feed them are in
``drfleet.workers.metrics``; the exporter that serves them, with the fleet-state gauges
computed at scrape time, is ``drfleet.workers.metrics_server``.
"""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

from drfleet.statuses import VerificationResult

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
    verifications.labels(dataset, depth, VerificationResult.of(ok, anomaly_only=anomaly)).inc()
    if anomaly:
        size_anomalies.labels(dataset, policy or "-").inc()


def observe_drill(kind: str, result: str, seconds: float | None) -> None:
    drill_runs.labels(kind, result).inc()
    if seconds is not None and result in ("passed", "failed"):
        drill_duration.labels(kind).observe(seconds)

# watches (datapath.watch)
continuous_lag = Gauge(
    "drfleet_continuous_lag_seconds",
    "Seconds from a change being written to the committed backup holding it, at the latest commit "
    "(continuous policies)", ["dataset", "policy"], multiprocess_mode="mostrecent")
unbacked_age = Gauge(
    "drfleet_watch_unbacked_seconds",
    "Age of the oldest change not yet in a committed backup, at the latest watch; 0 when backed up "
    "(continuous and on-change policies)", ["dataset", "policy"], multiprocess_mode="mostrecent")

# WAL archiving (pitr.rpo)
archive_lag = Gauge("drfleet_wal_archive_lag_seconds",
                    "Age of the newest archived WAL when the primary has written since (achieved RPO)", ["dataset"])
rpo_target = Gauge("drfleet_wal_rpo_target_seconds", "The dataset's RPO target", ["dataset"])
last_archived = Gauge("drfleet_wal_last_archived_timestamp_seconds",
                      "When the newest archived WAL file was stored (unix time)", ["dataset"])
archive_failures = Gauge("drfleet_wal_archive_failures", "pg_stat_archiver.failed_count", ["dataset"])
# WAL copies to the other locations (pitr.walcopy)
wal_copy_lag = Gauge("drfleet_wal_copy_lag_seconds",
                     "How much older the location's newest archived WAL is than the home archive's, after "
                     "the latest copy pass", ["dataset", "location"], multiprocess_mode="mostrecent")
wal_region_loss = Gauge("drfleet_wal_region_loss_seconds",
                        "What losing the region now would lose of the dataset (seconds of writes; +Inf when "
                        "no WAL is kept outside it)", ["dataset", "region"], multiprocess_mode="mostrecent")

# service and database health checks (tasks.health, run by beat per service / database)
service_up = Gauge("drfleet_service_up", "1 when the latest health check of the service passed",
                   ["service", "region", "kind"], multiprocess_mode="mostrecent")
service_check_seconds = Gauge("drfleet_service_check_seconds", "How long the latest health check took",
                              ["service", "region"], multiprocess_mode="mostrecent")
service_error_ratio = Gauge("drfleet_service_error_ratio",
                            "Share of the service's last 10 health checks that failed (the error rate)",
                            ["service", "region"], multiprocess_mode="mostrecent")
service_checks = Counter("drfleet_service_checks_total", "Health checks by result", ["service", "region", "result"])
database_up = Gauge("drfleet_database_up", "1 when the dataset's primary accepted a connection at the latest check",
                    ["dataset", "region"], multiprocess_mode="mostrecent")
replication_lag = Gauge("drfleet_replication_lag_seconds",
                        "Replay lag of the dataset's standby at the latest check (recovery.databases.D.standby)",
                        ["dataset", "region"], multiprocess_mode="mostrecent")


def observe_service_check(service: str, region: str, kind: str, *, healthy: bool, seconds: float,
                          error_ratio: float) -> None:
    service_up.labels(service, region, kind).set(1 if healthy else 0)
    service_check_seconds.labels(service, region).set(seconds)
    service_error_ratio.labels(service, region).set(error_ratio)
    service_checks.labels(service, region, "ok" if healthy else "failed").inc()
queue_depth = Gauge("drfleet_queue_depth", "Messages waiting in the queue at the latest measurement (tasks.health)",
                    ["queue"], multiprocess_mode="mostrecent")
