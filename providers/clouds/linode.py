"""Linode (Akamai) client (https://api.linode.com/v4).

Follows the Linode API v4 reference (techdocs.akamai.com/linode-api, source
github.com/linode/linode-api-docs openapi.yaml): "Linode Instances" (``/linode/instances``,
status provisioning|booting|running|offline|...; create answers 200 with the Linode),
"Events" (``/account/events``, status scheduled|started|finished|failed|notification, filtered
with the ``X-Filter`` header), "SSH Keys" (``/profile/sshkeys``), "Pagination" (``page``,
``page_size``; answers carry ``page``/``pages``/``results``), "Errors"
(``{"errors": [{"reason", "field"}]}``) and "Rate limits" (``X-RateLimit-*``, 429 with
``Retry-After``).

Linode has tags, not labels: label ``k=v`` is stored as tag ``k:v``. Creating from an image
requires a root password: a random one is generated, sent once, and never kept or logged;
access is by the SSH keys (whose texts are sent as ``authorized_keys``).

A server name becomes a Linode ``label`` that keeps the API's rules ("Linode Instances",
``label``): 3 to 64 characters of letters, digits, ``-``, ``_`` and ``.``, beginning with a
letter and ending with a letter or digit, no two separators in a row (``linode_label``).
"""

from __future__ import annotations

import base64
import ipaddress
import json
import logging
import re
import secrets
from typing import Any, Mapping

from drfleet.providers.clouds.base import (
    ACTION_ERROR,
    ACTION_RUNNING,
    ACTION_SUCCESS,
    DELETING,
    RUNNING,
    STARTING,
    STOPPED,
    UNKNOWN,
    Action,
    ProviderError,
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
from drfleet.providers.http import ErrorDetail, collect_pages, wait_until_reset

SERVER_STATUS = {"running": RUNNING, "provisioning": STARTING, "booting": STARTING,
                 "rebooting": STARTING, "rebuilding": STARTING, "migrating": STARTING,
                 "cloning": STARTING, "restoring": STARTING, "offline": STOPPED,
                 "stopped": STOPPED, "shutting_down": STOPPED, "deleting": DELETING}
EVENT_STATUS = {"scheduled": ACTION_RUNNING, "started": ACTION_RUNNING,
                "finished": ACTION_SUCCESS, "notification": ACTION_SUCCESS,
                "failed": ACTION_ERROR}
PAGE_SIZE = 500  # the API's maximum
log = logging.getLogger("drfleet.providers.clouds.linode")
LABEL_MIN, LABEL_MAX = 3, 64
LABEL_PREFIX = "vm-"  # where a name does not begin with a letter, or is too short
RFC1918 = tuple(ipaddress.ip_network(n) for n in ("10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16"))


def is_public_ipv4(address: str) -> bool:
    """Linode lists private (192.168.128.0/17) next to public addresses in ``ipv4``."""
    ip = ipaddress.ip_address(address)
    return not (any(ip in net for net in RFC1918) or ip.is_loopback or ip.is_link_local)


def linode_label(name: str) -> str:
    """``name`` as a valid Linode label: other characters become ``-``, a run of separators
    becomes its first one, separators are trimmed from both ends, ``vm-`` goes in front when
    it does not begin with a letter or is under 3 characters, and it is cut to 64."""
    label = re.sub(r"[^A-Za-z0-9_.-]", "-", name.strip())
    label = re.sub(r"([-_.])[-_.]+", r"\1", label).strip("-_.")
    if not label[:1].isalpha() or len(label) < LABEL_MIN:
        label = LABEL_PREFIX + label if label else LABEL_PREFIX + "server"
    return label[:LABEL_MAX].rstrip("-_.")


class LinodeClient(BaseCloudClient):
    provider = "linode"
    default_base_url = "https://api.linode.com/v4"
    default_token_env = "LINODE_TOKEN"
    rate_limit_wait = staticmethod(wait_until_reset("x-ratelimit-reset"))

    @staticmethod
    def parse_error(status: int, body: Any, headers: Mapping[str, str]) -> ErrorDetail:
        errors = body.get("errors") if isinstance(body, dict) else None
        errors = [e for e in errors or [] if isinstance(e, dict)]
        reasons = [f"{e.get('reason')} (field {e['field']})" if e.get("field") else
                   str(e.get("reason")) for e in errors]
        # Linode errors carry a reason and the offending field, but no machine code.
        return ErrorDetail(code=None, message="; ".join(reasons) or None,
                           request_id=headers.get("x-request-id"))

    # ------------------------------------------------------------------ instances

    def create_server(self, spec: ServerSpec) -> tuple[Server, Action | None]:
        """POST /linode/instances; the Action is the ``linode_create`` event, or None when the
        event cannot be found (wait on the Server then). Raises ProviderError subclasses."""
        spec = self._complete_spec(spec)
        payload: dict[str, Any] = {
            "label": linode_label(spec.name), "region": spec.region, "type": spec.size, "image": spec.image,
            "tags": labels_to_tags(spec.labels), "root_pass": secrets.token_urlsafe(32),
            "authorized_keys": [self._key_text(k) for k in spec.ssh_key_ids], "booted": True,
        }
        if spec.user_data:
            payload["metadata"] = {"user_data": base64.b64encode(spec.user_data.encode()).decode()}
        server = self._server(self.session.post("/linode/instances", json=payload).body)
        return server, self._create_event(server)

    def _create_event(self, server: Server) -> Action | None:
        """The server exists now: failing to find its event must not lose it (None instead)."""
        try:
            events = self.session.get("/account/events", params={"page_size": 25}, headers={
                "X-Filter": json.dumps({"entity.id": int(server.id), "entity.type": "linode",
                                        "action": "linode_create", "+order_by": "created",
                                        "+order": "desc"})}).body.get("data", [])
        except ProviderError as exc:
            log.warning("linode %s created, but its linode_create event could not be read "
                        "(%s); wait on the server instead", server.id, exc.message)
            return None
        return self._event(events[0]) if events else None

    def get_server(self, server_id: str) -> Server:
        return self._server(self.session.get(f"/linode/instances/{server_id}").body)

    def list_servers(self, label_selector: str | None = None) -> list[Server]:
        """All Linodes (every page), filtered by ``key=value,key`` (first pair via X-Filter)."""
        terms = parse_label_selector(label_selector)
        tag = next((f"{k}:{v}" for k, v in terms.items() if v is not None), None)
        headers = {"X-Filter": json.dumps({"tags": tag})} if tag else None

        def page(number: int | None) -> tuple[list[Server], int | None]:
            number = number or 1
            body = self.session.get("/linode/instances", headers=headers,
                                    params={"page": number, "page_size": PAGE_SIZE}).body
            more = number < int(body.get("pages") or 1)
            return [self._server(r) for r in body.get("data", [])], number + 1 if more else None

        return [s for s in collect_pages(page, provider=self.provider)
                if labels_match(s.labels, terms)]

    def delete_server(self, server_id: str) -> Action | None:
        """DELETE /linode/instances/{id}: answered 200 once removal is accepted; no action."""
        self.session.delete(f"/linode/instances/{server_id}")
        return None

    def get_action(self, action_id: str) -> Action:
        return self._event(self.session.get(f"/account/events/{action_id}",
                                            action_id=str(action_id)).body)

    # ------------------------------------------------------------------ ssh keys

    def upload_ssh_key(self, name: str, public_key: str) -> str:
        """Return the id of the profile key holding this key, uploading it if absent."""
        ssh_key_blob(public_key)  # validate before any request

        def page(number: int | None) -> tuple[list[dict], int | None]:
            number = number or 1
            body = self.session.get("/profile/sshkeys", params={"page": number,
                                                                "page_size": PAGE_SIZE}).body
            more = number < int(body.get("pages") or 1)
            return body.get("data", []), number + 1 if more else None

        for key in collect_pages(page, provider=self.provider):
            if same_ssh_key(key.get("ssh_key", ""), public_key):
                return str(key["id"])
        body = self.session.post("/profile/sshkeys", json={"label": name,
                                                           "ssh_key": public_key.strip()}).body
        return str(body["id"])

    def _key_text(self, key_id: str) -> str:
        """Linode create takes key texts, not ids: resolve a profile key id (or pass a text)."""
        if " " in str(key_id):
            return str(key_id).strip()
        return self.session.get(f"/profile/sshkeys/{key_id}").body["ssh_key"]

    # ------------------------------------------------------------------ mapping

    def _server(self, raw: dict[str, Any]) -> Server:
        public_v4 = next((ip for ip in raw.get("ipv4") or [] if is_public_ipv4(ip)), None)
        return Server(
            provider=self.provider, id=str(raw["id"]), name=raw.get("label", ""),
            status=SERVER_STATUS.get(raw.get("status", ""), UNKNOWN), region=raw.get("region"),
            size=raw.get("type"), image=raw.get("image"), ipv4=public_v4,
            ipv6=raw.get("ipv6"), labels=tags_to_labels(raw.get("tags")),
            provider_status=raw.get("status", ""))

    def _event(self, raw: dict[str, Any]) -> Action:
        status = EVENT_STATUS.get(raw.get("status", ""), ACTION_RUNNING)
        entity = raw.get("entity") or {}
        return Action(provider=self.provider, id=str(raw["id"]), status=status,
                      command=raw.get("action", ""),
                      error_code=raw.get("status") if status == ACTION_ERROR else None,
                      error_message=raw.get("message") if status == ACTION_ERROR else None,
                      resource_id=str(entity["id"]) if entity.get("id") is not None else None)
