"""The drfleet Celery application."""

from __future__ import annotations

from celery import Celery

from drfleet.workers import metrics as _metric_signals  # noqa: F401 - connects the metric signals
from drfleet.workers.plan_context import current_plan
from drfleet.workers.region import add_worker_options
from drfleet.workers.settings import celery_config

TASK_MODULES = [f"drfleet.tasks.{name}" for name in
                ("probe", "backup", "restore", "copy", "prune", "watch", "drills", "wal", "runbooks")]

app = Celery("drfleet", task_cls="drfleet.workers.taskbase:FleetTask", include=TASK_MODULES)
app.config_from_object(celery_config(current_plan().region_names))
add_worker_options(app)
