"""Vultr API v2 contract server (the subset drfleet uses).

Written from the Vultr API v2 reference, https://www.vultr.com/api/ : "Authentication"
(``Authorization: Bearer``), errors ``{"error": "...", "status": N}``, "Rate limit" (429 past
30 requests per second), "Meta and pagination" (cursor pagination: ``per_page``/``cursor``;
answers carry ``meta.total`` and ``meta.links.{next,prev}`` cursors, empty when none),
"Instances" (``GET/POST /instances`` with ``tag`` filter, ``GET/DELETE /instances/{id}``;
create answers 202 with ``instance`` in status ``pending``, ``main_ip`` ``0.0.0.0``; an
instance is ready when ``status`` active, ``power_status`` running, ``server_status`` ok;
delete answers 204) and "SSH Keys" (``GET/POST /ssh-keys``).

Vultr has no action objects: a created instance becomes ready after ``polls`` reads of it
(``next_create_outcome("never")`` keeps it installing for ever).
"""

from __future__ import annotations

import base64
import uuid
from typing import Any

from tests.contract_servers.base import ContractServer, Job, Reply, Request


class VultrContract(ContractServer):
    provider = "vultr"
    api_prefix = "/v2"

    def register_routes(self) -> None:
        self.route("GET", r"/instances", self.list_instances)
        self.route("POST", r"/instances", self.create_instance)
        self.route("GET", r"/instances/(?P<id>[0-9a-f-]+)", self.get_instance)
        self.route("DELETE", r"/instances/(?P<id>[0-9a-f-]+)", self.delete_instance)
        self.route("GET", r"/ssh-keys", self.list_ssh_keys)
        self.route("POST", r"/ssh-keys", self.create_ssh_key)

    # ------------------------------------------------------------------ provider shapes

    def error_reply(self, status: int, message: str, code: str | None = None) -> Reply:
        return Reply(status, {"error": message, "status": status})

    def unauthorized(self) -> Reply:
        return self.error_reply(401, "Invalid API token.")

    def paged(self, request: Request, key: str, items: list[dict[str, Any]]) -> Reply:
        size = self.page_size(request.arg("per_page"), 100)
        cursor = request.arg("cursor")
        try:
            start = int(base64.b64decode(cursor).decode().split("__")[1]) if cursor else 0
        except (ValueError, IndexError):
            return self.error_reply(400, "Invalid cursor.")

        def encode(offset: int) -> str:
            return base64.b64encode(f"next__{offset}".encode()).decode()

        end = start + size
        links = {"next": encode(end) if end < len(items) else "",
                 "prev": encode(max(0, start - size)) if start > 0 else ""}
        return Reply(200, {key: items[start:end], "meta": {"total": len(items), "links": links}})

    def instance_json(self, label: str, region: str, plan: str, os_id: int | None,
                      image_id: str, tags: list[str], ready: bool) -> dict[str, Any]:
        instance_id = str(uuid.uuid4())
        return {"id": instance_id, "os": "Ubuntu 24.04 LTS x64", "ram": 1024, "disk": 25,
                "main_ip": "0.0.0.0", "vcpu_count": 1, "region": region, "plan": plan,
                "date_created": "2024-01-01T00:00:00+00:00", "status": "pending",
                "allowed_bandwidth": 1000, "netmask_v4": "", "gateway_v4": "0.0.0.0",
                "power_status": "running", "server_status": "none", "v6_network": "",
                "v6_main_ip": "", "v6_network_size": 0, "label": label, "internal_ip": "",
                "kvm": "", "hostname": label, "tag": "", "tags": list(tags), "os_id": os_id or 0,
                "app_id": 0, "image_id": image_id, "firewall_group_id": "", "features": [],
                **(self.ready_fields(self.new_id()) if ready else {})}

    @staticmethod
    def ready_fields(n: int) -> dict[str, Any]:
        octet = n % 250 + 1
        return {"status": "active", "server_status": "ok", "power_status": "running",
                "main_ip": f"203.0.113.{octet}", "v6_main_ip": f"2001:19f0:5:{octet:x}::1",
                "v6_network": "2001:19f0:5::", "v6_network_size": 64}

    def seed_servers(self, count: int, labels: dict[str, str] | None = None,
                     prefix: str = "seed") -> list[str]:
        tags = [f"{k}:{v}" if v else k for k, v in (labels or {}).items()]
        ids = []
        with self.lock:
            for n in range(count):
                instance = self.instance_json(f"{prefix}-{n}", "ewr", "vc2-1c-1gb", 2284, "",
                                              tags, ready=True)
                self.servers[instance["id"]] = instance
                ids.append(instance["id"])
        return ids

    # ------------------------------------------------------------------ handlers

    def list_instances(self, request: Request) -> Reply:
        tag = request.arg("tag")
        items = [self._public(i) for i in self.servers.values() if not tag or tag in i["tags"]]
        return self.paged(request, "instances", items)

    def create_instance(self, request: Request) -> Reply:
        body = request.body if isinstance(request.body, dict) else {}
        for key in ("region", "plan"):
            if not body.get(key):
                return self.error_reply(400, f"Invalid {key}.")
        if not any(body.get(k) for k in ("os_id", "iso_id", "snapshot_id", "app_id", "image_id")):
            return self.error_reply(400, "Invalid os_id, iso_id, snapshot_id, app_id or image_id.")
        instance = self.instance_json(body.get("label", ""), body["region"], body["plan"],
                                      body.get("os_id"), body.get("image_id") or "",
                                      body.get("tags") or [], ready=False)
        instance["_sshkey_id"] = body.get("sshkey_id") or []
        self.servers[instance["id"]] = instance

        def finished(job: Job) -> None:
            if job.status == "success":
                instance.update(self.ready_fields(job.id))

        job = self.new_job("create", instance["id"], on_finish=finished)
        instance["_job"] = job.id
        return Reply(202, {"instance": self._public(instance)})

    def get_instance(self, request: Request) -> Reply:
        instance = self.servers.get(request.params["id"])
        if instance is None:
            return self.error_reply(404, "Invalid instance-id.")
        if "_job" in instance:
            job = self.jobs[instance["_job"]]
            job.tick()
            if job.status == "running" and instance["status"] == "pending":
                instance.update(status="active", server_status="installingbooting")
        return Reply(200, {"instance": self._public(instance)})

    def delete_instance(self, request: Request) -> Reply:
        if self.servers.pop(request.params["id"], None) is None:
            return self.error_reply(404, "Invalid instance-id.")
        return Reply(204)

    def list_ssh_keys(self, request: Request) -> Reply:
        return self.paged(request, "ssh_keys", list(self.ssh_keys.values()))

    def create_ssh_key(self, request: Request) -> Reply:
        body = request.body if isinstance(request.body, dict) else {}
        if not body.get("name") or not body.get("ssh_key"):
            return self.error_reply(400, "Invalid name or ssh_key.")
        key = {"id": str(uuid.uuid4()), "date_created": "2024-01-01T00:00:00+00:00",
               "name": body["name"], "ssh_key": body["ssh_key"]}
        self.ssh_keys[key["id"]] = key
        return Reply(201, {"ssh_key": key})

    @staticmethod
    def _public(instance: dict[str, Any]) -> dict[str, Any]:
        return {k: v for k, v in instance.items() if not k.startswith("_")}
