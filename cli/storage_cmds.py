"""`drfleet storage`: the storage locations themselves (preparing a bucket for immutable
backups, checking what a location promises)."""

from __future__ import annotations

import click

from drfleet.cli.common import plan_option, reports_errors, use_plan
from drfleet.errors import DrfleetError


class NotAnS3Location(DrfleetError):
    hint = "versioning and Object Lock are S3 features; pick an s3 location of the plan"


@click.group("storage")
def storage_group():
    """Storage locations: prepare buckets for immutable backups."""


@storage_group.command("prepare")
@plan_option
@click.argument("location")
@reports_errors
def prepare_cmd(plan_path, location):
    """Turn on what LOCATION (an s3 location of the plan) promises: bucket versioning, and
    Object Lock when it sets `object_lock`. Run it once with an administrator's AWS
    credentials (the usual AWS_* variables or profile), never the workers': they must not
    be allowed to change the bucket. The location's endpoint, region and bucket are used;
    its access keys are not."""
    plan = use_plan(plan_path, need_fleet=False)
    from drfleet.providers.storage.s3 import S3Store, prepare_bucket

    loc = plan.storage.get(location)
    if loc is None or loc.kind != "s3":
        raise NotAnS3Location(f"{location!r} is not an s3 location of the plan", location=location,
                              s3_locations=", ".join(n for n, l in plan.storage.items() if l.kind == "s3") or "none")
    lock = {"lock_mode": loc.object_lock.mode, "lock_seconds": loc.object_lock.retain} if loc.object_lock else {}
    store = S3Store(loc.bucket, prefix=loc.prefix, endpoint_url=loc.endpoint_url, region=loc.s3_region,
                    name=location, versioning=True, **lock)
    changed = prepare_bucket(store)
    click.echo(f"{location} (bucket {loc.bucket}): " + ("; ".join(changed) if changed else "already prepared"))


COMMANDS = [storage_group]
