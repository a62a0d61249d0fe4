"""Vultr client (https://api.vultr.com/v2).

Follows the Vultr API v2 reference (www.vultr.com/api): "Instances" (create answers 202 with
``instance``; ``status`` pending|active|suspended|resizing, ``power_status`` running|stopped,
``server_status`` none|locked|installingbooting|ok; delete answers 204; list filters by
``tag``), "SSH keys" (``/ssh-keys``), "Meta and pagination" (cursor: ``per_page``/``cursor``,
next cursor in ``meta.links.next``), errors ``{"error": "...", "status": N}`` and rate limiting
(429 past 30 requests/second).

Vultr has no action objects: create and delete return ``None`` for the action, and waiting
is on the instance (running = status active, power running, server_status ok). Labels are
stored as tags ``k:v``.

The plan's ``image`` names one of the three things an instance can be created from (the
"Create Instance" body takes exactly one of them): an operating system ``os_id`` (a number, as
``GET /os`` lists them: ``2284``, or ``os:2284``), a snapshot ``snapshot_id`` (``snapshot:<id>``,
or the snapshot's bare UUID), or a Marketplace application ``image_id`` (``app:<image_id>``,
e.g. ``app:docker``). Anything else is refused when the client is built.
"""

from __future__ import annotations

import base64
import re
from typing import Any, Mapping

from drfleet.providers.clouds.base import (
    RUNNING,
    STARTING,
    STOPPED,
    UNKNOWN,
    Action,
    CloudConfigError,
    Server,
    ServerSpec,
    labels_match,
    labels_to_tags,
    parse_label_selector,
    same_ssh_key,
    ssh_key_blob,
    tags_to_labels,
)
from drfleet.providers.clouds.client import BaseCloudClient
from drfleet.providers.http import ErrorDetail, collect_pages

PER_PAGE = 500  # the API's maximum
UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}", re.IGNORECASE)
IMAGE_FORMS = "an OS id (2284 or os:2284), snapshot:<id> (or the snapshot's UUID), or app:<image_id>"


def image_field(image: str) -> tuple[str, int | str]:
    """The "Create Instance" field and value for a plan's ``image``.

    ``2284``/``os:2284`` -> ``("os_id", 2284)``; ``snapshot:<id>`` or a bare UUID ->
    ``("snapshot_id", id)``; ``app:<image_id>`` -> ``("image_id", image_id)``.
    Raises CloudConfigError for anything else (e.g. ``ubuntu-24.04``, which Vultr would reject).
    """
    text = str(image).strip()
    kind, sep, rest = text.partition(":")
    if not sep:
        kind, rest = ("os", text) if text.isdigit() else ("snapshot", text) \
            if UUID.fullmatch(text) else ("", text)
    rest = rest.strip()
    if kind == "os" and rest.isdigit():
        return "os_id", int(rest)
    if kind == "snapshot" and rest:
        return "snapshot_id", rest
    if kind == "app" and rest:
        return "image_id", rest
    raise CloudConfigError(f"vultr: cannot tell what image {text!r} is", provider="vultr",
                           image=text, hint=f"give the image as {IMAGE_FORMS}")


def normalised_status(raw: Mapping[str, Any]) -> str:
    status, power = raw.get("status"), raw.get("power_status")
    if status == "pending" or status == "resizing":
        return STARTING
    if status == "suspended":
        return STOPPED
    if status != "active":
        return UNKNOWN
    if power == "stopped":
        return STOPPED
    return RUNNING if power == "running" and raw.get("server_status") == "ok" else STARTING


class VultrClient(BaseCloudClient):
    provider = "vultr"
    default_base_url = "https://api.vultr.com/v2"
    default_token_env = "VULTR_API_KEY"

    def __init__(self, **kwargs: Any) -> None:
        """Raises CloudConfigError when the default ``image`` is none of the forms above."""
        super().__init__(**kwargs)
        if self.defaults["image"]:
            image_field(self.defaults["image"])

    @staticmethod
    def parse_error(status: int, body: Any, headers: Mapping[str, str]) -> ErrorDetail:
        body = body if isinstance(body, dict) else {}
        # Vultr errors carry a message and the HTTP status, but no machine code.
        return ErrorDetail(code=None, message=body.get("error"),
                           request_id=headers.get("x-request-id"))

    # ------------------------------------------------------------------ instances

    def create_server(self, spec: ServerSpec) -> tuple[Server, Action | None]:
        """POST /instances. Vultr has no actions: wait on the returned Server.

        Raises CloudConfigError when the image is none of the forms ``image_field`` takes."""
        spec = self._complete_spec(spec)
        payload: dict[str, Any] = {
            "label": spec.name, "hostname": spec.name, "region": spec.region, "plan": spec.size,
            "sshkey_id": list(spec.ssh_key_ids), "tags": labels_to_tags(spec.labels),
            "enable_ipv6": True,
        }
        field, value = image_field(str(spec.image))
        payload[field] = value
        if spec.user_data:
            payload["user_data"] = base64.b64encode(spec.user_data.encode()).decode()
        return self._server(self.session.post("/instances", json=payload).body["instance"]), None

    def get_server(self, server_id: str) -> Server:
        return self._server(self.session.get(f"/instances/{server_id}").body["instance"])

    def list_servers(self, label_selector: str | None = None) -> list[Server]:
        """All instances (following the cursor), filtered by ``key=value,key``.

        The first ``key=value`` term is sent as ``tag``; every term is checked here.
        """
        terms = parse_label_selector(label_selector)
        tag = next((f"{k}:{v}" for k, v in terms.items() if v is not None), None)

        def page(cursor: str | None) -> tuple[list[Server], str | None]:
            body = self.session.get("/instances", params={"per_page": PER_PAGE,
                                                          "cursor": cursor, "tag": tag}).body
            return [self._server(i) for i in body.get("instances", [])], _next_cursor(body)

        return [s for s in collect_pages(page, provider=self.provider)
                if labels_match(s.labels, terms)]

    def delete_server(self, server_id: str) -> Action | None:
        self.session.delete(f"/instances/{server_id}")
        return None

    # ------------------------------------------------------------------ ssh keys

    def upload_ssh_key(self, name: str, public_key: str) -> str:
        """Return the id of the account key holding this key, uploading it if absent."""
        ssh_key_blob(public_key)  # validate before any request

        def page(cursor: str | None) -> tuple[list[dict], str | None]:
            body = self.session.get("/ssh-keys", params={"per_page": PER_PAGE,
                                                         "cursor": cursor}).body
            return body.get("ssh_keys", []), _next_cursor(body)

        for key in collect_pages(page, provider=self.provider):
            if same_ssh_key(key.get("ssh_key", ""), public_key):
                return str(key["id"])
        body = self.session.post("/ssh-keys", json={"name": name,
                                                    "ssh_key": public_key.strip()}).body
        return str(body["ssh_key"]["id"])

    # ------------------------------------------------------------------ mapping

    def _server(self, raw: dict[str, Any]) -> Server:
        ipv4 = raw.get("main_ip") or None
        return Server(
            provider=self.provider, id=str(raw["id"]), name=raw.get("label", ""),
            status=normalised_status(raw), region=raw.get("region"), size=raw.get("plan"),
            image=f"app:{raw['image_id']}" if raw.get("image_id") else
            (str(raw["os_id"]) if raw.get("os_id") else None),
            ipv4=None if ipv4 == "0.0.0.0" else ipv4, ipv6=raw.get("v6_main_ip") or None,
            labels=tags_to_labels(raw.get("tags")),
            provider_status="/".join(str(raw.get(k, "")) for k in
                                     ("status", "power_status", "server_status")))


def _next_cursor(body: Mapping[str, Any]) -> str | None:
    return (((body.get("meta") or {}).get("links") or {}).get("next")) or None
