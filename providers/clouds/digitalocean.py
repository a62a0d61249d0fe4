"""DigitalOcean client (https://api.digitalocean.com/v2).

Follows the DigitalOcean API v2 reference (docs.digitalocean.com/reference/api, source
github.com/digitalocean/openapi): "Droplets" (create answers 202 with ``droplet`` and
``links.actions[]``; delete answers 204; list filters by ``tag_name``), "Actions"
(``GET /v2/actions/{id}``, status in-progress|completed|errored), "SSH Keys"
(``/v2/account/keys``, addressable by id or fingerprint), "Links & Pagination"
(``links.pages.next``), "Rate Limit" (``ratelimit-limit/-remaining/-reset``), and errors
``{"id", "message", "request_id"}``.

DigitalOcean has tags, not labels: label ``k=v`` is stored as tag ``k:v``.
"""

from __future__ import annotations

from typing import Any, Mapping

from drfleet.providers.clouds.base import (
    ACTION_ERROR,
    ACTION_RUNNING,
    ACTION_SUCCESS,
    RUNNING,
    STARTING,
    STOPPED,
    UNKNOWN,
    Action,
    ProviderError,
    ProviderNotFound,
    Server,
    ServerSpec,
    labels_match,
    labels_to_tags,
    parse_label_selector,
    ssh_md5_fingerprint,
    tags_to_labels,
)
from drfleet.providers.clouds.client import BaseCloudClient
from drfleet.providers.http import ErrorDetail, collect_pages, wait_until_reset

SERVER_STATUS = {"new": STARTING, "active": RUNNING, "off": STOPPED, "archive": STOPPED}
ACTION_STATUS = {"in-progress": ACTION_RUNNING, "completed": ACTION_SUCCESS,
                 "errored": ACTION_ERROR}
PER_PAGE = 200  # the API's maximum


class DigitalOceanClient(BaseCloudClient):
    provider = "digitalocean"
    default_base_url = "https://api.digitalocean.com/v2"
    default_token_env = "DIGITALOCEAN_TOKEN"
    rate_limit_wait = staticmethod(wait_until_reset("ratelimit-reset"))

    @staticmethod
    def parse_error(status: int, body: Any, headers: Mapping[str, str]) -> ErrorDetail:
        body = body if isinstance(body, dict) else {}
        return ErrorDetail(code=body.get("id"), message=body.get("message"),
                           request_id=body.get("request_id") or headers.get("x-request-id"))

    # ------------------------------------------------------------------ droplets

    def create_server(self, spec: ServerSpec) -> tuple[Server, Action | None]:
        """POST /droplets; the returned Action is the droplet's ``create`` action."""
        spec = self._complete_spec(spec)
        payload: dict[str, Any] = {
            "name": spec.name, "region": spec.region, "size": spec.size,
            "image": int(spec.image) if str(spec.image).isdigit() else spec.image,
            "ssh_keys": [int(k) if str(k).isdigit() else k for k in spec.ssh_key_ids],
            "tags": labels_to_tags(spec.labels), "ipv6": True,
        }
        if spec.user_data:
            payload["user_data"] = spec.user_data
        body = self.session.post("/droplets", json=payload).body
        server = self._server(body["droplet"])
        links = (body.get("links") or {}).get("actions") or []
        create = next((a for a in links if a.get("rel") == "create"), links[0] if links else None)
        action = None
        if create:
            action = Action(provider=self.provider, id=str(create["id"]), status=ACTION_RUNNING,
                            command=create.get("rel", "create"), resource_id=server.id)
        return server, action

    def get_server(self, server_id: str) -> Server:
        return self._server(self.session.get(f"/droplets/{server_id}").body["droplet"])

    def list_servers(self, label_selector: str | None = None) -> list[Server]:
        """All droplets (following ``links.pages.next``), filtered by ``key=value,key``.

        The first ``key=value`` term is sent as ``tag_name``; every term is checked here.
        """
        terms = parse_label_selector(label_selector)
        tag = next((f"{k}:{v}" for k, v in terms.items() if v is not None), None)

        def page(next_url: str | None) -> tuple[list[Server], str | None]:
            if next_url:
                body = self.session.get(next_url).body
            else:
                body = self.session.get("/droplets", params={"page": 1, "per_page": PER_PAGE,
                                                             "tag_name": tag}).body
            pages = ((body.get("links") or {}).get("pages") or {})
            return [self._server(d) for d in body.get("droplets", [])], pages.get("next")

        return [s for s in collect_pages(page, provider=self.provider)
                if labels_match(s.labels, terms)]

    def delete_server(self, server_id: str) -> Action | None:
        """DELETE /droplets/{id}: 204 and no action to wait on."""
        self.session.delete(f"/droplets/{server_id}")
        return None

    def get_action(self, action_id: str) -> Action:
        raw = self.session.get(f"/actions/{action_id}", action_id=str(action_id)).body["action"]
        status = ACTION_STATUS.get(raw.get("status", ""), ACTION_RUNNING)
        failed = status == ACTION_ERROR
        # DigitalOcean actions carry no error detail: the status word is the only code.
        reason = (f"{raw.get('type', 'action')} errored on {raw.get('resource_type', 'resource')} "
                  f"{raw.get('resource_id')}")
        return Action(provider=self.provider, id=str(raw["id"]), status=status,
                      command=raw.get("type", ""), error_code=raw.get("status") if failed else None,
                      error_message=reason if failed else None,
                      resource_id=str(raw["resource_id"]) if raw.get("resource_id") else None)

    # ------------------------------------------------------------------ ssh keys

    def upload_ssh_key(self, name: str, public_key: str) -> str:
        """Return the id of the key with this fingerprint, uploading it if absent.

        A concurrent upload of the same key (422) is resolved by looking it up again.
        Raises CloudConfigError when ``public_key`` is not an OpenSSH public key line.
        """
        fingerprint = ssh_md5_fingerprint(public_key)
        existing = self._key_by_fingerprint(fingerprint)
        if existing:
            return existing
        try:
            body = self.session.post("/account/keys", json={"name": name,
                                                            "public_key": public_key.strip()}).body
        except ProviderError as exc:
            if exc.status == 422 and (existing := self._key_by_fingerprint(fingerprint)):
                return existing
            raise
        return str(body["ssh_key"]["id"])

    def _key_by_fingerprint(self, fingerprint: str) -> str | None:
        try:
            return str(self.session.get(f"/account/keys/{fingerprint}").body["ssh_key"]["id"])
        except ProviderNotFound:
            return None

    # ------------------------------------------------------------------ mapping

    def _server(self, raw: dict[str, Any]) -> Server:
        networks = raw.get("networks") or {}

        def public(family: str) -> str | None:
            return next((n.get("ip_address") for n in networks.get(family) or []
                         if n.get("type") == "public"), None)

        image = raw.get("image") or {}
        return Server(
            provider=self.provider, id=str(raw["id"]), name=raw.get("name", ""),
            status=SERVER_STATUS.get(raw.get("status", ""), UNKNOWN),
            region=(raw.get("region") or {}).get("slug"),
            size=raw.get("size_slug") or (raw.get("size") or {}).get("slug"),
            image=image.get("slug") or image.get("name"), ipv4=public("v4"), ipv6=public("v6"),
            labels=tags_to_labels(raw.get("tags")), provider_status=raw.get("status", ""))
