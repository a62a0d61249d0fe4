"""drfleet: a backup and disaster-recovery fleet on Celery and Redis.

One import root, built in floors; a floor imports only the floors below it (the contracts
in pyproject.toml, ``[tool.importlinter]``, are checked by ``tests/test_floors.py``):

    cli                      the ``drfleet`` command
    fleet                    ``drfleet up``, the demo, fleet status
    tasks | beat_schedule    Celery tasks; the RedBeat scheduler
    workers                  the Celery app, its settings, the task base, the metrics exporter
    runbooks | report        recovery runbooks and drills; RPO/RTO against the plan
    pitr                     WAL, base backups, point-in-time restore, standbys, oplog
    datapath                 backup, copy, verify, restore, retention, watches
    providers | state        stores, data sources, ssh, clouds, DNS; fleet state in Redis
    backup_format            the written format: layout, keys, envelope, manifest
    plan                     the DR plan: models, phrases, checks, loader
    (ground floor)           errors, settings, paths, secrets, registry, metrics, statuses

In the repository each floor is a top-level folder (workers/, tasks/, ...), mapped into
this package by ``[tool.setuptools.package-dir]``; the ground floor lives here.
"""

__version__ = "0.1.0"
