"""A backup to each kind of store next to the tool a user would otherwise use, in one run.

Data: a files dataset of ``--size-mb`` MB (half random bytes, half compressible text),
made by this script. For every store kind, same run, same machine, same data:

* drfleet: ``run_backup`` of the dataset into a location of that kind, in a child process
  that imports the Celery app first (a worker's baseline), wall time and peak RSS; for the
  rclone kinds, also the peak RSS of the ``rclone rcd`` it started;
* the user's tool: ``tar | zstd -3 | openssl enc`` into a local file, then that file sent
  with ``aws s3 cp`` (S3 on moto's server), ``scp`` (a real sshd on loopback) or ``rclone
  copy`` (rclone's local backend, rclone serving WebDAV, Azure Blob on Azurite when it is
  installed); the pipeline's time counts in
  the tool's total, and the peak RSS is the largest process of the pipeline and the upload.

Every measurement runs twice; the best run counts.

Run: ``.venv/bin/python -m bench.stores [--size-mb 64]``. Prints one JSON document;
``bench/run.py`` runs it with ``--size-mb 64`` unless told.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import subprocess
import sys
import tempfile
import textwrap
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
ROUNDS = 2  # every measurement runs twice; the best run counts
sys.path.insert(0, str(ROOT))

CHILD = r"""
import json, os, resource, sys, time
import drfleet.workers  # noqa: F401  - a worker's baseline memory
from drfleet.plan.loader import load_plan
from drfleet.providers.storage.rclone import _stop_daemons
plan = load_plan(os.environ["DRFLEET_PLAN"])
started = time.monotonic()
from drfleet.datapath.backup import run_backup
result = run_backup(plan, "bench-files", "daily", region="bench", location=sys.argv[1])
seconds = round(time.monotonic() - started, 2)
_stop_daemons()
print(json.dumps({"seconds": seconds, "stored_bytes": result.get("stored_size"),
                  "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
                  "rclone_rss_mb": round(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024, 1)}))
"""

# runs a shell command and reports the largest child's peak RSS
MEASURE = r"""
import json, resource, subprocess, sys, time
started = time.monotonic()
done = subprocess.run(["bash", "-o", "pipefail", "-c", sys.argv[1]], capture_output=True, text=True)
if done.returncode:
    sys.exit(done.stderr[-2000:])
print(json.dumps({"seconds": round(time.monotonic() - started, 2),
                  "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024, 1)}))
"""


def _measure(script: str, env: dict) -> dict:
    done = subprocess.run([sys.executable, "-c", MEASURE, script], env=env, capture_output=True, text=True,
                          check=False)
    if done.returncode:
        raise RuntimeError(f"{script}\n{done.stderr[-2000:]}")
    return json.loads(done.stdout)


def make_tree(directory: Path, size_mb: int) -> None:
    rng = random.Random(17)
    directory.mkdir(parents=True)
    for i in range(max(1, size_mb // 8)):
        (directory / f"random-{i:03d}.bin").write_bytes(rng.randbytes(4 << 20))
        (directory / f"text-{i:03d}.log").write_text(
            "".join(f"{n} GET /item/{rng.randrange(10**6)} 200 {rng.randrange(9999)}\n" for n in range(110_000)))


def write_plan(work: Path, src: Path, storage: str) -> Path:
    (work / "keys").mkdir(mode=0o700)
    from drfleet.backup_format.keyring import create_keyring
    create_keyring(work / "keys" / "files.keyring", "files")
    text = textwrap.dedent(f"""\
        version: 1
        name: bench-stores
        regions:
          - {{name: bench, primary: true}}
        storage:
          filesystem: {{kind: filesystem, region: bench, path: {work}/fs-store}}
        """) + textwrap.indent(storage, "  ") + textwrap.dedent(f"""\
        keys:
          files: {{file: {work}/keys/files.keyring}}
        datasets:
          bench-files:
            kind: files
            region: bench
            source: {{path: {src}}}
            key: files
            rpo: 1h
            rto: 1h
            policies:
              - {{name: daily, trigger: daily, keep: 7 days, copies: [home-region]}}
        """)
    path = work / "plan.yaml"
    path.write_text(text)
    return path


def run(size_mb: int = 64) -> dict:
    from tests.fixtures.rclone import RcloneServed, local_config
    from tests.fixtures.s3_server import S3Server
    from tests.fixtures.sshd import SshServer

    work = Path(tempfile.mkdtemp(prefix="drfleet-bench-stores-"))
    servers = []
    try:
        src = work / "src"
        make_tree(src, size_mb)
        s3 = S3Server().start()
        servers.append(s3)
        s3.client().create_bucket(Bucket="bench")
        sshd = SshServer().start()
        servers.append(sshd)
        served = RcloneServed().start()
        servers.append(served)
        rclone_conf = local_config(work)
        azure = None
        try:
            from tests.fixtures.azurite import Azurite
            azure = Azurite().start()
            servers.append(azure)
        except BaseException as exc:  # noqa: BLE001 - pytest.skip when Azurite is not installed
            print(f"bench: Azure skipped ({exc})", file=sys.stderr)
        (work / "sftp-store").mkdir()
        storage = (
            f"s3: {{kind: s3, region: bench, bucket: bench, endpoint_url: '{s3.endpoint_url}', s3_region: us-east-1, "
            "access_key: {env: BENCH_S3_KEY}, secret_key: {env: BENCH_S3_SECRET}}\n"
            f"sftp: {{kind: sftp, region: bench, host: {sshd.host}, port: {sshd.port}, user: {sshd.user}, "
            f"key_file: {sshd.key_file}, known_hosts: {sshd.known_hosts_file}, path: {work}/sftp-store}}\n"
            f"rclone-local: {{kind: rclone, region: bench, remote: 'local-test:{work}/rclone-store', "
            f"rclone_config: {rclone_conf}}}\n"
            f"rclone-served: {{kind: rclone, region: bench, remote: 'served:bench', "
            f"rclone_config: {served.config_file}}}\n")
        if azure:
            storage += (f"azure: {{kind: rclone, region: bench, remote: 'azure:{azure.container}/bench', "
                        f"rclone_config: {azure.config_file}}}\n")
        plan = write_plan(work, src, storage)
        env = {**os.environ, "DRFLEET_PLAN": str(plan), "PYTHONPATH": str(ROOT),
               "BENCH_S3_KEY": s3.access_key_id, "BENCH_S3_SECRET": s3.secret_access_key,
               "AWS_ACCESS_KEY_ID": s3.access_key_id, "AWS_SECRET_ACCESS_KEY": s3.secret_access_key,
               "AWS_DEFAULT_REGION": "us-east-1", "BENCH_PASS": "bench-only-passphrase"}
        archive = work / "archive.tar.zst.enc"
        pipeline = (f"tar -C {src} -cf - . | zstd -q -3 -T1 | openssl enc -aes-256-ctr -pbkdf2 "
                    f"-pass env:BENCH_PASS > {archive}")
        ssh = (f"-P {sshd.port} -i {sshd.key_file} -o UserKnownHostsFile={sshd.known_hosts_file} "
               "-o StrictHostKeyChecking=yes -o BatchMode=yes")
        tools = {
            "filesystem": ("tar|zstd|openssl > file", f"{pipeline}"),
            "s3": ("aws s3 cp", f"{pipeline} && aws --endpoint-url {s3.endpoint_url} s3 cp --quiet {archive} s3://bench/tool.enc"),
            "sftp": ("scp", f"{pipeline} && scp -q {ssh} {archive} {sshd.user}@{sshd.host}:{work}/sftp-tool.enc"),
            "rclone-local": ("rclone copy", f"{pipeline} && rclone --config {rclone_conf} copy {archive} local-test:{work}/rclone-tool"),
            "rclone-served": ("rclone copy", f"{pipeline} && rclone --config {served.config_file} copy {archive} served:tool"),
        }
        if azure:
            tools["azure"] = ("rclone copy", f"{pipeline} && rclone --config {azure.config_file} copy {archive} "
                                             f"azure:{azure.container}/tool")
        src_bytes = sum(p.stat().st_size for p in src.iterdir())
        out: dict = {"source_mb": round(src_bytes / 2**20, 1), "stores": {}}
        for location, (tool, script) in tools.items():
            ours_runs, theirs_runs = [], []
            for _ in range(ROUNDS):
                done = subprocess.run([sys.executable, "-c", CHILD, location], env=env, capture_output=True,
                                      text=True, cwd=ROOT, check=False)
                if done.returncode:
                    raise RuntimeError(f"drfleet backup to {location} failed:\n{done.stderr[-3000:]}")
                ours_runs.append(json.loads(done.stdout.strip().splitlines()[-1]))
                theirs_runs.append(_measure(script, env))
            ours = min(ours_runs, key=lambda r: r["seconds"])
            theirs = min(theirs_runs, key=lambda r: r["seconds"])
            row = {"drfleet_seconds": ours["seconds"], "drfleet_peak_rss_mb": ours["peak_rss_mb"],
                   "tool": tool, "tool_seconds": theirs["seconds"], "tool_peak_rss_mb": theirs["peak_rss_mb"]}
            if location.startswith("rclone") or location == "azure":
                row["drfleet_rclone_rcd_peak_rss_mb"] = ours["rclone_rss_mb"]
            out["stores"][location] = row
        return out
    finally:
        for server in reversed(servers):
            for method in ("cleanup", "stop"):
                if hasattr(server, method):
                    getattr(server, method)()
                    break
        shutil.rmtree(work, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size-mb", type=int, default=64)
    args = parser.parse_args()
    print(json.dumps(run(args.size_mb), indent=2))


if __name__ == "__main__":
    main()
