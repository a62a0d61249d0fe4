"""``drfleet plan check|schema`` and ``drfleet schedule``."""

from __future__ import annotations

import json
import sys

import click

from drfleet.cli import output
from drfleet.cli.common import plan_option, reports_errors, use_plan


@click.group("plan")
def plan_group():
    """Check a DR plan and print its schema."""


@plan_group.command("check")
@click.argument("plan_file", type=click.Path(dir_okay=False))
def plan_check(plan_file):
    """Validate PLAN_FILE and report every problem at once, with its place in the file.

    Exit status 0 when the plan is valid, 2 when it is not.
    """
    from drfleet.errors import DrfleetError
    from drfleet.plan.loader import PlanInvalid, load_plan

    try:
        plan = load_plan(plan_file)
        if plan.recovery:
            from drfleet.plan.recovery import recovery_config
            recovery_config(plan)  # the runbooks' section: services, DNS, clouds, standbys
    except PlanInvalid as exc:
        click.secho(f"{plan_file}: {len(exc.issues)} problem(s)", fg="red", err=True)
        for issue in exc.issues:
            click.echo(f"  {issue}", err=True)
        click.echo("fix each field above and run `drfleet plan check` again", err=True)
        sys.exit(2)
    except DrfleetError as exc:
        click.secho(f"error: {exc}", fg="red", err=True)
        sys.exit(2)
    from drfleet.plan.recovery import region_loss_notes
    notes = region_loss_notes(plan)
    policies = sum(len(d.policies) for d in plan.datasets.values())
    if output.json_mode():
        output.result({"plan": plan.name, "file": plan_file, "ok": True, "regions": len(plan.regions),
                       "storage": len(plan.storage), "key_categories": len(plan.keys),
                       "datasets": len(plan.datasets), "policies": policies, "drills": len(plan.drills),
                       "notes": notes})
        return
    for note in notes:
        click.echo(f"note: {note}")
    click.echo(f"{plan_file}: ok — plan {plan.name!r}: {len(plan.regions)} regions, "
               f"{len(plan.storage)} storage locations, {len(plan.keys)} key categories, "
               f"{len(plan.datasets)} datasets, {policies} policies, {len(plan.drills)} drills")


@plan_group.command("schema")
def plan_schema():
    """Print the JSON Schema of a plan document."""
    from drfleet.plan.loader import plan_json_schema
    click.echo(json.dumps(plan_json_schema(), indent=2))


@click.command("schedule")
@plan_option
@click.option("--json", "as_json", is_flag=True, help="One JSON object per line.")
@click.option("--missed", is_flag=True, help="List slots recorded as missed instead.")
@reports_errors
def schedule(plan_path, as_json, missed):
    """Show what the plan schedules: one entry per (dataset, policy, region that runs it),
    plus drills and checks."""
    plan = use_plan(plan_path)
    if missed:
        from drfleet.state.missed import missed_slots
        rows = list(missed_slots())
        if as_json:
            for row in rows:
                click.echo(json.dumps(row))
            return
        output.rows(rows, headers=["slot", "entry", "reason"], empty="no missed slots recorded",
                    render=lambda r: (output.timestamp(r["slot"]), r["entry"], r["reason"]))
        return
    from drfleet.beat_schedule.entries import schedule_entries
    from drfleet.plan.durations import format_duration

    entries = schedule_entries(plan)
    if as_json:
        for entry in entries:
            click.echo(json.dumps(entry.to_json(), sort_keys=True))
        return
    rows = []
    for e in entries:
        when = e.trigger.cron or (f"every {e.trigger.interval_seconds}s" if e.trigger.interval_seconds else
                                  e.trigger.kind + (f" ({e.trigger.event})" if e.trigger.event else ""))
        keep = ("forever" if e.kind == "backup" and e.keep_seconds is None and e.keep_versions is None else
                f"{e.keep_versions} versions" if e.keep_versions else format_duration(e.keep_seconds) if e.keep_seconds else "")
        rows.append((e.name, e.region, e.queue, when, keep, ", ".join(e.copies)))
    output.table(["entry", "region", "queue", "trigger", "keep", "copies"], rows,
                 title=f"schedule of plan {plan.name!r}")


@plan_group.command("docs")
@click.option("--out", "out_file", type=click.Path(dir_okay=False),
              help="Write the plan reference here instead of printing it.")
@click.option("--all", "docs_dir", type=click.Path(file_okay=False),
              help="Write every generated page into this docs directory: plan-reference.md, "
                   "settings.md, runbooks/SCENARIO.md and recovery-checklists.md.")
def plan_docs(out_file, docs_dir):
    """Print the plan reference (generated from the plan's JSON Schema), or write it and the
    runbook and recovery-checklist pages. `make docs` runs `drfleet plan docs --all docs`."""
    from pathlib import Path

    from drfleet.plan.reference import plan_reference_markdown

    reference = plan_reference_markdown()
    if docs_dir:
        from drfleet import settings
        from drfleet.runbooks.docs import generated_pages

        pages = {"plan-reference.md": reference, "settings.md": settings.reference_markdown(), **generated_pages()}
        for rel, text in pages.items():
            path = Path(docs_dir) / rel
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text)
            click.echo(f"wrote {path}")
    if out_file:
        Path(out_file).write_text(reference)
        click.echo(f"wrote {out_file}")
    if not docs_dir and not out_file:
        click.echo(reference, nl=False)
