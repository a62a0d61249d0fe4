"""Detection to response, piece by piece: the webhook receiver authenticates its caller and
refuses malformed, forged and unknown-target payloads (logged, nothing started); a real
Alertmanager checked by ``amtool check-config`` routes an alert to it with its bearer token;
apprise delivers notifications to a loopback HTTP sink."""

from __future__ import annotations

import base64
import json
import logging
import threading
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
import yaml

from drfleet.fleet.alert_receiver import (
    MAX_ALERTS,
    MAX_BODY,
    AlertHandler,
    Credentials,
    PayloadRefused,
    ReceiverConfigInvalid,
    alertmanager_config,
    make_server,
    parse_payload,
)
from tests.fixtures.util import wait_for

TOKEN = "s3cret-token-for-alertmanager"


@dataclass
class Run:
    run_id: str
    scenario: str
    params: dict
    status: str = "running"
    finished_at: float | None = None


@dataclass
class Recorder:
    started: list = field(default_factory=list)
    notes: list = field(default_factory=list)
    runs: list = field(default_factory=list)

    def handler(self) -> AlertHandler:
        def start(scenario, params):
            run = Run(f"run-{len(self.started) + 1}", scenario, params)
            self.started.append((scenario, params))
            self.runs.append(run)
            return run.run_id
        return AlertHandler(targets={"service": {"api", "web"}, "region": {"eu-central"}, "dataset": {"auth-db"}},
                            start=start, runs=lambda: list(self.runs),
                            notify=lambda event, title, body, **kw: self.notes.append((event, title)))


@pytest.fixture
def receiver(tmp_path):
    token = tmp_path / "token"
    token.write_text(TOKEN + "\n")
    token.chmod(0o600)
    basic = tmp_path / "basic"
    basic.write_text("alertmanager:pa55word\n")
    basic.chmod(0o600)
    recorder = Recorder()
    server = make_server(("127.0.0.1", 0), Credentials.from_files(str(token), str(basic)), recorder.handler())
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server, recorder, token
    server.shutdown()
    server.server_close()


def payload(*alerts, version="4") -> bytes:
    return json.dumps({"version": version, "status": "firing", "receiver": "drfleet", "groupLabels": {},
                       "alerts": [{"status": status, "labels": labels, "fingerprint": "abc"}
                                  for status, labels in alerts]}).encode()


def post(server, body: bytes, auth: str | None = f"Bearer {TOKEN}", length: str | None = None):
    port = server.server_address[1]
    headers = {"Content-Type": "application/json"}
    if auth:
        headers["Authorization"] = auth
    request = urllib.request.Request(f"http://127.0.0.1:{port}/alerts", data=body, headers=headers, method="POST")
    try:
        with urllib.request.urlopen(request, timeout=10) as answer:
            return answer.status, json.loads(answer.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read() or b"{}")


def service_down(service="api", **extra):
    return ("firing", {"alertname": "ServiceDown", "service": service, "region": "eu-central", **extra})


def test_a_service_down_alert_starts_one_service_failure_run(receiver):
    server, recorder, _ = receiver
    status, answer = post(server, payload(service_down()))
    assert status == 200 and answer["started"][0]["scenario"] == "service-failure"
    assert recorder.started == [("service-failure", {"service": "api"})]
    again = post(server, payload(service_down()))[1]        # Alertmanager repeats while it fires
    assert again["skipped"][0]["run_id"] == "run-1" and len(recorder.started) == 1
    recorder.runs[0].status, recorder.runs[0].finished_at = "succeeded", time.time() - 1000
    post(server, payload(service_down()))                    # long after the first run: a new one
    assert len(recorder.started) == 2


def test_basic_auth_is_accepted_too(receiver):
    server, recorder, _ = receiver
    good = "Basic " + base64.b64encode(b"alertmanager:pa55word").decode()
    assert post(server, payload(service_down("web")), auth=good)[0] == 200
    assert recorder.started == [("service-failure", {"service": "web"})]


@pytest.mark.parametrize("auth", [None, "Bearer wrong-token", f"Bearer {TOKEN}x", "Basic !!!notbase64",
                                  "Basic " + base64.b64encode(b"alertmanager:wrong").decode(), TOKEN])
def test_a_caller_without_the_credentials_is_refused_and_logged(receiver, caplog, auth):
    server, recorder, _ = receiver
    with caplog.at_level(logging.WARNING, logger="drfleet.alerts"):
        status, _ = post(server, payload(service_down()), auth=auth)
    assert status == 401 and recorder.started == []
    assert "missing or wrong credentials; no runbook started" in caplog.text
    assert TOKEN not in caplog.text and "wrong-token" not in caplog.text


@pytest.mark.parametrize("body,says", [
    (b"not json", "not JSON"),
    (b"[1, 2]", "not an Alertmanager webhook"),
    (payload(service_down(), version="3"), "version 4"),
    (json.dumps({"version": "4", "alerts": "many"}).encode(), "alerts must be a list"),
    (json.dumps({"version": "4", "alerts": [{"status": "firing", "labels": {}}] * (MAX_ALERTS + 1)}).encode(),
     "alerts must be a list"),
    (json.dumps({"version": "4", "alerts": [{"status": "firing", "labels": {"alertname": ["x"]}}]}).encode(),
     "labels must be"),
    (json.dumps({"version": "4", "alerts": [{"status": "exploded", "labels": {"alertname": "X"}}]}).encode(),
     "no status"),
    (json.dumps({"version": "4", "alerts": [{"status": "firing", "labels": {"service": "api"}}]}).encode(),
     "no alertname"),
    (b"[" * 100_000 + b"]" * 100_000, "not JSON"),   # a nesting bomb
])
def test_a_malformed_payload_is_refused_with_the_reason_and_nothing_started(receiver, caplog, body, says):
    server, recorder, _ = receiver
    with caplog.at_level(logging.WARNING, logger="drfleet.alerts"):
        status, answer = post(server, body)
    assert status in (400, 413) and says in (answer.get("error") or "") + caplog.text
    assert recorder.started == []


def test_an_unknown_service_or_a_forged_runbook_label_is_a_logged_refusal(receiver, caplog):
    server, recorder, _ = receiver
    with caplog.at_level(logging.WARNING, logger="drfleet.alerts"):
        status, answer = post(server, payload(service_down("rm -rf /"),
                                              service_down(runbook="catastrophic"),
                                              ("firing", {"alertname": "DatabaseUnreachable", "dataset": "mongodb"})))
    assert status == 200 and recorder.started == []
    reasons = [r["reason"] for r in answer["refused"]]
    assert reasons == ["service 'rm -rf /' is not in the plan's recovery section",
                       "runbook label 'catastrophic' does not match ServiceDown",
                       "dataset 'mongodb' is not in the plan's recovery section"]
    assert caplog.text.count("no runbook started") == 3
    assert [e for e, _ in recorder.notes] == ["alert-refused"] * 3


def test_other_alerts_notify_and_resolved_ones_do_nothing(receiver):
    server, recorder, _ = receiver
    _, answer = post(server, payload(("firing", {"alertname": "BackupMissing", "dataset": "auth-db"}),
                                     ("resolved", {"alertname": "ServiceDown", "service": "api"})))
    assert answer["notified"] == ["BackupMissing"] and recorder.started == []
    assert recorder.notes == [("alert-firing", "BackupMissing firing")]


def test_parse_payload_limits_and_credentials_files(tmp_path):
    with pytest.raises(PayloadRefused, match="over"):
        parse_payload(b" " * (MAX_BODY + 1))
    open_file = tmp_path / "open"
    open_file.write_text("t")
    open_file.chmod(0o644)
    with pytest.raises(ReceiverConfigInvalid, match="readable by others"):
        Credentials.from_files(str(open_file), None)
    with pytest.raises(ReceiverConfigInvalid, match="needs a credential"):
        Credentials.from_files(None, None)


def test_a_real_alertmanager_routes_an_alert_to_the_receiver_with_its_token(receiver, alertmanager_factory):
    server, recorder, token = receiver
    url = f"http://127.0.0.1:{server.server_address[1]}/alerts"
    manager = alertmanager_factory(alertmanager_config(url, credentials_file=str(token), group_wait="0s",
                                                       group_interval="1s"))
    alert = [{"labels": {"alertname": "ServiceDown", "service": "api", "region": "eu-central",
                         "severity": "critical"}, "annotations": {"summary": "api down"}}]
    request = urllib.request.Request(f"{manager.url}/api/v2/alerts", data=json.dumps(alert).encode(),
                                     headers={"Content-Type": "application/json"}, method="POST")
    with urllib.request.urlopen(request, timeout=10) as answer:
        assert answer.status == 200
    wait_for(lambda: recorder.started, timeout=30, what="Alertmanager to deliver the alert")
    assert recorder.started == [("service-failure", {"service": "api"})]


def test_amtool_refuses_a_broken_config_and_accepts_the_shipped_one(tmp_path):
    from pathlib import Path

    from tests.fixtures.alertmanager import check_config
    if check_config.__module__ and not __import__("shutil").which("amtool"):
        pytest.skip("amtool is not installed")
    shipped = Path(__file__).resolve().parents[2] / "compose" / "alertmanager" / "alertmanager.yml"
    assert check_config(shipped).returncode == 0
    broken = tmp_path / "broken.yml"
    broken.write_text(yaml.safe_dump({"route": {"receiver": "nobody"}, "receivers": [{"name": "drfleet"}]}))
    assert check_config(broken).returncode != 0


class Sink(BaseHTTPRequestHandler):
    received: list = []

    def do_POST(self):
        Sink.received.append(json.loads(self.rfile.read(int(self.headers["Content-Length"]))))
        self.send_response(200)
        self.end_headers()

    def log_message(self, *args):
        return


def test_apprise_delivers_notifications_to_a_json_webhook(tmp_path, monkeypatch):
    from drfleet.plan.loader import validate_document
    from drfleet.runbooks.notify import notify

    sink = ThreadingHTTPServer(("127.0.0.1", 0), Sink)
    threading.Thread(target=sink.serve_forever, daemon=True).start()
    Sink.received.clear()
    try:
        monkeypatch.setenv("DRFLEET_TEST_NOTIFY", f"json://127.0.0.1:{sink.server_address[1]}/hook")
        doc = yaml.safe_load((__import__("pathlib").Path(__file__).resolve().parents[2] / "examples" /
                              "plugspace.yaml").read_text())
        doc["recovery"]["notify"] = {"env": "DRFLEET_TEST_NOTIFY"}
        plan = validate_document(doc, source="test")
        assert notify(plan, "drill-failed", "restore drill failed", "restore failed: object damaged",
                      drill_id="d-1") is True
        assert notify(plan, "approval-needed", "promote-standby waits", "approve it", run_id="r-1") is True
        del doc["recovery"]["notify"]
        assert notify(validate_document(doc, source="test"), "drill-failed", "x", "y") is False
    finally:
        sink.shutdown()
    titles = [m["title"] for m in Sink.received]
    assert titles == ["[drfleet] restore drill failed", "[drfleet] promote-standby waits"]
    assert "drill_id: d-1" in Sink.received[0]["message"] and Sink.received[0]["type"] == "failure"
