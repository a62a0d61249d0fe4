"""Cloudflare API v4 contract server (the DNS subset drfleet uses).

Written from Cloudflare's public API v4 documentation (developers.cloudflare.com/api):
"Authentication" (API tokens sent as ``Authorization: Bearer``; a bad token answers 400/403
with error code 10000 "Authentication error"... here 403 with code 10000), the response
envelope ``{"success", "errors": [{"code", "message"}], "messages", "result",
"result_info": {"page", "per_page", "count", "total_count", "total_pages"}}``, "Zones"
(``GET /zones?name=``), "DNS Records for a Zone" (``GET /zones/{zone_id}/dns_records`` with
``type``, ``name``, ``page``, ``per_page``; ``POST`` to create; ``PUT .../{id}`` to
overwrite; ``DELETE .../{id}`` answering ``{"result": {"id"}}``), ``ttl: 1`` = automatic,
rate limiting (429 with ``Retry-After``, code 10013 here as documented for the API's global
limit) and the ``cf-ray`` request id header.
"""

from __future__ import annotations

import uuid
from typing import Any

from tests.contract_servers.base import ContractServer, Reply, Request


class CloudflareContract(ContractServer):
    provider = "cloudflare"
    api_prefix = "/client/v4"

    def __init__(self, token: str = "contract-token", **kwargs: Any) -> None:
        super().__init__(token, **kwargs)
        self.zones: dict[str, dict[str, Any]] = {}
        self.records: dict[str, dict[str, Any]] = {}

    def register_routes(self) -> None:
        self.route("GET", r"/zones", self.list_zones)
        self.route("GET", r"/zones/(?P<zone>[0-9a-f]+)/dns_records", self.list_records)
        self.route("POST", r"/zones/(?P<zone>[0-9a-f]+)/dns_records", self.create_record)
        self.route("PUT", r"/zones/(?P<zone>[0-9a-f]+)/dns_records/(?P<id>[0-9a-f]+)", self.put_record)
        self.route("DELETE", r"/zones/(?P<zone>[0-9a-f]+)/dns_records/(?P<id>[0-9a-f]+)", self.delete_record)

    # ------------------------------------------------------------------ provider shapes

    def error_reply(self, status: int, message: str, code: str | None = None) -> Reply:
        numeric = {401: 10000, 403: 10000, 404: 7003, 429: 10013}.get(status, 1000)
        return Reply(status, {"success": False, "errors": [{"code": int(code) if code and code.isdigit()
                                                             else numeric, "message": message}],
                              "messages": [], "result": None})

    def unauthorized(self) -> Reply:
        return self.error_reply(403, "Authentication error")

    def standard_headers(self, request_id: str) -> dict[str, str]:
        return {"cf-ray": request_id.replace("-", "")[:16] + "-FRA"}

    @staticmethod
    def ok(result: Any, info: dict | None = None) -> Reply:
        body = {"success": True, "errors": [], "messages": [], "result": result}
        if info is not None:
            body["result_info"] = info
        return Reply(200, body)

    # ------------------------------------------------------------------ test setup

    def add_zone(self, name: str, *, enterprise: bool = False) -> str:
        zone_id = uuid.uuid4().hex
        plan = "enterprise" if enterprise else "free"
        self.zones[zone_id] = {"id": zone_id, "name": name, "status": "active",
                               "plan": {"id": plan, "name": plan.title(), "legacy_id": plan}}
        return zone_id

    def add_record(self, zone_id: str, name: str, rtype: str, content: str, ttl: int = 1) -> str:
        record_id = uuid.uuid4().hex
        self.records[record_id] = {"id": record_id, "zone_id": zone_id, "name": name, "type": rtype,
                                   "content": content, "ttl": ttl, "proxied": False}
        return record_id

    def answer(self, name: str, rtype: str) -> list[str]:
        return sorted(r["content"] for r in self.records.values() if r["name"] == name and r["type"] == rtype)

    # ------------------------------------------------------------------ handlers

    def list_zones(self, request: Request) -> Reply:
        zones = [z for z in self.zones.values() if request.arg("name") in (None, z["name"])]
        return self.ok(zones, {"page": 1, "per_page": 20, "count": len(zones), "total_count": len(zones),
                               "total_pages": 1})

    def list_records(self, request: Request) -> Reply:
        zone = request.params["zone"]
        if zone not in self.zones:
            return self.error_reply(404, "Invalid zone identifier", "7003")
        items = [r for r in self.records.values() if r["zone_id"] == zone
                 and request.arg("type") in (None, r["type"]) and request.arg("name") in (None, r["name"])]
        items.sort(key=lambda r: r["id"])
        per_page = self.page_size(request.arg("per_page"), 100)
        page = int(request.arg("page") or 1)
        total_pages = max(1, -(-len(items) // per_page))
        chunk = items[(page - 1) * per_page: page * per_page]
        return self.ok(chunk, {"page": page, "per_page": per_page, "count": len(chunk),
                               "total_count": len(items), "total_pages": total_pages})

    def _valid(self, zone_id: str, body: Any) -> str | None:
        if not isinstance(body, dict) or not all(body.get(k) for k in ("type", "name", "content")):
            return "type, name and content are required"
        ttl = body.get("ttl", 1)
        low = 30 if self.zones[zone_id]["plan"]["legacy_id"] == "enterprise" else 60
        if not (ttl == 1 or low <= int(ttl) <= 86400):
            return f"TTL must be between {low} and 86400 seconds, or 1 for Automatic"
        return None

    def create_record(self, request: Request) -> Reply:
        problem = self._valid(request.params["zone"], request.body)
        if problem:
            return self.error_reply(400, problem, "9005")
        record_id = self.add_record(request.params["zone"], request.body["name"], request.body["type"],
                                    request.body["content"], int(request.body.get("ttl", 1)))
        return self.ok(self.records[record_id])

    def put_record(self, request: Request) -> Reply:
        record = self.records.get(request.params["id"])
        if record is None:
            return self.error_reply(404, "Record does not exist.", "81044")
        problem = self._valid(request.params["zone"], request.body)
        if problem:
            return self.error_reply(400, problem, "9005")
        record.update({k: request.body[k] for k in ("type", "name", "content", "ttl", "proxied") if k in request.body})
        return self.ok(record)

    def delete_record(self, request: Request) -> Reply:
        if self.records.pop(request.params["id"], None) is None:
            return self.error_reply(404, "Record does not exist.", "81044")
        return self.ok({"id": request.params["id"]})
