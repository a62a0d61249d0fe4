"""Everything every drfleet task does besides its own work, in one place.

``FleetTask.__call__`` wraps each execution:

1. Region check: a message for region X run by a worker of region Y is rejected (not run,
   not requeued) and the rejection logged with the task id.
2. Idempotency: an idempotent task's message is recorded in flight before it is published
   (``apply_async``; ``workers.reconcile`` sends again what the broker lost), and every
   running task is recorded with its worker, whose heartbeat says it is alive. Tasks that
   declare ``idempotent_on`` claim their job (for backups:
   dataset, policy and scheduled slot). A second message for the same job is skipped; a
   redelivery of the same message proceeds if its earlier delivery died (its lease,
   ``state.idempotency.Lease``, expired) and is retried later while that delivery is
   still running (a visibility timeout shorter than the task), so the job never runs
   twice at once. While the state store (Redis) is unreachable the task tries again each
   second for DRFLEET_STATE_WAIT_SECONDS, then requeues its message: never failed, never lost.
3. Retries: a task that declares ``transient_retries`` is re-queued when its body fails
   with a transient error (``drfleet.retry.is_transient``), after ``transient_backoff``, keeping
   its task id and so its claim; any other error fails it at once.
4. Metrics: outcome counters and a duration histogram.
5. Audit: tasks marked ``audited`` append a record of who started them and how they ended.
6. Inline secrets: a message whose arguments hold a password (``postgresql://u:pw@...``,
   ``password=...``; ``drfleet.inline_secrets``) -- one crafted by hand, since the CLI
   refuses them -- is refused, not run. The ``task_prerun`` hook masks the secret in the
   request before Celery records the task as started (``result_extended`` stores the
   arguments), so the result backend, the audit and the worker's log see ``***`` only.

Task bodies contain only their own work. Messages carry names and ids; secrets are
resolved on the worker.
"""

from __future__ import annotations

import logging
import time
import uuid
from typing import Any

import redis
from billiard.exceptions import Terminated, WorkerLostError
from celery import Task, signals
from celery.exceptions import Reject, Retry, SoftTimeLimitExceeded
from celery.utils.saferepr import saferepr

from drfleet import inline_secrets, metrics, settings
from drfleet.retry import Backoff, is_transient
from drfleet.settings import Setting
from drfleet.state import audit, idempotency, inflight
from drfleet.state.redis_security import is_redis_failure
from drfleet.statuses import JobStatus, TaskOutcome

logger = logging.getLogger("drfleet.tasks")

# How often a redelivered message may find its job still running elsewhere and wait
# (half a lease each time): enough for the longest data-lane task.
REDELIVERY_WAITS = 100_000


def worker_region() -> str | None:
    """The region this worker process serves (set by ``--region`` or DRFLEET_REGION)."""
    return settings.REGION.get()


class FleetTask(Task):
    """Base class of drfleet tasks. Subclass attributes:

    ``lane``: "data" for long work, "control" for short work (chooses queue and limits).
    ``idempotent_on``: kwarg names that identify the logical job.
    ``audited``: append start/end records to the audit log.
    ``label``: the readable name shown in Flower (``backup auth-db hourly``).
    ``transient_retries``: attempts more after a transient failure (a number, or a
    ``drfleet.settings`` setting read at run time); ``transient_backoff`` the waits between.
    """

    abstract = True
    lane = "control"
    idempotent_on: tuple[str, ...] = ()
    audited = False
    label: str | None = None
    transient_retries: int | Setting = 0
    transient_backoff: Backoff = Backoff(first=30.0, cap=600.0)

    def job_of(self, kwargs: dict | None) -> str | None:
        """The idempotency key of the job a message with ``kwargs`` is for, or None when this
        task is not idempotent (or the message lacks a part of its key)."""
        kwargs = kwargs or {}
        if not self.idempotent_on or any(kwargs.get(k) is None for k in self.idempotent_on):
            return None
        return idempotency.job_key(self.name, tuple(str(kwargs[k]) for k in self.idempotent_on))

    def apply_async(self, args=None, kwargs=None, task_id=None, **options):
        """Publish as Celery does; an idempotent task's message is first recorded in flight
        (``state.inflight``) under its task id, so a message the broker loses is found and
        sent again (``workers.reconcile``). Raises what publishing raises."""
        if self.job_of(kwargs) is not None:
            task_id = task_id or uuid.uuid4().hex
            inflight.record_sent(task_id, self.name, kwargs)
        return super().apply_async(args, kwargs, task_id=task_id, **options)

    def shadow_name(self, args, kwargs, options):
        """The name Flower and logs show: the label followed by the message's names."""
        kwargs = kwargs or {}
        parts = [self.label or self.name.rsplit(".", 1)[-1]]
        parts += [str(kwargs[k]) for k in ("dataset", "policy", "backup_id", "runbook", "step")
                  if kwargs.get(k)]
        return " ".join(parts)

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        request = self.request
        task_id = request.id or "local"
        region = kwargs.get("region")
        served = worker_region()
        if request.id and served and region != served:
            logger.error("rejected task %s id=%s: message is for region %r but this worker serves %r",
                         self.name, task_id, region, served)
            metrics.task_rejected.labels(self.name, served).inc()
            raise Reject(f"task {task_id} is for region {region!r}, worker serves {served!r}",
                         requeue=False)

        refused = getattr(request, "drfleet_refused_arguments", None) or _inline_secret_paths(args, kwargs)
        if refused:
            raise self._refuse_inline_secrets(refused, kwargs, task_id, request)

        deadline = time.monotonic() + state_wait_seconds()
        tracked = bool(request.id) and self.job_of(kwargs) is None  # an idempotent task's lease says it runs
        try:
            return self._run(args, kwargs, request, task_id, region, deadline)
        finally:
            if tracked:
                _quietly(inflight.clear_running, task_id)

    def _run(self, args, kwargs, request, task_id, region, deadline) -> Any:
        """``__call__`` after the region check: begin (claim, lease, running record, audit),
        run the body, finish."""
        while True:
            begun = _Begun()
            try:
                early = self._begin(begun, kwargs, task_id, request)
                if early is not None:
                    return early
                break
            except (redis.ConnectionError, redis.TimeoutError) as exc:
                if begun.lease is not None:
                    begun.lease.release()
                if time.monotonic() < deadline:
                    logger.warning("task %s id=%s: the state store is unreachable (%s); trying again in 1s",
                                   self.name, task_id, exc)
                    try:
                        time.sleep(1)
                        continue
                    except SoftTimeLimitExceeded:
                        pass
                logger.warning("task %s id=%s: the state store is unreachable (%s); message requeued",
                               self.name, task_id, exc)
                raise Reject(f"task {task_id}: state store unreachable; requeued", requeue=True) from None
        job, lease = begun.job, begun.lease

        started = time.monotonic()
        actor = begun.actor
        try:
            try:
                try:
                    result = super().__call__(*args, **kwargs)
                except Exception as exc:
                    if not isinstance(exc, Retry) and self._may_retry(exc):
                        raise self.retry(exc=exc, countdown=self.transient_backoff.delay(request.retries),
                                         max_retries=self._retries_allowed()) from None
                    raise
            except Retry as retry:
                if self.audited and isinstance(retry.exc, Exception):  # an attempt failed; another follows
                    audit.record(self.name, actor=actor, outcome=TaskOutcome.RETRYING, task_id=task_id,
                                 error=type(retry.exc).__name__, attempt=request.retries + 1,
                                 seconds=round(time.monotonic() - started, 3), **_names(kwargs))
                raise
            except BaseException as exc:
                if interrupted(exc):
                    # not the job failing: the worker is stopping or lost Redis mid-task. The
                    # claim stays "running" and the message in flight, so the reconcile pass
                    # sends it again once the lease has expired (workers.reconcile).
                    logger.warning("task %s id=%s interrupted (%s); it will be sent again", self.name, task_id,
                                   type(exc).__name__)
                    if self.audited:
                        _quietly(audit.record, self.name, actor=actor, outcome=TaskOutcome.INTERRUPTED,
                                 task_id=task_id, error=type(exc).__name__, **_names(kwargs))
                    raise
                self._finish(job, task_id, region, started, TaskOutcome.FAILED, kwargs, actor, error=type(exc).__name__)
                raise
            self._finish(job, task_id, region, started, TaskOutcome.SUCCEEDED, kwargs, actor)
        finally:
            if lease is not None:
                lease.release()  # after the claim says how the job ended
        return result

    def _refuse_inline_secrets(self, refused: list[str], kwargs: dict, task_id: str,
                               request) -> inline_secrets.InlineSecretRefused:
        """The error that fails a task whose arguments hold a password; logged and audited
        with the argument names and masked values only."""
        names = ", ".join(refused)
        logger.error("refused task %s id=%s: %s holds a password inline; nothing was run",
                     self.name, task_id, names)
        if self.audited:
            headers = request.headers or {}
            audit.record(self.name, actor=headers.get("drfleet_actor") or "api", outcome=TaskOutcome.FAILED,
                         task_id=task_id, error="InlineSecretRefused",
                         **_names(inline_secrets.redacted(kwargs)))
        return inline_secrets.InlineSecretRefused(
            f"task {self.name} refused: {names} holds a password inline; nothing was run",
            task_id=task_id)

    def _retries_allowed(self) -> int:
        allowed = self.transient_retries
        return int(allowed.get() if isinstance(allowed, Setting) else allowed)

    def _may_retry(self, exc: BaseException) -> bool:
        return is_transient(exc) and self.request.retries < self._retries_allowed()

    def _begin(self, begun: "_Begun", kwargs: dict, task_id: str, request) -> dict | None:
        """Claim the job, take its lease and audit the start, filling ``begun``. Returns the
        task's result when it must not run (a duplicate, or already succeeded). Raises
        redis.ConnectionError/TimeoutError when the state store is away (``__call__`` waits
        and tries again, then requeues the message), Retry while another live process runs
        the same job."""
        job = self.job_of(kwargs) if request.id else None
        if request.id and job is None:
            inflight.mark_running(task_id, request.hostname or "?")
        if job is not None:
            claim = idempotency.claim(job, task_id)
            if not claim.granted:
                inflight.forget(task_id)
                metrics.task_duplicates.labels(self.name).inc()
                logger.warning("skipped task %s id=%s: job %s already taken by %s (%s)",
                               self.name, task_id, job, claim.holder_task_id, claim.holder_state)
                return {"status": JobStatus.DUPLICATE, "job": job, "holder": claim.holder_task_id}
            if claim.holder_state == TaskOutcome.SUCCEEDED:
                inflight.forget(task_id)
                return {"status": JobStatus.ALREADY_SUCCEEDED, "job": job}
            begun.job = job
            lease = idempotency.Lease(job)
            if not lease.acquire():
                # this message again while a live process still runs it (the broker's
                # visibility timeout passed): wait for that run instead of running twice
                metrics.task_duplicates.labels(self.name).inc()
                logger.warning("task %s id=%s: job %s is still running elsewhere (%s); checking again later",
                               self.name, task_id, job, lease.holder())
                raise self.retry(countdown=max(1.0, lease.ttl / 2), max_retries=REDELIVERY_WAITS)
            begun.lease = lease
            again = idempotency.claim(job, task_id)  # the run we waited for may have just ended
            if again.holder_state == TaskOutcome.SUCCEEDED:
                lease.release()
                begun.lease = None
                inflight.forget(task_id)
                return {"status": JobStatus.ALREADY_SUCCEEDED, "job": job}
            # an earlier delivery of this message died mid-way: the body may look for
            # what it had already done (tasks.backup finds a manifest it committed)
            request.drfleet_resumed = getattr(request, "drfleet_resumed", False) or claim.redelivered
        headers = request.headers or {}
        begun.actor = headers.get("drfleet_actor") or ("beat" if headers.get("celery_beat_task") else "api")
        if self.audited:
            audit.record(self.name, actor=begun.actor, outcome=TaskOutcome.STARTED, task_id=task_id, **_names(kwargs))
        return None

    def _finish(self, job, task_id, region, started, outcome, kwargs, actor, error=None) -> None:
        if job:
            idempotency.finish(job, task_id, outcome, forget_inflight=True)
        metrics.task_runs.labels(self.name, region or "-", outcome).inc()
        metrics.task_duration.labels(self.name).observe(time.monotonic() - started)
        if self.audited:
            audit.record(self.name, actor=actor, outcome=outcome, task_id=task_id,
                         error=error, seconds=round(time.monotonic() - started, 3), **_names(kwargs))


class _Begun:
    """What ``FleetTask._begin`` has done so far: the job claimed, the lease held, the actor."""

    def __init__(self) -> None:
        self.job: str | None = None
        self.lease: idempotency.Lease | None = None
        self.actor = "api"


def interrupted(exc: BaseException) -> bool:
    """Whether ``exc`` stopped the task from outside its work: the worker terminating it
    (SystemExit, a termination or lost-worker error) or Redis going away under it (a
    broker, result backend or state connection failing)."""
    if isinstance(exc, (SystemExit, KeyboardInterrupt, Terminated, WorkerLostError)):
        return True
    return is_redis_failure(exc)


def _quietly(fn, *args, **kwargs) -> None:
    """Bookkeeping that must not turn a task's outcome into an error (the record expires)."""
    try:
        fn(*args, **kwargs)
    except redis.RedisError as exc:
        logger.warning("could not update %s for %s: %s", fn.__name__, args, exc)


def state_wait_seconds() -> float:
    """How long a task waits for an unreachable state store before its message is
    requeued: DRFLEET_STATE_WAIT_SECONDS, default 30."""
    return settings.STATE_WAIT_SECONDS.get()


def _inline_secret_paths(args, kwargs) -> list[str]:
    return sorted({path for path, _ in inline_secrets.secrets_in({"args": list(args or ()), **(kwargs or {})})})


@signals.task_prerun.connect
def _mask_inline_secrets(sender=None, task=None, args=None, kwargs=None, **_: Any) -> None:
    """Before Celery stores the started task with its arguments: mask any password in
    them (in place: the stored request and the task's call share the dict) and mark the
    request, so ``FleetTask.__call__`` refuses it."""
    if not isinstance(task, FleetTask):
        return
    refused = _inline_secret_paths(args, kwargs)
    if not refused:
        return
    request = task.request
    for key in list(kwargs or {}):
        kwargs[key] = inline_secrets.redacted(kwargs[key])
    request.args = inline_secrets.redacted(list(args or ()))
    request.argsrepr, request.kwargsrepr = saferepr(request.args), saferepr(kwargs or {})
    request.drfleet_refused_arguments = refused


def _names(kwargs: dict) -> dict:
    """The identifying kwargs worth auditing (names and ids only)."""
    return {k: v for k, v in kwargs.items() if k in
            ("dataset", "policy", "region", "slot", "backup_id", "location", "runbook", "step", "kind", "target")}
