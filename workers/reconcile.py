"""Finding work the broker lost or stranded, and sending it again, once.

Redis acknowledges writes before it persists or replicates them, so a crash or a Sentinel
failover can drop queued messages; a connection loss can make a worker acknowledge a
message and terminate its task; a SIGKILLed worker strands what it had reserved until the
visibility timeout (hours). ``reconcile_region`` runs on every region's control lane every
few seconds (beat's ``reconcile REGION`` entries) and looks at that region's work only:

1. Stranded messages: a message reserved (``unacked``) for longer than the grace period
   whose job lease nobody holds (idempotent tasks), or whose worker is gone (any other
   task: no running record, or its heartbeat expired), is put back at the head of its queue. A worker that
   is alive keeps its messages, however long they run; a retry waiting for its ETA is left
   alone. A message past its expiry (a periodic pass cut by a connection loss, whose running
   record could not be cleared while Redis was away) is put back whatever its record says:
   the worker that receives it discards it as expired and acknowledges it.
2. Lost messages: an idempotent task's message recorded in flight (``state.inflight``) for
   longer than the grace period, whose job no live process runs, that is neither queued nor
   reserved, and whose claim does not say it ended, is published again under the same task
   id (the task base's claim then lets it run once, and a backup that had committed is
   found by its slot instead of being taken twice). A scheduled slot already older than its
   catch-up window is recorded missed instead; a message re-sent ``MAX_RESENDS`` times is
   recorded as abandoned in the audit log.

Every action is logged and audited (actor ``reconcile``). The stores' manifests stay the
truth: a re-sent backup that finds its slot committed commits nothing new.
"""

from __future__ import annotations

import base64
import json
import logging
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone

import redis

from drfleet import settings
from drfleet.plan.models import Plan
from drfleet.state import audit, idempotency, inflight, missed
from drfleet.workers.queues import region_queues

logger = logging.getLogger("drfleet.reconcile")

MAX_RESENDS = 10
PRIORITY_SUFFIXES = ("", "\x06\x163", "\x06\x166", "\x06\x169")  # kombu's priority lists

# Put a reserved message back at the head of its queue, once: only if it is still reserved.
_RESTORE = """
if redis.call('HDEL', KEYS[1], ARGV[1]) == 1 then
  redis.call('ZREM', KEYS[2], ARGV[1])
  redis.call('RPUSH', KEYS[3], ARGV[2])
  return 1
end
return 0
"""


@dataclass
class Reconciled:
    """What one pass did, for the task's result, the logs and ``drfleet status``."""

    region: str
    restored: list[str] = field(default_factory=list)    # task ids put back in their queue
    resent: list[str] = field(default_factory=list)      # task ids published again
    missed: list[str] = field(default_factory=list)      # task ids whose slot was recorded missed
    abandoned: list[str] = field(default_factory=list)
    settled: int = 0                                     # in-flight records of work that had ended

    def to_dict(self) -> dict:
        return {"region": self.region, "restored": self.restored, "resent": self.resent, "missed": self.missed,
                "abandoned": self.abandoned, "settled": self.settled}


def grace_seconds() -> float:
    return settings.RECONCILE_GRACE_SECONDS.get()


@dataclass(frozen=True)
class Reserved:
    """A message kombu holds as delivered but not acknowledged."""

    tag: str
    message: dict
    routing_key: str
    reserved_at: float

    @property
    def task_id(self) -> str | None:
        return (self.message.get("headers") or {}).get("id")

    @property
    def task(self) -> str | None:
        return (self.message.get("headers") or {}).get("task")

    @property
    def eta(self) -> float | None:
        return self._time("eta")

    @property
    def expires(self) -> float | None:
        return self._time("expires")

    def _time(self, header: str) -> float | None:
        value = (self.message.get("headers") or {}).get(header)
        try:
            return datetime.fromisoformat(value).timestamp() if value else None
        except (TypeError, ValueError):
            return None


def reserved_messages(broker: redis.Redis, queues: list[str]) -> list[Reserved]:
    """The broker's reserved messages for ``queues`` (kombu's ``unacked`` hash)."""
    times = {tag.decode(): score for tag, score in broker.zrange("unacked_index", 0, -1, withscores=True)}
    out = []
    for tag, raw in broker.hgetall("unacked").items():
        try:
            message, _exchange, routing_key = json.loads(raw)
        except (ValueError, TypeError):
            continue
        if routing_key in queues:
            out.append(Reserved(tag.decode(), message, routing_key, times.get(tag.decode(), time.time())))
    return out


def queued_task_ids(broker: redis.Redis, queues: list[str]) -> set[str]:
    """Task ids of the messages waiting in ``queues``."""
    ids = set()
    for queue in queues:
        for suffix in PRIORITY_SUFFIXES:
            for raw in broker.lrange(queue + suffix, 0, -1):
                try:
                    ids.add(json.loads(raw)["headers"]["id"])
                except (ValueError, KeyError, TypeError):
                    continue
    return ids


def worker_is_gone(task_id: str | None, state: redis.Redis) -> bool:
    """No worker runs ``task_id``, or the one recorded running it stopped beating."""
    if not task_id:
        return True
    worker = inflight.running_on(task_id, client=state)
    return worker is None or not inflight.worker_alive(worker, client=state)


def reconcile_region(app, plan: Plan, region: str, *, broker: redis.Redis, state: redis.Redis,
                     now: float | None = None) -> Reconciled:
    """One pass over ``region``'s queues and in-flight work (see the module docstring).
    Raises redis errors when the broker or the state store is unreachable (the next pass
    tries again)."""
    now = now or time.time()
    grace = grace_seconds()
    queues = region_queues(region)
    report = Reconciled(region)
    reserved = reserved_messages(broker, queues)
    for message in reserved:
        if now - message.reserved_at < grace or (message.eta and message.eta > now):
            continue
        job = _job_of(app, message.task, message.message)
        if message.expires is not None and message.expires < now:
            pass  # past its expiry it never runs: a worker given it back discards and acknowledges it
        elif job is not None:  # an idempotent task: its lease, renewed while it runs, says whether it runs
            if idempotency.Lease(job, client=state).holder() is not None:
                continue
        elif not worker_is_gone(message.task_id, state):  # any other task: its worker's heartbeat
            continue
        restored = dict(message.message)
        restored["headers"] = {**(restored.get("headers") or {}), "redelivered": True}
        if broker.eval(_RESTORE, 3, "unacked", "unacked_index", message.routing_key, message.tag,
                       json.dumps(restored)):
            report.restored.append(message.task_id or message.tag)
            logger.warning("reconcile %s: restored %s %s to %s: its worker is gone", region, message.task,
                           message.task_id, message.routing_key)
            audit.record("reconcile", actor="reconcile", outcome="restored", task=message.task,
                         task_id=message.task_id, region=region, queue=message.routing_key,
                         reserved_seconds=round(now - message.reserved_at, 1), client=state)
    present = queued_task_ids(broker, queues) | {m.task_id for m in reserved}
    for entry in inflight.entries(client=state):
        if entry.region != region or now - entry.sent_at < grace or entry.task_id in present:
            continue
        _reconcile_inflight(app, plan, entry, report, state, now)
    return report


def _job_of(app, task_name: str | None, message: dict) -> str | None:
    """The idempotency key of the job ``message`` is for (None: not an idempotent task)."""
    task = app.tasks.get(task_name) if task_name else None
    return task.job_of(_kwargs(message)) if task is not None and hasattr(task, "job_of") else None


def _kwargs(message: dict) -> dict:
    try:
        body = message.get("body")
        if isinstance(body, str):
            decoded = json.loads(base64.b64decode(body)) if message.get("properties", {}).get(
                "body_encoding") == "base64" else json.loads(body)
        else:
            decoded = body
        return decoded[1] if isinstance(decoded, list) and len(decoded) > 1 else {}
    except (ValueError, TypeError):
        return {}


def _reconcile_inflight(app, plan: Plan, entry: inflight.Inflight, report: Reconciled, state: redis.Redis,
                        now: float) -> None:
    task = app.tasks.get(entry.task)
    job = task.job_of(entry.kwargs) if task is not None else None
    if job is None:
        inflight.forget(entry.task_id, client=state)
        return
    raw = state.get(job)
    holder = json.loads(raw) if raw else None
    if holder and (holder["task_id"] != entry.task_id or holder["state"] != "running"):
        inflight.forget(entry.task_id, client=state)  # ended, or another message owns the job
        report.settled += 1
        return
    if idempotency.Lease(job, client=state).holder() is not None:
        return  # a live process runs it (the lease, renewed while it runs, says so)
    late = _beyond_catchup(plan, entry, now)
    if late is not None:
        name = f"backup {entry.kwargs.get('dataset')} {entry.kwargs.get('policy')}"
        missed.record_missed(name, datetime.fromisoformat(entry.kwargs["slot"]),
                             f"its message was lost (Redis failed or restarted) and it is {late:.0f}s late, "
                             "beyond the catch-up window", client=state)
        idempotency.finish(job, entry.task_id, "missed", client=state)
        inflight.forget(entry.task_id, client=state)
        report.missed.append(entry.task_id)
        audit.record("reconcile", actor="reconcile", outcome="missed", task=entry.task, task_id=entry.task_id,
                     client=state, **_ids(entry.kwargs))
        return
    if entry.resends >= MAX_RESENDS:
        inflight.forget(entry.task_id, client=state)
        report.abandoned.append(entry.task_id)
        logger.error("reconcile %s: gave up on %s %s after %d re-sends", report.region, entry.task,
                     entry.task_id, entry.resends)
        audit.record("reconcile", actor="reconcile", outcome="abandoned", task=entry.task, task_id=entry.task_id,
                     resends=entry.resends, client=state, **_ids(entry.kwargs))
        return
    why = "not queued, not reserved, not running" + (" (claimed, its run died)" if holder else "")
    inflight.note_resend(entry, why, client=state)
    task.apply_async(kwargs=entry.kwargs, task_id=entry.task_id,
                     headers={"drfleet_actor": "reconcile", "drfleet_resend": entry.resends})
    report.resent.append(entry.task_id)
    logger.warning("reconcile %s: re-sent %s %s (%s; re-send %d)", report.region, entry.task, entry.task_id,
                   why, entry.resends)
    audit.record("reconcile", actor="reconcile", outcome="resent", task=entry.task, task_id=entry.task_id,
                 resends=entry.resends, client=state, **_ids(entry.kwargs))


def _beyond_catchup(plan: Plan, entry: inflight.Inflight, now: float) -> float | None:
    """Seconds late when ``entry`` is a scheduled backup slot past its catch-up window."""
    slot, dataset, policy = (entry.kwargs.get(k) for k in ("slot", "dataset", "policy"))
    if not slot or not dataset or not policy or entry.task != "drfleet.backup":
        return None
    try:
        when = datetime.fromisoformat(slot)
        trigger = plan.policy(dataset, policy).trigger
    except (ValueError, KeyError):
        return None
    if not trigger.scheduled:
        return None
    late = now - when.astimezone(timezone.utc).timestamp()
    return late if late > trigger.catchup_window() else None


def _ids(kwargs: dict) -> dict:
    return {k: kwargs[k] for k in ("dataset", "policy", "region", "slot", "backup_id", "location") if k in kwargs}
