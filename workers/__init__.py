"""Celery application, settings, queue topology and worker start-up.

``celery -A drfleet.workers worker --region eu-central`` starts a worker pinned to a region;
``celery -A drfleet.workers beat`` runs the plan's schedule through RedBeat.
"""

from drfleet.workers.celery_app import app

__all__ = ["app"]
