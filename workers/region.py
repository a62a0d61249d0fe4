"""Pinning a worker to one region: ``celery -A drfleet.workers worker --region eu-central``
(or DRFLEET_REGION=eu-central) consumes exactly that region's queues; ``--lane data`` or
``--lane control`` narrows it to one lane. A worker without a region refuses to start."""

from __future__ import annotations

import os
import sys

import click
from celery import signals

from drfleet import settings
from drfleet.errors import DrfleetError
from drfleet.workers.queues import LANES, region_queues


class RegionMissing(DrfleetError):
    hint = "start the worker with --region NAME (or set DRFLEET_REGION); see `drfleet schedule` for regions"


def add_worker_options(app) -> None:
    app.user_options["worker"].add(click.Option(
        ["--region"], default=None, help="Region whose queues this worker consumes (or DRFLEET_REGION)."))
    app.user_options["worker"].add(click.Option(
        ["--lane"], default=None, type=click.Choice(LANES),
        help="Consume only this lane's queue (data or control); default both."))


@signals.celeryd_init.connect
def pin_worker_to_region(sender=None, instance=None, conf=None, options=None, **_):
    """Select the region's queues before the worker starts consuming, and export the
    region so prefork children (and the task base) see it."""
    options = options or {}
    region = options.get("region") or settings.REGION.get()
    known = {q.name.rsplit(".", 1)[0] for q in conf.task_queues}
    if not region or region not in known:
        error = RegionMissing("this worker has no region, so it would consume every region's queues"
                              if not region else f"region {region!r} is not in the plan",
                              regions=", ".join(sorted(known)))
        # Celery logs and swallows exceptions raised by signal handlers; a worker that
        # would consume the wrong queues must not start, so exit.
        print(f"error: {error}", file=sys.stderr, flush=True)
        raise SystemExit(2)
    lane = options.get("lane") or settings.LANE.get()
    lanes = (lane,) if lane else LANES
    os.environ["DRFLEET_REGION"] = region
    if not options.get("queues"):
        instance.app.amqp.queues.select(region_queues(region, lanes))
