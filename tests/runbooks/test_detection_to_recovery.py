"""The first seed's scenario 1 from detection to verified recovery, every piece real: a
service process is killed; the fleet's health check (beat -> a worker of the service's
region) fails and the worker's exporter says so; Prometheus evaluates the shipped alert
rules and fires ServiceDown into a real Alertmanager; Alertmanager posts it, with its bearer
token, to ``drfleet alerts serve``'s handler, which starts the service-failure runbook; a
real worker restarts the service over SSH and verifies it; the health check passes again.
The time from the kill to the verified recovery is printed against the plan's 5-minute RTO
(recorded, never asserted as a bound)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
import urllib.request
from pathlib import Path

import yaml

from drfleet.fleet.alert_receiver import Credentials, alertmanager_config, fleet_handler, make_server
from drfleet.plan.loader import load_plan
from drfleet.runbooks.records import RunStore
from tests.fixtures.fleet import Fleet, add_plan_queues
from tests.fixtures.util import free_port, wait_for

ROOT = Path(__file__).resolve().parents[2]
RULES = ROOT / "compose" / "prometheus" / "alerts.yml"


def start_service(port: int, directory: Path) -> str:
    """The command that starts the stand-in service (a static web server), detached."""
    return (f"cd {directory} && setsid nohup {sys.executable} -m http.server {port} --bind 127.0.0.1 "
            f">/dev/null 2>&1 </dev/null & echo started")


def answers(port: int) -> bool:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=1) as answer:
            return answer.status == 200
    except OSError:
        return False


def pid_listening(port: int) -> int | None:
    out = subprocess.run(["ss", "-Hltnp", f"sport = :{port}"], capture_output=True, text=True).stdout
    for part in out.split("pid=")[1:]:
        return int(part.split(",", 1)[0])
    return None


def fast_rules() -> dict:
    """The shipped rules with every ``for:`` removed, so a test does not wait a minute."""
    doc = yaml.safe_load(RULES.read_text())
    for group in doc["groups"]:
        for rule in group["rules"]:
            rule.pop("for", None)
    return doc


def test_a_killed_service_is_detected_alerted_restarted_and_healthy_again(
        world, monkeypatch, tmp_path, celery_app, alertmanager_factory, prometheus_factory):
    port, metrics_port = free_port(), free_port()
    site = tmp_path / "site"
    site.mkdir()
    (site / "index.html").write_text("ok\n")
    subprocess.run(["sh", "-c", start_service(port, site)], check=True, capture_output=True)
    wait_for(lambda: answers(port), timeout=20, what="the service to answer")

    health = f"import urllib.request; urllib.request.urlopen('http://127.0.0.1:{port}/', timeout=2)"
    services = textwrap.dedent(f"""\
        services:
          site:
            region: eu-central
            host: web-1
            probe: {{http: "http://127.0.0.1:{port}/", interval_seconds: 1, timeout_seconds: 1}}
            health: [{sys.executable}, -c, "{health}"]
            restart: [sh, -c, "{start_service(port, site)}"]
        """)
    datasets = textwrap.dedent(f"""\
        site-files:
          kind: files
          region: eu-central
          source: {{path: {site}}}
          key: content
          rpo: 1h
          scenario: single-service
          policies:
            - {{name: daily, trigger: daily, keep: 7 days, copies: [home-region]}}
        """)
    path = world.write(datasets=datasets, services=services)
    with open(path, "a") as f:
        f.write("objectives: {rto: {single-service: 5 minutes}}\n")
    plan = load_plan(path)
    add_plan_queues(celery_app, path)
    multiproc = tmp_path / "metrics"
    multiproc.mkdir()
    monkeypatch.setenv("DRFLEET_PLAN", str(path))
    world.fleet = fleet = Fleet(world.tmp, world.redis_url, path, env_extra=world.env)
    # one eu-central worker runs the checks and the runbook and serves /metrics; beat sends the checks
    fleet.worker("eu-central", env={"DRFLEET_METRICS_PORT": str(metrics_port),
                                    "PROMETHEUS_MULTIPROC_DIR": str(multiproc)})
    fleet.beat()

    token = tmp_path / "alerts-token"
    token.write_text("alert-token-e2e\n")
    token.chmod(0o600)
    receiver = make_server(("127.0.0.1", 0), Credentials.from_files(str(token), None), fleet_handler(plan))
    threading.Thread(target=receiver.serve_forever, daemon=True).start()
    manager = alertmanager_factory(alertmanager_config(f"http://127.0.0.1:{receiver.server_address[1]}/alerts",
                                                       credentials_file=str(token), group_wait="0s",
                                                       group_interval="1s"))
    prometheus_factory({"global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
                        "alerting": {"alertmanagers": [{"static_configs": [{"targets": [f"127.0.0.1:{manager.port}"]}]}]},
                        "scrape_configs": [{"job_name": "drfleet", "static_configs": [
                            {"targets": [f"127.0.0.1:{metrics_port}"]}]}]}, fast_rules())

    def exported_up() -> float | None:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{metrics_port}/metrics", timeout=2) as answer:
                text = answer.read().decode()
        except OSError:
            return None
        lines = [ln for ln in text.splitlines() if ln.startswith("drfleet_service_up{") and 'service="site"' in ln]
        return float(lines[0].rsplit(" ", 1)[1]) if lines else None

    try:
        wait_for(lambda: exported_up() == 1.0, timeout=60, what="the health check to export site as up")
        killed_at = time.time()
        os.kill(pid_listening(port), signal.SIGKILL)              # the service dies
        wait_for(lambda: exported_up() == 0.0, timeout=30, what="the health check to see it down")
        detected_at = time.time()
        run = wait_for(lambda: next(iter(RunStore().list_runs(5)), None), timeout=60,
                       what="Alertmanager -> receiver to start the runbook")
        run = world.wait_run(run.run_id, timeout=120)
        assert (run.scenario, run.params, run.status, run.started_by) == (
            "service-failure", {"service": "site"}, "succeeded", "alertmanager")
        records = RunStore().step_records(run.run_id)
        assert records["check-health"]["output"]["healthy"] is False
        assert records["restart"]["output"] | {"detail": ""} == {"restarted": True, "healthy": True,
                                                                 "host": "web-1", "detail": ""}
        assert records["provision"]["status"] == "skipped"          # the restart was enough
        assert answers(port)
        wait_for(lambda: exported_up() == 1.0, timeout=30, what="the health check to see it back")
        recovered = run.verified_at - killed_at
        target = plan.rto_for("site-files")
        print(f"\nservice failure, kill -> verified: {recovered:.1f}s (detection {detected_at - killed_at:.1f}s, "
              f"runbook RTO {run.rto_seconds:.1f}s) against the {target}s RTO target: "
              f"{'met' if recovered <= target else 'MISSED'}")
        assert target == 300 and run.rto_seconds == round(run.verified_at - run.created_at, 3)
    finally:
        receiver.shutdown()
        pid = pid_listening(port)
        if pid:
            os.kill(pid, signal.SIGKILL)
