"""File-level PostgreSQL base backups, drfleet beside pgBackRest (issue 18), same run.

One cluster (initdb, archive_mode on; the archive_command pushes every segment to both
drfleet's archive and pgBackRest's repository) holding pgbench tables plus payload tables
(text, about ``size_mb`` in all). Both sides use zstd at the same level, the same number
of parallel workers and encryption (drfleet: AES-256-GCM envelopes; pgBackRest:
``repo1-cipher-type=aes-256-cbc``), and a local repository/store on the same disk:

1. full backup;
2. incremental after changing about 2% of the rows (one payload table rewritten);
3. restore of the full into an empty directory;
4. delta restore of the incremental into the directory restored in 3.

Each step runs as a child process; its wall time and peak RSS (``wait4``: the process
and every descendant it waited for) are recorded. Run as root (PostgreSQL and pgBackRest
run as ``postgres``). ``python -m bench.physical_backup [--size-mb 200] [--workers 2]``.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import textwrap
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

STANZA = "bench"
PAYLOAD_TABLES = 16


def _measure(argv: list[str], env: dict | None = None) -> tuple[float, float, str]:
    """Run ``argv``; (seconds, peak RSS in MB of it and its waited-for descendants, stdout).
    Dirty pages are flushed first, so a step never pays for the previous one's writeback."""
    os.sync()
    started = time.monotonic()
    child = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)
    out, err = child.stdout.read(), child.stderr.read()
    _, status, usage = os.wait4(child.pid, 0)
    child.returncode = os.waitstatus_to_exitcode(status)
    seconds = time.monotonic() - started
    if child.returncode != 0:
        raise RuntimeError(f"{argv[:4]} failed ({child.returncode}): {err.decode(errors='replace')[-2000:]}")
    return seconds, usage.ru_maxrss / 1024, out.decode(errors="replace")


def _pgbackrest_conf(setup, level: int, workers: int) -> Path:
    repo, lock = setup.base / "pgbackrest-repo", setup.base / "pgbackrest-lock"
    for path in (repo, lock):
        path.mkdir(mode=0o750)
        setup._chown(path)
    conf = setup.base / "pgbackrest.conf"
    conf.write_text(textwrap.dedent(f"""\
        [global]
        repo1-path={repo}
        repo1-cipher-type=aes-256-cbc
        repo1-cipher-pass=bench-only-passphrase-not-a-secret
        compress-type=zst
        compress-level={level}
        process-max={workers}
        start-fast=y
        archive-async=n
        log-level-console=warn
        log-level-file=off
        lock-path={lock}
        spool-path={lock}

        [{STANZA}]
        pg1-path={setup.data_dir}
        pg1-port={setup.port}
        pg1-socket-path={setup.data_dir}
        """))
    os.chmod(conf, 0o644)
    return conf


def _make_data(setup, size_mb: int) -> dict:
    pgbench = shutil.which("pgbench") or str(next(iter(sorted(Path("/usr/lib/postgresql").glob("*/bin/pgbench")))))
    scale = max(1, int(size_mb * 0.4 / 15))
    subprocess.run([pgbench, "-i", "-q", "-s", str(scale), "-h", "127.0.0.1", "-p", str(setup.port),
                    "-U", "postgres", "postgres"], check=True, capture_output=True)
    rows = max(1000, int(size_mb * 0.6 * 1e6 / PAYLOAD_TABLES / 600))
    for i in range(PAYLOAD_TABLES):
        setup.sql(f"CREATE TABLE payload_{i:02d} (id int PRIMARY KEY, body text)")
        setup.sql(f"INSERT INTO payload_{i:02d} SELECT g, (SELECT string_agg(md5(random()::text || g || k), '') "
                  f"FROM generate_series(1, 16) k) FROM generate_series(1, {rows}) g")
    setup.sql("VACUUM (ANALYZE, FREEZE)")  # settle hint bits and visibility maps before either full
    setup.sql("CHECKPOINT")
    total_rows = scale * 100_000 + rows * PAYLOAD_TABLES
    return {"pgbench_scale": scale, "payload_rows_per_table": rows, "rows": total_rows,
            "database_bytes": setup.sql("SELECT pg_database_size('postgres')")[0][0]}


def _warm(directory: Path) -> None:
    """Read every file once (untimed)."""
    for root, _, names in os.walk(directory):
        for name in names:
            try:
                with open(os.path.join(root, name), "rb", buffering=0) as handle:
                    while handle.read(1 << 20):
                        pass
            except OSError:
                pass


def _change(setup, rows: int) -> None:
    """Rewrite the rows of payload_00 (about 2% of all rows) and checkpoint."""
    setup.sql("UPDATE payload_00 SET body = md5(body) || substr(body, 33)")
    setup.sql("CHECKPOINT")


def run(size_mb: int = 200, workers: int = 2, level: int = 1) -> dict:
    from drfleet.pitr import cluster
    from tests.fixtures.pitr_cluster import PitrSetup

    if not shutil.which("pgbackrest"):
        return {"skipped": "pgbackrest is not installed (apt-get install -y pgbackrest)"}
    setup = PitrSetup().build()
    try:
        conf = _pgbackrest_conf(setup, level, workers)
        pgbr = ["pgbackrest", f"--config={conf}", f"--stanza={STANZA}"]
        archive = f"{setup.archive_command()} && {' '.join(pgbr)} archive-push %p"
        setup.start_primary(archive_command=archive)
        subprocess.run(setup.as_owner([*pgbr, "stanza-create"]), check=True, capture_output=True)
        data = _make_data(setup, size_mb)
        setup.switch_and_wait(timeout=300)
        time.sleep(2.1)  # drfleet's racy-timestamp window: files older than it count as unchanged
        _warm(setup.data_dir)  # both fulls read from the page cache, not only the second
        env = {**os.environ, "DRFLEET_ZSTD_LEVEL": str(level)}
        drfleet = [str(Path(sys.executable).with_name("drfleet")), "wal", "basebackup", setup.dataset, "--local",
                   "--workers", str(workers), "--plan", str(setup.plan_path)]
        results: dict = {"data": data, "workers": workers, "zstd_level": level}

        def step(name: str, ours: list[str], theirs: list[str]) -> dict:
            d_s, d_rss, d_out = _measure(ours, env)
            p_s, p_rss, _ = _measure(setup.as_owner(theirs))
            row = {"drfleet_s": round(d_s, 2), "pgbackrest_s": round(p_s, 2),
                   "speed_vs_pgbackrest": round(p_s / d_s, 2),
                   "drfleet_peak_rss_mb": round(d_rss, 1), "pgbackrest_peak_rss_mb": round(p_rss, 1)}
            results[name] = row
            return json.loads(d_out) if d_out.strip().startswith("{") else {}

        full = step("full", [*drfleet, "--type", "full"], [*pgbr, "backup", "--type=full"])
        _change(setup, data["rows"])
        setup.switch_and_wait(timeout=300)  # the change's WAL archived: neither incremental waits for it
        incr = step("incremental", [*drfleet, "--type", "incremental"], [*pgbr, "backup", "--type=incr"])
        results["incremental"]["drfleet_stored_files"] = incr.get("stored_files")
        results["incremental"]["drfleet_incremental_vs_full_time"] = round(
            results["incremental"]["drfleet_s"] / results["full"]["drfleet_s"], 2)
        results["incremental"]["pgbackrest_incremental_vs_full_time"] = round(
            results["incremental"]["pgbackrest_s"] / results["full"]["pgbackrest_s"], 2)
        results["full"]["drfleet_stored_bytes"] = full.get("stored_size")
        results["incremental"]["drfleet_stored_bytes"] = incr.get("stored_size")
        info = json.loads(subprocess.run(setup.as_owner([*pgbr, "info", "--output=json"]), check=True,
                                         capture_output=True, text=True).stdout)
        sets = info[0]["backup"]
        results["full"]["pgbackrest_stored_bytes"] = sets[0]["info"]["repository"]["delta"]
        results["incremental"]["pgbackrest_stored_bytes"] = sets[-1]["info"]["repository"]["delta"]
        full_label, incr_label = sets[0]["label"], sets[-1]["label"]

        ours_dir, theirs_dir = Path(setup.new_dir("restore-drfleet")), Path(setup.new_dir("restore-pgbackrest"))
        theirs_dir.mkdir(mode=0o700)
        setup._chown(theirs_dir)
        restore = [sys.executable, "-c", _RESTORE_CHILD, str(setup.plan_path), str(workers)]
        step("restore", [*restore, f"{setup.dataset}/{full['backup_id']}", str(ours_dir), "fresh"],
             [*pgbr, f"--pg1-path={theirs_dir}", "restore", f"--set={full_label}"])
        delta = step("delta_restore", [*restore, f"{setup.dataset}/{incr['backup_id']}", str(ours_dir), "delta"],
                     [*pgbr, f"--pg1-path={theirs_dir}", "restore", "--delta", f"--set={incr_label}"])
        results["delta_restore"]["drfleet_files_written"] = len(delta.get("written", []))
        cluster.stop(str(setup.data_dir))
        return results
    finally:
        setup.cleanup()


_RESTORE_CHILD = """
import json, sys
from drfleet.plan.loader import load_plan
from drfleet.datapath.catalog import find_backup
from drfleet.pitr.physical_restore import lay_down_physical
plan = load_plan(sys.argv[1])
result = lay_down_physical(plan, find_backup(plan, sys.argv[3]), sys.argv[4], delta=sys.argv[5] == "delta",
                           workers=int(sys.argv[2]))
print(json.dumps(result))
"""


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size-mb", type=int, default=200)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--level", type=int, default=1, help="zstd level on both sides")
    args = parser.parse_args()
    print(json.dumps(run(args.size_mb, args.workers, args.level), indent=2))
