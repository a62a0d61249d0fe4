"""Per-backup data keys and their wrapping under master keys.

A ``DataKey`` is 32 random bytes, fresh for every backup. It never leaves the process in
the clear: the manifest stores it wrapped (AES-256-GCM) under one or more master keys,
with the category, master key id and data key id in the AAD (docs/format.md, "Keys").
"""

from __future__ import annotations

import base64
import binascii
import json
import secrets
from typing import Any, Iterable

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from drfleet.backup_format.errors import InvalidKeyMaterial, SecretNotSerializable, WrongKey
from drfleet.backup_format.keyring import Keyring, MasterKey

DATA_KEY_BYTES = 32
DATA_KEY_ID_BYTES = 8
WRAP_ALGORITHM = "A256GCM"
_WRAP_NONCE_BYTES = 12
_ENTRY_FIELDS = ("alg", "category", "key_id", "data_key_id", "nonce", "wrapped")


def hkdf_sha256(ikm: bytes, *, info: bytes, length: int = 32, salt: bytes | None = None) -> bytes:
    """HKDF-SHA256 (RFC 5869); ``salt=None`` is the RFC default (hash-length zeros)."""
    return HKDF(algorithm=hashes.SHA256(), length=length, salt=salt, info=info).derive(ikm)


class DataKey:
    """The secret key of one backup. ``repr``/``str`` show its id only; it cannot be pickled.

    The constructor raises ``InvalidKeyMaterial`` unless given exactly 32 bytes; pickling
    raises ``SecretNotSerializable``.
    """

    __slots__ = ("_material", "id", "id_bytes")

    def __init__(self, material: bytes) -> None:
        if len(material) != DATA_KEY_BYTES:
            raise InvalidKeyMaterial("a data key", len(material), DATA_KEY_BYTES)
        self._material = bytes(material)
        self.id_bytes = hkdf_sha256(self._material, info=b"drfleet/v1/data-key-id", length=DATA_KEY_ID_BYTES)
        self.id = "dk-" + self.id_bytes.hex()

    @classmethod
    def generate(cls) -> "DataKey":
        """A fresh random data key from the operating system's CSPRNG."""
        return cls(secrets.token_bytes(DATA_KEY_BYTES))

    def derive(self, info: bytes, *, salt: bytes | None = None, length: int = 32) -> bytes:
        """A subkey for one purpose (``info``), e.g. an object key or the manifest MAC key."""
        return hkdf_sha256(self._material, info=info, salt=salt, length=length)

    def __repr__(self) -> str:
        return f"DataKey(id={self.id!r})"

    __str__ = __repr__

    def __reduce__(self) -> Any:
        raise SecretNotSerializable(f"DataKey {self.id}")


def _wrap_aad(category: str, key_id: str, data_key_id: str) -> bytes:
    return json.dumps(["drfleet-wrapped-key", 1, category, key_id, data_key_id],
                      separators=(",", ":")).encode("utf-8")


def _wrap_cipher(master: MasterKey) -> AESGCM:
    return AESGCM(hkdf_sha256(master.material, info=b"drfleet/v1/key-wrap"))


def wrap_data_key(data_key: DataKey, master: MasterKey) -> dict[str, str]:
    """The manifest ``keys`` entry holding ``data_key`` wrapped under ``master`` (JSON-safe)."""
    nonce = secrets.token_bytes(_WRAP_NONCE_BYTES)
    aad = _wrap_aad(master.category, master.id, data_key.id)
    wrapped = _wrap_cipher(master).encrypt(nonce, data_key._material, aad)
    return {"alg": WRAP_ALGORITHM, "category": master.category, "key_id": master.id,
            "data_key_id": data_key.id, "nonce": base64.b64encode(nonce).decode("ascii"),
            "wrapped": base64.b64encode(wrapped).decode("ascii")}


def unwrap_data_key(entries: Iterable[dict[str, Any]], keyring: Keyring, *,
                    backup_id: str | None = None) -> DataKey:
    """Unwrap the data key from the first entry whose master key is in ``keyring``.

    Entries of another category or whose key id the keyring lacks are skipped. Raises
    ``WrongKey`` naming the category, the key ids the entries need, the ids the keyring
    holds and why each candidate failed, when no entry can be opened. Has no side effects.
    """
    entries = list(entries)
    tried: list[str] = []
    for entry in entries:
        if not isinstance(entry, dict) or entry.get("category") != keyring.category:
            continue
        key_id = entry.get("key_id")
        if key_id not in keyring:
            continue
        problem = _malformed(entry)
        if problem is None:
            data_key = _try_unwrap(entry, keyring.get(key_id))
            if data_key is not None:
                return data_key
            problem = "authentication failed (entry damaged or key material differs)"
        tried.append(f"{key_id}: {problem}")
    needed = [str(e.get("key_id")) for e in entries if isinstance(e, dict)]
    raise WrongKey(keyring.category, needed, keyring.key_ids, backup_id=backup_id, tried=tried)


def _malformed(entry: dict[str, Any]) -> str | None:
    missing = [name for name in _ENTRY_FIELDS if not isinstance(entry.get(name), str)]
    if missing:
        return f"entry lacks {', '.join(missing)}"
    if entry["alg"] != WRAP_ALGORITHM:
        return f"unknown wrapping algorithm {entry['alg']!r}"
    return None


def _try_unwrap(entry: dict[str, str], master: MasterKey) -> DataKey | None:
    try:
        nonce = base64.b64decode(entry["nonce"], validate=True)
        wrapped = base64.b64decode(entry["wrapped"], validate=True)
        if len(nonce) != _WRAP_NONCE_BYTES:
            return None
        aad = _wrap_aad(master.category, master.id, entry["data_key_id"])
        data_key = DataKey(_wrap_cipher(master).decrypt(nonce, wrapped, aad))
    except (binascii.Error, ValueError, InvalidTag):
        return None
    return data_key if data_key.id == entry["data_key_id"] else None
