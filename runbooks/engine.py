"""Running one step of a run, and what happens around it.

``execute_step`` is the body of the Celery step tasks (``tasks.runbooks``) and of inline
drills. In order, it:

1. stops its chain if the message is from an older chain of the run (``generation``: a
   resume starts a new one), if the run ended, or if an operator asked to cancel (the run
   becomes ``cancelled``; cancellation happens *between* steps);
2. returns at once if the step's record says it already succeeded or was skipped (a
   completed step is never repeated, whoever sends it again);
3. claims the step (pending -> running by this task id, atomically); a step held by another
   live task stops this chain;
4. skips it when its ``when`` condition on an earlier output is false;
5. for a destructive step without an approval: records ``waiting-approval`` and asks the
   caller to poll again later (``ApprovalPending``: the Celery task turns it into
   ``retry(countdown=...)``; no worker sleeps), failing after the approval timeout;
6. runs the action with a heartbeat, and records succeeded (output) or failed (error);
7. after the last step, records the run as succeeded with ``verified_at`` and its RTO
   (``verified_at - created_at``, including any time the run spent stopped).
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass
from typing import Any

from drfleet.errors import DrfleetError
from drfleet.plan.recovery import recovery_config
from drfleet.runbooks.actions import ACTIONS, SkipStep, StepContext
from drfleet.runbooks.notify import notify
from drfleet.runbooks.records import Run, RunStore, heartbeat_seconds
from drfleet.state import audit
from drfleet.statuses import RunStatus, StepStatus

logger = logging.getLogger("drfleet.runbooks")


class StepFailed(DrfleetError):
    hint = "fix the cause shown above, then `drfleet runbook resume RUN_ID` (completed steps are not repeated)"


@dataclass
class ApprovalPending(Exception):
    """The step waits for ``drfleet runbook approve RUN_ID STEP``; poll again in ``countdown``."""

    run_id: str
    step: str
    countdown: float


@dataclass(frozen=True)
class Outcome:
    """What ``execute_step`` did. ``continue_chain`` False: the caller must stop its chain."""

    status: str
    continue_chain: bool
    output: Any = None

    def as_result(self, run_id: str, step: str) -> dict:
        return {"run_id": run_id, "step": step, "status": self.status}


def execute_step(plan, run_id: str, step: str, *, generation: int, task_id: str,
                 store: RunStore | None = None) -> Outcome:
    """Run ``step`` of ``run_id`` once (see the module doc). Raises StepFailed when the
    action fails (the run is then ``failed``) and ApprovalPending while waiting."""
    store = store or RunStore()
    run = store.get(run_id)
    if generation != run.generation:
        return Outcome("stale-chain", False)
    if run.status in (RunStatus.CANCELLED.value, RunStatus.SUCCEEDED.value):
        return Outcome(f"run-{run.status}", False)
    cancel = store.cancel_requested(run_id)
    if cancel:
        _finish_cancelled(store, run, cancel, before=step)
        return Outcome("cancelled", False)
    spec = run.step(step)
    if StepStatus(store.step_record(run_id, step)["status"]).done:
        _maybe_finish(store, run, plan)
        return Outcome("already-done", True)
    claimed, record = store.claim_step(run_id, step, task_id)
    if not claimed:
        if StepStatus(record["status"]).done:
            return Outcome("already-done", True)
        logger.warning("run %s step %s is held by task %s; stopping this chain", run_id, step,
                       record.get("task_id"))
        return Outcome("busy", False)

    outputs = store.outputs(run_id)
    if spec.when and not _condition_holds(spec.when, outputs):
        store.update_step(run_id, step, status=StepStatus.SKIPPED, finished_at=time.time(),
                          output={"skipped": f"{spec.when['step']}.{spec.when['key']} is not "
                                             f"{spec.when['equals']!r}"})
        _maybe_finish(store, run, plan)
        return Outcome("skipped", True)

    rec = recovery_config(plan)
    if spec.destructive:
        approval = store.approval(run_id, step)
        if approval is None:
            waited = time.time() - float(record.get("started_at") or time.time())
            if waited > rec.approval_timeout_seconds:
                _fail(store, run, step, f"no approval within {rec.approval_timeout_seconds:.0f}s", plan)
                raise StepFailed(f"step {step} of run {run_id} was not approved in time",
                                 run_id=run_id, step=step,
                                 hint=f"approve with `drfleet runbook approve {run_id} {step} --operator NAME` (with a TOTP code), then resume")
            store.update_step(run_id, step, status=StepStatus.WAITING, waiting_since=record["started_at"],
                              approval_polls=int(record.get("approval_polls", 0)) + 1)
            store.set_status(run_id, RunStatus.WAITING)
            if not record.get("approval_polls"):
                notify(plan, "approval-needed", f"{run.scenario}: step {step} waits for approval",
                       f"approve with `drfleet runbook approve {run_id} {step} --operator NAME` (with a TOTP code)", run_id=run_id,
                       target=spec.target)
            raise ApprovalPending(run_id, step, rec.approval_poll_seconds)
        audit.record("runbook.approval-used", actor=approval["by"], outcome="accepted",
                     run_id=run_id, step=step, token=approval["token"][:8])

    store.set_status(run_id, RunStatus.RUNNING)
    ctx = StepContext(plan=plan, recovery=rec, run_id=run_id, spec=spec, outputs=outputs,
                      params=run.params)
    stop = threading.Event()
    beat = threading.Thread(target=_heartbeat, args=(store, run_id, step, task_id, stop), daemon=True)
    beat.start()
    try:
        output = ACTIONS[spec.action](ctx)
    except SkipStep as skip:
        store.update_step(run_id, step, status=StepStatus.SKIPPED, finished_at=time.time(),
                          output={"skipped": skip.reason, **skip.output})
        _maybe_finish(store, run, plan)
        return Outcome("skipped", True)
    except Exception as exc:  # noqa: BLE001 - recorded, then raised as StepFailed
        message = str(exc) if isinstance(exc, DrfleetError) else f"{type(exc).__name__}: {exc}"
        _fail(store, run, step, message, plan)
        raise StepFailed(f"runbook {run.scenario} step {step} failed", run_id=run_id, step=step,
                         error=message[-2000:]) from None
    finally:
        stop.set()
        beat.join(2)
    store.update_step(run_id, step, status=StepStatus.SUCCEEDED, finished_at=time.time(), output=output)
    logger.info("run %s step %s succeeded", run_id, step)
    _maybe_finish(store, run, plan)
    return Outcome("succeeded", True, output)


def _condition_holds(when: dict, outputs: dict) -> bool:
    output = outputs.get(when["step"]) or {}
    return output.get(when["key"]) == when["equals"]


def _heartbeat(store: RunStore, run_id: str, step: str, task_id: str, stop: threading.Event) -> None:
    while not stop.wait(heartbeat_seconds()):
        try:
            store.heartbeat(run_id, step, task_id)
        except Exception:  # noqa: BLE001 - a missed heartbeat only makes the step look stale sooner
            logger.warning("heartbeat of run %s step %s failed", run_id, step)


def _fail(store: RunStore, run: Run, step: str, message: str, plan=None) -> None:
    now = time.time()
    store.update_step(run.run_id, step, status=StepStatus.FAILED, finished_at=now, error=message[-4000:])
    store.set_status(run.run_id, RunStatus.FAILED, error=f"{step}: {message[:500]}")
    audit.record("runbook.run", actor=run.started_by or "api", outcome="failed", run_id=run.run_id,
                 runbook=run.scenario, step=step)
    if plan is not None:
        notify(plan, "runbook-failed", f"{run.scenario} failed at {step}", message[:500], run_id=run.run_id,
               params=run.params)


def _finish_cancelled(store: RunStore, run: Run, cancel: dict, before: str) -> None:
    store.set_status(run.run_id, RunStatus.CANCELLED, finished_at=time.time(),
                     error=f"cancelled by {cancel.get('by')} before step {before}")
    audit.record("runbook.run", actor=cancel.get("by") or "api", outcome="cancelled",
                 run_id=run.run_id, runbook=run.scenario, step=before)


def _maybe_finish(store: RunStore, run: Run, plan=None) -> None:
    """Mark the run succeeded (with its RTO) once every step is done."""
    records = store.step_records(run.run_id)
    if not all(StepStatus(records[s.name]["status"]).done for s in run.steps):
        return
    current = store.get(run.run_id)
    if current.status == RunStatus.SUCCEEDED.value:
        return
    verified_at = max(float(r.get("finished_at") or 0) for r in records.values()) or time.time()
    rto = round(verified_at - current.created_at, 3)
    store.set_status(run.run_id, RunStatus.SUCCEEDED, verified_at=verified_at, finished_at=time.time(),
                     rto_seconds=rto, error=None)
    audit.record("runbook.run", actor=current.started_by or "api", outcome="succeeded",
                 run_id=run.run_id, runbook=run.scenario, seconds=rto)
    logger.info("run %s (%s) verified; RTO %.1fs", run.run_id, run.scenario, rto)
    if plan is not None:
        notify(plan, "runbook-finished", f"{run.scenario} recovered: RTO {rto:.1f}s",
               f"`drfleet runbook status {run.run_id}` shows every step", run_id=run.run_id, params=run.params)
