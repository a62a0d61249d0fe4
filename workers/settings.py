"""Celery settings, derived from the environment and the plan's regions.

Each choice follows what Celery, kombu and RedBeat document about delivery (README, "The Celery app"): JSON only; late acks with reject-on-worker-lost;
prefetch 1 (and prefetch disabled); one visibility timeout, set in all three places, above
the longest hard time limit; soft < hard < visibility; no silent queue creation; long tasks
cancelled on broker connection loss. The environment variables it reads (broker, result and
state URLs, time limits, visibility timeout, events, message signing: all optional) are
declared in ``drfleet.settings`` and listed in docs/settings.md; Redis credentials and TLS
are ``state.redis_security``'s (docs/operations.md, docs/security.md).

A worker or beat whose Redis refuses the credentials exits at start-up with a message
naming the masked URL (never the password) instead of retrying forever.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

from celery import signals

from drfleet import settings
from drfleet.errors import DrfleetError
from drfleet.settings import Limits
from drfleet.state.fleet_redis import celery_redis_settings, check_fleet_redis, fleet_redis
from drfleet.state.redis_security import RedisAuthFailed, RedisConfigInvalid, RedisUnreachable
from drfleet.workers.queues import declare_queues, route_task


class SigningMisconfigured(DrfleetError):
    hint = ("set DRFLEET_SIGNING_KEY, DRFLEET_SIGNING_CERT and DRFLEET_SIGNING_CERT_STORE to readable "
            "files (docs/security.md, 'Message signing'), or unset DRFLEET_SIGN_MESSAGES")


def signing_enabled(env=os.environ) -> bool:
    return settings.SIGN_MESSAGES.get(env)


def _signing_settings(env) -> dict:
    """Settings for Celery's ``auth`` serializer, and its registration with kombu (which
    Celery's own ``setup_security`` would do; done here so every process that loads the
    configuration can sign and verify). Raises SigningMisconfigured for missing files."""
    if not signing_enabled(env):
        return {"task_serializer": "json", "accept_content": ["json"]}
    paths = {s.name: s.get(env) for s in (settings.SIGNING_KEY, settings.SIGNING_CERT, settings.SIGNING_CERT_STORE)}
    missing = [name for name, path in paths.items() if not path or not Path(path).exists()]
    if missing:
        raise SigningMisconfigured("DRFLEET_SIGN_MESSAGES is on but its files are missing",
                                   missing=", ".join(missing))
    password = None
    if settings.SIGNING_KEY_PASSWORD_FILE.get(env):
        password = Path(settings.SIGNING_KEY_PASSWORD_FILE.get(env)).read_text().strip()
    from celery.security.serialization import register_auth
    try:
        register_auth(Path(paths["DRFLEET_SIGNING_KEY"]).read_text(), password,
                      Path(paths["DRFLEET_SIGNING_CERT"]).read_text(), paths["DRFLEET_SIGNING_CERT_STORE"],
                      "sha256", "json")
    except Exception as exc:  # noqa: BLE001 - celery's SecurityError, ValueError from cryptography
        raise SigningMisconfigured(f"the signing key or certificates cannot be loaded ({type(exc).__name__})",
                                   key=paths["DRFLEET_SIGNING_KEY"], cert=paths["DRFLEET_SIGNING_CERT"],
                                   cert_store=paths["DRFLEET_SIGNING_CERT_STORE"]) from None
    return {"task_serializer": "auth", "accept_content": ["auth"],
            "security_key": paths["DRFLEET_SIGNING_KEY"], "security_certificate": paths["DRFLEET_SIGNING_CERT"],
            "security_cert_store": paths["DRFLEET_SIGNING_CERT_STORE"], "security_digest": "sha256"}


def celery_config(regions: list[str], env=os.environ) -> dict:
    """The Celery configuration mapping for a fleet serving ``regions``."""
    limits = Limits.from_env(env)
    transport = {"visibility_timeout": limits.visibility}
    if settings.UNACKED_RESTORE_SECONDS.get(env):  # fault tests: sweep for expired messages often
        transport.update(unacked_restore_interval=settings.UNACKED_RESTORE_SECONDS.get(env),
                         unacked_restore_throttle=1)
    return {
        **celery_redis_settings(fleet_redis(env), transport),
        "visibility_timeout": limits.visibility,
        "broker_connection_retry_on_startup": True,
        **_signing_settings(env),
        "result_serializer": "json",
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
        "task_send_sent_event": settings.TASK_EVENTS.get(env),
        "worker_send_task_events": settings.TASK_EVENTS.get(env),
        "result_expires": 7 * 86400,
        "result_extended": True,
        "timezone": "UTC",
        "enable_utc": True,
        "beat_scheduler": "drfleet.beat_schedule.scheduler:FleetScheduler",
        "redbeat_key_prefix": "drfleet:redbeat:",
        "redbeat_lock_timeout": settings.BEAT_LOCK_TIMEOUT.get(env),
        "beat_max_loop_interval": settings.BEAT_MAX_INTERVAL.get(env),
        # DRFLEET_BEAT_LOCK=off runs beat without RedBeat's lock: only for tests that
        # simulate the lock being held twice.
        **({"redbeat_lock_key": None} if settings.BEAT_LOCK.get(env) == "off" else {}),
        "worker_hijack_root_logger": False,
    }


def check_redis_credentials(role: str) -> None:
    """Reach the fleet's Redis once (every URL, or the sentinels and the master they name);
    exit the process (status 2) when the credentials are refused or the configuration is
    wrong, since retrying cannot help. Unreachable servers are only logged: Celery retries."""
    try:
        check_fleet_redis(fleet_redis(), role=role)
    except (RedisAuthFailed, RedisConfigInvalid) as exc:
        print(f"error: {exc}", file=sys.stderr, flush=True)
        raise SystemExit(2)
    except RedisUnreachable as exc:
        print(f"warning: {exc}", file=sys.stderr, flush=True)


@signals.celeryd_init.connect
def _worker_checks_credentials(sender=None, conf=None, **_):
    check_redis_credentials("worker")


@signals.import_modules.connect
def _beat_checks_credentials(sender=None, **_):
    # beat has no signal before RedBeat connects (beat_init comes after the scheduler is
    # built); loading the task modules is the last moment before it
    if "beat" in sys.argv[1:] and sender is not None:
        check_redis_credentials("beat")
