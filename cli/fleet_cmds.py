"""``drfleet up``, ``drfleet status`` and ``drfleet ping``."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import uuid

import click

from drfleet.cli import output
from drfleet.cli.common import plan_option, reports_errors, send, use_plan


@click.command("up")
@plan_option
@click.option("--no-flower", is_flag=True, help="Do not start Flower.")
@click.option("--flower-port", default=5555, show_default=True)
@click.option("--beats", default=1, show_default=True, help="Beat processes (extra ones wait on the lock).")
@click.option("--ha", is_flag=True, help="Embedded Redis as 3 servers and 3 sentinels (quorum 2), not one server.")
@click.option("--detach", is_flag=True, help="Run in the background; `drfleet down` stops it.")
@reports_errors
def up(plan_path, no_flower, flower_port, beats, ha, detach):
    """Run a whole local fleet: an embedded, password-protected Redis (unless one is
    configured; --ha for Sentinel), a data and a control worker per region, beat and Flower.
    A child that dies is started again. Ctrl-C, SIGTERM or closing the terminal stops
    everything it started; with --detach it runs in the background until `drfleet down`."""
    from drfleet.fleet.local import LocalFleet
    from drfleet.workers.plan_context import plan_path as current_plan_path

    plan = use_plan(plan_path, need_fleet=False)
    if detach:
        _detach(current_plan_path(), no_flower, flower_port, beats, ha)
        return
    fleet = LocalFleet(plan, current_plan_path(), flower=not no_flower, flower_port=flower_port, beats=beats, ha=ha)
    fleet.start(echo=click.echo)
    click.echo(f"fleet up for plan {plan.name!r} (logs in {fleet.home / 'logs'}); Ctrl-C stops it")
    sys.exit(fleet.run_forever(echo=click.echo))


def _detach(plan_file, no_flower, flower_port, beats, ha) -> None:
    from drfleet.fleet.home_lock import running_fleet_env
    from drfleet.paths import drfleet_home

    home = drfleet_home()
    argv = [sys.executable, "-m", "drfleet.cli.main", "up", "--plan", str(plan_file), "--flower-port", str(flower_port),
            "--beats", str(beats)] + (["--no-flower"] if no_flower else []) + (["--ha"] if ha else [])
    (home / "logs").mkdir(parents=True, exist_ok=True)
    with open(home / "logs" / "up.log", "ab") as log:
        proc = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                start_new_session=True)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and proc.poll() is None and running_fleet_env(home) is None:
        time.sleep(0.2)
    if proc.poll() is not None or running_fleet_env(home) is None:
        tail = (home / "logs" / "up.log").read_text(errors="replace").splitlines()[-5:]
        raise click.ClickException("the fleet did not start:\n  " + "\n  ".join(tail))
    click.echo(f"fleet running in the background as pid {proc.pid} (home {home}); `drfleet down` stops it")


@click.command("down")
@click.option("--timeout", default=60.0, show_default=True, help="Seconds to wait for everything to stop.")
@reports_errors
def down(timeout):
    """Stop the fleet `drfleet up` runs on this DRFLEET_HOME (every process it started)."""
    from drfleet.fleet.home_lock import holder_pid
    from drfleet.paths import drfleet_home

    home = drfleet_home()
    pid = holder_pid(home)
    if pid is None:
        raise click.ClickException(f"no fleet is running on {home}")
    os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while holder_pid(home) is not None:
        if time.monotonic() > deadline:
            raise click.ClickException(f"the fleet (pid {pid}) is still stopping after {timeout:.0f}s")
        time.sleep(0.2)
    click.echo(f"fleet (pid {pid}) stopped")


@click.command("status")
@plan_option
@click.option("--json", "as_json", is_flag=True)
@click.option("--timeout", default=2.0, show_default=True, help="Seconds to wait for workers to answer.")
@reports_errors
def status(plan_path, as_json, timeout):
    """Show workers (and the queues they consume), queue depths, missed slots and stuck work
(reserved by a dead worker, or sent and lost), with its age."""
    plan = use_plan(plan_path)
    from drfleet.fleet.status import fleet_status

    report = fleet_status(plan, timeout=timeout)
    if as_json:
        click.echo(json.dumps(report, indent=2, sort_keys=True))
        return
    click.echo(f"broker {report['broker']}\n")
    output.table(["worker", "queues"], [(name, ", ".join(queues)) for name, queues in sorted(report["workers"].items())],
                 title="workers", empty="workers: none answered")
    click.echo()
    output.table(["queue", "depth"], list(report["queues"].items()), title="queues", empty="queues: none")
    click.echo(f"\nmissed slots recorded: {report['missed_slots']}")
    stuck = [r for r in report["reserved"] if not r["worker_alive"]]
    if stuck or report["unaccounted"]:
        rows = [("reserved by a dead worker", output.duration(r["age_seconds"]), r["task"], r["task_id"],
                 f"{r['queue']}, worker {r['worker'] or 'unknown'}") for r in stuck]
        rows += [("not queued, not running", output.duration(r["age_seconds"]), r["task"], r["task_id"],
                  f"{r.get('dataset', '')} {r.get('slot', '')} (sent again {r['resends']}x)".strip())
                 for r in report["unaccounted"]]
        click.echo()
        output.table(["state", "age", "task", "task id", "where"], rows,
                     title="stuck work (sent again by the region's reconcile pass)")


@click.command("ping")
@plan_option
@click.option("--region", required=True)
@click.option("--timeout", default=10.0, show_default=True)
@reports_errors
def ping(plan_path, region, timeout):
    """Send a probe task to REGION and print which worker ran it."""
    use_plan(plan_path)
    from drfleet.tasks.probe import probe

    result = send(probe, kwargs={"region": region, "tag": uuid.uuid4().hex})
    output.result(result.get(timeout=timeout))
