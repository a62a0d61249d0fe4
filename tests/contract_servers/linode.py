"""Linode API v4 contract server (the subset drfleet uses).

Written from the Linode API v4 reference, https://techdocs.akamai.com/linode-api/reference/
(OpenAPI source github.com/linode/linode-api-docs ``openapi.yaml``): "Errors"
(``{"errors": [{"reason", "field"}]}``; 401 reason ``Invalid Token``), "Rate limits"
(``X-RateLimit-Limit/-Remaining/-Reset``; 429 with ``Retry-After``), "Pagination"
(``page``/``page_size``; answers ``{"data", "page", "pages", "results"}``), "Filtering and
sorting" (``X-Filter`` JSON header, ``+order_by``/``+order``), "Linode Instances"
(``GET/POST /linode/instances``, ``GET/DELETE /linode/instances/{linodeId}``; create answers
200 with the Linode in status ``provisioning``, needs ``root_pass`` when ``image`` is given,
takes ``authorized_keys`` texts; delete answers 200 ``{}``), "Events"
(``GET /account/events``, ``GET /account/events/{eventId}``; status
scheduled|started|finished|failed|notification) and "SSH Keys" (``/profile/sshkeys``).

Deviation for testing: pages are ``page_size_cap`` long (the real minimum is 25) so a
handful of Linodes spans several pages.
"""

from __future__ import annotations

import json
import time
from typing import Any

from tests.contract_servers.base import ContractServer, Job, Reply, Request

EVENT_STATUS = {"running": "started", "success": "finished", "error": "failed"}


def _dotted(item: Any, key: str) -> Any:
    for part in key.split("."):
        item = item.get(part) if isinstance(item, dict) else None
    return item


def filter_matches(filters: dict[str, Any], item: dict[str, Any]) -> bool:
    """The equality subset of X-Filter: each non-``+`` key equals (for a list: contains)."""
    for key, wanted in filters.items():
        if key.startswith("+"):
            continue
        have = _dotted(item, key)
        if isinstance(have, list) and wanted not in have:
            return False
        if not isinstance(have, list) and have != wanted:
            return False
    return True


class LinodeContract(ContractServer):
    provider = "linode"
    api_prefix = "/v4"
    now = staticmethod(time.time)

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.received_root_passwords: list[str] = []

    def register_routes(self) -> None:
        self.route("GET", r"/linode/instances", self.list_linodes)
        self.route("POST", r"/linode/instances", self.create_linode)
        self.route("GET", r"/linode/instances/(?P<id>\d+)", self.get_linode)
        self.route("DELETE", r"/linode/instances/(?P<id>\d+)", self.delete_linode)
        self.route("GET", r"/account/events", self.list_events)
        self.route("GET", r"/account/events/(?P<id>\d+)", self.get_event)
        self.route("GET", r"/profile/sshkeys", self.list_ssh_keys)
        self.route("POST", r"/profile/sshkeys", self.create_ssh_key)
        self.route("GET", r"/profile/sshkeys/(?P<id>\d+)", self.get_ssh_key)

    # ------------------------------------------------------------------ provider shapes

    def error_reply(self, status: int, message: str, code: str | None = None) -> Reply:
        error: dict[str, Any] = {"reason": message}
        if code:
            error["field"] = code
        return Reply(status, {"errors": [error]})

    def unauthorized(self) -> Reply:
        return self.error_reply(401, "Invalid Token")

    def rate_limited_body(self) -> Any:
        return {"errors": [{"reason": "Too many requests"}]}

    def standard_headers(self, request_id: str) -> dict[str, str]:
        remaining = max(0, 800 - len(self.requests))
        return {"X-RateLimit-Limit": "800", "X-RateLimit-Remaining": str(remaining),
                "X-RateLimit-Reset": str(int(self.now()) + 60)}

    def paged(self, request: Request, items: list[dict[str, Any]]) -> Reply:
        raw = request.headers.get("x-filter")
        filters = json.loads(raw) if raw else {}
        items = [i for i in items if filter_matches(filters, i)]
        if filters.get("+order") == "desc":
            items = list(reversed(items))
        size = self.page_size(request.arg("page_size"), 100)
        page = max(1, int(request.arg("page", "1")))
        pages = max(1, -(-len(items) // size))
        if page > pages:
            return self.error_reply(400, "Invalid page number", "page")
        return Reply(200, {"data": items[(page - 1) * size: page * size], "page": page,
                           "pages": pages, "results": len(items)})

    def linode_json(self, linode_id: int, label: str, region: str, linode_type: str,
                    image: str | None, tags: list[str], status: str) -> dict[str, Any]:
        octet = linode_id % 250 + 1
        return {"id": linode_id, "label": label, "status": status, "region": region,
                "type": linode_type, "image": image, "group": "", "tags": list(tags),
                "ipv4": [f"192.0.2.{octet}", f"192.168.133.{octet}"],
                "ipv6": f"2600:3c03::f03c:91ff:fe24:{octet:x}/128", "hypervisor": "kvm",
                "created": "2024-01-01T00:00:00", "updated": "2024-01-01T00:00:00",
                "specs": {"disk": 25600, "memory": 1024, "vcpus": 1, "transfer": 1000}}

    def event_json(self, job: Job) -> dict[str, Any]:
        linode = self.servers.get(job.resource_id)
        return {"id": job.id, "action": job.command, "created": "2024-01-01T00:00:00",
                "entity": {"id": int(job.resource_id), "type": "linode",
                           "label": linode["label"] if linode else None,
                           "url": f"/v4/linode/instances/{job.resource_id}"},
                "status": EVENT_STATUS[job.status],
                "percent_complete": 100 if job.status != "running" else 40,
                "message": (job.outcome.message or "Linode creation failed")
                if job.status == "error" else None,
                "seen": False, "read": False, "username": "drfleet", "time_remaining": None}

    def seed_servers(self, count: int, labels: dict[str, str] | None = None,
                     prefix: str = "seed") -> list[str]:
        tags = [f"{k}:{v}" if v else k for k, v in (labels or {}).items()]
        ids = []
        with self.lock:
            for _ in range(count):
                linode_id = self.new_id()
                self.servers[str(linode_id)] = self.linode_json(
                    linode_id, f"{prefix}-{linode_id}", "us-east", "g6-nanode-1",
                    "linode/ubuntu24.04", tags, "running")
                ids.append(str(linode_id))
        return ids

    # ------------------------------------------------------------------ handlers

    def list_linodes(self, request: Request) -> Reply:
        return self.paged(request, [self._public(s) for s in self.servers.values()])

    def create_linode(self, request: Request) -> Reply:
        body = request.body if isinstance(request.body, dict) else {}
        for key in ("region", "type"):
            if not body.get(key):
                return self.error_reply(400, f"{key} is required", key)
        if body.get("image") and not body.get("root_pass"):
            return self.error_reply(400, "root_pass is required", "root_pass")
        if any(s["label"] == body.get("label") for s in self.servers.values()):
            return self.error_reply(400, "Label must be unique among your linodes", "label")
        self.received_root_passwords.append(body.get("root_pass", ""))
        linode_id = self.new_id()
        linode = self.linode_json(linode_id, body.get("label") or f"linode{linode_id}",
                                  body["region"], body["type"], body.get("image"),
                                  body.get("tags") or [], "provisioning")
        linode["_authorized_keys"] = body.get("authorized_keys") or []
        self.servers[str(linode_id)] = linode

        def finished(job: Job) -> None:
            linode["status"] = "running" if job.status == "success" else "offline"

        job = self.new_job("linode_create", str(linode_id), on_finish=finished)
        linode["_job"] = job.id
        return Reply(200, self._public(linode))

    def get_linode(self, request: Request) -> Reply:
        linode = self.servers.get(request.params["id"])
        if linode is None:
            return self.error_reply(404, "Not found")
        if "_job" in linode:
            self.jobs[linode["_job"]].tick()
        return Reply(200, self._public(linode))

    def delete_linode(self, request: Request) -> Reply:
        if self.servers.pop(request.params["id"], None) is None:
            return self.error_reply(404, "Not found")
        return Reply(200, {})

    def list_events(self, request: Request) -> Reply:
        return self.paged(request, [self.event_json(j) for j in self.jobs.values()])

    def get_event(self, request: Request) -> Reply:
        job = self.jobs.get(int(request.params["id"]))
        if job is None:
            return self.error_reply(404, "Not found")
        job.tick()
        return Reply(200, self.event_json(job))

    def list_ssh_keys(self, request: Request) -> Reply:
        return self.paged(request, list(self.ssh_keys.values()))

    def create_ssh_key(self, request: Request) -> Reply:
        body = request.body if isinstance(request.body, dict) else {}
        if not body.get("ssh_key"):
            return self.error_reply(400, "ssh_key is required", "ssh_key")
        key_id = self.new_id()
        key = {"id": key_id, "label": body.get("label") or "", "ssh_key": body["ssh_key"],
               "created": "2024-01-01T00:00:00"}
        self.ssh_keys[str(key_id)] = key
        return Reply(200, key)

    def get_ssh_key(self, request: Request) -> Reply:
        key = self.ssh_keys.get(request.params["id"])
        return Reply(200, key) if key else self.error_reply(404, "Not found")

    @staticmethod
    def _public(linode: dict[str, Any]) -> dict[str, Any]:
        return {k: v for k, v in linode.items() if not k.startswith("_")}
