"""The plan turned into a schedule: ``schedule_entries(plan)`` (pure, fast) and the
RedBeat scheduler that fires it (``celery -A drfleet.workers beat``)."""
