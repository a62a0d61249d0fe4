"""The Alertmanager webhook receiver: ``drfleet alerts serve``.

Alertmanager (compose/alertmanager/alertmanager.yml) posts its webhook payload (version 4)
here. The receiver

1. authenticates the caller: ``Authorization: Bearer TOKEN`` (the token file's content) or
   HTTP basic auth (a file holding ``user:password``), compared in constant time; a caller
   without them gets 401 and the refusal is logged (never the header's value);
2. refuses what is not an Alertmanager payload: more than MAX_BODY bytes (413), not JSON,
   not version 4, more than MAX_ALERTS alerts, labels that are not short strings (400);
3. for each firing alert whose ``alertname`` is in RUNBOOK_ALERTS, checks that the label it
   needs names a service, region or dataset of the plan's recovery section (else: a logged
   refusal, nothing started), and that no run of that runbook for that target is active or
   finished within COOLDOWN_SECONDS, then starts the runbook (``tasks.runbooks.runbook``),
   started by ``alertmanager``. Destructive steps still wait for ``drfleet runbook approve``
   (and notify that they wait). Other firing alerts are passed on as notifications.

Answers are JSON: what was started, skipped, refused. ``handle`` is the logic without HTTP
(tests and the server share it).
"""

from __future__ import annotations

import base64
import binascii
import hmac
import json
import logging
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Callable

from drfleet.errors import DrfleetError

logger = logging.getLogger("drfleet.alerts")

MAX_BODY = 256 * 1024
MAX_ALERTS = 200
MAX_LABELS = 64
MAX_LABEL_TEXT = 256
COOLDOWN_SECONDS = 120.0
# alertname -> (runbook scenario, the label naming its target, the runbook's parameter)
RUNBOOK_ALERTS: dict[str, tuple[str, str, str]] = {
    "ServiceDown": ("service-failure", "service", "service"),
    "RegionServicesDown": ("region-failure", "region", "region"),
    "DatabaseUnreachable": ("database-failure", "dataset", "dataset"),
}
ACTIVE = ("running", "waiting-approval", "cancelling")


class PayloadRefused(DrfleetError):
    hint = "only Alertmanager's webhook payload (version 4) is accepted here"


class ReceiverConfigInvalid(DrfleetError):
    hint = "give --token-file and/or --basic-auth-file with the credentials Alertmanager sends (mode 0600)"


@dataclass(frozen=True)
class Credentials:
    bearer: str | None = None
    basic: str | None = None     # "user:password"

    @classmethod
    def from_files(cls, token_file: str | None, basic_file: str | None) -> "Credentials":
        """Raises ReceiverConfigInvalid without any credential or with an empty/open file."""
        def read(path: str | None) -> str | None:
            if not path:
                return None
            p = Path(path)
            if p.stat().st_mode & 0o077:
                raise ReceiverConfigInvalid(f"{path} is readable by others", file=path, hint="chmod 600 it")
            text = p.read_text().strip()
            if not text:
                raise ReceiverConfigInvalid(f"{path} is empty", file=path)
            return text
        creds = cls(read(token_file), read(basic_file))
        if creds.basic is not None and ":" not in creds.basic:
            raise ReceiverConfigInvalid("the basic auth file must hold user:password", file=basic_file)
        if creds.bearer is None and creds.basic is None:
            raise ReceiverConfigInvalid("the receiver needs a credential to check callers against")
        return creds

    def allows(self, header: str | None) -> bool:
        if not header:
            return False
        scheme, _, value = header.partition(" ")
        value = value.strip()
        if scheme.lower() == "bearer" and self.bearer is not None:
            return hmac.compare_digest(value.encode(), self.bearer.encode())
        if scheme.lower() == "basic" and self.basic is not None:
            try:
                decoded = base64.b64decode(value, validate=True)
            except (binascii.Error, ValueError):
                return False
            return hmac.compare_digest(decoded, self.basic.encode())
        return False


def parse_payload(body: bytes) -> list[dict]:
    """The alerts of an Alertmanager webhook body (each ``{"status", "labels",
    "fingerprint"}``). Raises PayloadRefused saying what is wrong, never echoing the body."""
    if len(body) > MAX_BODY:
        raise PayloadRefused(f"payload of {len(body)} bytes is over {MAX_BODY}")
    try:
        doc = json.loads(body)
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError):
        raise PayloadRefused("payload is not JSON") from None
    if not isinstance(doc, dict) or doc.get("version") != "4":
        raise PayloadRefused("payload is not an Alertmanager webhook (version 4)")
    alerts = doc.get("alerts")
    if not isinstance(alerts, list) or len(alerts) > MAX_ALERTS:
        raise PayloadRefused(f"alerts must be a list of at most {MAX_ALERTS}")
    out = []
    for i, alert in enumerate(alerts):
        if not isinstance(alert, dict) or alert.get("status") not in ("firing", "resolved"):
            raise PayloadRefused(f"alert {i} has no status firing/resolved")
        labels = alert.get("labels")
        if (not isinstance(labels, dict) or not 0 < len(labels) <= MAX_LABELS
                or not all(isinstance(k, str) and isinstance(v, str) and len(k) <= MAX_LABEL_TEXT
                           and len(v) <= MAX_LABEL_TEXT for k, v in labels.items())):
            raise PayloadRefused(f"alert {i} labels must be at most {MAX_LABELS} short strings")
        if not isinstance(labels.get("alertname"), str):
            raise PayloadRefused(f"alert {i} has no alertname")
        fingerprint = alert.get("fingerprint")
        out.append({"status": alert["status"], "labels": labels,
                    "fingerprint": fingerprint if isinstance(fingerprint, str) else None})
    return out


@dataclass
class AlertHandler:
    """Decides and acts on parsed alerts. ``start(scenario, params) -> run id``,
    ``runs()`` -> recent runs (objects with scenario, params, status, created_at,
    finished_at), ``notify(event, title, body, **facts)``; ``targets`` the names the plan's
    recovery section knows, by label."""

    targets: dict[str, set[str]]
    start: Callable[[str, dict], str]
    runs: Callable[[], list]
    notify: Callable[..., Any] = lambda *a, **k: None
    clock: Callable[[], float] = time.time
    log: list[dict] = field(default_factory=list)

    def handle(self, alerts: list[dict]) -> dict:
        result: dict[str, list] = {"started": [], "skipped": [], "refused": [], "notified": []}
        for alert in alerts:
            labels, name = alert["labels"], alert["labels"]["alertname"]
            if alert["status"] != "firing":
                continue
            if name not in RUNBOOK_ALERTS:
                self.notify("alert-firing", f"{name} firing",
                            ", ".join(f"{k}={v}" for k, v in sorted(labels.items()) if k != "alertname")[:500])
                result["notified"].append(name)
                continue
            scenario, label, param = RUNBOOK_ALERTS[name]
            target = labels.get(label)
            why = None
            if labels.get("runbook", scenario) != scenario:
                why = f"runbook label {labels.get('runbook')!r} does not match {name}"
            elif not target or target not in self.targets.get(label, set()):
                why = f"{label} {target!r} is not in the plan's recovery section"
            if why:
                logger.warning("alert %s refused: %s; no runbook started", name, why)
                self.notify("alert-refused", f"{name} refused", why)
                result["refused"].append({"alert": name, "reason": why})
                continue
            params = {param: target}
            busy = self._busy(scenario, params)
            if busy:
                result["skipped"].append({"alert": name, "scenario": scenario, **params, "run_id": busy})
                continue
            run_id = self.start(scenario, params)
            logger.info("alert %s started %s %s: run %s", name, scenario, params, run_id)
            result["started"].append({"alert": name, "scenario": scenario, **params, "run_id": run_id})
        return result

    def _busy(self, scenario: str, params: dict) -> str | None:
        now = self.clock()
        for run in self.runs():
            if run.scenario != scenario or {k: run.params.get(k) for k in params} != params:
                continue
            if run.status in ACTIVE or (run.finished_at and now - run.finished_at < COOLDOWN_SECONDS):
                return run.run_id
        return None


def fleet_handler(plan) -> AlertHandler:
    """The handler for the fleet: runbooks sent to the workers, runs read from the state Redis."""
    from drfleet.plan.recovery import recovery_config
    from drfleet.runbooks.notify import notify
    from drfleet.runbooks.records import RunStore
    from drfleet.tasks.runbooks import runbook

    rec = recovery_config(plan)
    targets = {"service": set(rec.services), "region": set(plan.region_names),
               "dataset": {d for d in rec.databases if plan.datasets[d].kind == "postgres"}}

    def start(scenario: str, params: dict) -> str:
        return runbook(scenario, **params).apply_async(started_by="alertmanager").run_id

    return AlertHandler(targets=targets, start=start, runs=lambda: RunStore().list_runs(100),
                        notify=lambda event, title, body, **facts: notify(plan, event, title, body, **facts))


def make_server(address: tuple[str, int], credentials: Credentials, handler: AlertHandler) -> ThreadingHTTPServer:
    """An HTTP server answering POST /alerts (and GET /-/healthy)."""

    class Handler(BaseHTTPRequestHandler):
        server_version = "drfleet-alerts"

        def log_message(self, fmt: str, *args: Any) -> None:  # requests are logged by what they did
            return

        def _answer(self, status: int, doc: dict) -> None:
            body = json.dumps(doc).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def do_GET(self) -> None:
            self._answer(200 if self.path == "/-/healthy" else 404, {"ok": self.path == "/-/healthy"})

        def do_POST(self) -> None:
            peer = self.client_address[0]
            if self.path != "/alerts":
                return self._answer(404, {"error": "POST /alerts"})
            if not credentials.allows(self.headers.get("Authorization")):
                logger.warning("alert payload from %s refused: missing or wrong credentials; no runbook started", peer)
                return self._answer(401, {"error": "unauthorized"})
            try:
                length = int(self.headers.get("Content-Length") or -1)
            except ValueError:
                length = -1
            if length < 0 or length > MAX_BODY:
                logger.warning("alert payload from %s refused: length %s; no runbook started", peer, length)
                return self._answer(413 if length > MAX_BODY else 411, {"error": f"at most {MAX_BODY} bytes"})
            try:
                alerts = parse_payload(self.rfile.read(length))
            except PayloadRefused as exc:
                logger.warning("alert payload from %s refused: %s; no runbook started", peer, exc.message)
                return self._answer(400, {"error": exc.message})
            try:
                result = handler.handle(alerts)
            except DrfleetError as exc:
                logger.error("alerts from %s could not be acted on: %s", peer, exc.message)
                return self._answer(503, {"error": exc.message})
            self._answer(200, result)

    return ThreadingHTTPServer(address, Handler)


def alertmanager_config(receiver_url: str, *, credentials_file: str, group_wait: str = "10s",
                        group_interval: str = "1m", repeat_interval: str = "1h") -> dict:
    """An alertmanager.yml routing every alert to the receiver with a bearer token read
    from ``credentials_file`` (Alertmanager's ``http_config.authorization``)."""
    return {
        "route": {"receiver": "drfleet", "group_by": ["alertname", "service", "region", "dataset"],
                  "group_wait": group_wait, "group_interval": group_interval, "repeat_interval": repeat_interval},
        "receivers": [{"name": "drfleet", "webhook_configs": [{
            "url": receiver_url, "send_resolved": True, "max_alerts": 50,
            "http_config": {"authorization": {"type": "Bearer", "credentials_file": credentials_file}}}]}],
    }
