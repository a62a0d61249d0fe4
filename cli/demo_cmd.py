"""``drfleet demo``: the main job on the embedded defaults, start to finish."""

from __future__ import annotations

import os
import tempfile
import time

import click

from drfleet.cli import output
from drfleet.cli.common import reports_errors, send


@click.command("demo")
@click.option("--keep-running", is_flag=True, help="Leave the fleet up at the end (Ctrl-C stops it).")
@reports_errors
def demo(keep_running):
    """Run a local two-region fleet on the embedded demo plan: back up a file tree and a
    Redis database on their regions' workers, list, verify (deep) and restore them, show
    the schedule, then stop everything that was started."""
    from drfleet.fleet.local import LocalFleet
    from drfleet.plan.demo import ensure_demo_plan
    from drfleet.plan.loader import load_plan

    for name in ("DRFLEET_BROKER_URL", "DRFLEET_STATE_URL", "DRFLEET_RESULT_URL", "DRFLEET_REDIS_SENTINELS",
                 "DRFLEET_REDIS_MASTER", "DRFLEET_REDIS_PASSWORD_FILE"):
        os.environ.pop(name, None)  # the demo runs on its own embedded Redis
    plan_file = ensure_demo_plan()
    os.environ["DRFLEET_PLAN"] = str(plan_file)
    plan = load_plan(plan_file)
    _ensure_keyrings(plan)
    click.secho(f"== plan {plan_file}", bold=True)
    # the same home as `drfleet up`: one demo, one state (`drfleet report` afterwards shows this run)
    fleet = LocalFleet(plan, plan_file, flower=False)
    fleet.start(echo=lambda line: click.echo("   " + line))
    try:
        os.environ.update({k: v for k, v in fleet.env.items() if k.startswith("DRFLEET_REDIS_") or k == "DRFLEET_BROKER_URL"})
        from drfleet.workers import app  # configured from the environment when first used
        _wait_for_workers(app, len(plan.region_names) * 2)
        _run_tour(plan, plan_file)
        if keep_running:
            click.echo("fleet still running; Ctrl-C stops it")
            fleet.run_forever(echo=click.echo)
    finally:
        click.echo("== stopping the fleet")
        fleet.stop()
    click.secho("demo finished: every step above ran on real workers, nothing is left running", fg="green")


def _show_copies(plan, results: dict, timeout: float = 60) -> None:
    """Wait until each new backup is in every location its policy copies it to; print where."""
    from drfleet.datapath.catalog import list_backups
    from drfleet.datapath.locations import copy_locations

    click.secho("== copies (queued by each committed backup: other regions, offsite)", bold=True)
    deadline = time.monotonic() + timeout
    for dataset, result in results.items():
        wanted = {loc for loc, _cold in copy_locations(plan, dataset, result["policy"])} | {result["location"]}
        while True:
            found = {b.location for b in list_backups(plan, dataset).backups if b.backup_id == result["backup_id"]}
            if wanted <= found or time.monotonic() > deadline:
                break
            time.sleep(0.3)
        missing = sorted(wanted - found)
        click.echo(f"   {dataset}/{result['backup_id']}: in {', '.join(sorted(found))}"
                   + (f" (still missing: {', '.join(missing)})" if missing else ""))


def _ensure_keyrings(plan) -> None:
    from drfleet.backup_format.keyring import create_keyring
    for category, ref in plan.keys.items():
        if ref.file and not os.path.exists(ref.file):
            os.makedirs(os.path.dirname(ref.file), mode=0o700, exist_ok=True)
            create_keyring(ref.file, category)


def _wait_for_workers(app, count: int, timeout: float = 90) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        replies = app.control.ping(timeout=1.0) or []
        if len(replies) >= count:
            click.echo(f"   {len(replies)} workers answered")
            return
    raise click.ClickException(f"workers did not answer within {timeout:.0f}s; see the logs under DRFLEET_HOME/logs")


def _run_tour(plan, plan_file) -> None:
    from click.testing import CliRunner  # noqa: F401  (commands are called directly below)

    from drfleet.datapath.restore import restore_backup
    from drfleet.tasks.backup import backup
    from drfleet.tasks.restore import verify

    results = {}
    for dataset in plan.datasets:
        ds = plan.dataset(dataset)
        policy = ds.policies[0].name
        click.secho(f"== backup {dataset} ({ds.kind}) on {ds.region}.data", bold=True)
        started = time.monotonic()
        result = send(backup, kwargs={"dataset": dataset, "policy": policy, "region": ds.region,
                                      "slot": f"demo:{time.time():.0f}"}).get(timeout=300)
        click.echo(f"   committed {result['backup_id']} to {result['location']}: {result['plaintext_size']:,} bytes "
                   f"-> {result['stored_size']:,} stored in {time.monotonic() - started:.2f}s")
        results[dataset] = result
    for dataset, result in results.items():
        ds = plan.dataset(dataset)
        click.secho(f"== verify {dataset}/{result['backup_id']} (deep: scratch restore + fingerprint)", bold=True)
        report = send(verify, kwargs={"backup_id": f"{dataset}/{result['backup_id']}", "region": ds.region,
                                      "depth": "deep"}).get(timeout=300)
        click.echo(f"   ok={report['ok']} in {report['seconds']}s {report['problems'] or ''}")
        if not report["ok"]:
            raise click.ClickException(f"verification of {dataset} failed: {report['problems']}")
    site = next((d for d in plan.datasets if plan.dataset(d).kind == "files"), None)
    if site:
        target = os.path.join(tempfile.mkdtemp(prefix="drfleet-demo-restore-"), "site")
        click.secho(f"== restore {site} into {target}", bold=True)
        summary = restore_backup(plan, f"{site}/{results[site]['backup_id']}", target)
        click.echo(f"   restored {summary['bytes']:,} bytes in {summary['seconds']}s: "
                   f"{sorted(os.listdir(target))}")
    _show_copies(plan, results)
    click.secho("== restore drill (a random dataset's random backup into a scratch target, timed)", bold=True)
    from drfleet.tasks.drills import drill
    record = send(drill, kwargs={"kind": "restore", "region": plan.primary_region},
                  headers={"drfleet_actor": "cli"}).get(timeout=300)
    for outcome in record.get("datasets", []):
        click.echo(f"   {outcome.get('dataset')}/{outcome.get('backup_id')} from {outcome.get('location')}: "
                   f"{'restored and verified' if outcome.get('ok') else 'FAILED'} in "
                   f"{output.duration(outcome.get('rto_seconds'))} {outcome.get('reason') or ''}".rstrip())
    click.echo(f"   result={record['result']} measured RTO {output.duration(record.get('rto_seconds'))} "
               f"{record.get('reason') or ''}")
    click.secho("== report (RPO and RTO against the plan's targets)", bold=True)
    from drfleet.cli.drill_cmds import _print_text
    from drfleet.report.build import build_report
    _print_text(build_report(plan))
    click.secho("== schedule (what beat fires while the fleet is up)", bold=True)
    from drfleet.beat_schedule.entries import schedule_entries
    output.table(["entry", "queue", "when"], [(e.name, e.queue, e.trigger.cron or e.trigger.kind)
                                              for e in schedule_entries(plan)])
    click.secho("== audit log", bold=True)
    from drfleet.state import audit
    output.rows(list(audit.entries(limit=50, newest_first=True)), headers=["when", "action", "outcome", "by", "details"],
                render=lambda rec: (output.timestamp(rec["at"]), rec["action"], rec["outcome"], rec["actor"],
                                    "  ".join(f"{k}={output.human(k, v)}" for k, v in sorted(rec["details"].items())
                                              if v is not None)))
