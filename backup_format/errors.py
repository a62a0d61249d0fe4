"""Errors raised by the backup format: names, keyrings, envelopes and manifests.

Every class derives from ``fleet.errors.DrfleetError`` and carries the facts an operator
needs to locate the problem (path, category, key id, object name, backup id). None of
them ever carries key material: callers pass ids, never keys.
"""

from __future__ import annotations

from typing import Any, Iterable

from drfleet.errors import DrfleetError


class BackupFormatError(DrfleetError):
    """Base class of every error in ``backup_format``."""


# --- names and layout ---------------------------------------------------------------

class InvalidName(BackupFormatError):
    """A dataset, object name, backup id or category is not allowed as a key component."""

    hint = "use lowercase letters, digits, '.', '_' and '-', starting with a letter or digit"

    def __init__(self, what: str, value: Any, reason: str, *, hint: str | None = None) -> None:
        super().__init__(f"invalid {what} {value!r}: {reason}", hint=hint, **{what.replace(" ", "_"): repr(value)})
        self.what, self.value, self.reason = what, value, reason


class NotAManifestKey(BackupFormatError):
    """A store key is not of the form ``datasets/{dataset}/manifests/{backup_id}.json``."""

    hint = "pass a key relative to the store prefix, as listed under datasets/{dataset}/manifests/"

    def __init__(self, key: str, reason: str) -> None:
        super().__init__(f"not a manifest key: {reason}", key=key)
        self.key, self.reason = key, reason


class NaiveTimestamp(BackupFormatError):
    """A datetime without a timezone was given where a UTC instant is needed."""

    hint = "pass an aware datetime, e.g. datetime.now(timezone.utc)"

    def __init__(self, what: str) -> None:
        super().__init__(f"{what} has no timezone; refusing to guess", field=what)


class SecretNotSerializable(BackupFormatError, TypeError):
    """Something tried to pickle or copy a key object (it would leak key material)."""

    hint = "pass key ids and load the keyring where the key is needed, never ship keys"

    def __init__(self, what: str) -> None:
        super().__init__(f"{what} holds key material and cannot be serialized", object=what)


class InvalidKeyMaterial(BackupFormatError, ValueError):
    """Bytes of the wrong length were given as key material (a bug in the caller)."""

    hint = "data keys and master keys are exactly 32 bytes"

    def __init__(self, what: str, length: int, expected: int) -> None:
        super().__init__(f"{what} must be {expected} bytes, got {length}", expected=expected, got=length)


# --- keyrings -------------------------------------------------------------------------

class KeyringError(BackupFormatError):
    """Base class of keyring errors."""


class KeyringNotFound(KeyringError):
    """The keyring file does not exist or the environment variable is unset/empty."""

    hint = "create one with `drfleet keys create CATEGORY`, or point to the right file/variable"

    def __init__(self, message: str, *, category: str | None = None, path: str | None = None,
                 env_var: str | None = None) -> None:
        super().__init__(message, category=category, path=path, env_var=env_var)


class KeyringExists(KeyringError):
    """``create_keyring`` was asked to write over an existing file."""

    hint = "to add a key to an existing keyring use `drfleet keys rotate`; never overwrite one"

    def __init__(self, path: str) -> None:
        super().__init__("keyring file already exists; refusing to overwrite it", path=path)


class KeyFilePermissionError(KeyringError):
    """A keyring file is readable or writable by group or others."""

    def __init__(self, path: str, mode: int) -> None:
        super().__init__("keyring file is accessible to group or others; refusing to use it",
                         hint=f"chmod 600 {path}", path=path, mode=oct(mode))
        self.path, self.mode = path, mode


class KeyringInvalid(KeyringError):
    """A keyring document is malformed, of an unknown version, or for another category."""

    hint = "restore the keyring from your secret store; do not edit key material by hand"

    def __init__(self, source: str, reason: str, *, category: str | None = None,
                 key_id: str | None = None) -> None:
        super().__init__(f"invalid keyring: {reason}", source=source, category=category, key_id=key_id)
        self.source, self.reason = source, reason


class KeyNotInKeyring(KeyringError):
    """A master key id was asked for that the keyring does not hold."""

    def __init__(self, category: str, key_id: str, available: Iterable[str]) -> None:
        super().__init__(f"master key {key_id} is not in the {category!r} keyring",
                         hint=f"restore key {key_id} into the {category!r} keyring from your secret "
                              f"store; `drfleet keys rotate {category}` only adds new keys, it cannot "
                              f"bring back a removed one",
                         category=category, key_id=key_id, keyring_has=list(available))
        self.category, self.key_id = category, key_id


class WrongKey(KeyringError):
    """No wrapped data key of a backup can be opened with the given keyring."""

    def __init__(self, category: str, needed: Iterable[str], available: Iterable[str], *,
                 backup_id: str | None = None, tried: Iterable[str] = ()) -> None:
        needed = list(needed)
        super().__init__(f"cannot unwrap the data key with the {category!r} keyring",
                         hint=f"use the {category!r} keyring that holds one of the needed key ids "
                              f"(restore it from your secret store); `drfleet keys create/rotate "
                              f"{category}` make new keys and cannot open old backups",
                         category=category, backup_id=backup_id, needed_key_ids=needed,
                         keyring_has=list(available), tried=list(tried) or None)
        self.category, self.needed = category, needed


# --- envelopes ------------------------------------------------------------------------

class EnvelopeError(BackupFormatError):
    """Base class of errors about one stored object's envelope."""

    hint = ("the stored object is damaged or is not the one the manifest names; "
            "restore from another copy or another backup")

    def __init__(self, message: str, object_name: str, **facts: Any) -> None:
        super().__init__(message, object=object_name, **facts)
        self.object_name = object_name


class NotAnEnvelope(EnvelopeError):
    """The object does not start with a drfleet envelope header of a known version."""

    def __init__(self, object_name: str, reason: str) -> None:
        super().__init__(f"not a drfleet envelope: {reason}", object_name)
        self.reason = reason


class EnvelopeCorrupt(EnvelopeError):
    """A chunk failed authentication (changed, reordered, renamed or from another key)."""

    def __init__(self, object_name: str, chunk_index: int | None, reason: str) -> None:
        super().__init__(f"envelope corrupt: {reason}", object_name, chunk=chunk_index)
        self.chunk_index, self.reason = chunk_index, reason


class EnvelopeTruncated(EnvelopeError):
    """The object ends before its final chunk."""

    def __init__(self, object_name: str, reason: str = "the final chunk is missing") -> None:
        super().__init__(f"envelope truncated: {reason}", object_name)
        self.reason = reason


class TrailingData(EnvelopeError):
    """Bytes follow the final chunk."""

    def __init__(self, object_name: str, chunk_index: int | None = None) -> None:
        super().__init__("envelope has data after its final chunk", object_name, final_chunk=chunk_index)


class SealingMisuse(BackupFormatError):
    """``ObjectSealer`` was used against its contract (a bug in the caller)."""

    hint = "every chunk but the final must be exactly chunk_size bytes; seal nothing after final"

    def __init__(self, object_name: str, chunk_index: int | None, reason: str) -> None:
        super().__init__(f"cannot seal: {reason}", object=object_name, chunk=chunk_index)


# --- manifests ------------------------------------------------------------------------

class ManifestError(BackupFormatError):
    """Base class of manifest errors."""


class UnknownManifestVersion(ManifestError):
    """The manifest's format version is not one this reader supports."""

    hint = "upgrade drfleet on this host; newer writers may have produced this manifest"

    def __init__(self, version: Any, supported: Iterable[int], source: str) -> None:
        supported = list(supported)
        super().__init__(f"manifest version {version!r} is not supported",
                         source=source, version=repr(version), supported=repr(supported))
        self.version, self.supported, self.source = version, supported, source


class ManifestInvalid(ManifestError):
    """The manifest is not valid JSON or violates the format."""

    hint = "the manifest is damaged; restore it from a replica of the store, or pick another backup"

    def __init__(self, source: str, reason: str) -> None:
        super().__init__(f"invalid manifest: {reason}", source=source)
        self.source, self.reason = source, reason


class ManifestTampered(ManifestError):
    """The manifest MAC is missing or does not match its content."""

    hint = ("do not restore from this backup: its manifest was changed after it was written; "
            "investigate who can write to the store")

    def __init__(self, backup_id: str, reason: str = "MAC does not match") -> None:
        super().__init__(f"manifest failed verification: {reason}", backup_id=backup_id)
        self.backup_id, self.reason = backup_id, reason
