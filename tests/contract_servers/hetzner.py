"""Hetzner Cloud API contract server (the subset drfleet uses).

Written from the Hetzner Cloud API reference, https://docs.hetzner.cloud/ :
"Authentication" (``Authorization: Bearer``; 401 ``unauthorized``), "Errors"
(``{"error": {"code", "message", "details"}}``, codes ``not_found``, ``uniqueness_error``,
``invalid_input``, ``rate_limit_exceeded``, ``unavailable``), "Rate Limiting"
(``RateLimit-Limit/-Remaining/-Reset``), "Pagination" (``page``/``per_page``,
``meta.pagination``), "Label Selector", "Servers" (``GET/POST /servers``,
``GET/DELETE /servers/{id}``; create answers 201 with ``server``, ``action``,
``next_actions``, ``root_password``), "Actions" (``GET /actions/{id}``, status
running|success|error with ``error: {code, message}``) and "SSH Keys" (``GET/POST /ssh_keys``,
filter ``fingerprint``/``name``). Each response carries ``X-Correlation-Id``.
"""

from __future__ import annotations

import base64
import hashlib
import time
from typing import Any

from tests.contract_servers.base import ContractServer, Job, Outcome, Reply, Request


def md5_fingerprint(public_key: str) -> str:
    digest = hashlib.md5(base64.b64decode(public_key.split()[1])).hexdigest()  # noqa: S324
    return ":".join(digest[i:i + 2] for i in range(0, 32, 2))


def selector_matches(selector: str, labels: dict[str, str]) -> bool:
    """Hetzner label selector: ``k=v``, ``k==v``, ``k!=v``, ``k``, ``!k``, joined by commas."""
    for term in filter(None, (t.strip() for t in selector.split(","))):
        if "!=" in term:
            key, value = term.split("!=", 1)
            if labels.get(key.strip()) == value.strip():
                return False
        elif "=" in term:
            key, value = term.replace("==", "=").split("=", 1)
            if labels.get(key.strip()) != value.strip():
                return False
        elif term.startswith("!"):
            if term[1:].strip() in labels:
                return False
        elif term not in labels:
            return False
    return True


class HetznerContract(ContractServer):
    provider = "hetzner"
    api_prefix = "/v1"
    now = staticmethod(time.time)
    spent = 0  # requests taken from the bucket before this server's own (a busy project)

    def register_routes(self) -> None:
        self.route("GET", r"/servers", self.list_servers)
        self.route("POST", r"/servers", self.create_server)
        self.route("GET", r"/servers/(?P<id>\d+)", self.get_server)
        self.route("DELETE", r"/servers/(?P<id>\d+)", self.delete_server)
        self.route("GET", r"/actions/(?P<id>\d+)", self.get_action)
        self.route("GET", r"/ssh_keys", self.list_ssh_keys)
        self.route("POST", r"/ssh_keys", self.create_ssh_key)

    # ------------------------------------------------------------------ provider shapes

    def error_reply(self, status: int, message: str, code: str | None = None) -> Reply:
        code = code or {400: "invalid_input", 404: "not_found", 409: "uniqueness_error",
                        429: "rate_limit_exceeded", 503: "unavailable"}.get(status, "service_error")
        return Reply(status, {"error": {"code": code, "message": message, "details": {}}})

    def unauthorized(self) -> Reply:
        return self.error_reply(401, "unable to authenticate", "unauthorized")

    def standard_headers(self, request_id: str) -> dict[str, str]:
        remaining = max(0, 3600 - self.spent - len(self.requests))
        return {"X-Correlation-Id": request_id, "RateLimit-Limit": "3600",
                "RateLimit-Remaining": str(remaining),
                "RateLimit-Reset": str(int(self.now()) + (3600 - remaining))}

    def paged(self, request: Request, key: str, items: list[dict[str, Any]]) -> Reply:
        per_page = self.page_size(request.arg("per_page"), 25)
        page = max(1, int(request.arg("page", "1")))
        last = max(1, -(-len(items) // per_page))
        chunk = items[(page - 1) * per_page: page * per_page]
        return Reply(200, {key: chunk, "meta": {"pagination": {
            "page": page, "per_page": per_page, "previous_page": page - 1 if page > 1 else None,
            "next_page": page + 1 if page < last else None, "last_page": last,
            "total_entries": len(items)}}})

    def action_json(self, job: Job) -> dict[str, Any]:
        error = None
        if job.status == "error":
            error = {"code": job.outcome.code or "action_failed",
                     "message": job.outcome.message or "Action failed"}
        return {"id": job.id, "command": job.command, "status": job.status,
                "progress": 100 if job.status != "running" else 50,
                "started": "2024-01-01T00:00:00+00:00",
                "finished": None if job.status == "running" else "2024-01-01T00:01:00+00:00",
                "resources": [{"id": int(job.resource_id), "type": "server"}], "error": error}

    def seed_servers(self, count: int, labels: dict[str, str] | None = None,
                     prefix: str = "seed") -> list[str]:
        ids = []
        with self.lock:
            for _ in range(count):
                server_id = self.new_id()
                self.servers[str(server_id)] = self._server_json(
                    server_id, f"{prefix}-{server_id}", "cx22", "ubuntu-24.04", "fsn1",
                    dict(labels or {}), "running")
                ids.append(str(server_id))
        return ids

    def _server_json(self, server_id: int, name: str, server_type: str, image: str,
                     location: str, labels: dict[str, str], status: str) -> dict[str, Any]:
        octet = server_id % 250 + 1
        return {
            "id": server_id, "name": name, "status": status, "created": "2024-01-01T00:00:00+00:00",
            "public_net": {"ipv4": {"id": server_id, "ip": f"203.0.113.{octet}", "blocked": False,
                                    "dns_ptr": f"static.{octet}.example"},
                           "ipv6": {"id": server_id, "ip": f"2001:db8:{octet:x}::/64",
                                    "blocked": False, "dns_ptr": []},
                           "floating_ips": [], "firewalls": []},
            "server_type": {"id": 1, "name": server_type, "cores": 2, "memory": 4.0, "disk": 40},
            "datacenter": {"id": 1, "name": f"{location}-dc14",
                           "location": {"id": 1, "name": location}},
            "location": {"id": 1, "name": location},
            "image": {"id": 1, "type": "system", "name": image}, "labels": labels,
            "locked": False, "protection": {"delete": False, "rebuild": False},
        }

    # ------------------------------------------------------------------ handlers

    def list_servers(self, request: Request) -> Reply:
        selector = request.arg("label_selector")
        items = [self._public(s) for s in self.servers.values()
                 if not selector or selector_matches(selector, s["labels"])]
        if request.arg("name"):
            items = [s for s in items if s["name"] == request.arg("name")]
        return self.paged(request, "servers", items)

    def create_server(self, request: Request) -> Reply:
        body = request.body if isinstance(request.body, dict) else {}
        missing = [k for k in ("name", "server_type", "image") if not body.get(k)]
        if missing:
            return self.error_reply(400, f"invalid input in fields {', '.join(missing)}")
        if any(s["name"] == body["name"] for s in self.servers.values()):
            return self.error_reply(409, "server name is already used", "uniqueness_error")
        server_id = self.new_id()
        server = self._server_json(server_id, body["name"], body["server_type"], body["image"],
                                   body.get("location") or "fsn1", dict(body.get("labels") or {}),
                                   "initializing")
        self.servers[str(server_id)] = server

        def finished(job: Job) -> None:
            server["status"] = "running" if job.status == "success" else "off"

        job = self.new_job("create_server", str(server_id), on_finish=finished)
        server["_job"] = job.id
        return Reply(201, {"server": self._public(server), "action": self.action_json(job),
                           "next_actions": [],
                           "root_password": None if body.get("ssh_keys") else "generated-pw"})

    def get_server(self, request: Request) -> Reply:
        server = self.servers.get(request.params["id"])
        if server is None:
            return self.error_reply(404, "server not found")
        if "_job" in server:
            self.jobs[server["_job"]].tick()
        return Reply(200, {"server": self._public(server)})

    def delete_server(self, request: Request) -> Reply:
        if self.servers.pop(request.params["id"], None) is None:
            return self.error_reply(404, "server not found")
        job = Job(self.new_id(), "delete_server", request.params["id"], Outcome(polls=1),
                  polls_left=1)
        self.jobs[job.id] = job
        return Reply(200, {"action": self.action_json(job)})

    def get_action(self, request: Request) -> Reply:
        job = self.jobs.get(int(request.params["id"]))
        if job is None:
            return self.error_reply(404, "action not found")
        job.tick()
        return Reply(200, {"action": self.action_json(job)})

    def list_ssh_keys(self, request: Request) -> Reply:
        items = [k for k in self.ssh_keys.values()
                 if request.arg("fingerprint") in (None, k["fingerprint"])
                 and request.arg("name") in (None, k["name"])]
        return self.paged(request, "ssh_keys", items)

    def create_ssh_key(self, request: Request) -> Reply:
        body = request.body if isinstance(request.body, dict) else {}
        if not body.get("name") or not body.get("public_key"):
            return self.error_reply(400, "invalid input in fields name, public_key")
        fingerprint = md5_fingerprint(body["public_key"])
        for key in self.ssh_keys.values():
            if key["name"] == body["name"] or key["fingerprint"] == fingerprint:
                return self.error_reply(409, "SSH key with the same name or fingerprint "
                                             "already exists", "uniqueness_error")
        key_id = self.new_id()
        key = {"id": key_id, "name": body["name"], "fingerprint": fingerprint,
               "public_key": body["public_key"], "labels": body.get("labels") or {},
               "created": "2024-01-01T00:00:00+00:00"}
        self.ssh_keys[str(key_id)] = key
        return Reply(201, {"ssh_key": key})

    @staticmethod
    def _public(server: dict[str, Any]) -> dict[str, Any]:
        return {k: v for k, v in server.items() if not k.startswith("_")}
