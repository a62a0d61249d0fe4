"""Fleet overhead: no-op tasks through drfleet's task base (region check, idempotency
claim, metrics) vs a bare Celery task, same Redis, same worker settings, same run.

Both apps use JSON, acks_late, prefetch 1 and a prefork worker of 2 processes; each
sends N tasks and waits for every result. Target: drfleet >= 80% of bare throughput.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
import textwrap
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

BARE_APP = textwrap.dedent("""
    import os
    from celery import Celery
    app = Celery("bare", broker=os.environ["BENCH_BROKER"], backend=os.environ["BENCH_BROKER"])
    app.conf.update(task_serializer="json", accept_content=["json"], result_serializer="json",
                    task_acks_late=True, task_reject_on_worker_lost=True, worker_prefetch_multiplier=1,
                    worker_disable_prefetch=True, task_default_queue="bare")
    @app.task(name="bare.noop")
    def noop(region, tag=None):
        return "ok"
""")


def _free_port() -> int:
    import socket
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait(cond, timeout=60):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if cond():
            return
        time.sleep(0.1)
    raise TimeoutError


def _measure(send, n: int) -> float:
    results = [send(i) for i in range(20)]  # warm-up
    for r in results:
        r.get(timeout=60)
    start = time.perf_counter()
    results = [send(i) for i in range(n)]
    for r in results:
        r.get(timeout=300)
    return n / (time.perf_counter() - start)


def run(n: int = 2000) -> dict:
    tmp = Path(tempfile.mkdtemp(prefix="drfleet-bench-"))
    port = _free_port()
    broker = f"redis://127.0.0.1:{port}/0"
    redis_proc = subprocess.Popen(["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", "",
                                   "--appendonly", "no"], stdout=subprocess.DEVNULL)
    procs = [redis_proc]
    try:
        import redis
        _wait(lambda: redis.Redis.from_url(broker).ping())
        (tmp / "bare_app.py").write_text(BARE_APP)
        from tests.fixtures.fleet import write_plan
        plan = write_plan(tmp / "plan")
        env = dict(os.environ, DRFLEET_PLAN=str(plan), DRFLEET_BROKER_URL=broker, DRFLEET_STATE_URL=broker,
                   BENCH_BROKER=broker, PYTHONPATH=f"{tmp}:{ROOT}")
        env.pop("DRFLEET_REGION", None)
        fleet_worker = subprocess.Popen([sys.executable, "-m", "celery", "-A", "drfleet.workers", "worker", "--region",
                                         "eu-central", "-c", "2", "-l", "WARNING", "-n", "fleet@bench"],
                                        env=env, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                        start_new_session=True)
        bare_worker = subprocess.Popen([sys.executable, "-m", "celery", "-A", "bare_app", "worker", "-Q", "bare",
                                        "-c", "2", "-l", "WARNING", "-n", "bare@bench"],
                                       env=env, cwd=tmp, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                       start_new_session=True)
        procs += [fleet_worker, bare_worker]
        os.environ.update(DRFLEET_PLAN=str(plan), DRFLEET_BROKER_URL=broker, DRFLEET_STATE_URL=broker,
                          BENCH_BROKER=broker)
        sys.path.insert(0, str(tmp))
        import bare_app

        from drfleet.tasks.probe import noop
        from drfleet.workers import app
        app.conf.broker_url = app.conf.result_backend = broker
        _wait(lambda: len(app.control.ping(timeout=0.5) or []) >= 2, timeout=60)
        run_id = uuid.uuid4().hex[:8]
        rounds = []
        for _ in range(2):  # alternate to spread machine noise over both
            bare = _measure(lambda i: bare_app.noop.apply_async(kwargs={"region": "eu-central"}), n)
            fleet = _measure(lambda i: noop.apply_async(kwargs={"region": "eu-central",
                                                                "tag": f"{run_id}-{len(rounds)}-{i}"}), n)
            rounds.append((bare, fleet))
        bare = max(r[0] for r in rounds)
        fleet = max(r[1] for r in rounds)
        return {"tasks": n, "bare_tasks_per_s": round(bare), "drfleet_tasks_per_s": round(fleet),
                "ratio": round(fleet / bare, 3)}
    finally:
        for proc in reversed(procs):
            try:
                os.killpg(proc.pid, signal.SIGTERM) if proc is not redis_proc else proc.terminate()
            except ProcessLookupError:
                pass
        for proc in procs:
            try:
                proc.wait(20)
            except subprocess.TimeoutExpired:
                proc.kill()


if __name__ == "__main__":
    print(run(int(sys.argv[1]) if len(sys.argv) > 1 else 2000))
