"""The drfleet Celery application."""

from __future__ import annotations

from collections.abc import Mapping

from celery import Celery

from drfleet.workers import liveness as _liveness_signals  # noqa: F401 - connects the heartbeat signals
from drfleet.workers import metrics as _metric_signals  # noqa: F401 - connects the metric signals
from drfleet.workers.plan_context import current_plan
from drfleet.workers.region import add_worker_options
from drfleet.workers.settings import celery_config

TASK_MODULES = [f"drfleet.tasks.{name}" for name in
                ("probe", "backup", "restore", "copy", "prune", "watch", "drills", "wal", "runbooks", "reconcile",
                 "health", "keys")]



class _ConfigWhenRead(Mapping):
    """The Celery configuration, computed the first time Celery reads it (not on import):
    importing a module of the app needs neither a plan nor a configured Redis, and a missing
    one is reported when the app is first used (``FleetNotConfigured``, a clear error)."""

    def __init__(self) -> None:
        self._config: dict | None = None

    def _get(self) -> dict:
        if self._config is None:
            self._config = celery_config(current_plan().region_names)
        return self._config

    def __getitem__(self, name):
        return self._get()[name]

    def __iter__(self):
        return iter(self._get())

    def __len__(self) -> int:
        return len(self._get())


app = Celery("drfleet", task_cls="drfleet.workers.taskbase:FleetTask", include=TASK_MODULES)
app.config_from_object(_ConfigWhenRead())
add_worker_options(app)
