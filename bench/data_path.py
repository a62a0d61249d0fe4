"""The data path against the shell pipeline a user would otherwise write, in one run.

Data: a PostgreSQL database of about ``--size-gb`` GB (pgbench tables plus a table of
random payloads), created by this script in its own cluster. Compared, same run, same
machine, same database:

* backup to the filesystem store vs ``pg_dump -Fc -Z0 | zstd -L | openssl enc -aes-256-ctr
  > file`` at the same zstd level, and drfleet's default level vs the pipeline at level 3;
* backup to S3 (moto's server) vs the same pipeline into ``aws s3 cp - s3://...``;
* restore vs ``openssl enc -d | zstd -d > dump && pg_restore -j 2``;
* peak RSS of the process running drfleet's data path (run in a child process that also
  imports the Celery app, so its baseline is a worker's);
* a zstd level table: speed and ratio of drfleet's backup at levels -1, 1, 2, 3 and 6.

Every measurement runs twice (restores alternating between the two sides); the best run counts.

Run: ``.venv/bin/python bench/data_path.py [--size-gb 1] [--skip-s3] [--levels 1,2,3,6]``.
Prints one JSON document; ``bench/run.py`` runs it with ``--size-gb 0.2`` unless told.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
ROUNDS = 2
sys.path.insert(0, str(ROOT))

from bench.data_path_child import CHILD  # noqa: E402


def _sh(script: str, env: dict | None = None) -> float:
    """Run ``script`` under bash with pipefail; return its wall time; raise on failure."""
    started = time.monotonic()
    done = subprocess.run(["bash", "-o", "pipefail", "-c", script], env=env, capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"pipeline failed ({done.returncode}): {script}\n{done.stderr[-2000:]}")
    return time.monotonic() - started


def _child(action: str, env: dict, *args: str) -> dict:
    done = subprocess.run([sys.executable, "-c", CHILD, action, *args], env=env, capture_output=True,
                          text=True, cwd=ROOT)
    if done.returncode != 0:
        raise RuntimeError(f"drfleet {action} failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def make_database(cluster, size_gb: float) -> tuple[str, int]:
    """pgbench tables (about 60% of the bytes) plus random payloads (40%); returns (dsn, bytes)."""
    dsn = cluster.create_database("bench")
    scale = max(1, int(size_gb * 1000 * 0.6 / 15))  # ~15 MB per pgbench scale unit
    env = {**os.environ, "PGHOST": cluster.host, "PGPORT": str(cluster.port), "PGUSER": "postgres"}
    subprocess.run(["pgbench", "-i", "-q", "-s", str(scale), "bench"], env=env, check=True,
                   capture_output=True)
    payload_rows = int(size_gb * 1e9 * 0.4 / 1100)
    cluster.psql("CREATE TABLE payloads (id bigint PRIMARY KEY, label text, body text)", "bench")
    step = 100_000
    for start in range(0, payload_rows, step):
        cluster.psql(
            "INSERT INTO payloads SELECT g, 'item-' || g, "
            "(SELECT string_agg(md5(random()::text || g || i), '') FROM generate_series(1, 32) i) "
            f"FROM generate_series({start}, {min(start + step, payload_rows) - 1}) g", "bench")
    cluster.psql("VACUUM ANALYZE", "bench")
    size = cluster.psql("SELECT pg_database_size('bench')", "bench")[0][0]
    return dsn, size


def write_plan(directory: Path, dsn_env: str, s3: dict | None) -> Path:
    (directory / "keys").mkdir(parents=True, mode=0o700)
    from drfleet.backup_format.keyring import create_keyring
    create_keyring(directory / "keys" / "db.keyring", "db")
    s3_block = ""
    if s3:
        s3_block = (f"  s3-store: {{kind: s3, region: bench, bucket: {s3['bucket']}, "
                    f"endpoint_url: '{s3['endpoint']}', s3_region: us-east-1, "
                    "access_key: {env: BENCH_S3_KEY}, secret_key: {env: BENCH_S3_SECRET}}\n")
    text = textwrap.dedent(f"""\
        version: 1
        name: bench
        regions:
          - {{name: bench, primary: true}}
        storage:
          fs-store: {{kind: filesystem, region: bench, default: true, path: {directory}/store}}
        """) + s3_block + textwrap.dedent(f"""\
        keys:
          db: {{file: {directory}/keys/db.keyring}}
        datasets:
          bench-db:
            kind: postgres
            region: bench
            connection: {{env: {dsn_env}}}
            key: db
            rpo: 1h
            rto: 1h
            policies:
              - {{name: daily, trigger: daily, keep: 7 days, copies: [home-region]}}
        """)
    path = directory / "plan.yaml"
    path.write_text(text)
    return path


def run(size_gb: float = 0.2, levels: tuple[int, ...] = (-1, 1, 2, 3, 6), s3: bool = True) -> dict:
    from tests.fixtures.postgres_cluster import PostgresCluster

    work = Path(tempfile.mkdtemp(prefix="drfleet-bench-"))
    cluster = PostgresCluster().start()
    s3_server = None
    try:
        t0 = time.monotonic()
        dsn, db_bytes = make_database(cluster, size_gb)
        out: dict = {"database_bytes": db_bytes, "create_seconds": round(time.monotonic() - t0, 1)}
        s3_conf = None
        env = {**os.environ, "BENCH_DB_URL": dsn, "PYTHONPATH": str(ROOT)}
        if s3:
            from tests.fixtures.s3_server import S3Server
            s3_server = S3Server().start()
            s3_server.client().create_bucket(Bucket="bench")
            s3_conf = {"bucket": "bench", "endpoint": s3_server.endpoint_url}
            env.update(BENCH_S3_KEY=s3_server.access_key_id, BENCH_S3_SECRET=s3_server.secret_access_key,
                       AWS_ACCESS_KEY_ID=s3_server.access_key_id,
                       AWS_SECRET_ACCESS_KEY=s3_server.secret_access_key, AWS_DEFAULT_REGION="us-east-1")
        plan = write_plan(work / "plan", "BENCH_DB_URL", s3_conf)
        env["DRFLEET_PLAN"] = str(plan)
        pass_file = work / "pass"
        pass_file.write_text(os.urandom(32).hex())
        pg = f"pg_dump -Fc -Z0 --no-password --dbname='{dsn}'"
        enc = f"openssl enc -aes-256-ctr -pbkdf2 -pass file:{pass_file}"

        dump_only = _sh(f"{pg} > /dev/null", env)
        out["pg_dump_alone_seconds"] = round(dump_only, 2)
        # Each side runs ROUNDS times (restores alternating) and the best time counts (a checkpoint or
        # autovacuum landing on one run says nothing about either tool).
        pipeline3 = min(_sh(f"{pg} | zstd -q -3 -T1 | {enc} > {work}/pipe3.dfe", env) for _ in range(ROUNDS))
        pipe_bytes = (work / "pipe3.dfe").stat().st_size
        out["pipeline_zstd3_seconds"] = round(pipeline3, 2)
        from bench import others  # restic and Borg of the same pg_dump stream, encrypted, zstd
        others.init(work)
        restic_s = [others.restic_stdin(work, pg, env) for _ in range(ROUNDS)]
        borg_s = [others.borg_stdin(work, pg, f"dump{i}", 1, env) for i in range(ROUNDS)]
        out["restic_dump_seconds"] = round(min(restic_s), 2) if restic_s[0] is not None else None
        out["borg_zstd1_dump_seconds"] = round(min(borg_s), 2) if borg_s[0] is not None else None
        table = []
        for level in levels:
            result = min((_child("backup", {**env, "DRFLEET_ZSTD_LEVEL": str(level)}, "fs-store")
                          for _ in range(ROUNDS)), key=lambda r: r["seconds"])
            table.append({"level": level, "seconds": result["seconds"],
                          "mb_per_s": round(result["plaintext_size"] / result["seconds"] / 1e6, 1),
                          "ratio": round(result["plaintext_size"] / result["stored_size"], 2),
                          "peak_rss_mb": result["peak_rss_mb"], "backup_id": result["backup_id"]})
        out["levels"] = table
        dump_bytes = table[0]["mb_per_s"] * table[0]["seconds"] * 1e6
        out["dump_bytes"] = int(dump_bytes)
        by_level = {row["level"]: row for row in table}
        from drfleet.datapath.streams import DEFAULT_LEVEL
        default_row = by_level.get(DEFAULT_LEVEL) or _child("backup", env, "fs-store")
        out["default_level"] = DEFAULT_LEVEL
        if 3 in by_level:
            out["speedup_same_level_3"] = round(pipeline3 / by_level[3]["seconds"], 2)
        out["speedup_default"] = round(pipeline3 / default_row["seconds"], 2)
        out["pipeline_ratio_zstd3"] = round(dump_bytes / pipe_bytes, 2)
        if out["restic_dump_seconds"]:
            out["speedup_vs_restic"] = round(out["restic_dump_seconds"] / default_row["seconds"], 2)
        if out["borg_zstd1_dump_seconds"] and 1 in by_level:
            out["speedup_vs_borg_zstd1"] = round(out["borg_zstd1_dump_seconds"] / by_level[1]["seconds"], 2)

        # Restore: drfleet (decrypt + decompress + verify, pg_restore -j 2) vs the pipeline.
        restores, pipe_restores = [], []
        for _ in range(ROUNDS):
            cluster.create_database("restore_drfleet")
            restores.append(_child("restore", env, default_row["backup_id"], cluster.dsn("restore_drfleet")))
            cluster.psql('DROP DATABASE "restore_drfleet" WITH (FORCE)')
            cluster.psql("CHECKPOINT")
            cluster.create_database("restore_pipe")
            pipe_restores.append(_sh(
                f"{enc} -d < {work}/pipe3.dfe | zstd -q -d > {work}/dump.pgc && "
                f"pg_restore -j 2 --no-owner --dbname='{cluster.dsn('restore_pipe')}' {work}/dump.pgc", env))
            cluster.psql('DROP DATABASE "restore_pipe" WITH (FORCE)')
            cluster.psql("CHECKPOINT")
        restored = min(restores, key=lambda r: r["seconds"])
        pipe_restore = min(pipe_restores)
        out["restore_seconds"] = restored["seconds"]
        out["restore_pipeline_seconds"] = round(pipe_restore, 2)
        out["restore_speedup"] = round(pipe_restore / restored["seconds"], 2)
        out["restore_peak_rss_mb"] = restored["peak_rss_mb"]

        if s3_server:
            s3_result = min((_child("backup", env, "s3-store") for _ in range(ROUNDS)), key=lambda r: r["seconds"])
            pipe_s3 = min(_sh(f"{pg} | zstd -q -3 -T1 | {enc} | aws s3 cp - s3://bench/pipeline.dfe "
                              f"--endpoint-url {s3_server.endpoint_url} --only-show-errors", env)
                          for _ in range(ROUNDS))
            out["s3_seconds_default"] = s3_result["seconds"]
            out["s3_pipeline_seconds"] = round(pipe_s3, 2)
            out["s3_speedup"] = round(pipe_s3 / s3_result["seconds"], 2)
            out["s3_peak_rss_mb"] = s3_result["peak_rss_mb"]
        out["peak_rss_mb"] = max(row["peak_rss_mb"] for row in table)
        return out
    finally:
        cluster.cleanup()
        if s3_server:
            s3_server.stop()
        shutil.rmtree(work, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size-gb", type=float, default=1.0)
    parser.add_argument("--levels", default="-1,1,2,3,6")
    parser.add_argument("--skip-s3", action="store_true")
    parser.add_argument("--rounds", type=int, default=ROUNDS, help="runs per side; the best counts")
    args = parser.parse_args()
    globals()["ROUNDS"] = args.rounds
    levels = tuple(int(x) for x in args.levels.split(",") if x)
    print(json.dumps(run(args.size_gb, levels, not args.skip_s3), indent=2))


if __name__ == "__main__":
    main()
