"""Helpers shared by the CLI commands: loading the plan, printing errors the same way."""

from __future__ import annotations

import functools
import os
import sys

import click

from drfleet import settings
from drfleet.errors import DrfleetError

plan_option = click.option(
    "--plan", "plan_path", envvar="DRFLEET_PLAN", type=click.Path(dir_okay=False),
    help="DR plan file (default: $DRFLEET_PLAN, else the embedded demo plan).")


def use_plan(plan_path: str | None):
    """Load the plan for a command (and export it for the Celery app)."""
    if plan_path:
        os.environ["DRFLEET_PLAN"] = os.path.abspath(plan_path)
    if not settings.BROKER_URL.get():
        # a local fleet (`drfleet up`) leaves its embedded broker's URL in DRFLEET_HOME
        from drfleet.paths import drfleet_home
        marker = drfleet_home() / "broker-url"
        if marker.exists():
            os.environ["DRFLEET_BROKER_URL"] = marker.read_text().strip()
    from drfleet.workers.plan_context import current_plan
    return current_plan()


def reports_errors(fn):
    """Turn drfleet's own errors into a readable message and exit status 1 (2 for
    invalid input), never a traceback."""
    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except DrfleetError as exc:
            click.secho(f"error: {exc}", fg="red", err=True)
            from drfleet.plan.loader import PlanInvalid
            sys.exit(2 if isinstance(exc, PlanInvalid) else 1)
        except Exception as exc:  # Redis refusing credentials or unreachable: say which, hide the password
            from drfleet.state.fleet_redis import explain_failure
            explained = explain_failure(exc)
            if explained is None:
                raise
            click.secho(f"error: {explained}", fg="red", err=True)
            sys.exit(1)
    return wrapper
