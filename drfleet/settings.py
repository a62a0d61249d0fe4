"""Every ``DRFLEET_*`` environment variable drfleet reads, read here and nowhere else.

Each setting is declared once (``Setting``: name, type, default, group, what it does); code
reads it with ``settings.NAME.get()`` (or ``.get(env)`` with a mapping, for tests and for
building a child's environment). The reference page docs/settings.md is generated from
``SETTINGS`` (``drfleet plan docs --all docs``; a test keeps it current), and a test fails
when a module outside this one reads a ``DRFLEET_*`` variable itself.

A value that does not parse raises ``SettingInvalid`` naming the variable and the type it
wants; a secret setting's value is never repeated in the error.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any, Callable, Generic, Mapping, TypeVar

from drfleet.errors import DrfleetError

T = TypeVar("T")


class SettingInvalid(DrfleetError):
    hint = "fix or unset the environment variable (docs/settings.md lists every setting)"


def _flag(raw: str) -> bool:
    value = raw.strip().lower()
    if value in ("1", "true", "yes", "on"):
        return True
    if value in ("0", "false", "no", "off"):
        return False
    raise ValueError(raw)


_TYPE_NAMES = {str: "text", int: "a whole number", float: "a number", _flag: "1/0, true/false, yes/no or on/off"}


@dataclass(frozen=True)
class Setting(Generic[T]):
    """One environment variable: its parser, default (a value, or None for "unset"), the
    group it is documented under and what it does."""

    name: str
    parse: Callable[[str], T]
    default: T | None
    group: str
    doc: str
    secret: bool = False

    def get(self, env: Mapping[str, str] | None = None, default: Any = ...) -> T | None:
        """The parsed value, or the default when unset or empty (``default`` overrides the
        declared one, for defaults computed from other settings). Raises SettingInvalid."""
        raw = (os.environ if env is None else env).get(self.name)
        if raw is None or raw == "":
            return self.default if default is ... else default
        try:
            return self.parse(raw)
        except ValueError:
            facts = {} if self.secret else {"value": raw}
            raise SettingInvalid(f"{self.name} must be {_TYPE_NAMES.get(self.parse, 'valid')}",
                                 setting=self.name, **facts) from None

    def is_set(self, env: Mapping[str, str] | None = None) -> bool:
        return bool((os.environ if env is None else env).get(self.name))


SETTINGS: dict[str, Setting] = {}


def _declare(name: str, parse: Callable[[str], T], default: T | None, group: str, doc: str,
             secret: bool = False) -> Setting[T]:
    setting = Setting(name, parse, default, group, doc, secret)
    SETTINGS[name] = setting
    return setting


# --- where things are --------------------------------------------------------------------
PLAN = _declare("DRFLEET_PLAN", str, None, "where", "The DR plan file this process serves (default: the embedded demo plan).")
HOME = _declare("DRFLEET_HOME", str, None, "where",
                "Where a local fleet keeps its state, keys of the demo and mirrors (default ~/.drfleet).")
REGION = _declare("DRFLEET_REGION", str, None, "where",
                  "The region a worker serves (or `--region`); a worker refuses to start without one.")
LANE = _declare("DRFLEET_LANE", str, None, "where", "The lane a worker consumes: `data`, `control` (or `--lane`); default both.")
ROOT = _declare("DRFLEET_ROOT", str, "", "where",
                "The root directory of a `local` provider host (set by its sshd; empty on real hosts).")

# --- Redis: broker, results, state -------------------------------------------------------
BROKER_URL = _declare("DRFLEET_BROKER_URL", str, None, "redis",
                      "The broker's Redis URL (`redis://`, `rediss://` or `sentinel://`).")
RESULT_URL = _declare("DRFLEET_RESULT_URL", str, None, "redis", "The result backend's URL (default: the broker's).")
STATE_URL = _declare("DRFLEET_STATE_URL", str, None, "redis",
                     "Fleet state (claims, audit, missed slots, RedBeat) URL (default: the broker's).")
REDIS_SENTINELS = _declare("DRFLEET_REDIS_SENTINELS", str, None, "redis",
                           "Redis Sentinel mode: `host:port,host:port,...` of the sentinels (instead of the URLs above).")
REDIS_MASTER = _declare("DRFLEET_REDIS_MASTER", str, None, "redis",
                        "Sentinel mode: the master's name, as the sentinels know it (required with the sentinels).")
REDIS_DB = _declare("DRFLEET_REDIS_DB", int, 0, "redis", "Sentinel mode: the database number on the master.")
REDIS_SENTINEL_PASSWORD_FILE = _declare("DRFLEET_REDIS_SENTINEL_PASSWORD_FILE", str, None, "redis",
                                        "Sentinel mode: file with the sentinels' own password (default: the Redis password file).")
REDIS_WAIT_REPLICAS = _declare("DRFLEET_REDIS_WAIT_REPLICAS", int, 1, "redis",
                               "Sentinel mode: replicas that must confirm a job's end (its claim) before the task ends.")
REDIS_WAIT_MS = _declare("DRFLEET_REDIS_WAIT_MS", int, 500, "redis",
                         "Sentinel mode: how long a task waits for those replicas at most, milliseconds.")
REDIS_USERNAME = _declare("DRFLEET_REDIS_USERNAME", str, None, "redis", "ACL user put into every Redis URL that has none.")
REDIS_PASSWORD_FILE = _declare("DRFLEET_REDIS_PASSWORD_FILE", str, None, "redis",
                               "File holding the Redis password, put into every Redis URL that carries none.")
REDIS_CA_FILE = _declare("DRFLEET_REDIS_CA_FILE", str, None, "redis", "CA certificate(s) for `rediss://` (server always verified).")
REDIS_CERT_FILE = _declare("DRFLEET_REDIS_CERT_FILE", str, None, "redis", "Client certificate for `rediss://`.")
REDIS_KEY_FILE = _declare("DRFLEET_REDIS_KEY_FILE", str, None, "redis", "The client certificate's private key.")
STATE_WAIT_SECONDS = _declare("DRFLEET_STATE_WAIT_SECONDS", float, 30.0, "redis",
                              "How long a task waits for an unreachable state store before requeueing its message.")
RECONCILE_SECONDS = _declare("DRFLEET_RECONCILE_SECONDS", int, 15, "redis",
                             "How often each region looks for lost or stranded messages (``workers.reconcile``).")
RECONCILE_GRACE_SECONDS = _declare("DRFLEET_RECONCILE_GRACE_SECONDS", float, 60.0, "redis",
                                   "How long a message may be unaccounted for (or stranded on a dead worker) "
                                   "before it is sent again.")
CLAIM_LEASE_SECONDS = _declare("DRFLEET_CLAIM_LEASE_SECONDS", float, 60.0, "redis",
                               "TTL of a running job's lease (renewed while it runs).")

# --- Celery: limits, delivery, events ------------------------------------------------------
DATA_SOFT_LIMIT = _declare("DRFLEET_DATA_SOFT_LIMIT", int, 6 * 3600, "celery", "Soft time limit of data-lane tasks, seconds.")
DATA_HARD_LIMIT = _declare("DRFLEET_DATA_HARD_LIMIT", int, None, "celery",
                           "Hard time limit of data-lane tasks, seconds (default: soft + 600).")
CONTROL_SOFT_LIMIT = _declare("DRFLEET_CONTROL_SOFT_LIMIT", int, 600, "celery", "Soft time limit of control-lane tasks, seconds.")
CONTROL_HARD_LIMIT = _declare("DRFLEET_CONTROL_HARD_LIMIT", int, None, "celery",
                              "Hard time limit of control-lane tasks, seconds (default: soft + 120).")
VISIBILITY_TIMEOUT = _declare("DRFLEET_VISIBILITY_TIMEOUT", int, None, "celery",
                              "Redis visibility timeout, seconds (default: the longest hard limit + 1 h).")
UNACKED_RESTORE_SECONDS = _declare("DRFLEET_UNACKED_RESTORE_SECONDS", int, None, "celery",
                                   "How often a worker looks for messages past the visibility timeout (default: kombu's).")
TASK_EVENTS = _declare("DRFLEET_TASK_EVENTS", _flag, False, "celery", "Send task events (for Flower).")
SIGN_MESSAGES = _declare("DRFLEET_SIGN_MESSAGES", _flag, False, "celery", "Sign task messages (Celery's `auth` serializer).")
SIGNING_KEY = _declare("DRFLEET_SIGNING_KEY", str, None, "celery", "The signing private key file.")
SIGNING_CERT = _declare("DRFLEET_SIGNING_CERT", str, None, "celery", "The signing certificate file.")
SIGNING_CERT_STORE = _declare("DRFLEET_SIGNING_CERT_STORE", str, None, "celery", "Directory of trusted signing certificates.")
SIGNING_KEY_PASSWORD_FILE = _declare("DRFLEET_SIGNING_KEY_PASSWORD_FILE", str, None, "celery",
                                     "File holding the signing key's password, if it has one.")

# --- beat ------------------------------------------------------------------------------------
BEAT_LOCK = _declare("DRFLEET_BEAT_LOCK", str, "on", "beat",
                     "`off` runs beat without RedBeat's lock (only for tests that simulate the lock held twice).")
BEAT_LOCK_TIMEOUT = _declare("DRFLEET_BEAT_LOCK_TIMEOUT", int, 25, "beat",
                             "Seconds after which a standby beat takes over from a dead one.")
BEAT_MAX_INTERVAL = _declare("DRFLEET_BEAT_MAX_INTERVAL", int, 5, "beat", "Longest sleep of beat between two ticks, seconds.")
CATCHUP_SECONDS = _declare("DRFLEET_CATCHUP_SECONDS", float, None, "beat",
                           "Catch-up window after downtime (default: half the period, 60 s to 6 h).")
BASEBACKUP_TRIGGER = _declare("DRFLEET_BASEBACKUP_TRIGGER", str, "daily at 01:00", "beat",
                              "When WAL-archived datasets get their base backup.")
WATCH_CONTINUOUS_SECONDS = _declare("DRFLEET_WATCH_CONTINUOUS_SECONDS", float, 15.0, "beat",
                                    "Watch interval of `continuous` policies, seconds.")
WATCH_ON_CHANGE_SECONDS = _declare("DRFLEET_WATCH_ON_CHANGE_SECONDS", float, 60.0, "beat",
                                   "Watch interval of `on-change` policies, seconds.")

# --- the work --------------------------------------------------------------------------------
ZSTD_LEVEL = _declare("DRFLEET_ZSTD_LEVEL", int, None, "work", "zstd level of backups (default 1).")
WAL_ZSTD_LEVEL = _declare("DRFLEET_WAL_ZSTD_LEVEL", int, None, "work", "zstd level of archived WAL.")
WAL_COPY_SECONDS = _declare("DRFLEET_WAL_COPY_SECONDS", float, 60.0, "work",
                            "How often beat copies newly archived WAL to every other location the dataset's "
                            "policies name (the copy lag, and so the RPO if the home region is lost, is at "
                            "most about this plus the archive lag).")
PHYSICAL_WORKERS = _declare("DRFLEET_PHYSICAL_WORKERS", int, 2, "work",
                            "Pieces a file-level base backup or its restore processes at once (a policy's `workers` wins).")
BACKUP_RETRIES = _declare("DRFLEET_BACKUP_RETRIES", int, 3, "work", "Attempts more after a backup fails for a transient reason.")
BACKUP_RETRY_SECONDS = _declare("DRFLEET_BACKUP_RETRY_SECONDS", float, 30.0, "work",
                                "First wait before a backup is tried again (doubling).")
COPY_RETRIES = _declare("DRFLEET_COPY_RETRIES", int, 5, "work", "Attempts more of a copy to a store that is down.")
WATCH_RESEND_SECONDS = _declare("DRFLEET_WATCH_RESEND_SECONDS", float, None, "work",
                                "How long a watch waits for its outstanding backup before sending another.")
WATCH_RETRY_SECONDS = _declare("DRFLEET_WATCH_RETRY_SECONDS", float, None, "work",
                               "The first backoff after a watch's backup failed (doubling, at most 10 minutes).")
PRUNE_THREADS = _declare("DRFLEET_PRUNE_THREADS", int, 8, "work", "Store deletions a prune keeps in flight.")
ORPHAN_GRACE_SECONDS = _declare("DRFLEET_ORPHAN_GRACE_SECONDS", int, None, "work",
                                "How long an object stays manifest-less before prune removes it (default: data hard limit + 1 h).")
RUNBOOK_STALE_SECONDS = _declare("DRFLEET_RUNBOOK_STALE_SECONDS", float, 30.0, "work",
                                 "A runbook run whose heartbeat is older than this may be resumed elsewhere.")
OPERATOR = _declare("DRFLEET_OPERATOR", str, None, "work", "Who the CLI acts as (default: the OS user).")
PG_USER = _declare("DRFLEET_PG_USER", str, "postgres", "work", "The OS user PostgreSQL runs as (standbys, restores).")
WAL_DATASET = _declare("DRFLEET_WAL_DATASET", str, None, "work",
                       "The dataset `drfleet wal push/fetch` serves when called by PostgreSQL.")
WAL_EXECUTABLE = _declare("DRFLEET_WAL_EXECUTABLE", str, None, "work",
                          "How PostgreSQL calls drfleet (default: `drfleet` on PATH, else this interpreter).")

# --- serving ---------------------------------------------------------------------------------
METRICS_PORT = _declare("DRFLEET_METRICS_PORT", int, None, "serving", "Port of a worker's Prometheus exporter (off when unset).")
METRICS_ADDR = _declare("DRFLEET_METRICS_ADDR", str, "127.0.0.1", "serving", "Address the exporter listens on.")
FLOWER_USER = _declare("DRFLEET_FLOWER_USER", str, "drfleet", "serving", "Flower's basic-auth user under `drfleet up`.")
FLOWER_PASSWORD = _declare("DRFLEET_FLOWER_PASSWORD", str, None, "serving",
                           "Flower's basic-auth password under `drfleet up` (default: generated, 0600 in DRFLEET_HOME).",
                           secret=True)

GROUPS = {"where": "Where things are", "redis": "Redis: broker, results, state", "celery": "Celery: limits, delivery, events",
          "beat": "Beat", "work": "The work", "serving": "Serving"}


@dataclass(frozen=True)
class Limits:
    """Time limits of both lanes and the visibility timeout, in seconds."""

    data_soft: int
    data_hard: int
    control_soft: int
    control_hard: int
    visibility: int

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> "Limits":
        """Raises SettingInvalid for an unparsable value, LimitsInvalid when out of order."""
        data_soft = DATA_SOFT_LIMIT.get(env)
        data_hard = DATA_HARD_LIMIT.get(env, default=data_soft + 600)
        control_soft = CONTROL_SOFT_LIMIT.get(env)
        control_hard = CONTROL_HARD_LIMIT.get(env, default=control_soft + 120)
        visibility = VISIBILITY_TIMEOUT.get(env, default=max(data_hard, control_hard) + 3600)
        limits = cls(data_soft, data_hard, control_soft, control_hard, visibility)
        limits.check()
        return limits

    def check(self) -> None:
        """Raises LimitsInvalid unless soft < hard < visibility for both lanes."""
        for lane, soft, hard in (("data", self.data_soft, self.data_hard),
                                 ("control", self.control_soft, self.control_hard)):
            if not soft < hard < self.visibility:
                raise LimitsInvalid(f"{lane} lane time limits are out of order",
                                    soft=soft, hard=hard, visibility_timeout=self.visibility)

    def for_lane(self, lane: str) -> tuple[int, int]:
        return (self.data_soft, self.data_hard) if lane == "data" else (self.control_soft, self.control_hard)


class LimitsInvalid(SettingInvalid):
    hint = ("keep soft time limit < hard time limit < visibility timeout "
            "(DRFLEET_*_SOFT_LIMIT, DRFLEET_*_HARD_LIMIT, DRFLEET_VISIBILITY_TIMEOUT)")


def orphan_grace_seconds(env: Mapping[str, str] | None = None) -> int:
    """How long an object must stay manifest-less before prune removes it: the longest a
    data-lane task may run, plus an hour, unless DRFLEET_ORPHAN_GRACE_SECONDS says."""
    configured = ORPHAN_GRACE_SECONDS.get(env)
    return Limits.from_env(env).data_hard + 3600 if configured is None else configured


def reference_markdown() -> str:
    """docs/settings.md: every setting by group, with its type and default."""
    lines = ["# Settings (environment variables)", "",
             "Generated from `drfleet/settings.py` by `drfleet plan docs --all docs`; do not edit.",
             "Every variable is optional. Passwords are read from files (the Redis password, the signing",
             "key's password); the one secret a variable may hold, `DRFLEET_FLOWER_PASSWORD`, is never",
             "repeated in an error.", ""]
    for group, title in GROUPS.items():
        lines += [f"## {title}", "", "| variable | type | default | what it does |", "|---|---|---|---|"]
        for s in SETTINGS.values():
            if s.group == group:
                default = "" if s.default in (None, "") else f"`{s.default}`"
                kind = {str: "text", int: "integer", float: "number", _flag: "flag"}[s.parse]
                lines.append(f"| `{s.name}` | {kind} | {default} | {s.doc} |")
        lines.append("")
    return "\n".join(lines)
