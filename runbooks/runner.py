"""Operator operations on runs that do not need Celery: which steps are left, whether a run
may be resumed, cancelling, approving, and running a whole run in this process (drills).

Sending a run's canvas to the workers is ``tasks.runbooks`` (``send_run``).
"""

from __future__ import annotations

import time
import uuid
from typing import Any

from drfleet.errors import DrfleetError
from drfleet.plan.models import Plan
from drfleet.runbooks.engine import ApprovalPending, StepFailed, execute_step
from drfleet.runbooks.records import Run, RunStore, stale_after_seconds
from drfleet.runbooks.scenarios import build_steps
from drfleet.state import audit
from drfleet.statuses import RunStatus, StepStatus


class CannotResume(DrfleetError):
    hint = "wait for the running step to finish, or cancel the run"


def remaining_steps(run: Run, store: RunStore) -> list[str]:
    """Names of the steps not yet succeeded or skipped, in order."""
    records = store.step_records(run.run_id)
    return [s.name for s in run.steps if not StepStatus(records[s.name]["status"]).done]


def prepare_resume(run_id: str, *, by: str, store: RunStore | None = None) -> tuple[Run, list[str], int]:
    """Check the run can resume; start a new generation. Returns (run, steps left, generation).

    Raises CannotResume when the run already succeeded or a step is running with a fresh
    heartbeat (another chain is alive), RunNotFound for an unknown id.
    """
    store = store or RunStore()
    run = store.get(run_id)
    if run.status == RunStatus.SUCCEEDED.value:
        raise CannotResume(f"run {run_id} already succeeded", run_id=run_id, hint="nothing to resume")
    now = time.time()
    for name, rec in store.step_records(run_id).items():
        if rec["status"] == StepStatus.RUNNING.value and now - float(rec.get("heartbeat_at") or 0) < stale_after_seconds():
            raise CannotResume(f"step {name} of run {run_id} is running (task {rec.get('task_id')})",
                               run_id=run_id, step=name,
                               heartbeat_seconds_ago=round(now - float(rec["heartbeat_at"]), 1))
    store.clear_cancel(run_id)
    generation = store.next_generation(run_id)
    store.set_status(run_id, RunStatus.RUNNING, error=None)
    left = remaining_steps(run, store)
    audit.record("runbook.resume", actor=by, outcome="sent", run_id=run_id, runbook=run.scenario,
                 step=left[0] if left else None)
    return store.get(run_id), left, generation


def cancel_run(run_id: str, *, by: str, store: RunStore | None = None) -> Run:
    """Ask the run to stop before its next step. A run with no live chain (failed, waiting
    for approval) is marked cancelled at once."""
    store = store or RunStore()
    run = store.get(run_id)
    store.request_cancel(run_id, by=by)
    if run.status in (RunStatus.FAILED.value,):
        store.set_status(run_id, RunStatus.CANCELLED, finished_at=time.time(), error=f"cancelled by {by}")
    elif run.status not in (RunStatus.SUCCEEDED.value, RunStatus.CANCELLED.value):
        store.set_status(run_id, RunStatus.CANCELLING)
    audit.record("runbook.cancel", actor=by, outcome="requested", run_id=run_id, runbook=run.scenario)
    return store.get(run_id)


class NotWaiting(DrfleetError):
    hint = "approve a step when `drfleet runbook status RUN_ID` shows it waiting-approval"


def _refused(by: str, run_id: str, step: str, refused: DrfleetError) -> None:
    audit.record("runbook.approve", actor=by, outcome="refused", run_id=run_id, step=step, reason=refused.message)


def _check_waiting(store: RunStore, run_id: str, step: str):
    """The run, when ``step`` of ``run_id`` is destructive and waits for an approval; else
    raises RunNotFound, NotApprovable (naming the destructive steps) or NotWaiting."""
    run = store.get(run_id)
    spec = run.step(step)
    if not spec.destructive:
        store.approve(run_id, step, by="-")  # raises NotApprovable naming the destructive steps
    status = store.step_records(run_id).get(step, {}).get("status")
    if status != StepStatus.WAITING.value:
        raise NotWaiting(f"step {step!r} of run {run_id} is not waiting for an approval "
                         f"(it is {status or 'pending'})", run_status=run.status)
    return run


def check_approvable(run_id: str, step: str, *, by: str, store: RunStore | None = None) -> None:
    """Raise (and audit the refusal) unless ``step`` of ``run_id`` waits for an approval:
    lets the CLI refuse before it asks for a code."""
    try:
        _check_waiting(store or RunStore(), run_id, step)
    except DrfleetError as refused:
        _refused(by, run_id, step, refused)
        raise


def approve_step(run_id: str, step: str, *, by: str, code: str | None, store: RunStore | None = None,
                 now: float | None = None) -> dict:
    """Approve destructive ``step`` of ``run_id`` as operator ``by`` with their current TOTP
    ``code`` (``state.operators``). Refused -- audited as ``runbook.approve`` ``refused``
    with the reason, nothing approved -- when the run or step is unknown, the step needs no
    approval or is not waiting for one, the operator is not enrolled or lacks the right, or
    the code is wrong or already used. An approval is audited with the operator's name."""
    from drfleet.state import operators

    store = store or RunStore()
    try:
        run = _check_waiting(store, run_id, step)
        operators.verify(by, code, right="approve", action=f"approve {run_id} {step}", now=now)
    except DrfleetError as refused:
        _refused(by, run_id, step, refused)
        raise
    approval = store.approve(run_id, step, by=by)
    audit.record("runbook.approve", actor=by, outcome="approved", run_id=run_id, step=step,
                 runbook=run.scenario, operator=by, second_factor="totp", token=approval["token"][:8])
    return approval


def run_inline(plan: Plan, scenario: str, *, approve: bool = False, started_by: str = "drill",
               store: RunStore | None = None, **params: Any) -> Run:
    """Run a whole scenario in this process with the same steps and records as a Celery run
    (for drills run inside one task). ``approve`` pre-approves destructive steps as
    ``started_by``; without it a destructive step fails the run instead of waiting."""
    store = store or RunStore()
    steps = build_steps(plan, scenario, **params)
    run = store.create(scenario, params, steps, started_by=started_by)
    if approve:
        for spec in steps:
            if spec.destructive:  # a drill approves its own steps (no operator; audited as such)
                approval = store.approve(run.run_id, spec.name, by=started_by)
                audit.record("runbook.approve", actor=started_by, outcome="approved", run_id=run.run_id,
                             step=spec.name, runbook=scenario, second_factor="none (drill, run inline)",
                             token=approval["token"][:8])
    task_id = f"inline-{uuid.uuid4().hex[:12]}"
    for spec in steps:
        try:
            outcome = execute_step(plan, run.run_id, spec.name, generation=run.generation,
                                   task_id=task_id, store=store)
        except ApprovalPending:
            store.update_step(run.run_id, spec.name, status=StepStatus.FAILED,
                              error="destructive step not approved (inline runs do not wait)")
            store.set_status(run.run_id, RunStatus.FAILED, error=f"{spec.name}: not approved")
            break
        except StepFailed:
            break
        if not outcome.continue_chain:
            break
    return store.get(run.run_id)


def run_report(run: Run, store: RunStore | None = None) -> dict:
    """The run as a plain dict: start, end, steps (status, timings, output), result, RTO."""
    store = store or RunStore()
    records = store.step_records(run.run_id)
    steps = []
    for spec in run.steps:
        rec = records.get(spec.name, {})
        started, finished = rec.get("started_at"), rec.get("finished_at")
        steps.append({"name": spec.name, "action": spec.action, "target": spec.target,
                      "region": spec.region, "status": rec.get("status"), "attempts": rec.get("attempts", 0),
                      "started_at": started, "finished_at": finished,
                      "seconds": round(float(finished) - float(started), 3) if started and finished else None,
                      "output": rec.get("output"), "error": rec.get("error")})
    return {"run_id": run.run_id, "scenario": run.scenario, "params": run.params,
            "start": run.created_at, "end": run.finished_at, "verified_at": run.verified_at,
            "result": run.status, "rto_seconds": run.rto_seconds, "error": run.error,
            "started_by": run.started_by, "steps": steps}


def run_failover_drill(plan: Plan, scenario: str, **kw: Any) -> dict:
    """Run ``scenario`` end to end in this process as a drill and return
    ``{"run_id", "scenario", "start", "end", "steps", "result", "rto_seconds", ...}``.
    Destructive steps are pre-approved (``approve=False`` in ``kw`` to refuse them)."""
    approve = kw.pop("approve", True)
    run = run_inline(plan, scenario, approve=approve, started_by=kw.pop("started_by", "drill"), **kw)
    return run_report(run)
