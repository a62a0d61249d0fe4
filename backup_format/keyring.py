"""Master keys and the per-category keyring files that hold them.

A keyring is JSON (see docs/format.md, "Keyring files"), kept in a mode-0600 file or in an
environment variable. Key ids are ``{category}-{YYYYMMDD}-{sha256(material)[:8]}`` and
are checked against the material on load. Key material is never printed: ``repr`` and
``str`` of keys and keyrings show ids only, and key objects refuse to be pickled.
"""

from __future__ import annotations

import base64
import binascii
import fcntl
import hashlib
import json
import os
import secrets
import stat
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from drfleet.backup_format.errors import (
    InvalidKeyMaterial,
    InvalidName,
    KeyFilePermissionError,
    KeyNotInKeyring,
    KeyringError,
    KeyringExists,
    KeyringInvalid,
    KeyringNotFound,
    SecretNotSerializable,
)
from drfleet.backup_format.layout import check_category
from drfleet.safe_load import DocumentRefused, load_json

KEYRING_FORMAT = "drfleet-keyring"
KEYRING_VERSION = 1
MASTER_KEY_BYTES = 32
MAX_KEYRING_BYTES = 1 << 20  # about 5,000 keys
MAX_KEYRING_DEPTH = 8
_GROUP_OTHER_RW = stat.S_IRGRP | stat.S_IWGRP | stat.S_IROTH | stat.S_IWOTH


def make_key_id(category: str, created: datetime, material: bytes) -> str:
    """The id of a master key: ``{category}-{YYYYMMDD of created, UTC}-{sha256 prefix}``."""
    day = created.astimezone(UTC).strftime("%Y%m%d")
    return f"{category}-{day}-{hashlib.sha256(material).hexdigest()[:8]}"


class MasterKey:
    """One 256-bit master key of a category. ``material`` is the secret; it is never shown.

    The constructor raises ``InvalidKeyMaterial`` unless given exactly 32 bytes; pickling
    raises ``SecretNotSerializable``.
    """

    __slots__ = ("_material", "category", "created", "id")

    def __init__(self, key_id: str, category: str, material: bytes, created: datetime) -> None:
        if len(material) != MASTER_KEY_BYTES:
            raise InvalidKeyMaterial("a master key", len(material), MASTER_KEY_BYTES)
        self.id, self.category, self.created = key_id, category, created
        self._material = bytes(material)

    @property
    def material(self) -> bytes:
        return self._material

    def __repr__(self) -> str:
        return f"MasterKey(id={self.id!r}, category={self.category!r})"

    __str__ = __repr__

    def __reduce__(self) -> Any:
        raise SecretNotSerializable(f"MasterKey {self.id}")


class Keyring:
    """The master keys of one category; ``active`` wraps new backups."""

    def __init__(self, category: str, keys: list[MasterKey], active_id: str) -> None:
        self.category = category
        self._keys = {key.id: key for key in keys}
        self._active_id = active_id

    @property
    def active(self) -> MasterKey:
        return self._keys[self._active_id]

    @property
    def key_ids(self) -> list[str]:
        return list(self._keys)

    def get(self, key_id: str) -> MasterKey:
        """The key with ``key_id``; raises ``KeyNotInKeyring`` if this keyring lacks it."""
        try:
            return self._keys[key_id]
        except KeyError:
            raise KeyNotInKeyring(self.category, key_id, self._keys) from None

    def __contains__(self, key_id: object) -> bool:
        return key_id in self._keys

    def __iter__(self) -> Iterator[MasterKey]:
        return iter(self._keys.values())

    def __len__(self) -> int:
        return len(self._keys)

    def __repr__(self) -> str:
        return f"Keyring(category={self.category!r}, active={self._active_id!r}, keys={self.key_ids!r})"

    __str__ = __repr__

    def __reduce__(self) -> Any:
        raise SecretNotSerializable(f"Keyring {self.category}")

    def to_document(self) -> dict[str, Any]:
        """The keyring as its JSON document (contains key material: write it to a 0600 file)."""
        return {"format": KEYRING_FORMAT, "version": KEYRING_VERSION, "category": self.category,
                "active": self._active_id,
                "keys": [{"id": k.id, "created": _format_time(k.created),
                          "material": base64.b64encode(k.material).decode("ascii")} for k in self]}


def parse_keyring(text: str | bytes, *, source: str, category: str | None = None) -> Keyring:
    """Parse a keyring document. ``source`` names where it came from (a path or a variable).

    Raises ``KeyringInvalid`` if it is malformed (larger than MAX_KEYRING_BYTES or nested
    deeper than MAX_KEYRING_DEPTH included), of an unknown format/version, holds a key
    whose id does not match its material, or is not for ``category`` (when given).
    """
    try:
        doc = load_json(text, source=source, max_bytes=MAX_KEYRING_BYTES, max_depth=MAX_KEYRING_DEPTH)
    except DocumentRefused as exc:
        raise KeyringInvalid(source, _without_content(exc.reason)) from None
    if not isinstance(doc, dict) or doc.get("format") != KEYRING_FORMAT:
        raise KeyringInvalid(source, f"not a {KEYRING_FORMAT} document")
    if doc.get("version") != KEYRING_VERSION:
        raise KeyringInvalid(source, f"keyring version {doc.get('version')!r} is not supported "
                                     f"(supported: {KEYRING_VERSION})")
    found = doc.get("category")
    try:
        check_category(found)
    except InvalidName as exc:
        raise KeyringInvalid(source, exc.message) from None
    if category is not None and found != category:
        raise KeyringInvalid(source, f"keyring is for category {found!r}, not {category!r}", category=category)
    entries = doc.get("keys")
    if not isinstance(entries, list) or not entries:
        raise KeyringInvalid(source, "'keys' must be a non-empty list", category=found)
    keys = [_parse_key(entry, found, source, index) for index, entry in enumerate(entries)]
    ids = [key.id for key in keys]
    if len(set(ids)) != len(ids):
        raise KeyringInvalid(source, "the same key id appears twice", category=found)
    if doc.get("active") not in ids:
        raise KeyringInvalid(source, f"active key {doc.get('active')!r} is not among the keys", category=found)
    return Keyring(found, keys, doc["active"])


def _parse_key(entry: Any, category: str, source: str, index: int) -> MasterKey:
    if not isinstance(entry, dict) or set(entry) != {"id", "created", "material"}:
        raise KeyringInvalid(source, f"key #{index} must have exactly 'id', 'created', 'material'",
                             category=category)
    key_id = entry["id"] if isinstance(entry["id"], str) else repr(entry["id"])
    try:
        created = datetime.fromisoformat(entry["created"])
        material = base64.b64decode(entry["material"], validate=True)
    except (TypeError, ValueError, binascii.Error):
        raise KeyringInvalid(source, f"key #{index} has a malformed 'created' or 'material'",
                             category=category, key_id=key_id) from None
    if created.tzinfo is None:
        raise KeyringInvalid(source, f"key #{index} 'created' has no timezone", category=category, key_id=key_id)
    if len(material) != MASTER_KEY_BYTES:
        raise KeyringInvalid(source, f"key #{index} material is not {MASTER_KEY_BYTES} bytes",
                             category=category, key_id=key_id)
    if key_id != make_key_id(category, created, material):
        raise KeyringInvalid(source, f"key #{index} id does not match its material and creation date",
                             category=category, key_id=key_id)
    return MasterKey(key_id, category, material, created)


def load_keyring(category: str, *, file: str | os.PathLike[str] | None = None,
                 env: str | None = None) -> Keyring:
    """Load the keyring of ``category`` from ``file`` or from environment variable ``env``.

    Exactly one of ``file`` and ``env`` must be given. Raises ``KeyringNotFound`` for a
    missing file or an unset/empty variable (naming the path or variable, never its value),
    ``KeyFilePermissionError`` for a file accessible to group or others, and
    ``KeyringInvalid`` for a malformed document or one of another category.
    """
    check_category(category)
    if (file is None) == (env is None):
        raise KeyringError("give exactly one of a keyring file or an environment variable",
                           hint="pass --keyring FILE or --keyring-env VARIABLE", category=category)
    if env is not None:
        text = os.environ.get(env, "")
        if not text.strip():
            raise KeyringNotFound(f"environment variable {env} is not set or empty",
                                  category=category, env_var=env)
        return parse_keyring(text, source=f"${env}", category=category)
    return parse_keyring(_read_private_file(Path(file), category), source=str(file), category=category)


@contextmanager
def _keyring_file_errors(path: Path, action: str, category: str | None = None) -> Iterator[None]:
    """Turn OS errors on a keyring file into ``KeyringNotFound``/``KeyringError`` naming it."""
    try:
        yield
    except FileNotFoundError:
        raise KeyringNotFound("keyring file (or its directory) does not exist", path=str(path),
                              category=category) from None
    except OSError as exc:
        raise KeyringError(f"cannot {action} keyring file: {exc.strerror}", path=str(path), category=category,
                           hint="check the path, and that this user may read and write its directory") from None


def _read_private_file(path: Path, category: str | None = None) -> bytes:
    with _keyring_file_errors(path, "read", category), open(path, "rb") as handle:
        mode = os.fstat(handle.fileno()).st_mode
        if mode & _GROUP_OTHER_RW:
            raise KeyFilePermissionError(str(path), stat.S_IMODE(mode))
        return handle.read()


def create_keyring(path: str | os.PathLike[str], category: str) -> str:
    """Create a new keyring file (mode 0600) for ``category`` with one fresh active key.

    Returns the new key id. Raises ``KeyringExists`` if ``path`` exists (it never
    overwrites), ``InvalidName`` for a bad category, and ``KeyringNotFound``/``KeyringError``
    when the directory is missing or not writable.
    """
    path = Path(path)
    check_category(category)
    key = _new_master_key(category)
    with _keyring_file_errors(path, "create", category):
        temp = _write_private_temp(path, Keyring(category, [key], key.id).to_document())
        try:
            os.link(temp, path)  # atomic and refuses an existing target, unlike rename
        except FileExistsError:
            raise KeyringExists(str(path)) from None
        finally:
            os.unlink(temp)
        _fsync_dir(path.parent)
    return key.id


def rotate_keyring(path: str | os.PathLike[str]) -> str:
    """Add a fresh key to the keyring file at ``path`` and make it active; keep old keys.

    The file is rewritten atomically (temporary file, fsync, rename) under an exclusive
    lock (on ``{path}.lock``), so concurrent rotations cannot lose a key. Returns the new
    key id. Raises what ``load_keyring`` raises for the existing file, and
    ``KeyringError`` when the directory is not writable.
    """
    def add_key(current: Keyring) -> tuple[Keyring, str]:
        key = _new_master_key(current.category)
        while key.id in current:  # same day and same 32-bit hash prefix: draw again
            key = _new_master_key(current.category)
        return Keyring(current.category, [*current, key], key.id), key.id

    return _rewrite_locked(Path(path), "rotate", add_key)


def remove_key(path: str | os.PathLike[str], key_id: str) -> None:
    """Remove key ``key_id`` (not the active one) from the keyring file at ``path``,
    rewritten atomically under the same lock as ``rotate_keyring``. Raises
    ``KeyNotInKeyring`` for an unknown id and ``KeyringError`` for the active key. Whether
    any backup still needs the key is the caller's question (``datapath.key_rotation``)."""
    def drop_key(current: Keyring) -> tuple[Keyring, None]:
        current.get(key_id)  # raises KeyNotInKeyring
        if key_id == current.active.id:
            raise KeyringError(f"key {key_id} is the active key of {current.category}; rotate first",
                               path=str(path))
        return Keyring(current.category, [k for k in current if k.id != key_id], current.active.id), None

    _rewrite_locked(Path(path), "retire a key of", drop_key)


def _rewrite_locked(path: Path, what: str, change):
    """Read the keyring file at ``path`` under its lock (``{path}.lock``), write
    ``change(current)``'s keyring back atomically (private temp file, rename, directory
    fsync) and return its second value. Raises KeyringNotFound for a missing file and what
    ``change`` raises (nothing written then)."""
    if not path.exists():
        raise KeyringNotFound("keyring file does not exist", path=str(path))
    with _keyring_file_errors(path, what):
        lock_fd = os.open(f"{path}.lock", os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try:
            fcntl.flock(lock_fd, fcntl.LOCK_EX)
            updated, result = change(parse_keyring(_read_private_file(path), source=str(path)))
            temp = _write_private_temp(path, updated.to_document())
            try:
                os.replace(temp, path)
            except OSError:
                temp.unlink(missing_ok=True)
                raise
            _fsync_dir(path.parent)
            return result
        finally:
            os.close(lock_fd)


def _new_master_key(category: str) -> MasterKey:
    material = secrets.token_bytes(MASTER_KEY_BYTES)
    created = datetime.now(UTC).replace(microsecond=0)
    return MasterKey(make_key_id(category, created, material), category, material, created)


def _write_private_temp(path: Path, document: dict[str, Any]) -> Path:
    temp = path.with_name(f".{path.name}.{secrets.token_hex(6)}.tmp")
    fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            json.dump(document, handle, indent=2)
            handle.write("\n")
            handle.flush()
            os.fsync(handle.fileno())
    except BaseException:
        temp.unlink(missing_ok=True)
        raise
    return temp


def _fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _format_time(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat().replace("+00:00", "Z")


def _without_content(reason: str) -> str:
    """A JSON error without the parser's words about what it met (never key material):
    ``not valid JSON: Expecting ',' delimiter: line 3 column 5 (char 40)`` keeps its place."""
    if reason.startswith("not valid JSON:") and ": line " in reason:
        return "not valid JSON (at line " + reason.rsplit(": line ", 1)[1].split(" column")[0] + ")"
    return reason
