"""Health checks run by the fleet (beat sends them per service and per database, on the
region's control lane; see ``beat_schedule.entries``).

``drfleet.health_check`` probes one service (``runbooks.health.probe_service``) and exports
``drfleet_service_up``, ``drfleet_service_check_seconds`` and ``drfleet_service_error_ratio``
(the share of its last 10 checks that failed: the seed's "error rate", kept in the state
Redis under ``drfleet:health:SERVICE``). ``drfleet.db_check`` checks a database's primary
and its standby's replay lag (``drfleet_database_up``, ``drfleet_replication_lag_seconds``).
The alert rules in compose/prometheus/alerts.yml read these; Alertmanager sends the alerts
to ``drfleet alerts serve``, which starts the matching runbook.

Neither task fails for an unhealthy target: an unhealthy answer is a result.
"""

from __future__ import annotations

from drfleet import metrics
from drfleet.workers.celery_app import app
from drfleet.workers.plan_context import current_plan

WINDOW = 10


def _error_ratio(service: str, healthy: bool) -> float:
    from drfleet.state.store import key, state_client

    client = state_client()
    name = key("health", service)
    pipe = client.pipeline()
    pipe.lpush(name, 0 if healthy else 1)
    pipe.ltrim(name, 0, WINDOW - 1)
    pipe.lrange(name, 0, WINDOW - 1)
    window = [int(v) for v in pipe.execute()[-1]]
    return round(sum(window) / len(window), 3)


@app.task(bind=True, name="drfleet.health_check", label="health", lane="control")
def health_check(self, service: str, region: str, slot: str | None = None) -> dict:
    """Probe ``service`` once; returns the check's result."""
    from drfleet.plan.recovery import recovery_config
    from drfleet.runbooks.health import probe_service

    plan = current_plan()
    result = probe_service(plan, recovery_config(plan), service)
    result["error_ratio"] = _error_ratio(service, result["healthy"])
    metrics.observe_service_check(service, result["region"], result["kind"], healthy=result["healthy"],
                                  seconds=result["seconds"], error_ratio=result["error_ratio"])
    return result


@app.task(bind=True, name="drfleet.db_check", label="db check", lane="control")
def db_check(self, dataset: str, region: str, slot: str | None = None) -> dict:
    """Check ``dataset``'s primary and standby once; returns the result."""
    from drfleet.plan.recovery import recovery_config
    from drfleet.runbooks.health import check_database

    plan = current_plan()
    result = check_database(plan, recovery_config(plan), dataset)
    metrics.database_up.labels(dataset, result["region"]).set(1 if result["up"] else 0)
    if result["lag_seconds"] is not None:
        metrics.replication_lag.labels(dataset, result["region"]).set(result["lag_seconds"])
    return result


@app.task(bind=True, name="drfleet.queue_depth", label="queue depth", lane="control")
def queue_depth(self, region: str, slot: str | None = None) -> dict:
    """Measure the messages waiting in ``region``'s queues (every priority) and export
    ``drfleet_queue_depth{queue}``; returns the counts."""
    from drfleet.state.fleet_redis import fleet_redis
    from drfleet.state.store import broker_client
    from drfleet.workers.queues import region_queues
    from drfleet.workers.reconcile import PRIORITY_SUFFIXES

    client = broker_client(fleet_redis())
    queues = region_queues(region)
    pipe = client.pipeline()
    for queue in queues:
        for suffix in PRIORITY_SUFFIXES:
            pipe.llen(queue + suffix)
    counts = pipe.execute()
    n = len(PRIORITY_SUFFIXES)
    depths = {q: sum(counts[i * n:(i + 1) * n]) for i, q in enumerate(queues)}
    for queue, depth in depths.items():
        metrics.queue_depth.labels(queue).set(depth)
    return depths
