"""The plan a process serves: ``DRFLEET_PLAN``, or the embedded demo plan when unset."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

from drfleet import settings
from drfleet.plan.loader import load_plan
from drfleet.plan.models import Plan


def plan_path() -> Path:
    """Path of the plan this process serves (generating the demo plan if none is set)."""
    configured = settings.PLAN.get()
    if configured:
        return Path(configured)
    from drfleet.plan.demo import ensure_demo_plan
    return ensure_demo_plan()


@lru_cache(maxsize=4)
def _load(path: str, mtime: float) -> Plan:
    return load_plan(path)


def current_plan() -> Plan:
    """The loaded plan; re-read when the file changes. Raises PlanInvalid/DrfleetError."""
    path = plan_path()
    return _load(str(path), path.stat().st_mtime if path.exists() else 0.0)
