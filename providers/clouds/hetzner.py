"""Hetzner Cloud client (https://api.hetzner.cloud/v1).

Follows the Hetzner Cloud API reference (docs.hetzner.cloud): "Servers" (create returns
``server`` + ``action``; delete returns ``action``), "Actions" (``GET /actions/{id}``, status
running|success|error, ``error: {code, message}``), "SSH Keys" (filter by ``fingerprint``),
"Pagination" (``page``/``per_page``, ``meta.pagination.next_page``), "Label Selector", and
"Errors" (``{"error": {"code", "message", "details"}}``; the ``X-Correlation-Id`` response
header identifies the request; ``conflict`` (409) "the resource has changed during the
request, please retry" is retried, ``uniqueness_error`` (409) is not) and "Rate Limiting": a
bucket of ``RateLimit-Limit`` requests refilled at one request per second,
``RateLimit-Remaining`` left, ``RateLimit-Reset`` the epoch second it is full again. A 429
without ``Retry-After`` waits for one request's refill, not for the whole bucket.
"""

from __future__ import annotations

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
    parse_label_selector,
    ssh_md5_fingerprint,
)
from drfleet.providers.clouds.client import BaseCloudClient
from drfleet.providers.http import ErrorDetail, collect_pages

SERVER_STATUS = {"running": RUNNING, "initializing": STARTING, "starting": STARTING,
                 "rebuilding": STARTING, "migrating": STARTING, "off": STOPPED,
                 "stopping": STOPPED, "deleting": DELETING}
ACTION_STATUS = {"running": ACTION_RUNNING, "success": ACTION_SUCCESS, "error": ACTION_ERROR}
PER_PAGE = 50  # the API's maximum
REFILL_SECONDS_PER_REQUEST = 1.0  # "Rate Limiting": one request per second


def one_request_refill(headers: Mapping[str, str], now: float) -> float:
    """Seconds until the bucket holds one more request: the time to full
    (``RateLimit-Reset`` - now) over the requests missing (limit - remaining); the documented
    1 s when the headers do not say."""
    try:
        limit, remaining = int(headers["ratelimit-limit"]), int(headers["ratelimit-remaining"])
        to_full = float(headers["ratelimit-reset"]) - now
    except (KeyError, ValueError):
        return REFILL_SECONDS_PER_REQUEST
    if limit <= remaining or to_full <= 0:
        return REFILL_SECONDS_PER_REQUEST
    return max(0.0, to_full / (limit - remaining))


class HetznerClient(BaseCloudClient):
    provider = "hetzner"
    default_base_url = "https://api.hetzner.cloud/v1"
    default_token_env = "HCLOUD_TOKEN"
    rate_limit_wait = staticmethod(one_request_refill)
    retry_codes = frozenset({(409, "conflict")})

    @staticmethod
    def parse_error(status: int, body: Any, headers: Mapping[str, str]) -> ErrorDetail:
        error = body.get("error") if isinstance(body, dict) else None
        error = error if isinstance(error, dict) else {}
        return ErrorDetail(code=error.get("code"), message=error.get("message"),
                           request_id=headers.get("x-correlation-id"))

    # ------------------------------------------------------------------ servers

    def create_server(self, spec: ServerSpec) -> tuple[Server, Action | None]:
        """POST /servers. Raises ProviderError subclasses (e.g. 409 uniqueness_error)."""
        spec = self._complete_spec(spec)
        payload: dict[str, Any] = {
            "name": spec.name, "server_type": spec.size, "image": spec.image,
            "location": spec.region, "labels": dict(spec.labels), "start_after_create": True,
            "ssh_keys": [int(k) if str(k).isdigit() else k for k in spec.ssh_key_ids],
        }
        if spec.user_data:
            payload["user_data"] = spec.user_data
        body = self.session.post("/servers", json=payload).body
        action = self._action(body["action"]) if body.get("action") else None
        return self._server(body["server"]), action

    def get_server(self, server_id: str) -> Server:
        return self._server(self.session.get(f"/servers/{server_id}").body["server"])

    def list_servers(self, label_selector: str | None = None) -> list[Server]:
        """All servers (every page), optionally filtered by a ``key=value,key`` selector."""
        terms = parse_label_selector(label_selector)

        def page(number: int | None) -> tuple[list[Server], int | None]:
            body = self.session.get("/servers", params={
                "page": number or 1, "per_page": PER_PAGE,
                "label_selector": label_selector or None}).body
            pagination = (body.get("meta") or {}).get("pagination") or {}
            return [self._server(s) for s in body.get("servers", [])], pagination.get("next_page")

        return [s for s in collect_pages(page, provider=self.provider)
                if labels_match(s.labels, terms)]

    def delete_server(self, server_id: str) -> Action | None:
        body = self.session.delete(f"/servers/{server_id}").body or {}
        return self._action(body["action"]) if body.get("action") else None

    def get_action(self, action_id: str) -> Action:
        return self._action(self.session.get(f"/actions/{action_id}",
                                             action_id=str(action_id)).body["action"])

    # ------------------------------------------------------------------ ssh keys

    def upload_ssh_key(self, name: str, public_key: str) -> str:
        """Return the id of the key with this fingerprint, uploading it if absent.

        A concurrent upload of the same key (409) is resolved by looking it up again.
        Raises ProviderError ``uniqueness_error`` (409) when ``name`` is taken by another key,
        CloudConfigError when ``public_key`` is not an OpenSSH public key line.
        """
        fingerprint = ssh_md5_fingerprint(public_key)
        existing = self._key_by_fingerprint(fingerprint)
        if existing:
            return existing
        try:
            created = self.session.post("/ssh_keys", json={"name": name,
                                                           "public_key": public_key.strip()})
        except ProviderError as exc:
            if exc.status == 409 and (existing := self._key_by_fingerprint(fingerprint)):
                return existing
            raise
        return str(created.body["ssh_key"]["id"])

    def _key_by_fingerprint(self, fingerprint: str) -> str | None:
        found = self.session.get("/ssh_keys", params={"fingerprint": fingerprint}).body
        keys = found.get("ssh_keys") or []
        return str(keys[0]["id"]) if keys else None

    # ------------------------------------------------------------------ mapping

    def _server(self, raw: dict[str, Any]) -> Server:
        net = raw.get("public_net") or {}
        datacenter = raw.get("datacenter") or {}
        location = raw.get("location") or datacenter.get("location") or {}
        return Server(
            provider=self.provider, id=str(raw["id"]), name=raw.get("name", ""),
            status=SERVER_STATUS.get(raw.get("status", ""), UNKNOWN),
            region=location.get("name"), size=(raw.get("server_type") or {}).get("name"),
            image=(raw.get("image") or {}).get("name"),
            ipv4=(net.get("ipv4") or {}).get("ip"), ipv6=(net.get("ipv6") or {}).get("ip"),
            labels=dict(raw.get("labels") or {}), provider_status=raw.get("status", ""))

    def _action(self, raw: dict[str, Any]) -> Action:
        error = raw.get("error") or {}
        resources = raw.get("resources") or []
        return Action(provider=self.provider, id=str(raw["id"]),
                      status=ACTION_STATUS.get(raw.get("status", ""), ACTION_RUNNING),
                      command=raw.get("command", ""), error_code=error.get("code"),
                      error_message=error.get("message"),
                      resource_id=str(resources[0]["id"]) if resources else None)

