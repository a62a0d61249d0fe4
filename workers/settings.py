"""Celery settings, derived from the environment and the plan's regions.

Each choice follows what Celery, kombu and RedBeat document about delivery (README, "The Celery app"): JSON only; late acks with reject-on-worker-lost;
prefetch 1 (and prefetch disabled); one visibility timeout, set in all three places, above
the longest hard time limit; soft < hard < visibility; no silent queue creation; long tasks
cancelled on broker connection loss. Environment variables (all optional):

  DRFLEET_BROKER_URL     broker (default redis://127.0.0.1:6379/0)
  DRFLEET_RESULT_URL     result backend (default: the broker URL)
  DRFLEET_DATA_SOFT_LIMIT / DRFLEET_DATA_HARD_LIMIT        seconds (6 h / 6 h 10 min)
  DRFLEET_CONTROL_SOFT_LIMIT / DRFLEET_CONTROL_HARD_LIMIT  seconds (10 min / 12 min)
  DRFLEET_VISIBILITY_TIMEOUT  seconds (default: data hard limit + 1 h)
"""

from __future__ import annotations

import os
from dataclasses import dataclass

from fleet.errors import DrfleetError
from workers.queues import declare_queues, route_task


class SettingsInvalid(DrfleetError):
    hint = "keep soft time limit < hard time limit < visibility timeout (see workers/settings.py)"


@dataclass(frozen=True)
class Limits:
    data_soft: int
    data_hard: int
    control_soft: int
    control_hard: int
    visibility: int

    @classmethod
    def from_env(cls, env=os.environ) -> "Limits":
        data_soft = int(env.get("DRFLEET_DATA_SOFT_LIMIT", 6 * 3600))
        data_hard = int(env.get("DRFLEET_DATA_HARD_LIMIT", data_soft + 600))
        control_soft = int(env.get("DRFLEET_CONTROL_SOFT_LIMIT", 600))
        control_hard = int(env.get("DRFLEET_CONTROL_HARD_LIMIT", control_soft + 120))
        visibility = int(env.get("DRFLEET_VISIBILITY_TIMEOUT", max(data_hard, control_hard) + 3600))
        limits = cls(data_soft, data_hard, control_soft, control_hard, visibility)
        limits.check()
        return limits

    def check(self) -> None:
        """Raises SettingsInvalid unless soft < hard < visibility for both lanes."""
        for lane, soft, hard in (("data", self.data_soft, self.data_hard),
                                 ("control", self.control_soft, self.control_hard)):
            if not soft < hard < self.visibility:
                raise SettingsInvalid(f"{lane} lane time limits are out of order",
                                      soft=soft, hard=hard, visibility_timeout=self.visibility)

    def for_lane(self, lane: str) -> tuple[int, int]:
        return (self.data_soft, self.data_hard) if lane == "data" else (self.control_soft, self.control_hard)


def broker_url(env=os.environ) -> str:
    return env.get("DRFLEET_BROKER_URL") or "redis://127.0.0.1:6379/0"


def celery_config(regions: list[str], env=os.environ) -> dict:
    """The Celery configuration mapping for a fleet serving ``regions``."""
    limits = Limits.from_env(env)
    broker = broker_url(env)
    transport = {"visibility_timeout": limits.visibility}
    if broker.startswith("rediss://"):
        transport["ssl_cert_reqs"] = "required"
    return {
        "broker_url": broker,
        "result_backend": env.get("DRFLEET_RESULT_URL") or broker,
        "broker_transport_options": dict(transport),
        "result_backend_transport_options": dict(transport),
        "visibility_timeout": limits.visibility,
        "broker_connection_retry_on_startup": True,
        "task_serializer": "json",
        "result_serializer": "json",
        "accept_content": ["json"],
        "result_accept_content": ["json"],
        "event_serializer": "json",
        "task_acks_late": True,
        "task_reject_on_worker_lost": True,
        "task_acks_on_failure_or_timeout": True,
        "worker_prefetch_multiplier": 1,
        "worker_disable_prefetch": True,
        "worker_cancel_long_running_tasks_on_connection_loss": True,
        "worker_soft_shutdown_timeout": 10.0,
        "task_create_missing_queues": False,
        "task_queues": declare_queues(regions),
        "task_routes": (route_task,),
        "task_default_exchange": "drfleet",
        "task_soft_time_limit": limits.control_soft,
        "task_time_limit": limits.control_hard,
        # long data-lane tasks set track_started themselves; events are on when Flower
        # watches (DRFLEET_TASK_EVENTS=1, as `drfleet up` and compose/ set, or worker -E)
        "task_track_started": False,
        "task_send_sent_event": env.get("DRFLEET_TASK_EVENTS") == "1",
        "worker_send_task_events": env.get("DRFLEET_TASK_EVENTS") == "1",
        "result_expires": 7 * 86400,
        "result_extended": True,
        "timezone": "UTC",
        "enable_utc": True,
        "beat_scheduler": "beat_schedule.scheduler:FleetScheduler",
        "redbeat_redis_url": env.get("DRFLEET_STATE_URL") or broker,
        "redbeat_key_prefix": "drfleet:redbeat:",
        "redbeat_lock_timeout": int(env.get("DRFLEET_BEAT_LOCK_TIMEOUT", 25)),
        "beat_max_loop_interval": int(env.get("DRFLEET_BEAT_MAX_INTERVAL", 5)),
        # DRFLEET_BEAT_LOCK=off runs beat without RedBeat's lock: only for tests that
        # simulate the lock being held twice.
        **({"redbeat_lock_key": None} if env.get("DRFLEET_BEAT_LOCK") == "off" else {}),
        "worker_hijack_root_logger": False,
    }
