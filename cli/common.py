"""Helpers shared by the CLI commands: loading the plan, printing errors the same way."""

from __future__ import annotations

import functools
import os
import sys

import click

from drfleet import inline_secrets, settings
from drfleet.errors import DrfleetError

plan_option = click.option(
    "--plan", "plan_path", envvar="DRFLEET_PLAN", type=click.Path(dir_okay=False),
    help="DR plan file (default: $DRFLEET_PLAN, else the embedded demo plan).")


def use_plan(plan_path: str | None, *, need_fleet: bool = True):
    """Load the plan for a command (and export it for the Celery app). When no fleet Redis
    is configured, use the one of the fleet `drfleet up` runs on DRFLEET_HOME, if any (a
    command that needs a fleet then fails with FleetNotConfigured, saying how to name one)."""
    if plan_path:
        os.environ["DRFLEET_PLAN"] = os.path.abspath(plan_path)
    if need_fleet and not (settings.BROKER_URL.is_set() or settings.REDIS_SENTINELS.is_set()
                           or settings.STATE_URL.is_set()):
        from drfleet.fleet.home_lock import running_fleet_env
        from drfleet.paths import drfleet_home
        found = running_fleet_env(drfleet_home())
        if found:
            os.environ.update({k: v for k, v in found.items() if k != "DRFLEET_PLAN"})
            if not plan_path and not settings.PLAN.is_set() and found.get("DRFLEET_PLAN"):
                os.environ["DRFLEET_PLAN"] = found["DRFLEET_PLAN"]
    from drfleet.workers.plan_context import current_plan
    return current_plan()


BROKER_CHECK_SECONDS = 3.0


def require_broker(timeout: float = BROKER_CHECK_SECONDS) -> None:
    """Reach the fleet's broker (and result and state servers) once, within ``timeout``
    seconds, before a command sends anything: an unreachable or refusing Redis fails in
    seconds with RedisUnreachable / RedisAuthFailed naming the URL (password hidden)."""
    from drfleet.state.fleet_redis import check_fleet_redis, fleet_redis
    check_fleet_redis(fleet_redis().require_broker(), role="", timeout=timeout)


def require_state(timeout: float = BROKER_CHECK_SECONDS) -> None:
    """Like ``require_broker`` for commands that only read or write fleet state (audit,
    access, runbook records, drills): the state server (and any other configured) answers
    within ``timeout`` seconds, else a clear error naming the URL (password hidden)."""
    from drfleet.state.fleet_redis import check_fleet_redis, fleet_redis
    check_fleet_redis(fleet_redis(), role="", timeout=timeout)


def send(task, **options):
    """``task.apply_async(**options)`` (a task or a signature/canvas) after ``require_broker``."""
    require_broker()
    return task.apply_async(**options)


def refuse_inline_secrets(values: dict) -> None:
    """Raise InlineSecretRefused when an argument or option of the running command holds a
    password (``postgresql://u:pw@...``, ``?password=``, ``host=... password=...``): before
    anything is sent, stored or printed. The error names the option and shows its value
    masked; it never repeats the password."""
    ctx = click.get_current_context(silent=True)
    params = {p.name: p for p in ctx.command.params} if ctx is not None else {}
    for name, value in values.items():
        param = params.get(name)
        label = name
        if isinstance(param, click.Option):
            label = max(param.opts, key=len)
        elif isinstance(param, click.Argument):
            label = param.human_readable_name
        for item in value if isinstance(value, (list, tuple)) else [value]:
            inline_secrets.refuse(item, what=label)


def reports_errors(fn):
    """Refuse arguments that hold a password (``refuse_inline_secrets``), then turn
    drfleet's own errors into a readable message and exit status 1 (2 for invalid input:
    a plan or an argument), never a traceback."""
    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            refuse_inline_secrets(kwargs)
            return fn(*args, **kwargs)
        except DrfleetError as exc:
            click.secho(f"error: {exc}", fg="red", err=True)
            from drfleet.plan.loader import PlanInvalid
            sys.exit(2 if isinstance(exc, (PlanInvalid, inline_secrets.InlineSecretRefused)) else 1)
        except Exception as exc:  # Redis refusing credentials or unreachable: say which, hide the password
            from drfleet.state.fleet_redis import explain_failure
            explained = explain_failure(exc)
            if explained is None:
                raise
            click.secho(f"error: {explained}", fg="red", err=True)
            sys.exit(1)
    return wrapper
