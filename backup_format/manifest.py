"""The manifest: the versioned JSON document that describes, and commits, one backup.

See docs/format.md, "The manifest". A ``Manifest`` is immutable and validated on
construction; ``sign`` returns a signed copy, ``to_bytes`` writes canonical JSON (and
refuses an unsigned manifest), ``from_bytes`` refuses unknown versions and anything not
in canonical form, and ``verify_mac`` checks the HMAC once the data key is unwrapped.
Validation failures raise ``ManifestInvalid``, never pydantic's own errors.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import re
from datetime import datetime, timezone
from typing import Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StrictInt,
    StrictStr,
    ValidationError,
    field_serializer,
    field_validator,
    model_validator,
)

from drfleet.backup_format.datakey import DataKey
from drfleet.backup_format.errors import (
    InvalidName,
    ManifestInvalid,
    ManifestTampered,
    NaiveTimestamp,
    NotAManifestKey,
    UnknownManifestVersion,
)
from drfleet.backup_format.layout import check_backup_id, check_dataset, check_object_name, parse_manifest_key
from drfleet.safe_load import DocumentRefused, load_json

MANIFEST_FORMAT = "drfleet-manifest"
MANIFEST_VERSION = 1
SUPPORTED_VERSIONS = (MANIFEST_VERSION,)
#: the largest manifest a reader accepts (a manifest lists objects and a fingerprint: a
#: few KiB to a few MiB), and how deeply its JSON may nest (``source_position`` and
#: ``fingerprint`` are a few levels deep)
MAX_MANIFEST_BYTES = 64 << 20
MAX_MANIFEST_DEPTH = 32
_UNSIGNED_FIELDS = ("mac", "keys")
_SHA256_HEX = r"^[0-9a-f]{64}$"
_TRAILING_MANIFEST_KEY = re.compile(r"(?:^|[/:])(datasets/[^/:]+/manifests/[^/:]+)\Z")


def canonical_json(value: Any) -> bytes:
    """The canonical encoding: sorted keys, no whitespace, ASCII only, finite floats."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=True,
                      allow_nan=False).encode("ascii")


def format_timestamp(moment: datetime) -> str:
    """``YYYY-MM-DDTHH:MM:SS[.ffffff]Z`` in UTC; raises ``NaiveTimestamp`` without a timezone."""
    if moment.tzinfo is None or moment.utcoffset() is None:
        raise NaiveTimestamp("timestamp")
    return moment.astimezone(timezone.utc).isoformat().replace("+00:00", "Z")


def _name_check(check: Any, value: str) -> str:
    try:
        return check(value)
    except InvalidName as exc:
        raise ValueError(exc.message) from None


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Compression(_Strict):
    algorithm: Literal["zstd"]
    level: StrictInt


class ObjectEntry(_Strict):
    """One stored object: ``size``/``sha256`` of the stored envelope, ``plaintext_size`` of its content."""

    name: StrictStr
    size: StrictInt = Field(ge=0)
    sha256: StrictStr = Field(pattern=_SHA256_HEX)
    plaintext_size: StrictInt = Field(ge=0)

    @field_validator("name")
    @classmethod
    def _safe_name(cls, name: str) -> str:
        return _name_check(check_object_name, name)


class Manifest(_Strict):
    """One backup's manifest (format ``drfleet-manifest``, version 1)."""

    format: Literal["drfleet-manifest"] = MANIFEST_FORMAT
    version: Literal[1] = MANIFEST_VERSION
    backup_id: StrictStr
    dataset: StrictStr
    kind: Literal["postgres", "mongodb", "redis", "files"]
    policy: StrictStr = Field(min_length=1)
    region: StrictStr = Field(min_length=1)
    slot: StrictStr | None
    created_at: datetime
    started_at: datetime
    finished_at: datetime
    source_position: dict[str, Any] = Field(default_factory=dict)
    plaintext_size: StrictInt = Field(ge=0)
    plaintext_sha256: StrictStr = Field(pattern=_SHA256_HEX)
    compression: Compression
    objects: list[ObjectEntry] = Field(min_length=1)
    keys: list[dict[StrictStr, StrictStr]] = Field(default_factory=list)
    fingerprint: dict[str, Any] = Field(default_factory=dict)
    parents: list[StrictStr] = Field(default_factory=list)
    tool_versions: dict[StrictStr, StrictStr] = Field(default_factory=dict)
    labels: dict[StrictStr, StrictStr] = Field(default_factory=dict)
    mac: StrictStr | None = Field(default=None, pattern=_SHA256_HEX)

    def __init__(self, **fields: Any) -> None:
        """Validate ``fields``; raises ``ManifestInvalid`` naming every bad field."""
        try:
            super().__init__(**fields)
        except ValidationError as exc:
            raise ManifestInvalid(_source_of(fields), _describe(exc)) from None

    @field_validator("backup_id")
    @classmethod
    def _valid_backup_id(cls, value: str) -> str:
        return _name_check(check_backup_id, value)

    @field_validator("dataset")
    @classmethod
    def _valid_dataset(cls, value: str) -> str:
        return _name_check(check_dataset, value)

    @field_validator("parents")
    @classmethod
    def _valid_parents(cls, value: list[str]) -> list[str]:
        return [_name_check(check_backup_id, parent) for parent in value]

    @field_validator("created_at", "started_at", "finished_at")
    @classmethod
    def _utc(cls, value: datetime) -> datetime:
        if value.tzinfo is None or value.utcoffset() is None:
            raise ValueError("timestamp must carry a timezone (UTC)")
        return value.astimezone(timezone.utc)

    @field_validator("source_position", "fingerprint")
    @classmethod
    def _json_safe(cls, value: dict[str, Any]) -> dict[str, Any]:
        try:
            canonical_json(value)
        except (TypeError, ValueError) as exc:
            raise ValueError(f"must hold JSON values only ({exc})") from None
        return value

    @field_serializer("created_at", "started_at", "finished_at")
    def _timestamp(self, value: datetime) -> str:
        return format_timestamp(value)

    @model_validator(mode="after")
    def _consistent(self) -> "Manifest":
        names = [entry.name for entry in self.objects]
        if len(set(names)) != len(names):
            raise ValueError("objects: the same object name appears twice")
        if self.backup_id in self.parents:
            raise ValueError("parents: a backup cannot be its own parent")
        return self

    # --- serialization --------------------------------------------------------------

    def to_dict(self) -> dict[str, Any]:
        """The manifest as a JSON-safe dict (what ``to_bytes`` encodes)."""
        return self.model_dump(mode="json")

    def to_bytes(self) -> bytes:
        """Canonical JSON plus a newline. Raises ``ManifestInvalid`` if it is not signed."""
        if self.mac is None:
            raise ManifestInvalid(f"manifest {self.backup_id}", "not signed; call sign(data_key) first")
        return canonical_json(self.to_dict()) + b"\n"

    @classmethod
    def from_bytes(cls, data: bytes, *, source: str = "manifest") -> "Manifest":
        """Parse a stored manifest. ``source`` names it in errors (a store key or a path).

        Raises ``UnknownManifestVersion`` for a version this reader does not support and
        ``ManifestInvalid`` for bad JSON, a document larger than MAX_MANIFEST_BYTES or
        nested deeper than MAX_MANIFEST_DEPTH, a wrong format, an invalid field, a document not
        in canonical form, or, when ``source`` ends with a manifest key (``store:key``, a URL
        or a path), a manifest describing another dataset or backup than that key says.
        Does not check the MAC: call ``verify_mac``.
        """
        raw = _load_json(data, source)
        if raw.get("format") != MANIFEST_FORMAT:
            raise ManifestInvalid(source, f"not a {MANIFEST_FORMAT} document (format {raw.get('format')!r})")
        version = raw.get("version")
        if type(version) is not int or version not in SUPPORTED_VERSIONS:
            raise UnknownManifestVersion(version, SUPPORTED_VERSIONS, source)
        try:
            manifest = cls(**raw)
        except ManifestInvalid as exc:
            raise ManifestInvalid(source, exc.reason) from None
        rewritten = manifest.to_dict()
        # one encoding of each side first (fast path); field by field only to name the drift
        if canonical_json(raw) != canonical_json({k: rewritten.get(k) for k in raw}):
            drifted = sorted(k for k in raw if canonical_json(raw[k]) != canonical_json(rewritten.get(k)))
            raise ManifestInvalid(source, f"not in canonical form: {', '.join(drifted)}")
        _check_location(manifest, source)
        return manifest

    # --- authentication -------------------------------------------------------------

    def compute_mac(self, data_key: DataKey) -> str:
        """HMAC-SHA256 under the data key's MAC key over everything but ``mac`` and ``keys``."""
        signed = {k: v for k, v in self.to_dict().items() if k not in _UNSIGNED_FIELDS}
        mac_key = data_key.derive(b"drfleet/v1/manifest-mac")
        return hmac.new(mac_key, canonical_json(signed), hashlib.sha256).hexdigest()

    def sign(self, data_key: DataKey) -> "Manifest":
        """A copy of this manifest carrying its MAC under ``data_key``."""
        return self.model_copy(update={"mac": self.compute_mac(data_key)})

    def verify_mac(self, data_key: DataKey) -> None:
        """Raise ``ManifestTampered`` unless the manifest carries the right MAC for ``data_key``."""
        if self.mac is None:
            raise ManifestTampered(self.backup_id, "the manifest has no MAC")
        if not hmac.compare_digest(self.mac, self.compute_mac(data_key)):
            raise ManifestTampered(self.backup_id)

    def replace(self, **changes: Any) -> "Manifest":
        """A validated copy with ``changes``. Changing anything but ``keys`` drops the MAC
        (sign again); raises ``ManifestInvalid`` for invalid values."""
        fields = {**self.model_dump(), **changes}
        if set(changes) - {"keys"}:
            fields["mac"] = None
        return type(self)(**fields)


def _load_json(data: bytes, source: str) -> dict[str, Any]:
    def no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
        keys = [key for key, _ in pairs]
        if len(set(keys)) != len(keys):
            raise ValueError("duplicate key in a JSON object")
        return dict(pairs)

    try:
        raw = load_json(data, source=source, max_bytes=MAX_MANIFEST_BYTES, max_depth=MAX_MANIFEST_DEPTH,
                        object_pairs_hook=no_duplicates)
    except DocumentRefused as exc:
        raise ManifestInvalid(source, exc.reason) from None
    if not isinstance(raw, dict):
        raise ManifestInvalid(source, "not a JSON object")
    return raw


def _check_location(manifest: Manifest, source: str) -> None:
    found = _TRAILING_MANIFEST_KEY.search(source)
    if found is None:
        return  # not named after a manifest key: nothing to compare
    try:
        dataset, backup_id = parse_manifest_key(found.group(1))
    except NotAManifestKey:
        return
    if (dataset, backup_id) != (manifest.dataset, manifest.backup_id):
        raise ManifestInvalid(source, f"stored as {dataset}/{backup_id} but describes "
                                      f"{manifest.dataset}/{manifest.backup_id} (copied or moved?)")


def _describe(exc: ValidationError) -> str:
    return "; ".join(f"{'.'.join(str(part) for part in error['loc']) or 'manifest'}: "
                     f"{error['msg'].removeprefix('Value error, ')}"
                     for error in exc.errors(include_input=False, include_url=False))


def _source_of(fields: dict[str, Any]) -> str:
    backup_id = fields.get("backup_id")
    return f"manifest {backup_id}" if isinstance(backup_id, str) else "manifest"
