"""The DR plan as pydantic v2 models: regions, stores, keys, hosts, datasets, policies,
recovery objectives and the test schedule.

Structural validation lives here (types, required fields, phrase parsing); rules that
cross-reference sections (unknown region, unknown key category, data sovereignty) live in
``plan.rules`` so that every problem in a file is reported at once.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, WithJsonSchema, field_validator, model_validator

from fleet.errors import DrfleetError
from plan.copies import CopyTarget, parse_copy_target
from plan.durations import parse_duration
from plan.retention import Retention, parse_retention
from plan.triggers import Trigger, parse_trigger

NAME = r"^[a-z0-9][a-z0-9._-]{0,62}$"


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
    {"type": "string", "description": "when the policy runs: a word schedule, a 5-field cron, "
     "'every N hours|minutes|seconds', 'continuous', 'on-change' or 'on-event: NAME'",
     "examples": ["hourly", "daily at 02:00", "weekly on sunday at 03:00", "every 6 hours",
                  "0 3 * * 0", "continuous", "on-change", "on-event: deployment"]})]
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

    env: str | None = Field(None, pattern=r"^[A-Za-z_][A-Za-z0-9_]*$")
    file: str | None = None

    @model_validator(mode="after")
    def _exactly_one(self) -> "SecretRef":
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
    name: str = Field(pattern=NAME)
    primary: bool = False
    provider: str | None = None
    provider_region: str | None = None
    description: str | None = None


class StorageLocation(Strict):
    """A place backups are written: a filesystem directory or an S3-compatible bucket.

    ``region`` is where it lives; offsite locations set ``offsite: true`` and may name the
    ``jurisdiction`` (a region) they are in, which the sovereignty rule honours.
    """

    kind: Literal["filesystem", "s3"]
    region: str | None = None
    offsite: bool = False
    default: bool = True
    jurisdiction: str | None = None
    path: str | None = None
    bucket: str | None = None
    prefix: str = ""
    endpoint_url: str | None = None
    s3_region: str | None = None
    access_key: SecretRef | None = None
    secret_key: SecretRef | None = None
    storage_class: str | None = None
    cold_storage_class: str | None = None
    key: str | None = None  # key category that wraps copies stored here (offsite keys)

    @model_validator(mode="after")
    def _shape(self) -> "StorageLocation":
        if self.kind == "filesystem" and not self.path:
            raise ValueError("a filesystem location needs 'path'")
        if self.kind == "s3" and not self.bucket:
            raise ValueError("an s3 location needs 'bucket'")
        if not self.offsite and not self.region:
            raise ValueError("give the location a 'region', or mark it 'offsite: true'")
        return self


class KeyCategory(Strict):
    """A key category: where its keyring lives (a file or an environment variable)."""

    file: str | None = None
    env: str | None = Field(None, pattern=r"^[A-Za-z_][A-Za-z0-9_]*$")
    description: str | None = None
    rotate_every: Seconds | None = None

    @model_validator(mode="after")
    def _exactly_one(self) -> "KeyCategory":
        if (self.file is None) == (self.env is None):
            raise ValueError("give exactly one of 'file' (a keyring path) or 'env' (a variable "
                             "holding the keyring); key material never goes in the plan")
        return self


class Host(Strict):
    """An SSH-reachable host: key paths only, never key material."""

    address: str
    port: int = Field(22, ge=1, le=65535)
    user: str = "root"
    key_file: str
    known_hosts: str
    region: str | None = None


class Policy(Strict):
    name: str = Field(pattern=NAME)
    trigger: TriggerField
    keep: RetentionField
    copies: list[CopyField] = Field(min_length=1)
    mode: Literal["full", "incremental", "oplog", "wal"] = "full"
    description: str | None = None


class Source(Strict):
    """Where a files dataset lives: a local path, or a path on a plan host."""

    path: str
    host: str | None = None


class Dataset(Strict):
    kind: Literal["postgres", "mongodb", "redis", "files"]
    region: str
    connection: ConnectionRef | None = None
    source: Source | None = None
    key: str
    rpo: Seconds | None = None
    rto: Seconds | None = None
    scenario: str | None = None
    data_class: str | None = None
    service: str | None = None
    priority: int = Field(100, ge=0)
    region_only: bool = False
    size_anomaly_ratio: float = Field(0.5, gt=0, lt=1)
    policies: list[Policy] = Field(min_length=1)
    description: str | None = None

    @model_validator(mode="after")
    def _source(self) -> "Dataset":
        if self.kind == "files":
            if self.source is None:
                raise ValueError("a files dataset needs 'source: {path: ...}'")
        elif self.connection is None:
            raise ValueError(f"a {self.kind} dataset needs 'connection: {{env: NAME}}' or "
                             "'connection: {file: PATH}'")
        return self

    @property
    def sovereign(self) -> bool:
        """True when the data must never leave its home region."""
        return self.region_only or any(c.kind == "region-only" for p in self.policies for c in p.copies)


class Drill(Strict):
    kind: Literal["restore", "failover", "region", "full"]
    trigger: TriggerField
    scope: str | None = None
    region: str | None = None


class Objectives(Strict):
    """Plan-wide recovery targets: RTO per scenario and RPO per data class."""

    rto: dict[str, Seconds] = {}
    rpo: dict[str, Seconds] = {}


class Verification(Strict):
    after_backup: Literal["quick", "deep", "none"] = "quick"
    deep_check: TriggerField | None = None
    cold_storage: TriggerField | None = None


class Plan(Strict):
    version: Literal[1] = 1
    name: str
    description: str | None = None
    regions: list[Region] = Field(min_length=1)
    storage: dict[str, StorageLocation] = Field(min_length=1)
    keys: dict[str, KeyCategory] = Field(min_length=1)
    hosts: dict[str, Host] = {}
    datasets: dict[str, Dataset] = Field(min_length=1)
    objectives: Objectives = Objectives()
    drills: list[Drill] = []
    verification: Verification = Verification()

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
