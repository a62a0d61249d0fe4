"""Strict host key checking against an OpenSSH known_hosts file.

A host key is accepted only when the known_hosts file records exactly that key for the
host, under ``[host]:port`` (or plain ``host`` for port 22), like OpenSSH with
``StrictHostKeyChecking=yes``. Nothing is ever added to the file and nothing is accepted
silently. Supported known_hosts syntax: comma-separated names, hashed names (``|1|``),
``*``/``?`` wildcards, ``!`` negation, and the ``@revoked`` marker (``@cert-authority``
lines are ignored: certificates are not supported).
"""

from __future__ import annotations

import base64
import binascii
import fnmatch
import hashlib
import hmac
import os
from dataclasses import dataclass

from drfleet.providers.ssh.errors import (
    HostKeyChanged,
    HostKeyRejected,
    HostKeyRevoked,
    UnknownHostKey,
    known_hosts_name,
)

__all__ = ["KnownHostKey", "fingerprint", "known_hosts_name", "lookup_known_keys",
           "preferred_key_types", "verify_host_key"]


def fingerprint(key_blob: bytes) -> str:
    """OpenSSH SHA256 fingerprint of a public key blob: ``SHA256:<base64, no padding>``."""
    digest = hashlib.sha256(key_blob).digest()
    return "SHA256:" + base64.b64encode(digest).decode("ascii").rstrip("=")


@dataclass(frozen=True)
class KnownHostKey:
    """One public key recorded for a host in a known_hosts file."""

    key_type: str
    blob: bytes
    line_number: int
    revoked: bool = False

    @property
    def fingerprint(self) -> str:
        return fingerprint(self.blob)


def _pattern_matches(pattern: str, name: str) -> bool:
    if pattern.startswith("|1|"):
        try:
            _, _, salt_b64, hash_b64 = pattern.split("|", 3)
            salt, expected = base64.b64decode(salt_b64), base64.b64decode(hash_b64)
        except (ValueError, binascii.Error):
            return False
        actual = hmac.new(salt, name.encode(), hashlib.sha1).digest()
        return hmac.compare_digest(actual, expected)
    if "*" in pattern or "?" in pattern:
        return fnmatch.fnmatchcase(name.lower(), pattern.lower().replace("[", "[[]"))
    return pattern.lower() == name.lower()


def _names_match(field: str, name: str) -> bool:
    matched = False
    for pattern in field.split(","):
        negated = pattern.startswith("!")
        if _pattern_matches(pattern[1:] if negated else pattern, name):
            if negated:
                return False
            matched = True
    return matched


def lookup_known_keys(known_hosts_file: str | os.PathLike, host: str,
                      port: int) -> list[KnownHostKey]:
    """Every key (including revoked ones) recorded for ``host``/``port``, in file order.

    A missing file counts as empty. Raises ``HostKeyRejected`` if the file exists but
    cannot be read. Malformed lines are skipped, as OpenSSH does.
    """
    name = known_hosts_name(host, port)
    try:
        with open(known_hosts_file, encoding="utf-8", errors="replace") as handle:
            lines = handle.readlines()
    except FileNotFoundError:
        return []
    except OSError as exc:
        raise HostKeyRejected("cannot read the known_hosts file, so no host key is trusted",
                              known_hosts_file=os.fspath(known_hosts_file),
                              reason=exc.strerror or str(exc), host=host, port=port,
                              hint="make the file readable by the worker's user") from None
    keys = []
    for number, line in enumerate(lines, 1):
        fields = line.split()
        if not fields or fields[0].startswith("#"):
            continue
        marker = fields.pop(0) if fields[0].startswith("@") else None
        if marker not in (None, "@revoked") or len(fields) < 3:
            continue
        if not _names_match(fields[0], name):
            continue
        try:
            blob = base64.b64decode(fields[2], validate=True)
        except binascii.Error:
            continue
        keys.append(KnownHostKey(fields[1], blob, number, revoked=marker == "@revoked"))
    return keys


def verify_host_key(known_hosts_file: str | os.PathLike, host: str, port: int,
                    key_type: str, key_blob: bytes) -> KnownHostKey:
    """Accept the presented key only if known_hosts records it for this host and port.

    Returns the matching entry. Raises ``HostKeyRevoked`` if the key is marked
    ``@revoked``; ``UnknownHostKey`` if no key at all is recorded for the host;
    ``HostKeyChanged`` if other keys are recorded (of this or another type) but not
    this one; ``HostKeyRejected`` if the file cannot be read. Fingerprints in the errors
    are OpenSSH SHA256 ones.
    """
    presented = fingerprint(key_blob)
    known = lookup_known_keys(known_hosts_file, host, port)
    path = os.fspath(known_hosts_file)
    if any(k.revoked and k.blob == key_blob for k in known):
        raise HostKeyRevoked(host, port, presented, known_hosts_file=path)
    valid = [k for k in known if not k.revoked]
    for entry in valid:
        if entry.key_type == key_type and entry.blob == key_blob:
            return entry
    if not valid:
        raise UnknownHostKey(host, port, key_type, presented, known_hosts_file=path)
    same_type = [k for k in valid if k.key_type == key_type] or valid
    expected = ", ".join(k.fingerprint for k in same_type)
    raise HostKeyChanged(host, port, expected, presented, known_hosts_file=path,
                         presented_key_type=key_type,
                         expected_key_types=sorted({k.key_type for k in same_type}))


def preferred_key_types(known_hosts_file: str | os.PathLike, host: str,
                        port: int) -> list[str]:
    """Host key algorithms to ask the server for first: those already recorded for it."""
    ordered: list[str] = []
    for entry in lookup_known_keys(known_hosts_file, host, port):
        if entry.revoked:
            continue
        names = (["rsa-sha2-512", "rsa-sha2-256", "ssh-rsa"] if entry.key_type == "ssh-rsa"
                 else [entry.key_type])
        ordered += [n for n in names if n not in ordered]
    return ordered
