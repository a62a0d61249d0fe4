"""Break-glass recovery: a runbook run from an operator's machine with the fleet's Redis
unreachable (or gone with its region), and its record merged into the fleet afterwards.

What the operator needs: the plan, the key files and the stores' credentials. The run uses
the same steps, actions and records as a Celery run (``runbooks.engine.execute_step``),
executed in this process; its state (run and step records, approvals, audit entries and any
claims the actions take) is kept in memory (``state.store.private_state``), never in a
Redis server. Destructive steps are approved at the terminal by the operator running it
(``approve`` callback); a refusal stops the run before the step.

The *journal* of the run is a JSON document (``drfleet-breakglass-journal``, version 1)
with the run's record, its steps, approvals and every audit entry it wrote. It is written
after every step to ``DRFLEET_HOME/breakglass/RUN_ID.json`` (0600, temporary name then
rename) and, at the end, to ``runbooks/breakglass/RUN_ID.json`` in every storage location of
the plan that accepts it (the others are named in the result). ``merge_journals`` later
puts the run into the fleet's state (``drfleet runbook list`` shows it) and appends its
audit entries, each marked ``breakglass: RUN_ID`` with its original time; a journal is
merged once.
"""

from __future__ import annotations

import json
import os
import tempfile
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import redis

from drfleet.errors import DrfleetError
from drfleet.paths import drfleet_home
from drfleet.plan.models import Plan
from drfleet.runbooks.engine import ApprovalPending, StepFailed, execute_step
from drfleet.runbooks.records import RunStore, _k
from drfleet.runbooks.runner import run_report
from drfleet.runbooks.scenarios import build_steps
from drfleet.runbooks.steps import StepSpec
from drfleet.state import audit
from drfleet.state.store import private_state
from drfleet.statuses import RunStatus, StepStatus

JOURNAL_FORMAT = "drfleet-breakglass-journal"
JOURNAL_VERSION = 1
STORE_PREFIX = "runbooks/breakglass/"
MAX_JOURNAL_BYTES = 64 << 20


class JournalInvalid(DrfleetError):
    hint = "the file is not a break-glass journal drfleet wrote; leave it out of the merge"


def local_dir() -> Path:
    return drfleet_home() / "breakglass"


def run_breakglass(plan: Plan, scenario: str, *, operator: str, approve: Callable[[StepSpec], bool],
                   on_step: Callable[[str, dict], None] | None = None, **params: Any) -> dict:
    """Run ``scenario`` here with no Redis. Returns ``{"report": run_report, "journal":
    local path, "stored": [locations], "not_stored": {location: reason}}``. Raises what
    ``build_steps`` raises for bad parameters (nothing run)."""
    with private_state() as client:
        store = RunStore(client)
        steps = build_steps(plan, scenario, **params)
        run = store.create(scenario, params, steps, started_by=f"breakglass:{operator}")
        audit.record("runbook.start", actor=operator, outcome="breakglass", run_id=run.run_id, runbook=scenario,
                     client=client)
        task_id = f"breakglass-{uuid.uuid4().hex[:12]}"
        path = _save_local(_journal(client, run.run_id, operator))
        for spec in steps:
            if spec.destructive and store.approval(run.run_id, spec.name) is None:
                if approve(spec):
                    # the enrolled operators and their TOTP secrets live in the unreachable
                    # Redis: the approval is the terminal's, and the audit says so
                    approval = store.approve(run.run_id, spec.name, by=operator)
                    audit.record("runbook.approve", actor=operator, outcome="approved", run_id=run.run_id,
                                 step=spec.name, runbook=scenario, client=client,
                                 second_factor="none (break-glass: typed at the terminal)",
                                 token=approval["token"][:8])
                else:
                    store.update_step(run.run_id, spec.name, status=StepStatus.FAILED,
                                      error=f"not approved by {operator} at the terminal")
                    store.set_status(run.run_id, RunStatus.FAILED, error=f"{spec.name}: not approved",
                                     finished_at=time.time())
                    break
            try:
                outcome = execute_step(plan, run.run_id, spec.name, generation=run.generation,
                                       task_id=task_id, store=store)
            except ApprovalPending:  # approved above; only a race could get here
                store.set_status(run.run_id, RunStatus.FAILED, error=f"{spec.name}: not approved")
                break
            except StepFailed:
                break
            finally:
                path = _save_local(_journal(client, run.run_id, operator))
                if on_step:
                    on_step(spec.name, store.step_record(run.run_id, spec.name))
            if not outcome.continue_chain:
                break
        report = run_report(store.get(run.run_id), store)
        journal = _journal(client, run.run_id, operator)
    path = _save_local(journal)
    stored, not_stored = _save_to_stores(plan, journal)
    return {"report": report, "journal": str(path), "stored": stored, "not_stored": not_stored}


def _decode(mapping: dict) -> dict[str, str]:
    return {k.decode(): v.decode() for k, v in mapping.items()}


def _journal(client: redis.Redis, run_id: str, operator: str) -> dict:
    return {"format": JOURNAL_FORMAT, "version": JOURNAL_VERSION, "run_id": run_id, "operator": operator,
            "written_at": time.time(), "run": _decode(client.hgetall(_k(run_id))),
            "steps": _decode(client.hgetall(_k(run_id, "steps"))),
            "approvals": _decode(client.hgetall(_k(run_id, "approvals"))),
            "audit": [{k: v for k, v in e.items() if k != "id"} for e in audit.entries(limit=100_000, client=client)]}


def _save_local(journal: dict) -> Path:
    directory = local_dir()
    directory.mkdir(parents=True, exist_ok=True, mode=0o700)
    path = directory / f"{journal['run_id']}.json"
    fd, temp = tempfile.mkstemp(dir=directory, prefix=".journal-")
    with os.fdopen(fd, "w") as handle:
        json.dump(journal, handle, sort_keys=True)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(temp, path)
    return path


def _save_to_stores(plan: Plan, journal: dict) -> tuple[list[str], dict[str, str]]:
    from drfleet.datapath.locations import store_for
    body = json.dumps(journal, sort_keys=True).encode()
    stored, failed = [], {}
    for location in plan.storage:
        try:
            store_for(plan, location).put_bytes(f"{STORE_PREFIX}{journal['run_id']}.json", body)
            stored.append(location)
        except Exception as exc:  # noqa: BLE001 - a region's store may be gone with the region
            failed[location] = f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"
    return stored, failed


def read_journal(data: bytes, *, source: str) -> dict:
    """Parse and check a journal. Raises JournalInvalid naming ``source``."""
    from drfleet.safe_load import load_json
    try:
        doc = load_json(data, source=source, max_bytes=MAX_JOURNAL_BYTES)
        if doc.get("format") != JOURNAL_FORMAT or doc.get("version") != JOURNAL_VERSION:
            raise ValueError(f"format {doc.get('format')!r} version {doc.get('version')!r}")
        if not all(isinstance(doc[n], dict) for n in ("run", "steps", "approvals")) or \
                not isinstance(doc["audit"], list) or doc["run"].get("run_id") != doc["run_id"]:
            raise ValueError("run, steps, approvals or audit malformed")
    except (ValueError, KeyError, TypeError, AttributeError, DrfleetError) as exc:
        raise JournalInvalid(f"not a break-glass journal ({exc})", source=source) from None
    return doc


def find_journals(plan: Plan) -> dict[str, tuple[str, bytes]]:
    """run id -> (where, journal bytes) from the local directory and every reachable store."""
    from drfleet.datapath.locations import store_for
    found: dict[str, tuple[str, bytes]] = {}
    if local_dir().is_dir():
        for path in sorted(local_dir().glob("*.json")):
            found[path.stem] = (str(path), path.read_bytes())
    for location in plan.storage:
        try:
            store = store_for(plan, location)
            for info in store.list(STORE_PREFIX):
                run_id = info.key.rsplit("/", 1)[-1].removesuffix(".json")
                if run_id not in found:
                    found[run_id] = (f"{location}:{info.key}", store.get_bytes(info.key))
        except Exception:  # noqa: BLE001, S112 - an unreachable store holds nothing to merge now
            continue
    return found


def merge_journals(plan: Plan, *, by: str, client: redis.Redis | None = None) -> list[dict]:
    """Put every break-glass run not merged yet into the fleet's state and its audit
    entries into the audit log (marked ``breakglass``, original times kept). Returns one
    ``{"run_id", "source", "audit_entries"}`` per merged journal. Raises JournalInvalid for
    a damaged journal (nothing of it merged; the others are)."""
    from drfleet.state.store import state_client
    client = client or state_client()
    merged, errors = [], []
    for run_id, (source, data) in sorted(find_journals(plan).items()):
        if client.sismember(_k("breakglass-merged"), run_id):
            continue
        try:
            doc = read_journal(data, source=source)
        except JournalInvalid as exc:
            errors.append(exc)
            continue
        pipe = client.pipeline()
        pipe.hset(_k(run_id), mapping={**doc["run"], "breakglass": "1"})
        if doc["steps"]:
            pipe.hset(_k(run_id, "steps"), mapping=doc["steps"])
        if doc["approvals"]:
            pipe.hset(_k(run_id, "approvals"), mapping=doc["approvals"])
        pipe.zadd(_k("runs"), {run_id: float(doc["run"].get("created_at") or doc["written_at"])})
        for entry in doc["audit"]:
            details = entry.get("details") if isinstance(entry.get("details"), dict) else {}
            pipe.xadd(audit.AUDIT_STREAM, {
                "action": str(entry.get("action")), "actor": str(entry.get("actor")),
                "outcome": str(entry.get("outcome")), "at": f"{float(entry.get('at') or 0):.3f}",
                "details": json.dumps({**details, "breakglass": run_id}, sort_keys=True, default=str)})
        pipe.sadd(_k("breakglass-merged"), run_id)
        pipe.execute()
        audit.record("runbook.breakglass-merge", actor=by, outcome="merged", run_id=run_id, source=source,
                     entries=len(doc["audit"]), client=client)
        merged.append({"run_id": run_id, "source": source, "audit_entries": len(doc["audit"])})
    if errors and not merged:
        raise errors[0]
    return merged
