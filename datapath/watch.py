"""Continuous and on-change policies: notice a change in a file tree, send one backup for
it, and measure how long the change waited for a committed backup.

Beat fires ``drfleet.watch`` for each such policy every few seconds
(``beat_schedule.entries.watch_interval``: 15 s for continuous, 60 s for on-change)
on the dataset's region's control lane. Each run surveys the tree (``datapath.treestate``:
a stat digest for ``continuous``, a content digest for ``on-change``), then advances the
policy's watch state in Redis (``drfleet:watch:DATASET:POLICY``) in one optimistic
transaction (WATCH/MULTI), so watches that overlap (two beats, a redelivery) agree on one
outcome:

* a digest different from the last one is a new *generation*; the oldest change not yet
  handed to a backup is remembered (``pending_since``, from the entries' ctimes);
* at most one backup per policy is outstanding; when none is and the newest generation is
  not committed, one is sent with slot ``watch:SEQ:DIGEST`` (``drfleet.backup`` is
  idempotent on dataset, policy and slot, so a duplicate message takes no second backup);
* the outstanding backup's outcome is read from the result backend: committed -> the lag
  (commit time minus the oldest change it covered) is exported as
  ``drfleet_continuous_lag_seconds{dataset,policy}``; failed, or never started within
  ``resend_after`` seconds -> its changes are pending again and a new backup is sent
  after a backoff (15 s, doubling per consecutive failure, at most 10 minutes);
* an unchanged tree whose latest generation is committed sends nothing;
* a watch that finds another still surveying the same policy returns ``busy`` without
  walking (a Redis lock that expires with the control lane's hard time limit).

The first survey of a policy (no state in Redis) sends a baseline backup: nothing says the
tree as it is now is in a backup. Its lag is not exported (the change time is unknown).

Why polling and not inotify: no inotify library is installed; polling needs no long-lived
daemon beside the worker, loses nothing while workers are down (the digest catches every
change made meanwhile), sees writes made over NFS or by other hosts, and has no
per-directory watch limit. Its cost is one stat walk per interval (plus reading changed
files for on-change). Trees on a plan host (``source: {host: ...}``) are surveyed over
SSH with the same digest (``datapath.remote_treestate``: one ``find`` per watch).

Raised by ``watch_policy``: WatchUnsupported (not a files dataset, or not a
continuous/on-change policy), WrongRegion, the ``treestate`` errors (TreeMissing,
TreeUnreadable) and, for remote trees, the ``providers.ssh`` errors.
"""

from __future__ import annotations

import json
import time
import uuid
from dataclasses import asdict, dataclass, field, replace
from typing import Callable

import redis

from drfleet import metrics, settings
from drfleet.datapath.errors import DataPathError, WrongRegion
from drfleet.datapath.treestate import Survey, survey
from drfleet.plan.models import Plan
from drfleet.settings import Limits
from drfleet.state.store import key, state_client

DIGEST_FOR = {"continuous": "stat", "on-change": "content"}
DEFAULT_RESEND_AFTER = 3600
DEFAULT_RETRY_BASE = 15.0
MAX_RETRY_BACKOFF = 600.0

class WatchUnsupported(DataPathError):
    hint = ("continuous and on-change policies are watched for files datasets; "
            "give other datasets a clock trigger (e.g. 'every 15 minutes')")


def resend_after() -> float:
    """Seconds a sent backup may stay unstarted before it counts as lost and is resent."""
    return settings.WATCH_RESEND_SECONDS.get(default=DEFAULT_RESEND_AFTER)


def retry_base() -> float:
    """The first backoff after a failed backup (DRFLEET_WATCH_RETRY_SECONDS, default 15)."""
    return settings.WATCH_RETRY_SECONDS.get(default=DEFAULT_RETRY_BASE)


@dataclass(frozen=True)
class WatchState:
    """What Redis remembers about one policy's tree between watches (times: epoch s)."""

    digest: str | None = None
    generation: int = 0               # +1 on every digest change (the first survey is 1)
    surveyed_at: float | None = None  # when the latest survey started
    pending_since: float | None = None  # oldest change not handed to a backup yet
    sent_seq: int = 0                 # backups sent so far (names their slots)
    sent_generation: int = 0
    sent_task: str | None = None      # the outstanding backup's task id
    sent_at: float | None = None
    sent_change_at: float | None = None  # oldest change the outstanding backup covers
    committed_generation: int = 0
    committed_at: float | None = None
    committed_backup: str | None = None
    lag_seconds: float | None = None
    failures: int = 0                 # consecutive failed (or lost) backups
    retry_at: float | None = None     # no new send before this time after a failure

    def oldest_unbacked(self) -> float | None:
        times = [t for t in (self.sent_change_at, self.pending_since) if t is not None]
        return min(times) if times else None

    @classmethod
    def from_json(cls, raw: bytes | str | None) -> "WatchState":
        if not raw:
            return cls()
        known = cls.__dataclass_fields__
        return cls(**{k: v for k, v in json.loads(raw).items() if k in known})

    def to_json(self) -> str:
        return json.dumps(asdict(self), sort_keys=True)


@dataclass(frozen=True)
class Outcome:
    """The outstanding backup as the result backend tells it: ``waiting`` (not started),
    ``running``, ``committed`` (``finished_at``, ``backup_id``) or ``failed``."""

    status: str
    finished_at: float | None = None
    backup_id: str | None = None


@dataclass(frozen=True)
class Send:
    slot: str
    task_id: str


@dataclass(frozen=True)
class Decision:
    changed: bool = False
    send: Send | None = None
    committed: Outcome | None = None
    lag_seconds: float | None = None
    resent_because: str | None = None
    notes: list[str] = field(default_factory=list)


def advance(state: WatchState, found: Survey, outcome: Outcome | None, now: float, *,
            resend_after: float = DEFAULT_RESEND_AFTER,
            retry_base: float = DEFAULT_RETRY_BASE) -> tuple[WatchState, Decision]:
    """The next state after a survey (pure). ``outcome`` is the outstanding backup's (None
    when nothing is outstanding)."""
    s, committed, lag, resent = state, None, None, None
    if s.sent_task and outcome is not None:
        lost = outcome.status == "waiting" and s.sent_at is not None and now - s.sent_at > resend_after
        if outcome.status == "committed":
            committed = outcome
            if s.sent_change_at is not None and outcome.finished_at is not None:
                lag = max(0.0, outcome.finished_at - s.sent_change_at)
            s = replace(s, committed_generation=s.sent_generation, committed_at=outcome.finished_at,
                        committed_backup=outcome.backup_id, lag_seconds=lag if lag is not None else s.lag_seconds,
                        sent_task=None, sent_change_at=None, failures=0, retry_at=None)
        elif outcome.status == "failed" or lost:
            resent = "the backup failed" if outcome.status == "failed" else "the backup never started"
            backoff = min(retry_base * 2 ** s.failures, MAX_RETRY_BACKOFF)
            s = replace(settle_unsent(s), failures=s.failures + 1, retry_at=now + backoff)
    stale = s.surveyed_at is not None and found.started_at < s.surveyed_at  # an overlapping watch saw later
    changed = not stale and found.digest != s.digest
    if changed:
        pending = s.pending_since
        if s.digest is not None and pending is None:
            lower = s.surveyed_at if s.surveyed_at is not None else found.started_at
            pending = min(max(found.changed_since or lower, lower), found.started_at)
        s = replace(s, digest=found.digest, generation=s.generation + 1, pending_since=pending)
    if not stale:
        s = replace(s, surveyed_at=found.started_at)
    send = None
    if s.sent_task is None and s.generation > s.committed_generation and (s.retry_at or 0) <= now:
        seq = s.sent_seq + 1
        send = Send(slot=f"watch:{seq}:{s.digest[:12]}", task_id=str(uuid.uuid4()))
        s = replace(s, sent_seq=seq, sent_generation=s.generation, sent_task=send.task_id, sent_at=now,
                    sent_change_at=s.pending_since, pending_since=None)
    return s, Decision(changed=changed, send=send, committed=committed, lag_seconds=lag, resent_because=resent)


def settle_unsent(state: WatchState) -> WatchState:
    """The outstanding backup will not commit: its changes are pending again."""
    times = [t for t in (state.pending_since, state.sent_change_at) if t is not None]
    return replace(state, sent_task=None, sent_change_at=None, pending_since=min(times) if times else None)


def state_key(dataset: str, policy: str, *parts: str) -> str:
    return key("watch", dataset, policy, *parts)


def read_state(dataset: str, policy: str, *, client: redis.Redis | None = None) -> WatchState:
    return WatchState.from_json((client or state_client()).get(state_key(dataset, policy)))


def watch_policy(plan: Plan, dataset: str, policy: str, *, region: str,
                 send_backup: Callable[[Send], None], outcome_of: Callable[[str], Outcome],
                 client: redis.Redis | None = None) -> dict:
    """Survey ``dataset``'s tree for ``policy`` and advance its watch state; sends at most
    one backup through ``send_backup``. Returns a summary (status: baseline, changed,
    unchanged, pending or busy). Raises as the module docstring says."""
    ds = plan.dataset(dataset)
    trigger = plan.policy(dataset, policy).trigger.kind
    if ds.region != region:
        raise WrongRegion(f"dataset {dataset} lives in {ds.region}, not {region}", dataset=dataset)
    if trigger not in DIGEST_FOR:
        raise WatchUnsupported(f"policy {policy} is triggered by {trigger}, not continuous or on-change",
                               dataset=dataset, policy=policy)
    if ds.kind != "files":
        raise WatchUnsupported(f"dataset {dataset} is a {ds.kind} dataset; only file trees are watched",
                               dataset=dataset, policy=policy)
    client = client or state_client()
    lock, token = state_key(dataset, policy, "survey-lock"), uuid.uuid4().hex
    if not client.set(lock, token, nx=True, ex=Limits.from_env().control_hard):
        return {"status": "busy", "dataset": dataset, "policy": policy}
    try:
        return _watch_locked(_surveyor(plan, ds.source), dataset, policy, DIGEST_FOR[trigger], client,
                             send_backup, outcome_of, trigger)
    finally:
        if client.get(lock) == token.encode():
            client.delete(lock)


def _surveyor(plan: Plan, source) -> Callable[..., Survey]:
    """survey(kind=, since=, hashes=) of the source's tree, local or on its host."""
    if not source.host:
        return lambda **kw: survey(source.path, **kw)
    from drfleet.datapath.remote_treestate import ssh_target, survey_remote
    target = ssh_target(plan, source.host)
    return lambda **kw: survey_remote(target, source.path, **kw)


def _watch_locked(surveyor, dataset, policy, digest_kind, client, send_backup, outcome_of, trigger) -> dict:
    skey, hkey = state_key(dataset, policy), state_key(dataset, policy, "hashes")
    before = WatchState.from_json(client.get(skey))
    cache = json.loads(client.get(hkey) or "{}") if digest_kind == "content" else None
    try:
        found = surveyor(kind=digest_kind, since=before.surveyed_at, hashes=cache)
    except BaseException:
        _export(dataset, policy, trigger, before, Decision())  # the unbacked age keeps growing
        raise
    result: dict = {}

    def step(pipe: redis.client.Pipeline) -> None:
        state = WatchState.from_json(pipe.get(skey))
        outcome = outcome_of(state.sent_task) if state.sent_task else None
        new, decision = advance(state, found, outcome, time.time(), resend_after=resend_after(),
                                retry_base=retry_base())
        pipe.multi()
        pipe.set(skey, new.to_json())
        if digest_kind == "content" and found.hashes != cache:
            pipe.set(hkey, json.dumps(found.hashes, sort_keys=True))
        result.update(state=new, decision=decision, first=state.digest is None)

    client.transaction(step, skey)
    state, decision = result["state"], result["decision"]
    if decision.send is not None:
        try:
            send_backup(decision.send)
        except BaseException:
            _abandon(client, skey, decision.send.task_id)
            raise
    _export(dataset, policy, trigger, state, decision)
    status = ("baseline" if result["first"] else "changed" if decision.changed else
              "resent" if decision.send else "pending" if state.generation > state.committed_generation
              else "unchanged")
    return {"status": status, "dataset": dataset, "policy": policy, "generation": state.generation,
            "digest": state.digest[:12], "entries": found.entries,
            "sent": asdict(decision.send) if decision.send else None,
            "resent_because": decision.resent_because, "failures": state.failures,
            "committed_backup": decision.committed.backup_id if decision.committed else None,
            "lag_seconds": decision.lag_seconds}


def _abandon(client: redis.Redis, skey: str, task_id: str) -> None:
    """The backup message could not be sent: forget it so the next watch sends again."""
    def step(pipe):
        state = WatchState.from_json(pipe.get(skey))
        pipe.multi()
        if state.sent_task == task_id:
            pipe.set(skey, settle_unsent(state).to_json())
    client.transaction(step, skey)


def _export(dataset: str, policy: str, trigger: str, state: WatchState, decision: Decision) -> None:
    if decision.lag_seconds is not None and trigger == "continuous":
        metrics.continuous_lag.labels(dataset, policy).set(decision.lag_seconds)
    oldest = state.oldest_unbacked()
    metrics.unbacked_age.labels(dataset, policy).set(max(0.0, time.time() - oldest) if oldest else 0.0)
