"""Recovery runbooks as Celery canvases: a chain of immutable signatures (``.si()``), one
per step, each an idempotent ``runbook`` task that consults the run's record before acting
(``runbooks.engine``). Steps run on a healthy region's control lane (restores on the data
lane). Messages carry the run id, scenario, step name, region and chain generation; never
a secret.

From a Python shell::

    from drfleet.tasks.runbooks import database_failure
    handle = database_failure(dataset="auth-db").apply_async()
    handle.run_id                     # drfleet runbook status RUN_ID

``service_failure(service=...)``, ``region_failure(region=...)`` and ``catastrophic()`` work
the same way; ``.steps`` lists the steps (what ``--dry-run`` prints), ``.canvas`` is the
Celery chain. Flower shows each step as ``runbook SCENARIO STEP``.
"""

from __future__ import annotations

import getpass
from dataclasses import dataclass, field
from typing import Any

from celery import chain

from drfleet import settings
from drfleet.runbooks.engine import ApprovalPending, execute_step
from drfleet.runbooks.records import RunStore
from drfleet.runbooks.runner import prepare_resume, run_failover_drill  # noqa: F401 - the drills helper's entry point
from drfleet.runbooks.scenarios import build_steps, scenario_notes
from drfleet.runbooks.steps import StepSpec
from drfleet.settings import Limits
from drfleet.tasks import health  # noqa: F401 - registers drfleet.health_check / drfleet.db_check with the app
from drfleet.workers.celery_app import app
from drfleet.workers.plan_context import current_plan

_limits = Limits.from_env()


def _step_body(task, run_id: str, runbook: str, step: str, region: str, generation: int) -> dict:
    try:
        outcome = execute_step(current_plan(), run_id, step, generation=generation,
                               task_id=task.request.id or "local")
    except ApprovalPending as waiting:
        raise task.retry(countdown=waiting.countdown, max_retries=None)
    if not outcome.continue_chain:
        task.request.chain = None  # stop here: cancelled, superseded, or held by another chain
    return outcome.as_result(run_id, step)


@app.task(bind=True, name="drfleet.runbook.step", label="runbook", lane="control", audited=True,
          max_retries=None)
def runbook_step(self, run_id: str, runbook: str, step: str, region: str, generation: int = 1) -> dict:
    """One control-lane step of a run (health checks, provisioning, DNS, promotion)."""
    return _step_body(self, run_id, runbook, step, region, generation)


@app.task(bind=True, name="drfleet.runbook.data_step", label="runbook", lane="data", audited=True,
          track_started=True, max_retries=None,
          soft_time_limit=_limits.data_soft, time_limit=_limits.data_hard)
def runbook_data_step(self, run_id: str, runbook: str, step: str, region: str, generation: int = 1) -> dict:
    """One data-lane step of a run (restores, building a standby)."""
    return _step_body(self, run_id, runbook, step, region, generation)


def step_signature(run_id: str, scenario: str, spec: StepSpec, generation: int):
    task = runbook_data_step if spec.lane == "data" else runbook_step
    return task.si(run_id=run_id, runbook=scenario, step=spec.name, region=spec.region,
                   generation=generation)


def build_canvas(run_id: str, scenario: str, steps: list[StepSpec], generation: int):
    """The chain of the given steps (immutable signatures)."""
    return chain(*[step_signature(run_id, scenario, spec, generation) for spec in steps])


def operator() -> str:
    return settings.OPERATOR.get() or getpass.getuser()


@dataclass
class RunHandle:
    run_id: str
    result: Any


@dataclass
class RunbookCanvas:
    """A runbook ready to start: ``apply_async()`` records the run and sends its chain."""

    scenario: str
    params: dict
    steps: list[StepSpec] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def dry_run(self) -> str:
        lines = [f"{n:2d}. {s.describe()}" for n, s in enumerate(self.steps, 1)]
        return "\n".join(lines + [f"note: {note}" for note in self.notes])

    def apply_async(self, *, started_by: str | None = None, **options: Any) -> RunHandle:
        run = RunStore().create(self.scenario, self.params, self.steps, started_by=started_by or operator())
        canvas = build_canvas(run.run_id, self.scenario, self.steps, run.generation)
        result = canvas.apply_async(headers={"drfleet_actor": run.started_by}, **options)
        return RunHandle(run.run_id, result)

    delay = apply_async


def runbook(scenario: str, **params: Any) -> RunbookCanvas:
    """The runbook ``scenario`` for ``params``, built from the current plan (nothing sent)."""
    params = {k: v for k, v in params.items() if v is not None}
    plan = current_plan()
    return RunbookCanvas(scenario, params, build_steps(plan, scenario, **params),
                         scenario_notes(plan, scenario, **params))


def service_failure(service: str) -> RunbookCanvas:
    return runbook("service-failure", service=service)


def database_failure(dataset: str, force: bool = False) -> RunbookCanvas:
    return runbook("database-failure", dataset=dataset, force=force or None)


def region_failure(region: str) -> RunbookCanvas:
    return runbook("region-failure", region=region)


def catastrophic() -> RunbookCanvas:
    return runbook("catastrophic")


def database_corruption(dataset: str, at: str | None = None) -> RunbookCanvas:
    return runbook("database-corruption", dataset=dataset, at=at)


def server_failure(host: str, force: bool = False) -> RunbookCanvas:
    return runbook("server-failure", host=host, force=force or None)


def resume(run_id: str, *, by: str | None = None) -> RunHandle:
    """Send a new chain from the run's first unfinished step (completed steps are skipped
    by their records anyway). Raises CannotResume, RunNotFound."""
    run, left, generation = prepare_resume(run_id, by=by or operator())
    steps = [run.step(name) for name in left]
    if not steps:
        return RunHandle(run_id, None)
    result = build_canvas(run_id, run.scenario, steps, generation).apply_async(
        headers={"drfleet_actor": by or operator()})
    return RunHandle(run_id, result)
