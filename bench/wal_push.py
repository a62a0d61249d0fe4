"""WAL archiving under load, and point-in-time restore time.

1. ``drfleet wal push`` cost: process start (``drfleet --version``) and a whole push of one
   16 MiB segment as PostgreSQL runs it (a new process), median of several.
2. A primary (initdb, archive_mode on, archive_command = drfleet wal push) under a sustained
   pgbench write load for ``seconds``: its WAL generation rate beside the archive's push
   rate (segments/s), and the archive lag (how long a completed segment waited until it
   was archived: max and median), sampled every 0.5 s from pg_current_wal_lsn and
   pg_stat_archiver.
3. Time from "restore to latest" (drfleet: lay down the base backup from the store, replay
   the archive, promote) to accepting connections, beside the same done by hand:
   ``pg_basebackup -D DIR -X stream`` from the live primary and ``pg_ctl start``.

``python -m bench.wal_push [--scale 10] [--seconds 60]``; scale 70 is about 1 GB. Run as
root (PostgreSQL runs as postgres) or as the database owner. Defaults take about 2 minutes.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))


def _timed(argv: list[str], env: dict | None = None) -> float:
    started = time.monotonic()
    subprocess.run(argv, check=True, capture_output=True, env=env)
    return time.monotonic() - started


def push_cost(setup, runs: int = 5) -> dict:
    """Start-up and per-segment cost of ``drfleet wal push`` run as the server user."""
    from drfleet.pitr.walnames import Segment
    start = [_timed(setup.as_owner([setup.launcher, "--version"])) for _ in range(runs)]
    spool = setup.base / "spool"
    spool.mkdir(exist_ok=True)
    setup._chown(spool)
    pushes = []
    for i in range(runs):
        name = Segment(9, 1000 + i).name  # a timeline the primary never uses
        path = spool / name
        path.write_bytes(os.urandom(1 << 20) + bytes((16 << 20) - (1 << 20)))
        setup._chown(path)
        argv = [setup.launcher, "wal", "push", "--plan", str(setup.plan_path), "--dataset", setup.dataset, str(path)]
        pushes.append(_timed(setup.as_owner(argv)))
    return {"process_start_s": round(statistics.median(start), 3),
            "push_one_segment_s": round(statistics.median(pushes), 3),
            "segments_per_s_one_process_at_a_time": round(1 / statistics.median(pushes), 1)}


def load_and_lag(setup, scale: int, seconds: int) -> dict:
    """pgbench load on the primary; WAL generation vs archiving, and the archive lag."""
    from drfleet.pitr.walnames import Segment
    pgbench = shutil.which("pgbench") or next(iter(sorted(Path("/usr/lib/postgresql").glob("*/bin/pgbench"))), None)
    dsn_args = ["-h", "127.0.0.1", "-p", str(setup.port), "-U", "postgres", "postgres"]
    subprocess.run([str(pgbench), "-i", "-q", "-s", str(scale), *dsn_args], check=True, capture_output=True)
    setup.switch_and_wait(timeout=300)
    lsn0 = setup.sql("SELECT pg_current_wal_lsn() - '0/0'::pg_lsn")[0][0]
    archived0 = setup.archiver()["archived_count"]
    load = subprocess.Popen([str(pgbench), "-c", "2", "-j", "2", "-T", str(seconds), "-n", *dsn_args],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    completed_at: dict[str, float] = {}
    archived_at: dict[str, float] = {}
    started = time.monotonic()
    while load.poll() is None or time.monotonic() - started < seconds + 1:
        now = time.monotonic()
        current, = setup.sql("SELECT pg_walfile_name(pg_current_wal_lsn())")[0]
        last = setup.archiver()["last_archived_wal"] or ""
        cur = Segment.parse(current)
        for segno in range(cur.segno - 64, cur.segno):
            completed_at.setdefault(Segment(cur.timeline, segno).name, now)
        if last:
            archived_at.setdefault(last, now)
        time.sleep(0.5)
        if load.poll() is not None and time.monotonic() - started > seconds + 1:
            break
    load.wait()
    elapsed = time.monotonic() - started
    lsn1 = setup.sql("SELECT pg_current_wal_lsn() - '0/0'::pg_lsn")[0][0]
    archived1 = setup.archiver()["archived_count"]
    catch_up_started = time.monotonic()
    setup.switch_and_wait(timeout=600)
    catch_up = time.monotonic() - catch_up_started
    lags = []
    ordered = sorted(archived_at)
    for name, done in completed_at.items():
        if done - started < 1:
            continue  # completed before the load began
        later = [archived_at[a] for a in ordered if a >= name]
        if later:
            lags.append(max(0.0, min(later) - done))
    generated_mb = (int(lsn1) - int(lsn0)) / 1e6
    return {"pgbench_scale": scale, "load_seconds": round(elapsed, 1),
            "wal_generated_mb_per_s": round(generated_mb / elapsed, 2),
            "wal_generated_segments_per_s": round(generated_mb * 1e6 / (16 << 20) / elapsed, 2),
            "archived_segments_per_s": round((archived1 - archived0) / elapsed, 2),
            "archive_lag_max_s": round(max(lags), 1) if lags else None,
            "archive_lag_median_s": round(statistics.median(lags), 1) if lags else None,
            "catch_up_after_load_s": round(catch_up, 1), "failed_pushes": setup.archiver()["failed_count"]}


def restore_times(setup) -> dict:
    """drfleet restore-to-latest vs pg_basebackup by hand, each to accepting connections."""
    from drfleet.pitr import cluster
    from drfleet.pitr.basebackup import run_base_backup
    from drfleet.pitr.recovery import restore_to
    from tests.fixtures.util import free_port

    backup = run_base_backup(setup.plan, setup.dataset)
    setup.sql("CREATE TABLE IF NOT EXISTS bench_marker (at timestamptz)")
    setup.sql("INSERT INTO bench_marker VALUES (now())")
    setup.switch_and_wait(timeout=300)
    drfleet = restore_to(setup.plan, setup.dataset, setup.new_dir("bench-restore"), "latest",
                         plan_path=str(setup.plan_path))
    cluster.stop(drfleet["data_dir"])

    manual_dir = Path(setup.new_dir("bench-manual"))
    manual_dir.mkdir(mode=0o700)
    setup._chown(manual_dir)
    port = free_port()
    started = time.monotonic()
    subprocess.run(setup.as_owner([cluster.find_pg_binary("pg_basebackup"), "-h", "127.0.0.1", "-p", str(setup.port),
                                   "-U", "postgres", "-D", str(manual_dir), "-X", "stream", "-c", "fast"]),
                   check=True, capture_output=True)
    with open(manual_dir / "postgresql.auto.conf", "a") as conf:
        conf.write(f"port = {port}\narchive_mode = off\nunix_socket_directories = '{manual_dir}'\n")
    cluster.start(str(manual_dir), port, until="primary", timeout=600)
    manual = time.monotonic() - started
    cluster.stop(str(manual_dir))
    return {"database_bytes": setup.sql("SELECT pg_database_size('postgres')")[0][0],
            "base_backup_stored_bytes": backup["stored_size"],
            "drfleet_restore_latest_to_accepting_s": drfleet["seconds_to_accepting"],
            "drfleet_lay_down_s": drfleet["seconds_lay_down"],
            "manual_pg_basebackup_to_accepting_s": round(manual, 2)}


def run(scale: int = 10, seconds: int = 60) -> dict:
    from tests.fixtures.pitr_cluster import PitrSetup
    setup = PitrSetup().build()
    try:
        setup.start_primary()
        result = {"under_load": load_and_lag(setup, scale, seconds)}
        result["restore"] = restore_times(setup)
        result["push"] = push_cost(setup)  # last: its segments sit on a timeline of their own
        return result
    finally:
        setup.cleanup()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scale", type=int, default=10, help="pgbench scale (70 is about 1 GB)")
    parser.add_argument("--seconds", type=int, default=60, help="length of the write load")
    args = parser.parse_args()
    print(json.dumps(run(args.scale, args.seconds), indent=2))
