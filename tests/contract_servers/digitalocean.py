"""DigitalOcean API v2 contract server (the subset drfleet uses).

Written from the DigitalOcean API reference, https://docs.digitalocean.com/reference/api/
(OpenAPI source github.com/digitalocean/openapi, ``specification/``): "Authentication"
(bearer token; 401 ``{"id": "Unauthorized", "message": "Unable to authenticate you"}``),
errors ``{"id", "message", "request_id"}`` (shared/responses), "Rate Limit"
(``ratelimit-limit/-remaining/-reset``, 429 ``too_many_requests``), "Links & Pagination"
(``page``/``per_page``; ``links.pages.{first,prev,next,last}`` are absolute URLs,
``meta.total``), "Droplets" (``GET/POST /v2/droplets`` with ``tag_name`` filter, create
answers 202 with ``droplet`` and ``links.actions[{id, rel, href}]``; ``GET /v2/droplets/{id}``;
``DELETE`` answers 204), "Actions" (``GET /v2/actions/{id}``, status
in-progress|completed|errored) and "SSH Keys" (``/v2/account/keys``, ``/{id or fingerprint}``;
a duplicate key is 422 ``unprocessable_entity``).
"""

from __future__ import annotations

import base64
import hashlib
import time
from typing import Any
from urllib.parse import urlencode

from tests.contract_servers.base import ContractServer, Job, Reply, Request

ACTION_STATUS = {"running": "in-progress", "success": "completed", "error": "errored"}


def md5_fingerprint(public_key: str) -> str:
    digest = hashlib.md5(base64.b64decode(public_key.split()[1])).hexdigest()  # noqa: S324
    return ":".join(digest[i:i + 2] for i in range(0, 32, 2))


class DigitalOceanContract(ContractServer):
    provider = "digitalocean"
    api_prefix = "/v2"
    now = staticmethod(time.time)
    link_base: str | None = None  # where links.pages point (default: this server's url)

    def register_routes(self) -> None:
        self.route("GET", r"/droplets", self.list_droplets)
        self.route("POST", r"/droplets", self.create_droplet)
        self.route("GET", r"/droplets/(?P<id>\d+)", self.get_droplet)
        self.route("DELETE", r"/droplets/(?P<id>\d+)", self.delete_droplet)
        self.route("GET", r"/actions/(?P<id>\d+)", self.get_action)
        self.route("GET", r"/account/keys/(?P<key>[^/]+)", self.get_ssh_key)
        self.route("POST", r"/account/keys", self.create_ssh_key)

    # ------------------------------------------------------------------ provider shapes

    def error_reply(self, status: int, message: str, code: str | None = None) -> Reply:
        code = code or {404: "not_found", 422: "unprocessable_entity", 429: "too_many_requests",
                        500: "server_error"}.get(status, "service_unavailable")
        return Reply(status, {"id": code, "message": message, "request_id": ""})

    def unauthorized(self) -> Reply:
        return self.error_reply(401, "Unable to authenticate you", "Unauthorized")

    def rate_limited_body(self) -> Any:
        return {"id": "too_many_requests", "message": "API Rate limit exceeded.",
                "request_id": ""}

    def standard_headers(self, request_id: str) -> dict[str, str]:
        remaining = max(0, 5000 - len(self.requests))
        return {"x-request-id": request_id, "ratelimit-limit": "5000",
                "ratelimit-remaining": str(remaining),
                "ratelimit-reset": str(int(self.now()) + 60)}

    def dispatch(self, method: str, raw_path: str, headers: dict[str, str],
                 raw_body: bytes) -> Reply:
        reply = super().dispatch(method, raw_path, headers, raw_body)
        # Error bodies echo the request id that the header carries.
        if isinstance(reply.body, dict) and "request_id" in reply.body:
            reply.body = {**reply.body, "request_id": reply.headers.get("x-request-id")}
        return reply

    def droplet_json(self, droplet_id: int, name: str, region: str, size: str, image: str,
                     tags: list[str], status: str) -> dict[str, Any]:
        return {
            "id": droplet_id, "name": name, "memory": 1024, "vcpus": 1, "disk": 25,
            "locked": False, "status": status, "kernel": None,
            "created_at": "2024-01-01T00:00:00Z", "features": ["ipv6"], "backup_ids": [],
            "snapshot_ids": [], "volume_ids": [],
            "image": {"id": 63663980, "name": image, "distribution": "Ubuntu", "slug": image,
                      "public": True},
            "size": {"slug": size, "memory": 1024, "vcpus": 1, "disk": 25},
            "size_slug": size, "networks": {"v4": [], "v6": []},
            "region": {"name": region.upper(), "slug": region, "available": True},
            "tags": list(tags), "vpc_uuid": "760e09ef-dc84-11e8-981e-3cfdfeaae000",
        }

    @staticmethod
    def give_addresses(droplet: dict[str, Any]) -> None:
        octet = droplet["id"] % 250 + 1
        droplet["networks"] = {
            "v4": [{"ip_address": f"10.128.0.{octet}", "netmask": "255.255.0.0",
                    "gateway": "10.128.0.1", "type": "private"},
                   {"ip_address": f"198.51.100.{octet}", "netmask": "255.255.255.0",
                    "gateway": "198.51.100.1", "type": "public"}],
            "v6": [{"ip_address": f"2604:a880:0:1010::{octet:x}", "netmask": 64,
                    "gateway": "2604:a880:0:1010::1", "type": "public"}]}

    def seed_servers(self, count: int, labels: dict[str, str] | None = None,
                     prefix: str = "seed") -> list[str]:
        tags = [f"{k}:{v}" if v else k for k, v in (labels or {}).items()]
        ids = []
        with self.lock:
            for _ in range(count):
                droplet_id = self.new_id()
                droplet = self.droplet_json(droplet_id, f"{prefix}-{droplet_id}", "nyc3",
                                            "s-1vcpu-1gb", "ubuntu-24-04-x64", tags, "active")
                self.give_addresses(droplet)
                self.servers[str(droplet_id)] = droplet
                ids.append(str(droplet_id))
        return ids

    def action_json(self, job: Job) -> dict[str, Any]:
        return {"id": job.id, "status": ACTION_STATUS[job.status], "type": job.command,
                "started_at": "2024-01-01T00:00:00Z",
                "completed_at": None if job.status == "running" else "2024-01-01T00:01:00Z",
                "resource_id": int(job.resource_id), "resource_type": "droplet",
                "region_slug": "nyc3"}

    # ------------------------------------------------------------------ handlers

    def list_droplets(self, request: Request) -> Reply:
        tag = request.arg("tag_name")
        items = [self._public(d) for d in self.servers.values() if not tag or tag in d["tags"]]
        per_page = self.page_size(request.arg("per_page"), 20)
        page = max(1, int(request.arg("page", "1")))
        last = max(1, -(-len(items) // per_page))

        def link(number: int) -> str:
            query = {"page": number, "per_page": per_page, **({"tag_name": tag} if tag else {})}
            return f"{self.link_base or self.url}/droplets?{urlencode(query)}"

        pages: dict[str, str] = {}
        if page > 1:
            pages.update(first=link(1), prev=link(page - 1))
        if page < last:
            pages.update(next=link(page + 1), last=link(last))
        chunk = items[(page - 1) * per_page: page * per_page]
        return Reply(200, {"droplets": chunk, "links": {"pages": pages} if pages else {},
                           "meta": {"total": len(items)}})

    def create_droplet(self, request: Request) -> Reply:
        body = request.body if isinstance(request.body, dict) else {}
        missing = [k for k in ("name", "region", "size", "image") if not body.get(k)]
        if missing:
            return self.error_reply(422, f"You must specify {', '.join(missing)}.")
        droplet_id = self.new_id()
        droplet = self.droplet_json(droplet_id, body["name"], body["region"], body["size"],
                                    str(body["image"]), body.get("tags") or [], "new")
        self.servers[str(droplet_id)] = droplet

        def finished(job: Job) -> None:
            if job.status == "success":
                droplet["status"] = "active"
                self.give_addresses(droplet)

        job = self.new_job("create", str(droplet_id), on_finish=finished)
        droplet["_job"] = job.id
        return Reply(202, {"droplet": self._public(droplet), "links": {"actions": [
            {"id": job.id, "rel": "create", "href": f"{self.url}/actions/{job.id}"}]}})

    def get_droplet(self, request: Request) -> Reply:
        droplet = self.servers.get(request.params["id"])
        if droplet is None:
            return self.error_reply(404, "The resource you were accessing could not be found.")
        if "_job" in droplet:
            self.jobs[droplet["_job"]].tick()
        return Reply(200, {"droplet": self._public(droplet)})

    def delete_droplet(self, request: Request) -> Reply:
        if self.servers.pop(request.params["id"], None) is None:
            return self.error_reply(404, "The resource you were accessing could not be found.")
        return Reply(204)

    def get_action(self, request: Request) -> Reply:
        job = self.jobs.get(int(request.params["id"]))
        if job is None:
            return self.error_reply(404, "The resource you were accessing could not be found.")
        job.tick()
        return Reply(200, {"action": self.action_json(job)})

    def get_ssh_key(self, request: Request) -> Reply:
        wanted = request.params["key"]
        for key in self.ssh_keys.values():
            if wanted in (str(key["id"]), key["fingerprint"]):
                return Reply(200, {"ssh_key": key})
        return self.error_reply(404, "The resource you were accessing could not be found.")

    def create_ssh_key(self, request: Request) -> Reply:
        body = request.body if isinstance(request.body, dict) else {}
        if not body.get("name") or not body.get("public_key"):
            return self.error_reply(422, "Name and public key are required.")
        fingerprint = md5_fingerprint(body["public_key"])
        if any(k["fingerprint"] == fingerprint for k in self.ssh_keys.values()):
            return self.error_reply(422, "SSH Key is already in use on your account")
        key_id = self.new_id()
        key = {"id": key_id, "fingerprint": fingerprint, "public_key": body["public_key"],
               "name": body["name"]}
        self.ssh_keys[str(key_id)] = key
        return Reply(201, {"ssh_key": key})

    @staticmethod
    def _public(droplet: dict[str, Any]) -> dict[str, Any]:
        return {k: v for k, v in droplet.items() if not k.startswith("_")}
