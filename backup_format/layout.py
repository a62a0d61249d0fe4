"""Where things live in a store, and which names are allowed there.

Keys are '/'-separated strings relative to the store prefix (see docs/format.md):

    datasets/{dataset}/backups/{backup_id}/{object_name}    an object
    datasets/{dataset}/manifests/{backup_id}.json           the manifest (commit point)

Every function that builds a key validates its components and raises ``InvalidName``
for one that could escape its directory or collide on a case-insensitive store. The name
rule is ``drfleet.names`` (``drfleet plan check`` applies the same one to the plan).
"""

from __future__ import annotations

import re
import secrets
from datetime import datetime, timezone

from drfleet.backup_format.errors import InvalidName, NaiveTimestamp, NotAManifestKey
from drfleet.names import CATEGORY_MAX_LEN, NAME_MAX_LEN, name_problem

DATASET_MAX_LEN = NAME_MAX_LEN
CATEGORY_MAX_LEN = CATEGORY_MAX_LEN
OBJECT_NAME_MAX_LEN = 200

_BACKUP_ID = re.compile(r"(\d{8}T\d{6}Z)-[0-9a-f]{8}\Z")
_BACKUP_ID_TIME = "%Y%m%dT%H%M%SZ"


def _check_name(what: str, value: object, *, category: bool = False, max_len: int | None = None) -> str:
    problem = name_problem(value, category=category, max_len=max_len)
    if problem:
        raise InvalidName(what, value, problem)
    return value


def check_dataset(dataset: str) -> str:
    """Return ``dataset`` if it is a safe key component; raise ``InvalidName`` otherwise."""
    return _check_name("dataset", dataset)


def check_object_name(name: str) -> str:
    """Return ``name`` if it is a safe object name; raise ``InvalidName`` otherwise."""
    return _check_name("object name", name, max_len=OBJECT_NAME_MAX_LEN)


def check_category(category: str) -> str:
    """Return ``category`` if it is a valid key category; raise ``InvalidName`` otherwise."""
    return _check_name("category", category, category=True)


def check_backup_id(backup_id: str) -> str:
    """Return ``backup_id`` if it is ``YYYYMMDDTHHMMSSZ-xxxxxxxx`` with a real UTC time.

    Raises ``InvalidName`` otherwise.
    """
    hint = "a backup id looks like 20240501T031500Z-9f2c01ab"
    if not isinstance(backup_id, str) or not (match := _BACKUP_ID.match(backup_id)):
        raise InvalidName("backup id", backup_id, "not of the form YYYYMMDDTHHMMSSZ-xxxxxxxx", hint=hint)
    try:
        datetime.strptime(match.group(1), _BACKUP_ID_TIME)
    except ValueError:
        raise InvalidName("backup id", backup_id, "its timestamp is not a real time", hint=hint) from None
    return backup_id


def backup_time(backup_id: str) -> datetime:
    """The UTC start time encoded in ``backup_id``; raises ``InvalidName`` if malformed."""
    stamp = check_backup_id(backup_id).split("-", 1)[0]
    return datetime.strptime(stamp, _BACKUP_ID_TIME).replace(tzinfo=timezone.utc)


def new_backup_id(now: datetime | None = None) -> str:
    """A fresh backup id for a backup starting at ``now`` (default: the current time).

    Raises ``NaiveTimestamp`` if ``now`` has no timezone.
    """
    if now is None:
        now = datetime.now(timezone.utc)
    elif now.tzinfo is None or now.utcoffset() is None:
        raise NaiveTimestamp("now")
    return f"{now.astimezone(timezone.utc).strftime(_BACKUP_ID_TIME)}-{secrets.token_hex(4)}"


def manifests_prefix(dataset: str) -> str:
    """Prefix under which the manifests of ``dataset`` are listed (ends with '/').

    Raises ``InvalidName`` for an unsafe dataset name.
    """
    return f"datasets/{check_dataset(dataset)}/manifests/"


def manifest_key(dataset: str, backup_id: str) -> str:
    """Key of the manifest of ``backup_id``; raises ``InvalidName`` for a bad component."""
    return f"{manifests_prefix(dataset)}{check_backup_id(backup_id)}.json"


def backup_prefix(dataset: str, backup_id: str) -> str:
    """Prefix under which the objects of ``backup_id`` live (ends with '/').

    Raises ``InvalidName`` for an unsafe dataset name or a malformed backup id.
    """
    return f"datasets/{check_dataset(dataset)}/backups/{check_backup_id(backup_id)}/"


def object_key(dataset: str, backup_id: str, name: str) -> str:
    """Key of object ``name`` of ``backup_id``; raises ``InvalidName`` for a bad component."""
    return f"{backup_prefix(dataset, backup_id)}{check_object_name(name)}"


def parse_manifest_key(key: str) -> tuple[str, str]:
    """Split a manifest key into ``(dataset, backup_id)``.

    Raises ``NotAManifestKey`` if ``key`` is not ``datasets/{dataset}/manifests/{id}.json``
    with a valid dataset and backup id.
    """
    parts = key.split("/") if isinstance(key, str) else []
    if len(parts) != 4 or parts[0] != "datasets" or parts[2] != "manifests":
        raise NotAManifestKey(str(key), "expected datasets/{dataset}/manifests/{backup_id}.json")
    dataset, file_name = parts[1], parts[3]
    if not file_name.endswith(".json"):
        raise NotAManifestKey(key, "manifest file name must end with .json")
    try:
        return check_dataset(dataset), check_backup_id(file_name[: -len(".json")])
    except InvalidName as exc:
        raise NotAManifestKey(key, exc.message) from None
