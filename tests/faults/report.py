"""Run the fault scenarios at full scale and print the figures table; write it, dated, to
docs/faults.md. Exit status 1 if any count of lost, duplicated or orphaned is not zero.

    .venv/bin/python -m tests.faults.report            # long versions (about 45 minutes)
    .venv/bin/python -m tests.faults.report --quick    # the short versions (a few minutes)
    .venv/bin/python -m tests.faults.report --only kills,s3
    .venv/bin/python -m tests.faults.report --quick --only pg,ssh,disk --merge   # add/replace rows

Every scenario starts its own real processes (redis-server, celery workers and beats, moto
server) on free loopback ports; nothing already running is used.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from datetime import date
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))
os.environ.setdefault("DRFLEET_HOME", str(ROOT / ".drfleet" / "faults-home"))

from tests.faults import scenarios  # noqa: E402

SCALES = {  # scenario -> (long, quick) keyword arguments
    "kills": ({"kills": 50}, {"kills": 8}),
    "redis": ({"restarts": 5, "long_stop_seconds": 70}, {"restarts": 2}),
    "beats": ({"failovers": 10}, {"failovers": 2}),
    "s3": ({"rounds": 5, "outage_seconds": 40}, {"rounds": 1}),
    "soak": ({"datasets": 500, "every": 60, "seconds": 1800}, {"datasets": 30, "every": 5, "seconds": 30}),
    "pg": ({"restarts": 10, "megabytes": 64}, {"restarts": 2}),
    "ssh": ({"drops": 10, "file_bytes": 4 << 20}, {"drops": 2}),
    "disk": ({"rounds": 5}, {"rounds": 1}),
    "redis-kill": ({"kills": 5}, {"kills": 1}),
    "worker-kill": ({"kills": 10}, {"kills": 1}),
    "sentinel": ({"kills": 10}, {"kills": 1}),
    "region": ({"lose": "eu-central", "watch_seconds": 60}, {"lose": "eu-central", "watch_seconds": 6}),
}


def run(name: str, quick: bool, tmp: Path) -> scenarios.Row:
    from tests.fixtures.faulty_s3 import FaultyProxy
    from tests.fixtures.redis_server import RedisServer
    from tests.fixtures.s3_server import S3Server

    kwargs = SCALES[name][1 if quick else 0]
    tmp.mkdir(parents=True)
    if name == "redis":
        return scenarios.redis_restarts(tmp, **kwargs)
    if name == "ssh":
        return scenarios.ssh_drops(tmp, **kwargs)
    if name == "disk":
        return scenarios.disk_full(tmp, **kwargs)
    if name == "redis-kill":
        return scenarios.redis_killed_mid_backup(tmp, **kwargs)
    if name == "sentinel":
        return scenarios.sentinel_failovers(tmp, **kwargs)
    if name == "region":
        return scenarios.region_lost(tmp, **kwargs)
    if name == "s3":
        server = S3Server().start()
        proxy = FaultyProxy(server.port)
        try:
            return scenarios.s3_faults(tmp, server, proxy, **kwargs)
        finally:
            proxy.close()
            server.stop()
    broker = RedisServer().start()
    try:
        fn = {"kills": scenarios.worker_kills, "beats": scenarios.beat_failovers, "soak": scenarios.soak,
              "pg": scenarios.pg_restarts, "worker-kill": scenarios.whole_worker_kills}[name]
        return fn(tmp, broker.url, **kwargs)
    finally:
        broker.cleanup()


def table(rows: list[scenarios.Row]) -> str:
    lines = ["| scenario | repetitions | backups committed | duplicates | lost | orphans left | worst recovery (s) |",
             "|---|---:|---:|---:|---:|---:|---:|"]
    for r in rows:
        lines.append(f"| {r.scenario} | {r.repetitions} | {r.committed} | {r.duplicates} | {r.lost} | "
                     f"{r.orphans_left} | {r.recovery_seconds} |")
    return "\n".join(lines)


def write_doc(rows: list[scenarios.Row], quick: bool, path: Path) -> None:
    scale = "short versions (`--quick`)" if quick else "full scale (`make faults`)"
    notes = "\n".join(f"- **{r.scenario}**: `{json.dumps(r.notes, sort_keys=True)}`" for r in rows)
    path.write_text(f"""# Fault injection and soak: the figures

Latest run: {date.today().isoformat()}, {scale}, on this machine (2 cores shared).
Produced by `tests/faults/report.py`; the scenarios are in `tests/faults/scenarios.py`.

{table(rows)}

How the counts are made (from the stores and Redis, never from the processes' own say-so):
expected slots are every slot of every backup entry from beat's first send to the last slot
beat recorded as sent; *committed* counts manifests; a *duplicate* is a slot with two
manifests, or one both committed and recorded missed; *lost* is an expected slot neither
committed nor recorded missed (for S3: a backup that ended in anything but a commit or a
clear `StoreUnavailable`; for the PostgreSQL, SSH and disk-full rows: a slot its retry did
not commit, or an attempt that ended in anything but the fault's clear error); *orphans left* counts temp files, incomplete multipart uploads and
manifest-less objects after the store reapers ran (what the faults left before the reapers is
in the notes). *Worst recovery* is the longest time from a fault's end to the next committed
backup (reported, never asserted).

Notes per scenario:

{notes}
""")


def merge_doc(rows: list[scenarios.Row], quick: bool, path: Path) -> None:
    """Write ``rows`` into the existing doc at ``path``: a row (and its notes line) of the
    same scenario is replaced, others are appended; every other row is kept as it was.
    The date line says which rows come from this run when the others are older."""
    if not path.exists():
        return write_doc(rows, quick, path)
    lines = path.read_text().splitlines()
    mine = {r.scenario for r in rows}
    kept_rows = [ln for ln in lines if ln.startswith("| ") and not ln.startswith("| scenario |")
                 and ln.split(" | ")[0][2:] not in mine]
    kept_notes = [ln for ln in lines if ln.startswith("- **") and ln[4:].split("**")[0] not in mine]
    old_run = next((ln[len("Latest run: "):] for ln in lines if ln.startswith("Latest run: ")), "")
    write_doc(rows, quick, path)
    scale = "short versions (`--quick`)" if quick else "full scale (`make faults`)"
    fresh = f"{date.today().isoformat()}, {scale}, on this machine (2 cores shared)."
    if kept_rows and old_run != fresh:
        old = old_run.split(" Rows ")[0].rstrip(".")
        fresh = (f"{fresh} Rows {', '.join(sorted(mine))} from this run; the others from the run of "
                 f"{old}.")
    out = []
    for ln in path.read_text().splitlines():
        if ln.startswith("Latest run: "):
            ln = f"Latest run: {fresh}"
        elif ln.startswith("- **") and kept_notes:  # the other scenarios' notes first
            out, kept_notes = out + kept_notes, []
        out.append(ln)
        if ln.startswith("|---"):
            out += kept_rows
    path.write_text("\n".join(out) + "\n")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="short versions (as in `make test`)")
    parser.add_argument("--only", help="comma-separated subset of: " + ", ".join(SCALES))
    parser.add_argument("--output", type=Path, default=ROOT / "docs" / "faults.md")
    parser.add_argument("--merge", action="store_true",
                        help="keep the doc's other rows; replace or add only this run's")
    args = parser.parse_args(argv)
    names = args.only.split(",") if args.only else list(SCALES)
    rows = []
    with tempfile.TemporaryDirectory(prefix="drfleet-faults-") as tmp:
        for name in names:
            print(f"running {name} ...", file=sys.stderr, flush=True)
            row = run(name, args.quick, Path(tmp) / name)
            rows.append(row)
            print(f"  {row}", file=sys.stderr, flush=True)
    print(table(rows))
    (merge_doc if args.merge else write_doc)(rows, args.quick, args.output)
    bad = [r for r in rows if r.duplicates or r.lost or r.orphans_left or r.notes.get("torn")]
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
