"""RedBeat, plus what the backup fleet needs on top of it.

* The schedule comes from the plan (entries removed from the plan are removed from Redis).
* Only one beat fires: RedBeat's lock; a standby beat blocks on it and takes over when it
  expires (``redbeat_lock_timeout``).
* Every message carries its scheduled ``slot`` (the cron fire time it belongs to), so the
  task base can deduplicate per (dataset, policy, slot) if the lock is ever held twice.
* A Redis restart does not end beat: it waits for Redis, then for its lock (``tick``).
* A slot's message is published before its marker moves; one whose publish failed (Redis
  away) is sent again when Redis is back, or recorded missed once past its catch-up window.
* Catch-up is bounded: after downtime, only the latest missed slot runs, and only if it is
  younger than the catch-up window; every other slot is recorded as missed
  (``drfleet:missed-slots``), where ``drfleet status`` shows it.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from datetime import datetime, timezone

import redis
from kombu.exceptions import OperationalError
from redbeat import RedBeatScheduler
from redis.exceptions import LockNotOwnedError

from drfleet.beat_schedule.entries import beat_schedule, schedule_entries
from drfleet.plan.triggers import Trigger
from drfleet.state import missed
from drfleet.state.store import key, state_client
from drfleet.workers.plan_context import current_plan

logger = logging.getLogger("drfleet.beat")
SETUP_WAIT_SECONDS = 300


# Atomically move an entry's last-sent slot forward; returns the previous value. Slots are
# ISO-8601 UTC strings of one format, so string order is time order.
_ADVANCE_MARKER = """
local old = redis.call('GET', KEYS[1])
if (not old) or old < ARGV[1] then redis.call('SET', KEYS[1], ARGV[1]) end
return old
"""


class FleetScheduler(RedBeatScheduler):
    def __init__(self, app, *args, **kwargs):
        plan = current_plan()
        self.triggers = {e.name: e.trigger for e in schedule_entries(plan) if e.trigger.scheduled}
        app.conf.beat_schedule = beat_schedule(plan)
        self.pending: dict[str, _Pending] = {}
        super().__init__(app, *args, **kwargs)

    def setup_schedule(self):
        """RedBeat's setup (it writes the plan's entries to Redis), waiting for Redis when it
        is away or failing over at start-up instead of exiting (a standby beat starting during
        a failover would otherwise be gone when it is needed)."""
        deadline = time.monotonic() + SETUP_WAIT_SECONDS
        while True:
            try:
                return super().setup_schedule()
            except (redis.ConnectionError, redis.TimeoutError) as exc:
                if time.monotonic() > deadline:
                    raise
                logger.warning("beat: Redis unreachable at start-up (%s); trying again in 1s", exc)
                time.sleep(1)

    def tick(self, *args, **kwargs):
        """RedBeat's tick, surviving a Redis restart: while Redis is unreachable beat
        waits and tries again instead of exiting; if its lock expired meanwhile (or another
        beat took it over), it waits for the lock again, as a standby does."""
        try:
            self._finish_pending()
            return super().tick(*args, **kwargs)
        except (redis.ConnectionError, redis.TimeoutError) as exc:
            logger.warning("beat: Redis unreachable (%s); trying again in %ss", exc, self.max_interval)
            return self.max_interval
        except LockNotOwnedError:
            logger.warning("beat: lost the lock while Redis was away; waiting to acquire it again")
            try:
                self.lock.acquire()
            except (redis.ConnectionError, redis.TimeoutError) as exc:
                logger.warning("beat: Redis unreachable (%s) while waiting for the lock", exc)
                return self.max_interval
            logger.info("beat: Acquired lock")
            return 0

    def apply_async(self, entry, producer=None, advance=True, **kwargs):
        trigger = self.triggers.get(entry.name)
        if trigger is None:
            return super().apply_async(entry, producer=producer, advance=advance, **kwargs)
        now = datetime.now(timezone.utc)
        slot = self.due_slot(entry.name, trigger, now)
        if slot is None:
            if advance:
                self.reserve(entry)
            return None
        return self._send(entry, slot, producer=producer, advance=advance, **kwargs)

    def _send(self, entry, slot: datetime, *, producer=None, advance=True, **kwargs):
        """Publish ``entry`` for ``slot``, then move its marker. The message goes first: if
        beat or Redis dies in between, the slot is sent again (the task's idempotency claim
        runs it once), never silently dropped. A failed publish or marker update is kept in
        memory and finished by the next ticks (``_finish_pending``)."""
        entry.kwargs = {**(entry.kwargs or {}), "slot": slot.isoformat()}
        self.pending[entry.name] = _Pending(entry, slot, sent=False)
        result = super().apply_async(entry, producer=producer, advance=advance, **kwargs)
        self.pending[entry.name] = _Pending(entry, slot, sent=True)
        self._mark_sent(entry.name, slot)
        return result

    def _mark_sent(self, name: str, slot: datetime) -> None:
        client = state_client()
        client.eval(_ADVANCE_MARKER, 1, key("beat", "last-slot", name), slot.isoformat())
        pending = self.pending.get(name)
        if pending is not None and pending.slot == slot:
            del self.pending[name]

    def _finish_pending(self) -> None:
        """Send again what a Redis outage kept beat from sending (while the slot is inside
        its catch-up window; after it, record it missed) and move markers it could not move.
        Raises redis.ConnectionError while Redis is still away (``tick`` waits)."""
        client = state_client()
        now = datetime.now(timezone.utc)
        for name, pending in list(self.pending.items()):
            if pending.sent:
                self._mark_sent(name, pending.slot)
                continue
            marker = client.get(key("beat", "last-slot", name))
            if marker is not None and datetime.fromisoformat(marker.decode()) >= pending.slot:
                del self.pending[name]  # sent or recorded since (by this beat or another)
                continue
            lateness = (now - pending.slot).total_seconds()
            if lateness > self.triggers[name].catchup_window():
                missed.record_missed(name, pending.slot, "Redis was unreachable when the slot was due "
                                     f"and came back {lateness:.0f}s later, beyond the catch-up window",
                                     client=client)
                self._mark_sent(name, pending.slot)
                continue
            logger.info("beat: sending %r for slot %s again after a failed publish", name,
                        pending.slot.isoformat())
            try:
                self._send(pending.entry, pending.slot, producer=self.producer, advance=False)
            except (redis.ConnectionError, redis.TimeoutError):
                raise
            except Exception as exc:
                cause = exc.__cause__ or exc.__context__
                if isinstance(cause, (redis.ConnectionError, redis.TimeoutError, OperationalError)):
                    raise redis.ConnectionError(str(cause)) from exc
                logger.exception("beat: %r for slot %s cannot be sent; recording it missed", name,
                                 pending.slot.isoformat())
                missed.record_missed(name, pending.slot, f"the message could not be sent: {type(exc).__name__}",
                                     client=client)
                self._mark_sent(name, pending.slot)

    def due_slot(self, name: str, trigger: Trigger, now: datetime) -> datetime | None:
        """The slot to send now, or None. Slots skipped since the last one sent are recorded
        missed (and the marker moved past them), as is a latest slot beyond the catch-up
        window. The marker is only moved past the latest slot once it is sent (``_send``)."""
        client = state_client()
        marker = key("beat", "last-slot", name)
        latest = trigger.slot_for(now)
        if latest is None:
            return None
        previous = client.get(marker)
        if previous is not None:
            last_sent = datetime.fromisoformat(previous.decode())
            if latest <= last_sent:
                return None  # this slot was already sent (by us, or by another beat)
            skipped = trigger.fires_between(last_sent, latest, limit=10_000)[:-1]
            for slot in skipped:
                missed.record_missed(name, slot, "beat was not running at the scheduled time", client=client)
            if skipped:
                client.eval(_ADVANCE_MARKER, 1, marker, skipped[-1].isoformat())
                logger.warning("beat: %d slot(s) of %r were missed; recorded in drfleet:missed-slots",
                               len(skipped), name)
        lateness = (now - latest).total_seconds()
        if lateness > trigger.catchup_window():
            missed.record_missed(name, latest, f"beat resumed {lateness:.0f}s after the slot, "
                                 "beyond the catch-up window", client=client)
            client.eval(_ADVANCE_MARKER, 1, marker, latest.isoformat())
            return None
        return latest


@dataclass
class _Pending:
    """A slot beat chose but has not finished sending: ``sent`` is False until the message
    is published, True until the marker says so."""
    entry: object
    slot: datetime
    sent: bool
