"""The DR plan as pydantic v2 models: regions, stores, keys, hosts, datasets, policies,
recovery objectives and the test schedule.

Structural validation lives here (types, required fields, phrase parsing); rules that
cross-reference sections (unknown region, unknown key category, data sovereignty) live in
``plan.rules`` so that every problem in a file is reported at once.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    WithJsonSchema,
    field_validator,
    model_validator,
)

from drfleet.errors import DrfleetError
from drfleet.names import name_problem
from drfleet.plan.copies import CopyTarget, parse_copy_target
from drfleet.plan.durations import parse_duration
from drfleet.plan.rates import parse_rate
from drfleet.plan.retention import Retention, parse_retention
from drfleet.plan.triggers import Trigger, parse_trigger

NAME = r"^[a-z0-9][a-z0-9._-]{0,62}$"


def _key_name(value: str) -> str:
    problem = name_problem(value)
    if problem:
        raise ValueError(f"invalid name: {problem}")
    return value


def _category_name(value: str) -> str:
    problem = name_problem(value, category=True)
    if problem:
        raise ValueError(f"invalid key category name: {problem}")
    return value


# names that become parts of store keys, Redis keys and file names: the stores' rule
# (drfleet.names, applied by backup_format.layout), so `plan check` refuses what a store would
KeyName = Annotated[str, AfterValidator(_key_name)]
CategoryName = Annotated[str, AfterValidator(_category_name)]


class UnknownPlanName(DrfleetError, KeyError):
    """A dataset or policy name that the plan does not have."""

    hint = "check the name against `drfleet schedule --plan PLAN`"
DATASET_KINDS = ("postgres", "mongodb", "redis", "files")


def _seconds(value: Any) -> int:
    return parse_duration(value)


def _trigger(value: Any) -> Trigger:
    return value if isinstance(value, Trigger) else parse_trigger(value)


def _retention(value: Any) -> Retention:
    return value if isinstance(value, Retention) else parse_retention(value)


def _copy(value: Any) -> CopyTarget:
    return value if isinstance(value, CopyTarget) else parse_copy_target(value)


Seconds = Annotated[int, BeforeValidator(_seconds), WithJsonSchema(
    {"type": ["string", "integer"], "description": "a duration: '5m', '24 hours', '7 days' or seconds",
     "examples": ["5m", "1 hour", "7 days"]})]
TriggerField = Annotated[Trigger, BeforeValidator(_trigger), WithJsonSchema(
    {"type": "string", "description": "when it runs: a word schedule, a 5-field cron, "
     "'every N hours|minutes|seconds', 'continuous', 'on-change' or 'on-event: NAME'",
     "examples": ["hourly", "daily at 02:00", "weekly on sunday at 03:00", "every 6 hours",
                  "0 3 * * 0", "continuous", "on-change", "on-event: deployment"]})]
def _rate(value: Any) -> int:
    return parse_rate(value)


Rate = Annotated[int, BeforeValidator(_rate), WithJsonSchema(
    {"type": ["string", "integer"], "description": "a bandwidth: '10 MiB/s', '500 KB/s', '8 Mbit/s' or bytes per second",
     "examples": ["10 MiB/s", "8 Mbit/s"]})]
RetentionField = Annotated[Retention, BeforeValidator(_retention), WithJsonSchema(
    {"type": ["string", "integer"], "description": "how long copies are kept: a duration, 'N versions' or 'forever'",
     "examples": ["24 hours", "30 days", "10 versions", "forever"]})]
CopyField = Annotated[CopyTarget, BeforeValidator(_copy), WithJsonSchema(
    {"type": "string", "description": "where copies go",
     "examples": ["home-region", "region-only", "primary-region", "all-regions", "offsite",
                  "offsite-all", "offsite-cold", "offsite:NAME", "offsite-cold:NAME"]})]


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, arbitrary_types_allowed=True)


class SecretRef(Strict):
    """Where a secret lives: an environment variable name or a secret file path. Never the
    secret itself."""

    env: str | None = Field(None, pattern=r"^[A-Za-z_][A-Za-z0-9_]*$", description=(
        "Name of the environment variable that holds the secret on the workers (the name, "
        "not the value). Give exactly one of `env` and `file`; an unset or empty variable "
        "fails the task that needs it, naming the variable."))
    file: str | None = Field(None, description=(
        "Path of a file on the workers whose content (surrounding whitespace stripped) is "
        "the secret, e.g. /run/secrets/NAME. Give exactly one of `env` and `file`; a missing, "
        "unreadable or empty file fails the task that needs it, naming the path."))

    @model_validator(mode="after")
    def _exactly_one(self) -> SecretRef:
        if (self.env is None) == (self.file is None):
            raise ValueError("give exactly one of 'env' (a variable name) or 'file' (a secret file path)")
        return self

    def describe(self) -> str:
        return f"env:{self.env}" if self.env else f"file:{self.file}"


def _secret_ref(value: Any) -> Any:
    if isinstance(value, str):
        raise ValueError(
            "inline connection strings are not allowed (they put passwords in the plan); "
            "write {env: VARIABLE_NAME} or {file: /run/secrets/NAME} and keep the value there")
    return value


ConnectionRef = Annotated[SecretRef, BeforeValidator(_secret_ref)]


class Region(Strict):
    name: str = Field(pattern=NAME, description=(
        "The region's name, unique in the plan. Datasets, storage locations, hosts, drills "
        "and `recovery:` refer to it, and its workers consume the queues `NAME.data` and "
        "`NAME.control`."))
    primary: bool = Field(False, description=(
        "Marks the primary region; exactly one region must set it. The `primary-region` copy "
        "target means this region's storage; drills without a `region` and the cold-storage "
        "verification run here, and region-failure runbooks fail over to it unless "
        "`recovery.fallback_region` is set."))
    provider: str | None = Field(None, description=(
        "Informational: the hosting provider of this region (e.g. hetzner). drfleet does not "
        "act on it; the clouds the runbooks create servers in are set under `recovery.clouds`."))
    provider_region: str | None = Field(None, description=(
        "Informational: the provider's own name for this region (e.g. fsn1). drfleet does not "
        "act on it; see `recovery.clouds` for what the runbooks use."))
    description: str | None = Field(None, description="Free text for people reading the plan; drfleet ignores it.")


class ObjectLock(Strict):
    """S3 Object Lock on a location: every object drfleet writes there is retained (cannot
    be deleted or overwritten by anyone, a worker's credentials included) for `retain`."""

    mode: Literal["GOVERNANCE", "COMPLIANCE"] = Field(examples=["COMPLIANCE"], description=(
        "`COMPLIANCE`: nobody, not even the account's root user, can delete an object before "
        "its retention ends. `GOVERNANCE`: identities granted s3:BypassGovernanceRetention "
        "can (drfleet never asks to)."))
    retain: Seconds | None = Field(None, description=(
        "How long each object stays locked from when it is written. It may not be longer "
        "than the time-based `keep` of a policy whose copies go here (prune could not honour "
        "that `keep`); prune skips backups still locked and removes them once it ends. Unset: "
        "the shortest time-based `keep` of the policies writing here, so a backup's lock ends "
        "with its retention (`plan check` refuses it when no such policy writes here)."))


class StorageLocation(Strict):
    """A place backups are written: a filesystem directory, an S3-compatible bucket, a
    directory on an SFTP server, or any rclone remote (GCS, B2, Azure Blob, WebDAV, ...).

    ``region`` is where it lives; offsite locations set ``offsite: true`` and may name the
    ``jurisdiction`` (a region) they are in, which the sovereignty rule honours.
    """

    kind: Literal["filesystem", "s3", "sftp", "rclone"] = Field(description=(
        "`filesystem`: a directory on the workers (needs `path`); `s3`: an S3-compatible "
        "bucket (needs `bucket`); `sftp`: a directory on an SSH server (needs `host`, `path`, "
        "`key_file`, `known_hosts`); `rclone`: a remote of rclone's own config file (needs "
        "`remote` and `rclone_config`), for Google Cloud Storage, Backblaze B2, Azure Blob "
        "Storage, WebDAV and every other rclone backend."))
    region: str | None = Field(None, description=(
        "The region (a name under `regions:`) this location is in; required unless "
        "`offsite: true`. A dataset's backups are first written to the first non-offsite "
        "location of its region, and `home-region`, `primary-region` and `all-regions` copies "
        "go to the non-offsite locations of the matching regions."))
    offsite: bool = Field(False, description=(
        "true for a location outside the fleet's regions (another provider or account). Only "
        "offsite locations receive `offsite`, `offsite-all`, `offsite-cold` and `offsite:NAME` "
        "copies, and full drills restore from them alone. Default false: an in-region location."))
    default: bool = Field(True, description=(
        "For offsite locations: whether the plain `offsite` and `offsite-cold` copy targets "
        "include this one. Set false to reach it only by `offsite:NAME`, "
        "`offsite-cold:NAME` or `offsite-all`. Ignored for in-region locations."))
    jurisdiction: str | None = Field(None, description=(
        "For offsite locations: the region (a name under `regions:`) whose law the data is "
        "under there. A region-only dataset may copy here only if this equals its home "
        "region; unset, the location counts as outside every region."))
    path: str | None = Field(None, description=(
        "For `kind: filesystem`: the directory backups are written under, as seen by the "
        "workers that use this location. For `kind: sftp`: the absolute directory on the SSH "
        "server. Required for filesystem and sftp locations."))
    host: str | None = Field(None, examples=["backup.example.net"], description=(
        "For `kind: sftp`: the SSH server's address or DNS name. Required for sftp locations."))
    port: int | None = Field(None, ge=1, le=65535, examples=[22], description=(
        "For `kind: sftp`: the SSH port. Default 22."))
    user: str | None = Field(None, examples=["backup"], description=(
        "For `kind: sftp`: the SSH login user. Default root."))
    key_file: str | None = Field(None, examples=["/etc/drfleet/ssh/backup_ed25519"], description=(
        "For `kind: sftp`: path of the SSH private key on the workers (a path, never the key). "
        "Required for sftp locations."))
    known_hosts: str | None = Field(None, examples=["/etc/drfleet/ssh/known_hosts"], description=(
        "For `kind: sftp`: path of a known_hosts file on the workers listing the server's host "
        "key; an unknown or changed key is refused, never accepted. Required for sftp locations."))
    remote: str | None = Field(None, examples=["gcs-backups:drfleet-backups/fleet"], description=(
        "For `kind: rclone`: `REMOTE:PATH`, a remote of `rclone_config` and the directory in it "
        "backups are written under. Required for rclone locations."))
    rclone_config: str | None = Field(None, examples=["/etc/drfleet/rclone.conf"], description=(
        "For `kind: rclone`: path of the rclone config file (made with `rclone config`) on the "
        "workers; it must be readable by its owner only (mode 0600). Secrets stay in that file "
        "and never go on a command line. Required for rclone locations."))
    bucket: str | None = Field(None, description="For `kind: s3`: the bucket name. Required for s3 locations.")
    prefix: str = Field("", description=(
        "For `kind: s3`: a key prefix inside the bucket, so several plans or fleets can share "
        "one bucket. Default empty: keys start at the bucket's root."))
    endpoint_url: str | None = Field(None, description=(
        "For `kind: s3`: the S3 API endpoint of a non-AWS provider (MinIO, Hetzner, Wasabi, "
        "...); path-style addressing is used when it is set. Unset: AWS S3."))
    s3_region: str | None = Field(None, description=(
        "For `kind: s3`: the S3 region name to sign requests for (e.g. eu-central-1). Unset: "
        "boto3's usual lookup (AWS_DEFAULT_REGION, config files)."))
    access_key: SecretRef | None = Field(None, description=(
        "For `kind: s3`: where the access key id is ({env: VAR} or {file: PATH}). Unset "
        "(together with `secret_key`): boto3's default credential chain on the worker."))
    secret_key: SecretRef | None = Field(None, description=(
        "For `kind: s3`: where the secret access key is ({env: VAR} or {file: PATH}); never "
        "the key itself. Unset: boto3's default credential chain on the worker."))
    storage_class: str | None = Field(None, description=(
        "For `kind: s3`: the storage class every write uses (e.g. STANDARD_IA). Unset: the "
        "bucket's default class."))
    cold_storage_class: str | None = Field(None, description=(
        "For `kind: s3`: the storage class of copies made by an `offsite-cold` copy target "
        "(e.g. DEEP_ARCHIVE, GLACIER). Unset: cold copies use `storage_class`."))
    bandwidth_limit: Rate | None = Field(None, description=(
        "The most bandwidth drfleet's transfers to and from this location may use, per worker "
        "process (all its writes and reads together), for slow or metered links. Unset: no limit."))
    versioning: bool = Field(False, examples=[True], description=(
        "For `kind: s3`: require bucket versioning (checked before the first write; `drfleet "
        "storage prepare` turns it on with an administrator's credentials), so a deletion by a "
        "worker's credentials leaves the data recoverable. Implied by `object_lock`."))
    object_lock: ObjectLock | None = Field(None, examples=[{"mode": "COMPLIANCE", "retain": "30 days"}],
                                           description=(
        "For `kind: s3`: S3 Object Lock retention set on every object at write time (the "
        "bucket must have Object Lock enabled; hold markers stay unlocked). Unset: no lock."))
    prune_access_key: SecretRef | None = Field(None, examples=[{"env": "PRUNE_S3_ACCESS_KEY_ID"}],
                                               description=(
        "For `kind: s3`: where the access key id of the prune identity is, the only one "
        "allowed to delete (s3:DeleteObject, s3:DeleteObjectVersion). Unset: prune uses "
        "`access_key`. See docs/security.md for the policies."))
    prune_secret_key: SecretRef | None = Field(None, examples=[{"file": "/run/secrets/prune-s3-secret"}],
                                               description=(
        "For `kind: s3`: where the prune identity's secret access key is. Unset: prune uses "
        "`secret_key`."))
    key: str | None = Field(None, description=(
        "A key category (a name under `keys:`) whose keyring wraps the data keys of copies "
        "stored here, e.g. a separate offsite key. Unset: copies here use the dataset's own "
        "`key`."))

    @model_validator(mode="after")
    def _shape(self) -> StorageLocation:
        if self.kind == "filesystem" and not self.path:
            raise ValueError("a filesystem location needs 'path'")
        if self.kind == "s3" and not self.bucket:
            raise ValueError("an s3 location needs 'bucket'")
        if self.kind == "sftp":
            missing = [f for f in ("host", "path", "key_file", "known_hosts") if not getattr(self, f)]
            if missing:
                raise ValueError(f"an sftp location needs {', '.join(repr(m) for m in missing)}")
            if not self.path.startswith("/"):
                raise ValueError("an sftp location's 'path' must be absolute on the server")
        if (self.object_lock or self.versioning or self.prune_access_key) and self.kind != "s3":
            raise ValueError("'object_lock', 'versioning' and the prune keys are for s3 locations")
        if bool(self.prune_access_key) != bool(self.prune_secret_key):
            raise ValueError("give both 'prune_access_key' and 'prune_secret_key', or neither")
        if self.kind == "rclone" and not (self.remote and self.rclone_config):
            raise ValueError("an rclone location needs 'remote' (REMOTE:PATH) and 'rclone_config'")
        if self.kind == "rclone" and ":" not in self.remote:
            raise ValueError("an rclone location's 'remote' is REMOTE:PATH (a remote of the config file)")
        if not self.offsite and not self.region:
            raise ValueError("give the location a 'region', or mark it 'offsite: true'")
        return self


class KeyCategory(Strict):
    """A key category: where its keyring lives (a file or an environment variable)."""

    file: str | None = Field(None, description=(
        "Path of this category's keyring file on the workers (mode 0600); `drfleet keys "
        "create CATEGORY` makes it and `drfleet keys rotate CATEGORY` adds a key. Give exactly "
        "one of `file` and `env`; two categories may not share a keyring."))
    env: str | None = Field(None, pattern=r"^[A-Za-z_][A-Za-z0-9_]*$", description=(
        "Name of an environment variable on the workers that holds this category's keyring "
        "document (the name, never the keys). Give exactly one of `file` and `env`; drfleet "
        "does not create or rotate a keyring kept in a variable."))
    description: str | None = Field(None, description="Free text for people reading the plan; drfleet ignores it.")
    rotate_every: Seconds | None = Field(None, description=(
        "How often this category gets a new active key: beat checks daily (03:30, on the "
        "primary region's control lane) and rotates a keyring file whose active key is this old; "
        "older keys stay in the keyring so their backups stay readable. Audited as `keys.rotate`. "
        "Unset: rotate by hand with `drfleet keys rotate CATEGORY`. A keyring in `env` is not rotated."))

    @model_validator(mode="after")
    def _exactly_one(self) -> KeyCategory:
        if (self.file is None) == (self.env is None):
            raise ValueError("give exactly one of 'file' (a keyring path) or 'env' (a variable "
                             "holding the keyring); key material never goes in the plan")
        return self


class Host(Strict):
    """An SSH-reachable host: key paths only, never key material."""

    address: str = Field(description=(
        "The host's IP address or DNS name, as the workers reach it over SSH; the runbooks "
        "also point DNS records at it when failing over to this host."))
    port: int = Field(22, ge=1, le=65535, description="The SSH port. Default 22.")
    user: str = Field("root", description="The SSH login user. Default root.")
    key_file: str = Field(description=(
        "Path of the SSH private key on the workers (a path, never the key). Remote files "
        "datasets, runbook health checks, restarts and restores log in with it."))
    known_hosts: str = Field(description=(
        "Path of a known_hosts file on the workers that lists this host's key. Host keys are "
        "checked strictly: an unknown or changed key fails the connection."))
    region: str | None = Field(None, description=(
        "The region (a name under `regions:`) the host is in; `drfleet plan check` rejects "
        "an unknown one. Otherwise informational."))
    bandwidth_limit: Rate | None = Field(None, description=(
        "The most bandwidth rsync may use when staging this host's files for a backup "
        "(rsync --bwlimit), for slow or metered links. Unset: no limit."))


class Policy(Strict):
    name: str = Field(pattern=NAME, description=(
        "The policy's name, unique within its dataset. It is recorded in every backup it "
        "makes, so retention (`keep`) and `drfleet backup DATASET --policy NAME` find its "
        "backups by it; renaming it leaves the old backups kept until you prune them yourself."))
    trigger: TriggerField = Field(description=(
        "When backups under this policy run: a word schedule, a cron line, 'every N ...', "
        "continuous, on-change or on-event (see [trigger phrases](#phrases-trigger)). They "
        "run on the data lane of the dataset's region."))
    keep: RetentionField = Field(description=(
        "How long this policy's backups are kept in each location: a duration, 'N versions' "
        "or 'forever' (see [keep phrases](#phrases-keep)). The daily prune deletes the rest, "
        "but never a legal hold, a dataset's newest verified backup or a kept backup's parents."))
    copies: list[CopyField] = Field(min_length=1, description=(
        "Where each backup is copied after it is committed in the dataset's home location, "
        "e.g. [home-region, offsite] (see [copies phrases](#phrases-copies)). Every target "
        "must resolve to at least one storage location."))
    mode: Literal["full", "incremental", "oplog", "wal"] = Field("full", description=(
        "`full` (default): every backup is complete. `incremental`: files datasets store only "
        "what changed since a parent backup (other kinds stay full). `wal`: postgres datasets "
        "also get base backups (daily at 01:00 UTC) and WAL archive lag checks, for "
        "point-in-time recovery. `oplog`: MongoDB oplog slices are filed under this policy."))
    physical: Literal["full", "differential", "incremental"] | None = Field(None, description=(
        "postgres datasets: this policy's trigger takes a file-level base backup of this type "
        "(read from the data directory on the database host, WAL from the archive) instead of "
        "`pg_dump`: `full` stores every file, `differential` the files changed since the newest "
        "full, `incremental` those changed since the newest base backup of any type. E.g. full "
        "weekly, differential daily, incremental hourly. Needs a `mode: wal` policy on the "
        "dataset (the archive supplies the WAL)."))
    from_standby: bool = Field(False, description=(
        "With `physical`: read the files from the dataset's `standby_connection` instead of "
        "the primary (backup from a standby)."))
    workers: int | None = Field(None, ge=1, le=64, description=(
        "File-level base backups and their restores: how many pieces are compressed, encrypted "
        "and stored (or read back) at once. Unset: $DRFLEET_PHYSICAL_WORKERS (default 2)."))
    description: str | None = Field(None, description="Free text for people reading the plan; drfleet ignores it.")

    @model_validator(mode="after")
    def _physical(self) -> "Policy":
        if self.from_standby and not self.physical:
            raise ValueError(f"policy {self.name}: 'from_standby' goes with 'physical'")
        if self.physical and self.mode not in ("full", "wal"):
            raise ValueError(f"policy {self.name}: 'physical' goes with mode full or wal, not {self.mode}")
        return self


class Source(Strict):
    """Where a files dataset lives: a local path, or a path on a plan host."""

    path: str = Field(description=(
        "The directory to back up: on the worker itself, or on `host` when that is set."))
    host: str | None = Field(None, description=(
        "A plan host (a name under `hosts:`) the directory lives on; it is pulled over SSH "
        "(rsync) into a staging mirror on the worker before each backup. Unset: `path` is "
        "local to the worker of the dataset's region."))


class Dataset(Strict):
    kind: Literal["postgres", "mongodb", "redis", "files"] = Field(description=(
        "What the data is, which decides how it is dumped and restored: `postgres`, "
        "`mongodb` and `redis` need `connection`; `files` needs `source`."))
    region: str = Field(description=(
        "The dataset's home region (a name under `regions:`): its backups run on that "
        "region's workers and commit first to that region's storage."))
    connection: ConnectionRef | None = Field(None, description=(
        "For postgres, mongodb and redis: where the connection string (DSN/URL, with its "
        "password) is, as {env: VAR} or {file: PATH}. An inline string is rejected so "
        "passwords stay out of the plan."))
    source: Source | None = Field(None, description=(
        "For files datasets: the directory to back up, local or on a plan host. Required "
        "for `kind: files`."))
    standby_connection: ConnectionRef | None = Field(None, description=(
        "postgres datasets: a standby of `connection` (streaming, in recovery) on the worker's "
        "host. File-level base backups of policies with `from_standby: true` read the data "
        "directory of this standby; the primary only runs pg_backup_start/pg_backup_stop and "
        "its archive supplies the WAL."))
    key: str = Field(description=(
        "The key category (a name under `keys:`) whose keyring encrypts this dataset's "
        "backups. Restores need that keyring, so keep it safe outside the backups."))
    rpo: Seconds | None = Field(None, description=(
        "The dataset's recovery point objective: at most this much data may be lost. Unset: "
        "the target of its `data_class` under `objectives.rpo`; one of the two is required."))
    rto: Seconds | None = Field(None, description=(
        "The dataset's recovery time objective: restore and verification must finish within "
        "it. Unset: the target of its `scenario` under `objectives.rto`; one of the two is required."))
    scenario: str | None = Field(None, description=(
        "The key under `objectives.rto` that gives this dataset's RTO when `rto` is unset. "
        "Unset: `database` for postgres, mongodb and redis, `single-service` for files."))
    data_class: str | None = Field(None, description=(
        "The key under `objectives.rpo` that gives this dataset's RPO when `rpo` is unset "
        "(e.g. authentication, content). Otherwise a label only."))
    service: str | None = Field(None, description=(
        "Informational: the application this data belongs to. drfleet does not act on it; "
        "runbook services and what they restore are set under `recovery.services`."))
    priority: int = Field(100, ge=0, description=(
        "Restore order: lower numbers are restored first in drills and runbooks (ties by "
        "name). Default 100."))
    region_only: bool = Field(False, description=(
        "true when the data must never leave its home region (data sovereignty): `drfleet "
        "plan check` rejects any copy target that sends it elsewhere, except offsite "
        "locations whose `jurisdiction` is the home region. A `region-only` copy target implies it."))
    size_anomaly_ratio: float = Field(0.5, gt=0, lt=1, description=(
        "How far a backup's size may stray from the median of its policy's last 10 backups "
        "before it is flagged: smaller than median × ratio or larger than median ÷ ratio. "
        "Default 0.5; judged once there are 3 earlier backups."))
    policies: list[Policy] = Field(min_length=1, description=(
        "The backup policies of this dataset (at least one): each has its own schedule, "
        "retention and copies, and a backup kept by any of them stays."))
    description: str | None = Field(None, description="Free text for people reading the plan; drfleet ignores it.")
    restore_under: list[str] = Field([], description=(
        "For files datasets: the directories (absolute) a restore of this dataset may write "
        "into; `drfleet restore ... --to DIR` outside them is refused before anything is sent. "
        "Unset: any directory except the dataset's own source and the plan's filesystem stores."))

    @model_validator(mode="after")
    def _restore_under(self) -> "Dataset":
        for path in self.restore_under:
            if not path.startswith("/"):
                raise ValueError(f"restore_under: {path!r} must be an absolute path")
        return self

    @model_validator(mode="after")
    def _source(self) -> Dataset:
        if self.kind == "files":
            if self.source is None:
                raise ValueError("a files dataset needs 'source: {path: ...}'")
        elif self.connection is None:
            raise ValueError(f"a {self.kind} dataset needs 'connection: {{env: NAME}}' or "
                             "'connection: {file: PATH}'")
        if self.kind != "postgres" and any(p.physical for p in self.policies):
            raise ValueError("'physical' (file-level base backups) applies to postgres datasets only")
        if any(p.from_standby for p in self.policies) and self.standby_connection is None:
            raise ValueError("a policy with 'from_standby: true' needs the dataset's 'standby_connection'")
        return self

    @property
    def sovereign(self) -> bool:
        """True when the data must never leave its home region."""
        return self.region_only or any(c.kind == "region-only" for p in self.policies for c in p.copies)


class Drill(Strict):
    kind: Literal["restore", "failover", "region", "full"] = Field(description=(
        "`restore`: a random dataset's random kept backup is restored into a scratch target "
        "and its fingerprint checked. `region`: every dataset of `region` is restored from "
        "copies outside it. `full`: every dataset from offsite copies only. `failover`: a "
        "service-failure runbook run for a service of `region` named in `recovery.services` "
        "(recorded as not-available when there is none)."))
    trigger: TriggerField = Field(description=(
        "When the drill runs, usually a word schedule such as weekly or 'monthly' (see "
        "[trigger phrases](#phrases-trigger))."))
    scope: str | None = Field(None, description=(
        "Free text recorded with each drill run (e.g. 'random service, random backup'); it "
        "does not change what is drilled. Unset: the drilled datasets' names are recorded."))
    region: str | None = Field(None, description=(
        "The region (a name under `regions:`) the drill is about and whose data-lane worker "
        "runs it. Unset: the primary region."))


class Objectives(Strict):
    """Plan-wide recovery targets: RTO per scenario and RPO per data class."""

    rto: dict[str, Seconds] = Field({}, description=(
        "Recovery time targets by scenario name, e.g. {database: 15 minutes, region: 1 hour}. "
        "Datasets use the entry their `scenario` names; reports compare region drills with "
        "`region` and full drills with `catastrophic`."))
    rpo: dict[str, Seconds] = Field({}, description=(
        "Recovery point targets by data class, e.g. {authentication: 5 minutes}. A dataset "
        "without its own `rpo` uses the entry its `data_class` names."))


class Verification(Strict):
    after_backup: Literal["quick", "deep", "none"] = Field("quick", description=(
        "The verification queued after every committed backup. `quick` (default): every "
        "object is present with its recorded size. `deep`: every object re-read and checked, "
        "plus a scratch restore whose fingerprint must match (slow). `none`: no verification."))
    deep_check: TriggerField | None = Field(None, description=(
        "When beat runs a deep verification in every region (`deep-verify REGION`): the "
        "newest backup of each dataset homed there is re-read, restored into scratch and its "
        "fingerprint compared. Unset: none is scheduled (`drfleet verify DATASET/ID` and "
        "restore drills still do it)."))
    cold_storage: TriggerField | None = Field(None, description=(
        "When every backup in the locations that receive `offsite-cold` copies is re-read "
        "and checked (full depth), on the primary region's data lane. Unset: cold copies "
        "are never re-read on a schedule."))


class Plan(Strict):
    version: Literal[1] = Field(1, description="The plan format version; only 1 exists. Default 1.")
    name: str = Field(description="The plan's name, shown by `drfleet plan check`, the schedule, reports and `drfleet up`.")
    description: str | None = Field(None, description="Free text for people reading the plan; drfleet ignores it.")
    regions: list[Region] = Field(min_length=1, description=(
        "The regions the fleet runs in, exactly one with `primary: true`. Each region needs "
        "at least one storage location of its own and its own workers."))
    storage: dict[KeyName, StorageLocation] = Field(min_length=1, description=(
        "Where backups are written, by location name: in-region directories or buckets, and "
        "offsite ones (`offsite: true`). Copy targets and `offsite:NAME` refer to these names."))
    keys: dict[CategoryName, KeyCategory] = Field(min_length=1, description=(
        "Key categories by name, each with its own keyring (a file or a variable). A "
        "dataset's `key` and a location's `key` name one of them."))
    hosts: dict[KeyName, Host] = Field({}, description=(
        "SSH-reachable hosts by name: a files dataset's `source.host` and the `recovery:` "
        "section refer to them. Default none."))
    datasets: dict[KeyName, Dataset] = Field(min_length=1, description=(
        "What is backed up, by dataset name: the name is used in commands (`drfleet backup "
        "NAME`), backup ids (NAME/ID) and storage keys, so do not rename a dataset with backups."))
    objectives: Objectives = Field(Objectives(), description=(
        "Plan-wide RTO targets by scenario and RPO targets by data class, used by datasets "
        "without their own `rto`/`rpo`. Default empty: every dataset then needs its own."))
    drills: list[Drill] = Field([], description=(
        "Scheduled recovery drills (restore, region, full, failover); results feed `drfleet "
        "report`. Default none: no drill runs on a schedule."))
    verification: Verification = Field(Verification(), description=(
        "How backups are checked after they are written and on a schedule. Default: a quick "
        "check after every backup, no scheduled cold-storage check."))
    # services, DNS, clouds and standbys the runbooks use; validated by plan.recovery
    recovery: dict[str, Any] = Field({}, description=(
        "What the recovery runbooks act on: services, DNS, clouds, standbys (see "
        "[recovery section](#recovery-section)). Default empty: the runbooks have nothing to act on."))

    @field_validator("regions")
    @classmethod
    def _one_primary(cls, regions: list[Region]) -> list[Region]:
        primaries = [r.name for r in regions if r.primary]
        if len(primaries) != 1:
            raise ValueError(f"exactly one region must be 'primary: true' (found {len(primaries)})")
        names = [r.name for r in regions]
        if len(set(names)) != len(names):
            raise ValueError("region names must be unique")
        return regions

    @property
    def primary_region(self) -> str:
        return next(r.name for r in self.regions if r.primary)

    @property
    def region_names(self) -> list[str]:
        return [r.name for r in self.regions]

    def dataset(self, name: str) -> Dataset:
        """Raises KeyError naming the known datasets when ``name`` is not in the plan."""
        try:
            return self.datasets[name]
        except KeyError:
            raise UnknownPlanName(f"dataset {name!r} is not in plan {self.name!r} "
                                  f"(known: {', '.join(sorted(self.datasets))})") from None

    def rpo_for(self, dataset: str) -> int:
        """The dataset's RPO target: its own ``rpo`` or its data class's in ``objectives``."""
        ds = self.dataset(dataset)
        return ds.rpo if ds.rpo is not None else self.objectives.rpo[ds.data_class]

    def rto_for(self, dataset: str) -> int:
        """The dataset's RTO target: its own ``rto`` or its scenario's in ``objectives``."""
        ds = self.dataset(dataset)
        if ds.rto is not None:
            return ds.rto
        scenario = ds.scenario or ("database" if ds.kind != "files" else "single-service")
        return self.objectives.rto[scenario]

    def policy(self, dataset: str, policy: str) -> Policy:
        for p in self.dataset(dataset).policies:
            if p.name == policy:
                return p
        raise UnknownPlanName(f"dataset {dataset!r} has no policy {policy!r} "
                              f"(policies: {', '.join(p.name for p in self.dataset(dataset).policies)})")
