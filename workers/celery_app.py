"""The drfleet Celery application."""

from __future__ import annotations

from celery import Celery

from workers.plan_context import current_plan
from workers.region import add_worker_options
from workers.settings import celery_config

TASK_MODULES = ["tasks.probe", "tasks.backup", "tasks.restore", "tasks.copy", "tasks.prune", "tasks.watch",
                "tasks.drills", "tasks.wal", "tasks.runbooks"]

app = Celery("drfleet", task_cls="workers.taskbase:FleetTask", include=TASK_MODULES)
app.config_from_object(celery_config(current_plan().region_names))
add_worker_options(app)
