"""What every VPS provider client shares: the records, the errors, and the interface.

A client turns one provider's API into four records - ``Server``, ``Action``, ``ServerSpec``
and an SSH key id - and raises only the errors defined here. Statuses are normalised so
callers never branch on a provider: a server is ``starting``, ``running``, ``stopped``,
``deleting`` or ``unknown`` (the provider's own word is kept in ``provider_status``); an
action is ``running``, ``success`` or ``error``.

Errors never carry the API token: they name the environment variable that holds it.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping, Protocol, runtime_checkable

from drfleet.errors import DrfleetError
from drfleet.providers.http import (  # noqa: F401 - the errors every provider client raises
    ProviderAuthError,
    ProviderError,
    ProviderNotFound,
    ProviderRateLimited,
    ProviderUnavailable,
)

# Normalised server statuses.
STARTING = "starting"
RUNNING = "running"
STOPPED = "stopped"
DELETING = "deleting"
UNKNOWN = "unknown"

# Normalised action statuses.
ACTION_RUNNING = "running"
ACTION_SUCCESS = "success"
ACTION_ERROR = "error"


@dataclass(frozen=True)
class Server:
    """One virtual server as the provider last reported it."""

    provider: str
    id: str
    name: str
    status: str
    region: str | None
    size: str | None
    image: str | None
    ipv4: str | None
    ipv6: str | None
    labels: dict[str, str] = field(default_factory=dict)
    provider_status: str = ""

    @property
    def is_running(self) -> bool:
        return self.status == RUNNING


@dataclass(frozen=True)
class Action:
    """One piece of asynchronous work the provider is doing (create, delete, ...)."""

    provider: str
    id: str
    status: str
    command: str
    error_code: str | None = None
    error_message: str | None = None
    resource_id: str | None = None

    @property
    def finished(self) -> bool:
        return self.status in (ACTION_SUCCESS, ACTION_ERROR)


@dataclass(frozen=True)
class ServerSpec:
    """What to create. ``region``/``size``/``image`` left as None take the plan defaults."""

    name: str
    region: str | None = None
    size: str | None = None
    image: str | None = None
    ssh_key_ids: tuple[str, ...] = ()
    labels: Mapping[str, str] = field(default_factory=dict)
    user_data: str | None = None


# ---------------------------------------------------------------------------- errors


class CloudConfigError(DrfleetError):
    """Something in drfleet's own configuration or input is wrong; no request was sent."""

    hint = "fix the provider settings in the plan (or the arguments) and retry"


class ActionFailed(ProviderError):
    """An asynchronous action finished with an error status."""

    hint = "read the provider's error code; the server may need deleting before a retry"


class ActionTimedOut(ProviderError):
    """An action (or a server becoming running) did not finish before the deadline."""

    hint = "the work may still finish: check it in the provider console before retrying"

    def __init__(self, message: str, *, waited_seconds: float, **kwargs: Any) -> None:
        self.waited_seconds = waited_seconds
        super().__init__(message, waited_seconds=round(waited_seconds, 3), **kwargs)


# ---------------------------------------------------------------------------- interface

PollSchedule = Callable[[int], float]
"""Seconds to sleep before poll number ``n`` (0-based) of a wait."""


@runtime_checkable
class CloudClient(Protocol):
    """The interface every provider module implements."""

    provider: str

    def create_server(self, spec: ServerSpec) -> tuple[Server, Action | None]: ...

    def get_server(self, server_id: str) -> Server: ...

    def list_servers(self, label_selector: str | None = None) -> list[Server]: ...

    def delete_server(self, server_id: str) -> Action | None: ...

    def get_action(self, action_id: str) -> Action: ...

    def wait_for(self, action_or_server: Action | Server, *, deadline_seconds: float,
                 poll: PollSchedule | None = None) -> Action | Server: ...

    def wait_until_running(self, server_id: str, deadline_seconds: float, *,
                           poll: PollSchedule | None = None) -> Server: ...

    def upload_ssh_key(self, name: str, public_key: str) -> str: ...


# ---------------------------------------------------------------------------- helpers


def parse_label_selector(selector: str | None) -> dict[str, str | None]:
    """``"env=prod,role"`` -> ``{"env": "prod", "role": None}`` (None: key must exist).

    Raises CloudConfigError for forms other than ``key=value`` and ``key`` joined by commas.
    """
    terms: dict[str, str | None] = {}
    for raw in (selector or "").split(","):
        term = raw.strip()
        if not term:
            continue
        key, sep, value = term.partition("=")
        key, value = key.strip(), value.strip()
        if not key or "!" in key or (sep and not value):
            raise CloudConfigError("unsupported label selector term", term=term,
                                   hint="use key=value or key, joined by commas")
        terms[key] = value if sep else None
    return terms


def labels_match(labels: Mapping[str, str], terms: Mapping[str, str | None]) -> bool:
    return all(k in labels and (v is None or labels[k] == v) for k, v in terms.items())


def labels_to_tags(labels: Mapping[str, str]) -> list[str]:
    """Providers without key/value labels get tags ``key:value`` (``key`` when empty)."""
    return [f"{k}:{v}" if v else k for k, v in sorted(labels.items())]


def tags_to_labels(tags: list[str] | None) -> dict[str, str]:
    labels: dict[str, str] = {}
    for tag in tags or []:
        key, _, value = tag.partition(":")
        labels[key] = value
    return labels


def ssh_key_blob(public_key: str) -> tuple[str, bytes]:
    """Split an OpenSSH public key line into (type, decoded key blob).

    Raises CloudConfigError when the line is not ``<type> <base64> [comment]``.
    """
    parts = public_key.strip().split()
    try:
        if len(parts) < 2:
            raise ValueError("too few fields")
        blob = base64.b64decode(parts[1], validate=True)
    except (ValueError, binascii.Error):
        raise CloudConfigError(
            "not an OpenSSH public key line", key_start=public_key.strip()[:20],
            hint="pass the contents of the .pub file, e.g. 'ssh-ed25519 AAAA... me'") from None
    return parts[0], blob


def ssh_md5_fingerprint(public_key: str) -> str:
    """The colon-separated MD5 fingerprint Hetzner and DigitalOcean index keys by."""
    _, blob = ssh_key_blob(public_key)
    digest = hashlib.md5(blob).hexdigest()  # noqa: S324 - the providers' fingerprint format
    return ":".join(digest[i:i + 2] for i in range(0, len(digest), 2))


def same_ssh_key(a: str, b: str) -> bool:
    """True when two public key lines hold the same key (comments ignored)."""
    try:
        return ssh_key_blob(a) == ssh_key_blob(b)
    except CloudConfigError:
        return False
