"""``drfleet drill run|list`` and ``drfleet report`` (drills, RPO/RTO against the plan)."""

from __future__ import annotations

import json
import sys
import time
import uuid

import click

from drfleet.cli import output
from drfleet.cli.common import plan_option, reports_errors, send, use_plan
from drfleet.statuses import DrillResult

KINDS = ("restore", "failover", "region", "full")


@click.group("drill")
def drill_group():
    """Run restore, failover, region and full drills; list what they measured."""


@drill_group.command("run")
@plan_option
@click.argument("kind", type=click.Choice(KINDS))
@click.option("--dataset", help="restore: this dataset instead of a random one; region/full: only this one.")
@click.option("--region", help="region: the region to lose (default: the primary); where the drill runs.")
@click.option("--scenario", help="failover: the runbook scenario (default: service).")
@click.option("--wait/--no-wait", default=False, help="Wait for the drill and print its record.")
@click.option("--local", is_flag=True, help="Run here instead of on the region's worker.")
@click.option("--timeout", default=6 * 3600.0, show_default=True)
@reports_errors
def drill_run(plan_path, kind, dataset, region, scenario, wait, local, timeout):
    """Run a KIND drill now. With --wait (or --local) exit 1 unless the drill passed."""
    plan = use_plan(plan_path)
    if dataset:
        plan.dataset(dataset)
    region = region or (plan.dataset(dataset).region if dataset and kind != "full" else plan.primary_region)
    if region not in plan.region_names:
        raise click.ClickException(f"region {region!r} is not in the plan (regions: {', '.join(plan.region_names)})")
    if local:
        from drfleet.runbooks.drills import run_drill
        record = run_drill(plan, kind, region=region, dataset=dataset, scenario=scenario, actor="cli").to_json()
    else:
        from drfleet.tasks.drills import drill
        result = send(drill, kwargs={"kind": kind, "region": region, "dataset": dataset, "scenario": scenario,
                                           "slot": f"manual:{uuid.uuid4().hex}"},
                                   headers={"drfleet_actor": "cli"})
        click.echo(f"{kind} drill queued on {region}.data as task {result.id}", err=True)
        if not wait:
            return
        from drfleet.cli.data_cmds import _wait
        record = _wait(result, label=f"{kind} drill", timeout=timeout)
    output.result(record)
    sys.exit(0 if record["result"] == DrillResult.PASSED else 1)


@drill_group.command("list")
@plan_option
@click.option("--kind", type=click.Choice(KINDS))
@click.option("--json", "as_json", is_flag=True)
@click.option("--limit", default=50, show_default=True)
@reports_errors
def drill_list(plan_path, kind, as_json, limit):
    """Past drills, newest last: result, measured RTO/RPO, reason."""
    use_plan(plan_path)
    from drfleet.plan.durations import format_duration
    from drfleet.state import drills

    for record in drills.history(kind=kind)[-limit:]:
        if as_json:
            click.echo(json.dumps(record.to_json(), sort_keys=True))
            continue
        when = time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(record.started_at))
        click.echo(f"{when}  {record.kind:9s} {record.region:14s} {record.result:13s} "
                   f"rto {format_duration(record.rto_seconds):>7s} rpo {format_duration(record.rpo_seconds):>7s}  "
                   f"{record.drill_id}  {record.reason}")


@click.command("report")
@plan_option
@click.option("--json", "as_json", is_flag=True, help="The whole report as JSON.")
@click.option("--html", "html_file", type=click.Path(dir_okay=False), help="Write a self-contained HTML report here.")
@click.option("--month", help="Monthly review of YYYY-MM (and that month as the window).")
@click.option("--days", default=30.0, show_default=True, help="Window for trends and charts.")
@reports_errors
def report(plan_path, as_json, html_file, month, days):
    """RPO and RTO per dataset and scenario against the plan: target, measured, margin, trend;
    drills; with --month the monthly review (success rate, completion time, recovery time,
    integrity). Exit 1 when any target is missed or has no data (each is listed)."""
    plan = use_plan(plan_path)
    from drfleet.report.build import build_report
    from drfleet.runbooks.records import RunStore

    doc = build_report(plan, window_days=days, month=month, runs=RunStore().list_runs(1000))
    if html_file:
        from drfleet.report.html import render_html
        with open(html_file, "w", encoding="utf-8") as out:
            out.write(render_html(doc))
        click.echo(f"wrote {html_file}", err=True)
    if as_json:
        click.echo(json.dumps(doc, indent=2, sort_keys=True))
    elif not html_file:
        _print_text(doc)
    if doc["unmet"]:
        click.echo(f"\n{len(doc['unmet'])} target(s) missed or without data:", err=True)
        for line in doc["unmet"]:
            click.echo(f"  {line}", err=True)
        from drfleet.runbooks.notify import notify
        notify(plan, "target-missed", f"{len(doc['unmet'])} recovery target(s) missed or without data",
               "\n".join(doc["unmet"][:30]))
    sys.exit(1 if doc["unmet"] else 0)


def _print_text(doc: dict) -> None:
    from drfleet.plan.durations import format_duration as d

    click.echo(f"DR report for plan {doc['plan']}")
    click.echo("\nRPO (newest verified recovery point)")
    click.echo(f"  {'dataset':22s} {'target':>8s} {'measured':>9s} {'margin':>8s}  {'status':8s} trend")
    for r in doc["rpo"]:
        status = {True: "met", False: "MISSED", None: "no data"}[r["met"]]
        margin = r["margin_seconds"]
        click.echo(f"  {r['dataset']:22s} {d(r['target_seconds']):>8s} {d(r['lag_seconds']):>9s} "
                   f"{('-' + d(-margin)) if margin is not None and margin < 0 else d(margin):>8s}  {status:8s} "
                   f"{r['trend']}" + (f"  (from {r['source']})" if r.get("source") else ""))
    click.echo("\nRTO per scenario (runbook runs and drills)")
    for r in doc["scenarios"]:
        status = {True: "met", False: "MISSED", None: "no data"}[r["met"]]
        click.echo(f"  {r['scenario']:16s} target {d(r['target_seconds']):>7s} latest {d(r['latest_seconds']):>7s} "
                   f"worst {d(r['worst_seconds']):>7s} {status:8s} {r['measurements']} measured"
                   + (f"  ({r['latest_source']})" if r["latest_source"] else ""))
    click.echo("\nRTO (measured by drills)")
    for r in doc["rto"]:
        click.echo(f"  {r['dataset']:22s} {r['drill']:8s} {r['scenario']:16s} target {d(r['target_seconds']):>7s} "
                   f"latest {d(r['latest_seconds']):>7s} worst {d(r['worst_seconds']):>7s} trend {r['trend']}")
    if not doc["rto"]:
        click.echo("  no drill measured a recovery time in this window")
    click.echo("\nDrills")
    for k in doc["drills"]:
        click.echo(f"  {k['kind']:9s} latest {k['latest_result']:13s} passed {k['passed']} failed {k['failed']} "
                   f"not available {k['not_available']}  {k['latest_reason']}")
    if doc.get("month"):
        m = doc["month"]
        b, dr, i = m["backups"], m["drills"], m["integrity"]
        rate = "-" if b["success_rate"] is None else f"{b['success_rate'] * 100:.1f}%"
        click.echo(f"\nMonthly review {m['month']}")
        click.echo(f"  backups: {b['runs']} runs, success rate {rate}, completion median "
                   f"{d(b['completion_seconds']['median'])} max {d(b['completion_seconds']['max'])}")
        click.echo(f"  drills: {dr['runs']} ({dr['passed']} passed, {dr['failed']} failed), recovery median "
                   f"{d(dr['recovery_seconds']['median'])} max {d(dr['recovery_seconds']['max'])}")
        click.echo(f"  integrity: {i['verifications']} checks, {i['ok']} ok, {i['damaged']} damaged, "
                   f"{i['size_anomalies']} size anomalies")


COMMANDS: list = [drill_group, report]
