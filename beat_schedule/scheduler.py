"""RedBeat, plus what the backup fleet needs on top of it.

* The schedule comes from the plan (entries removed from the plan are removed from Redis).
* Only one beat fires: RedBeat's lock; a standby beat blocks on it and takes over when it
  expires (``redbeat_lock_timeout``).
* Every message carries its scheduled ``slot`` (the cron fire time it belongs to), so the
  task base can deduplicate per (dataset, policy, slot) if the lock is ever held twice.
* A Redis restart does not end beat: it waits for Redis, then for its lock (``tick``).
* Catch-up is bounded: after downtime, only the latest missed slot runs, and only if it is
  younger than the catch-up window; every other slot is recorded as missed
  (``drfleet:missed-slots``), where ``drfleet status`` shows it.
"""

from __future__ import annotations

import logging
import os
from datetime import datetime, timezone

import redis
from redbeat import RedBeatScheduler
from redis.exceptions import LockNotOwnedError

from beat_schedule.entries import beat_schedule, schedule_entries
from plan.triggers import Trigger
from state import missed
from state.store import key, state_client
from workers.plan_context import current_plan

logger = logging.getLogger("drfleet.beat")

MAX_CATCHUP_SECONDS = 6 * 3600

# Atomically move an entry's last-sent slot forward; returns the previous value. Slots are
# ISO-8601 UTC strings of one format, so string order is time order.
_ADVANCE_MARKER = """
local old = redis.call('GET', KEYS[1])
if (not old) or old < ARGV[1] then redis.call('SET', KEYS[1], ARGV[1]) end
return old
"""


def catchup_window(trigger: Trigger) -> float:
    """How late the latest missed slot may still run: half a period, within [60 s, 6 h]
    (overridable with DRFLEET_CATCHUP_SECONDS)."""
    if os.environ.get("DRFLEET_CATCHUP_SECONDS"):
        return float(os.environ["DRFLEET_CATCHUP_SECONDS"])
    period = trigger.period_seconds() or 3600.0
    return max(min(period / 2, MAX_CATCHUP_SECONDS), min(60.0, period))


class FleetScheduler(RedBeatScheduler):
    def __init__(self, app, *args, **kwargs):
        plan = current_plan()
        self.triggers = {e.name: e.trigger for e in schedule_entries(plan) if e.trigger.scheduled}
        app.conf.beat_schedule = beat_schedule(plan)
        super().__init__(app, *args, **kwargs)

    def tick(self, *args, **kwargs):
        """RedBeat's tick, surviving a Redis restart: while Redis is unreachable beat
        waits and tries again instead of exiting; if its lock expired meanwhile (or another
        beat took it over), it waits for the lock again, as a standby does."""
        try:
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
        entry.kwargs = {**(entry.kwargs or {}), "slot": slot.isoformat()}
        return super().apply_async(entry, producer=producer, advance=advance, **kwargs)

    def due_slot(self, name: str, trigger: Trigger, now: datetime) -> datetime | None:
        """The slot to send now, or None; records every slot skipped since the last send."""
        client = state_client(self.app.conf.redbeat_redis_url)
        marker = key("beat", "last-slot", name)
        latest = trigger.slot_for(now)
        if latest is None:
            return None
        previous = client.eval(_ADVANCE_MARKER, 1, marker, latest.isoformat())
        if previous is not None:
            last_sent = datetime.fromisoformat(previous.decode())
            if latest <= last_sent:
                return None  # this slot was already sent (by us, or by another beat)
            skipped = trigger.fires_between(last_sent, latest, limit=10_000)[:-1]
            for slot in skipped:
                missed.record_missed(name, slot, "beat was not running at the scheduled time", client=client)
            if skipped:
                logger.warning("beat: %d slot(s) of %r were missed; recorded in drfleet:missed-slots",
                               len(skipped), name)
        lateness = (now - latest).total_seconds()
        if lateness > catchup_window(trigger):
            missed.record_missed(name, latest, f"beat resumed {lateness:.0f}s after the slot, "
                                 "beyond the catch-up window", client=client)
            return None
        return latest
