"""``drfleet drill run|list`` and ``drfleet report`` (drills, RPO/RTO against the plan)."""

from __future__ import annotations

import json
import sys
import uuid

import click

from drfleet.cli import output
from drfleet.cli.common import plan_option, reports_errors, require_state, send, use_plan
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
    """Past drills, newest first: result, measured RTO/RPO, reason."""
    use_plan(plan_path)
    require_state()
    from drfleet.state import drills

    records = [r.to_json() for r in reversed(drills.history(kind=kind)[-limit:])]
    if as_json:
        for record in records:
            click.echo(json.dumps(record, sort_keys=True))
        return
    output.rows(records, headers=["when", "kind", "region", "result", "RTO", "RPO", "drill", "reason"],
                empty="no drills recorded",
                render=lambda r: (output.timestamp(r["started_at"]), r["kind"], r["region"], r["result"],
                                  output.duration(r.get("rto_seconds")), output.duration(r.get("rpo_seconds")),
                                  r["drill_id"], r.get("reason") or ""))


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
    d = output.duration
    status_of = {True: "met", False: "MISSED", None: "no data"}
    click.echo(f"DR report for plan {doc['plan']}\n")

    def margin(value):
        return "-" if value is None else (f"-{d(-value)}" if value < 0 else d(value))

    output.table(["dataset", "target", "measured", "margin", "status", "trend", "from"],
                 [(r["dataset"], d(r["target_seconds"]), d(r["lag_seconds"]), margin(r["margin_seconds"]),
                   status_of[r["met"]], r["trend"], r.get("source") or "") for r in doc["rpo"]],
                 title="RPO (newest verified recovery point)", empty="no datasets")
    losses = [(region, r["dataset"], loses, r["target_seconds"]) for r in doc["rpo"]
              for region, loses in (r.get("if_region_lost") or {}).items() if loses is not None]
    if losses:
        click.echo()
        output.table(["region lost now", "dataset", "loses", "target", "status"],
                     [(region, ds, "everything since its last copied backup" if loses == "all" else d(loses),
                       d(target), "MISSED" if target is not None and (loses == "all" or loses > target) else "met")
                      for region, ds, loses, target in losses],
                     title="RPO if a region is lost (WAL copied outside it)")
    click.echo()
    output.table(["scenario", "target", "latest", "worst", "status", "measured", "latest from"],
                 [(r["scenario"], d(r["target_seconds"]), d(r["latest_seconds"]), d(r["worst_seconds"]),
                   status_of[r["met"]], r["measurements"], r["latest_source"] or "") for r in doc["scenarios"]],
                 title="RTO per scenario (runbook runs and drills)", empty="no scenarios")
    click.echo()
    output.table(["dataset", "drill", "scenario", "target", "latest", "worst", "trend"],
                 [(r["dataset"], r["drill"], r["scenario"], d(r["target_seconds"]), d(r["latest_seconds"]),
                   d(r["worst_seconds"]), r["trend"]) for r in doc["rto"]],
                 title="RTO (measured by drills)", empty="RTO (measured by drills): no drill measured a recovery "
                                                        "time in this window")
    click.echo()
    output.table(["kind", "latest", "passed", "failed", "not available", "latest reason"],
                 [(k["kind"], k["latest_result"], k["passed"], k["failed"], k["not_available"],
                   k["latest_reason"] or "") for k in doc["drills"]], title="Drills", empty="Drills: none")
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
