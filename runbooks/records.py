"""Run records kept outside the broker, in the fleet's state Redis (``state.store``).

Why Redis and not files: every worker of every region and the CLI must see the same record,
and a step's claim (pending -> running by one task id) must be atomic; the state Redis is
already where idempotency claims and the audit log live. Give it AOF persistence in
production (README, "Delivery"); the records hold names, ids, timings and outputs only.

Keys (all under ``drfleet:runbook:``):

* ``runs``                      sorted set of run ids by creation time
* ``{run_id}``                  hash: scenario, params, steps (the ordered specs, JSON),
                                status, generation, created_at, started_by, verified_at,
                                rto_seconds, finished_at, error
* ``{run_id}:steps``            hash: step name -> JSON record (status, task_id, attempts,
                                started_at, finished_at, heartbeat_at, output, error)
* ``{run_id}:approvals``        hash: step name -> JSON {by, at, token}
* ``{run_id}:cancel``           set when an operator cancels the run
"""

from __future__ import annotations

import json
import time
import uuid
from dataclasses import dataclass
from typing import Any

import redis

from drfleet import settings
from drfleet.errors import DrfleetError
from drfleet.runbooks.steps import StepSpec
from drfleet.state.store import key, state_client
from drfleet.statuses import RunStatus, StepStatus


def stale_after_seconds() -> float:
    """A running step whose heartbeat is older than this is taken to be dead (its worker was
    killed): ``DRFLEET_RUNBOOK_STALE_SECONDS``, default 30."""
    return settings.RUNBOOK_STALE_SECONDS.get()


def heartbeat_seconds() -> float:
    return max(0.2, min(5.0, stale_after_seconds() / 4))


class RunNotFound(DrfleetError):
    hint = "list runs with `drfleet runbook list`"


class NotApprovable(DrfleetError):
    hint = "approve one of the run's destructive steps (see `drfleet runbook status RUN_ID`)"


def _k(*parts: str) -> str:
    return key("runbook", *parts)


def new_run_id() -> str:
    return time.strftime("%Y%m%dT%H%M%S", time.gmtime()) + "-" + uuid.uuid4().hex[:8]


@dataclass
class Run:
    run_id: str
    scenario: str
    params: dict[str, Any]
    steps: list[StepSpec]
    status: str
    generation: int
    created_at: float
    started_by: str
    verified_at: float | None = None
    rto_seconds: float | None = None
    finished_at: float | None = None
    error: str | None = None

    def step(self, name: str) -> StepSpec:
        for spec in self.steps:
            if spec.name == name:
                return spec
        raise RunNotFound(f"run {self.run_id} has no step {name!r}",
                          steps=", ".join(s.name for s in self.steps))


class RunStore:
    """Reads and writes run records. Methods raise RunNotFound for an unknown run id."""

    def __init__(self, client: redis.Redis | None = None) -> None:
        self.client = client or state_client()

    # ---------------------------------------------------------------- runs

    def create(self, scenario: str, params: dict[str, Any], steps: list[StepSpec], *,
               started_by: str, run_id: str | None = None) -> Run:
        run_id = run_id or new_run_id()
        now = time.time()
        pipe = self.client.pipeline()
        pipe.hset(_k(run_id), mapping={
            "run_id": run_id, "scenario": scenario, "params": json.dumps(params, sort_keys=True),
            "steps": json.dumps([s.to_dict() for s in steps]), "status": RunStatus.RUNNING.value,
            "generation": 1, "created_at": f"{now:.6f}", "started_by": started_by})
        for spec in steps:
            pipe.hset(_k(run_id, "steps"), spec.name, json.dumps({"status": StepStatus.PENDING.value,
                                                                  "attempts": 0}))
        pipe.zadd(_k("runs"), {run_id: now})
        pipe.execute()
        return self.get(run_id)

    def get(self, run_id: str) -> Run:
        raw = self.client.hgetall(_k(run_id))
        if not raw:
            raise RunNotFound(f"no runbook run {run_id!r}", run_id=run_id)
        d = {k.decode(): v.decode() for k, v in raw.items()}

        def num(name: str) -> float | None:
            return float(d[name]) if d.get(name) else None

        return Run(run_id=d["run_id"], scenario=d["scenario"], params=json.loads(d["params"]),
                   steps=[StepSpec.from_dict(s) for s in json.loads(d["steps"])],
                   status=d["status"], generation=int(d["generation"]),
                   created_at=float(d["created_at"]), started_by=d.get("started_by", ""),
                   verified_at=num("verified_at"), rto_seconds=num("rto_seconds"),
                   finished_at=num("finished_at"), error=d.get("error") or None)

    def list_runs(self, limit: int = 50) -> list[Run]:
        ids = self.client.zrevrange(_k("runs"), 0, limit - 1)
        return [self.get(i.decode()) for i in ids]

    def set_status(self, run_id: str, status: RunStatus, **fields: Any) -> None:
        mapping = {"status": status.value}
        mapping.update({k: ("" if v is None else (f"{v:.6f}" if isinstance(v, float) else str(v)))
                        for k, v in fields.items()})
        self.client.hset(_k(run_id), mapping=mapping)

    def next_generation(self, run_id: str) -> int:
        """Start a new chain for the run; messages of older generations stop themselves."""
        self.get(run_id)
        return int(self.client.hincrby(_k(run_id), "generation", 1))

    # ---------------------------------------------------------------- steps

    def step_records(self, run_id: str) -> dict[str, dict[str, Any]]:
        raw = self.client.hgetall(_k(run_id, "steps"))
        return {k.decode(): json.loads(v) for k, v in raw.items()}

    def step_record(self, run_id: str, step: str) -> dict[str, Any]:
        raw = self.client.hget(_k(run_id, "steps"), step)
        return json.loads(raw) if raw else {"status": StepStatus.PENDING.value, "attempts": 0}

    def update_step(self, run_id: str, step: str, **fields: Any) -> dict[str, Any]:
        """Merge ``fields`` into the step's record atomically; return the new record."""
        name = _k(run_id, "steps")

        def txn(pipe: redis.client.Pipeline) -> dict[str, Any]:
            current = pipe.hget(name, step)
            record = json.loads(current) if current else {"status": StepStatus.PENDING.value, "attempts": 0}
            record.update({k: (v.value if isinstance(v, StepStatus) else v) for k, v in fields.items()})
            pipe.multi()
            pipe.hset(name, step, json.dumps(record, default=str))
            return record

        return self.client.transaction(txn, name, value_from_callable=True)

    def claim_step(self, run_id: str, step: str, task_id: str) -> tuple[bool, dict[str, Any]]:
        """pending/failed/waiting (or running by this task id, or running with a stale
        heartbeat) -> running by ``task_id``. Returns (claimed, record); a done step or one
        held by a live other task is not claimed."""
        name = _k(run_id, "steps")
        now = time.time()

        def txn(pipe: redis.client.Pipeline) -> tuple[bool, dict[str, Any]]:
            current = pipe.hget(name, step)
            record = json.loads(current) if current else {"status": StepStatus.PENDING.value, "attempts": 0}
            status = StepStatus(record["status"])
            if status.done:
                return False, record
            if (status == StepStatus.RUNNING and record.get("task_id") != task_id
                    and now - float(record.get("heartbeat_at") or 0) < stale_after_seconds()):
                return False, record
            same_wait = status == StepStatus.WAITING and record.get("task_id") == task_id
            if not same_wait:  # a new attempt (a retry polling for approval is not one)
                record["attempts"] = int(record.get("attempts", 0)) + 1
                record["started_at"] = now
            record.update(status=StepStatus.RUNNING.value, task_id=task_id, heartbeat_at=now,
                          error=None)
            pipe.multi()
            pipe.hset(name, step, json.dumps(record, default=str))
            return True, record

        return self.client.transaction(txn, name, value_from_callable=True)

    def heartbeat(self, run_id: str, step: str, task_id: str) -> None:
        record = self.step_record(run_id, step)
        if record.get("status") == StepStatus.RUNNING.value and record.get("task_id") == task_id:
            self.update_step(run_id, step, heartbeat_at=time.time())

    def outputs(self, run_id: str) -> dict[str, Any]:
        """Every finished step's output, by step name (what later steps read)."""
        return {name: rec.get("output") for name, rec in self.step_records(run_id).items()
                if rec.get("status") in (StepStatus.SUCCEEDED.value, StepStatus.SKIPPED.value)}

    # ---------------------------------------------------------------- operator signals

    def approve(self, run_id: str, step: str, *, by: str) -> dict[str, Any]:
        """Record an approval token for ``step``; returns it."""
        run = self.get(run_id)
        spec = run.step(step)
        if not spec.destructive:
            raise NotApprovable(f"step {step!r} of run {run_id} needs no approval",
                                destructive_steps=", ".join(s.name for s in run.steps if s.destructive)
                                or "(none)")
        approval = {"by": by, "at": time.time(), "token": uuid.uuid4().hex}
        self.client.hset(_k(run_id, "approvals"), step, json.dumps(approval))
        return approval

    def approval(self, run_id: str, step: str) -> dict[str, Any] | None:
        raw = self.client.hget(_k(run_id, "approvals"), step)
        return json.loads(raw) if raw else None

    def request_cancel(self, run_id: str, *, by: str) -> None:
        self.get(run_id)
        self.client.set(_k(run_id, "cancel"), json.dumps({"by": by, "at": time.time()}))

    def cancel_requested(self, run_id: str) -> dict[str, Any] | None:
        raw = self.client.get(_k(run_id, "cancel"))
        return json.loads(raw) if raw else None

    def clear_cancel(self, run_id: str) -> None:
        self.client.delete(_k(run_id, "cancel"))
