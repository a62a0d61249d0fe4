"""The drfleet side of bench/data_path.py, run in a child process so its peak RSS is its own.

It imports the Celery app first, so the baseline memory is a worker's, then runs one
backup (``backup LOCATION``) or restore (``restore BACKUP_ID TARGET``) and prints a JSON
line with the wall time around the whole operation (fingerprint and manifest included).
"""

CHILD = r"""
import json, os, resource, sys, time
import drfleet.workers  # noqa: F401  - a worker's baseline memory
from drfleet.plan.loader import load_plan
plan = load_plan(os.environ["DRFLEET_PLAN"])
action = sys.argv[1]
started = time.monotonic()
if action == "backup":
    from drfleet.datapath.backup import run_backup
    result = run_backup(plan, "bench-db", "daily", region="bench", location=sys.argv[2])
else:
    from drfleet.datapath.restore import restore_backup
    result = restore_backup(plan, sys.argv[2], sys.argv[3])
result["stream_seconds"] = result.get("seconds")
result["seconds"] = round(time.monotonic() - started, 2)
result["peak_rss_mb"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)
print(json.dumps(result))
"""
