"""Celery application, settings, queue topology and worker start-up.

``celery -A workers worker --region eu-central`` starts a worker pinned to a region;
``celery -A workers beat`` runs the plan's schedule through RedBeat.
"""

from workers.celery_app import app

__all__ = ["app"]
