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
  DRFLEET_UNACKED_RESTORE_SECONDS  how often a worker looks for messages past the
      visibility timeout (default: kombu's, about 100 s; fault tests set 1)

Security (docs/operations.md, docs/security.md):

  DRFLEET_REDIS_USERNAME / DRFLEET_REDIS_PASSWORD_FILE   ACL user and password file, put
      into every Redis URL (broker, results, RedBeat, state) that carries no password
  DRFLEET_REDIS_CA_FILE / _CERT_FILE / _KEY_FILE   TLS for rediss:// URLs (server
      certificate always verified)
  DRFLEET_SIGN_MESSAGES=1 with DRFLEET_SIGNING_KEY, DRFLEET_SIGNING_CERT,
      DRFLEET_SIGNING_CERT_STORE (and optionally DRFLEET_SIGNING_KEY_PASSWORD_FILE):
      task and control messages signed with Celery's ``auth`` serializer; unsigned or
      forged messages are refused. It signs; it does not encrypt.

A worker or beat whose Redis refuses the credentials exits at start-up with a message
naming the masked URL (never the password) instead of retrying forever.
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass
from pathlib import Path

from celery import signals

from fleet.errors import DrfleetError
from state.redis_security import RedisAuthFailed, RedisUnreachable, check_connection, tls_options, with_credentials
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


class SigningMisconfigured(DrfleetError):
    hint = ("set DRFLEET_SIGNING_KEY, DRFLEET_SIGNING_CERT and DRFLEET_SIGNING_CERT_STORE to readable "
            "files (docs/security.md, 'Message signing'), or unset DRFLEET_SIGN_MESSAGES")


def broker_url(env=os.environ) -> str:
    """The broker URL with the configured Redis credentials filled in."""
    return with_credentials(env.get("DRFLEET_BROKER_URL") or "redis://127.0.0.1:6379/0", env)


def redis_urls(env=os.environ) -> dict[str, str]:
    """Broker, result backend and state (RedBeat) URLs, credentials filled in."""
    broker = broker_url(env)
    return {"broker": broker,
            "result": with_credentials(env.get("DRFLEET_RESULT_URL") or broker, env),
            "state": with_credentials(env.get("DRFLEET_STATE_URL") or broker, env)}


def _tls_settings(urls: dict[str, str], env) -> dict:
    """broker_use_ssl / redis_backend_use_ssl / redbeat_redis_use_ssl for rediss:// URLs."""
    settings = {}
    for name, setting in (("broker", "broker_use_ssl"), ("result", "redis_backend_use_ssl"),
                          ("state", "redbeat_redis_use_ssl")):
        options = tls_options(urls[name], env)
        if options:
            settings[setting] = options
    return settings


def signing_enabled(env=os.environ) -> bool:
    return env.get("DRFLEET_SIGN_MESSAGES", "").strip().lower() in ("1", "true", "yes", "on")


def _signing_settings(env) -> dict:
    """Settings for Celery's ``auth`` serializer, and its registration with kombu (which
    Celery's own ``setup_security`` would do; done here so every process that loads the
    configuration can sign and verify). Raises SigningMisconfigured for missing files."""
    if not signing_enabled(env):
        return {"task_serializer": "json", "accept_content": ["json"]}
    paths = {name: env.get(name) for name in ("DRFLEET_SIGNING_KEY", "DRFLEET_SIGNING_CERT",
                                              "DRFLEET_SIGNING_CERT_STORE")}
    missing = [name for name, path in paths.items() if not path or not Path(path).exists()]
    if missing:
        raise SigningMisconfigured("DRFLEET_SIGN_MESSAGES is on but its files are missing",
                                   missing=", ".join(missing))
    password = None
    if env.get("DRFLEET_SIGNING_KEY_PASSWORD_FILE"):
        password = Path(env["DRFLEET_SIGNING_KEY_PASSWORD_FILE"]).read_text().strip()
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
    urls = redis_urls(env)
    transport = {"visibility_timeout": limits.visibility}
    if env.get("DRFLEET_UNACKED_RESTORE_SECONDS"):  # fault tests: sweep for expired messages often
        transport.update(unacked_restore_interval=int(env["DRFLEET_UNACKED_RESTORE_SECONDS"]),
                         unacked_restore_throttle=1)
    return {
        "broker_url": urls["broker"],
        "result_backend": urls["result"],
        "broker_transport_options": dict(transport),
        "result_backend_transport_options": dict(transport),
        **_tls_settings(urls, env),
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
        "task_send_sent_event": env.get("DRFLEET_TASK_EVENTS") == "1",
        "worker_send_task_events": env.get("DRFLEET_TASK_EVENTS") == "1",
        "result_expires": 7 * 86400,
        "result_extended": True,
        "timezone": "UTC",
        "enable_utc": True,
        "beat_scheduler": "beat_schedule.scheduler:FleetScheduler",
        "redbeat_redis_url": urls["state"],
        "redbeat_key_prefix": "drfleet:redbeat:",
        "redbeat_lock_timeout": int(env.get("DRFLEET_BEAT_LOCK_TIMEOUT", 25)),
        "beat_max_loop_interval": int(env.get("DRFLEET_BEAT_MAX_INTERVAL", 5)),
        # DRFLEET_BEAT_LOCK=off runs beat without RedBeat's lock: only for tests that
        # simulate the lock being held twice.
        **({"redbeat_lock_key": None} if env.get("DRFLEET_BEAT_LOCK") == "off" else {}),
        "worker_hijack_root_logger": False,
    }


def check_redis_credentials(conf, role: str) -> None:
    """Ping the broker, result backend and state Redis once; exit the process (status 2)
    when one refuses the credentials, since retrying cannot help. Unreachable servers are
    only logged: Celery retries those."""
    urls = {"broker": conf.broker_url, "result backend": conf.result_backend,
            "state (RedBeat, audit)": conf.redbeat_redis_url}
    checked = set()
    for what, url in urls.items():
        if not isinstance(url, str) or not url.startswith(("redis://", "rediss://")) or url in checked:
            continue
        checked.add(url)
        try:
            check_connection(url, role=f"{role} {what}")
        except RedisAuthFailed as exc:
            print(f"error: {exc}", file=sys.stderr, flush=True)
            raise SystemExit(2)
        except RedisUnreachable as exc:
            print(f"warning: {exc}", file=sys.stderr, flush=True)


@signals.celeryd_init.connect
def _worker_checks_credentials(sender=None, conf=None, **_):
    check_redis_credentials(conf, "worker")


@signals.import_modules.connect
def _beat_checks_credentials(sender=None, **_):
    # beat has no signal before RedBeat connects (beat_init comes after the scheduler is
    # built); loading the task modules is the last moment before it
    if "beat" in sys.argv[1:] and sender is not None:
        check_redis_credentials(sender.conf, "beat")
