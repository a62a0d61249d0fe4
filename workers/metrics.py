"""Prometheus metrics kept by the task base for every task (multiprocess-safe when
PROMETHEUS_MULTIPROC_DIR is set, as ``drfleet up`` and compose/ do)."""

from __future__ import annotations

from prometheus_client import Counter, Histogram

task_runs = Counter("drfleet_task_runs_total", "Task executions by outcome",
                    ["task", "region", "outcome"])
task_duration = Histogram("drfleet_task_duration_seconds", "Task wall time", ["task"],
                          buckets=(0.01, 0.1, 1, 10, 60, 300, 1800, 3600, 4 * 3600, 12 * 3600))
task_rejected = Counter("drfleet_task_rejected_total", "Tasks refused (wrong region)",
                        ["task", "region"])
task_duplicates = Counter("drfleet_task_duplicates_total",
                          "Tasks skipped because their job (dataset, policy, slot) already ran",
                          ["task"])
