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
