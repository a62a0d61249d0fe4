"""Queue topology: every region has a ``data`` lane for long work (dumps, transfers,
restores, copies) and a ``control`` lane for short work (runbook steps, checks), so a
multi-hour dump never delays a failover step. Queues are declared explicitly; Celery's
silent creation of misspelled queues is off."""

from __future__ import annotations

from kombu import Exchange, Queue

LANES = ("data", "control")


def queue_name(region: str, lane: str) -> str:
    """``eu-central.data``; raises ValueError for an unknown lane."""
    if lane not in LANES:
        raise ValueError(f"unknown lane {lane!r}; lanes are {', '.join(LANES)}")
    return f"{region}.{lane}"


def region_queues(region: str, lanes: tuple[str, ...] = LANES) -> list[str]:
    return [queue_name(region, lane) for lane in lanes]


def declare_queues(regions: list[str]) -> tuple[Queue, ...]:
    """kombu queues for every region and lane (direct exchange, routing key = name)."""
    exchange = Exchange("drfleet", type="direct")
    return tuple(Queue(name, exchange, routing_key=name)
                 for region in regions for name in region_queues(region))


def route_task(name, args, kwargs, options, task=None, **_):
    """Celery router: the message's ``region`` kwarg and the task's ``lane`` choose the
    queue. A task sent without a region is a programming error and raises ValueError."""
    region = (kwargs or {}).get("region")
    if not region:
        raise ValueError(f"task {name} was sent without region=...; every drfleet task names "
                         "the region that must run it")
    lane = getattr(task, "lane", "control") if task is not None else "control"
    return {"queue": queue_name(region, lane), "routing_key": queue_name(region, lane),
            "exchange": "drfleet"}
