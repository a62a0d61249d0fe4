"""Redis Sentinel: how long a fleet stops when its master dies, and what Sentinel costs.

* Failover time: three redis-servers and three sentinels (quorum 2; the settings used are
  printed), one drfleet worker configured with the sentinels only. The master is SIGKILLed
  ``kills`` times; from each kill, a client sends a no-op task every half second until one
  is executed and its result stored: that time is the failover as the fleet sees it. Median
  and worst are reported. The killed server is started again and rejoins as a replica.
* Throughput: no-op tasks through drfleet's task base on one Redis server and on the
  Sentinel cluster, same worker settings, side by side in one run (target >= 0.8x).

``python -m bench.failover [--kills 10] [--tasks 1000]``
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

CLIENT = """
import json, sys, time, uuid
from drfleet.tasks.probe import noop
from drfleet.workers import app
mode = sys.argv[1]
if mode == "throughput":
    n = int(sys.argv[2])
    for r in [noop.apply_async(kwargs={"region": "eu-central", "tag": uuid.uuid4().hex}) for _ in range(20)]:
        r.get(timeout=60)
    start = time.perf_counter()
    results = [noop.apply_async(kwargs={"region": "eu-central", "tag": uuid.uuid4().hex}) for _ in range(n)]
    for r in results:
        r.get(timeout=300)
    print(json.dumps({"tasks_per_s": n / (time.perf_counter() - start)}))
else:  # recover: once told the kill time (stdin), send a task every half second until one completes
    noop.apply_async(kwargs={"region": "eu-central", "tag": uuid.uuid4().hex}).get(timeout=60)  # warm
    print("ready", flush=True)
    killed_at = float(sys.stdin.readline())
    start = time.time()
    while True:
        try:
            noop.apply_async(kwargs={"region": "eu-central", "tag": uuid.uuid4().hex}).get(timeout=2)
            print(json.dumps({"seconds": time.time() - killed_at}))
            break
        except Exception:
            time.sleep(0.5)
        if time.time() - start > 300:
            print(json.dumps({"seconds": None}))
            break
"""


def _client(env: dict, *args: str) -> dict:
    out = subprocess.run([sys.executable, "-c", CLIENT, *args], env=env, cwd=ROOT, capture_output=True, text=True,
                         timeout=900)
    if out.returncode != 0:
        raise RuntimeError(out.stderr[-3000:])
    return json.loads(out.stdout.splitlines()[-1])


def _worker(env: dict, name: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "celery", "-A", "drfleet.workers", "worker", "--region",
                             "eu-central", "-c", "2", "-l", "WARNING", "-n", name], env=env, cwd=ROOT,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)


def _stop(proc: subprocess.Popen) -> None:
    try:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(30)
    except (ProcessLookupError, subprocess.TimeoutExpired):
        proc.kill()


def run(kills: int = 10, tasks: int = 1000) -> dict:
    sys.path.insert(0, str(ROOT))
    from tests.fixtures.fleet import write_plan
    from tests.fixtures.redis_server import RedisServer
    from tests.fixtures.sentinel import SentinelCluster
    from tests.fixtures.util import wait_for

    tmp = Path(tempfile.mkdtemp(prefix="drfleet-bench-failover-"))
    plan = write_plan(tmp / "plan")
    base = {k: v for k, v in os.environ.items() if not k.startswith("DRFLEET_")}
    base.update(DRFLEET_PLAN=str(plan), PYTHONPATH=str(ROOT), DRFLEET_HOME=str(tmp / "home"))
    single = RedisServer().start()
    cluster = SentinelCluster(down_after_ms=1000, failover_timeout_ms=4000, appendfsync="everysec").start()
    single_env = {**base, "DRFLEET_BROKER_URL": single.url}
    sentinel_env = {**base, **cluster.env()}
    workers = []
    try:
        workers = [_worker(single_env, "single@bench"), _worker(sentinel_env, "sentinel@bench")]
        _client(single_env, "throughput", "20")
        _client(sentinel_env, "throughput", "20")
        rounds = [(_client(single_env, "throughput", str(tasks))["tasks_per_s"],
                   _client(sentinel_env, "throughput", str(tasks))["tasks_per_s"]) for _ in range(2)]
        single_rate, sentinel_rate = max(r[0] for r in rounds), max(r[1] for r in rounds)
        seconds = []
        for _ in range(kills):
            client = subprocess.Popen([sys.executable, "-c", CLIENT, "recover"], env=sentinel_env, cwd=ROOT,
                                      stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
            assert client.stdout.readline().strip() == "ready"  # imports and connections done before the kill
            old = cluster.kill_master()
            client.stdin.write(f"{time.time()}\n")
            client.stdin.flush()
            seconds.append(json.loads(client.communicate(timeout=600)[0].splitlines()[-1])["seconds"])
            old.start()
            wait_for(lambda: cluster._role(old), timeout=60, what="the old master to rejoin as a replica")
        done = [s for s in seconds if s is not None]
        return {"sentinel_settings": {"quorum": 2, "down_after_ms": 1000, "failover_timeout_ms": 4000,
                                      "parallel_syncs": 1},
                "kills": kills, "failover_median_s": round(statistics.median(done), 2) if done else None,
                "failover_worst_s": round(max(done), 2) if done else None, "not_recovered": len(seconds) - len(done),
                "single_tasks_per_s": round(single_rate), "sentinel_tasks_per_s": round(sentinel_rate),
                "sentinel_vs_single": round(sentinel_rate / single_rate, 3)}
    finally:
        for worker in workers:
            _stop(worker)
        cluster.stop()
        single.cleanup()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--kills", type=int, default=10)
    parser.add_argument("--tasks", type=int, default=1000)
    args = parser.parse_args()
    print(json.dumps(run(args.kills, args.tasks), indent=2))
