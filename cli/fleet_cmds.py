"""``drfleet up``, ``drfleet status`` and ``drfleet ping``."""

from __future__ import annotations

import json
import sys
import uuid

import click

from drfleet.cli.common import plan_option, reports_errors, use_plan


@click.command("up")
@plan_option
@click.option("--no-flower", is_flag=True, help="Do not start Flower.")
@click.option("--flower-port", default=5555, show_default=True)
@click.option("--beats", default=1, show_default=True, help="Beat processes (extra ones wait on the lock).")
@reports_errors
def up(plan_path, no_flower, flower_port, beats):
    """Run a whole local fleet in the foreground: an embedded redis-server (unless
    DRFLEET_BROKER_URL is set), a data and a control worker per region, beat and Flower.
    Ctrl-C stops everything it started."""
    from drfleet.fleet.local import LocalFleet
    from drfleet.workers.plan_context import plan_path as current_plan_path

    plan = use_plan(plan_path)
    fleet = LocalFleet(plan, current_plan_path(), flower=not no_flower, flower_port=flower_port, beats=beats)
    fleet.start(echo=click.echo)
    click.echo(f"fleet up for plan {plan.name!r} (logs in {fleet.home / 'logs'}); Ctrl-C stops it")
    sys.exit(fleet.run_forever(echo=click.echo))


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
    click.echo(f"broker {report['broker']}")
    click.echo("workers:")
    for name, queues in sorted(report["workers"].items()):
        click.echo(f"  {name:40s} {', '.join(queues)}")
    if not report["workers"]:
        click.echo("  (none answered)")
    click.echo("queues:")
    for queue, depth in report["queues"].items():
        click.echo(f"  {queue:30s} {depth}")
    click.echo(f"missed slots recorded: {report['missed_slots']}")
    stuck = [r for r in report["reserved"] if not r["worker_alive"]]
    if stuck or report["unaccounted"]:
        click.echo("stuck work (sent again by the region's reconcile pass):")
        for r in stuck:
            click.echo(f"  reserved by a dead worker {r['age_seconds']:>8.0f}s  {r['task']} {r['task_id']} "
                       f"({r['queue']}, worker {r['worker'] or 'unknown'})")
        for r in report["unaccounted"]:
            click.echo(f"  not queued, not running  {r['age_seconds']:>8.0f}s  {r['task']} {r['task_id']} "
                       f"{r.get('dataset', '')} {r.get('slot', '')} (sent again {r['resends']}x)")


@click.command("ping")
@plan_option
@click.option("--region", required=True)
@click.option("--timeout", default=10.0, show_default=True)
@reports_errors
def ping(plan_path, region, timeout):
    """Send a probe task to REGION and print which worker ran it."""
    use_plan(plan_path)
    from drfleet.tasks.probe import probe

    result = probe.apply_async(kwargs={"region": region, "tag": uuid.uuid4().hex})
    click.echo(json.dumps(result.get(timeout=timeout), indent=2))
