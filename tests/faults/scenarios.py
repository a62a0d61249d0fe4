"""The fault scenarios, each a function of its scale that returns one row of the figures
table (``Row``). tests/faults/test_*.py run short versions and assert the zeros;
tests/faults/report.py runs the long versions and writes docs/faults.md."""

from __future__ import annotations

import json
import os
import random
import re
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import redis

from tests.faults import harness
from tests.fixtures.util import wait_for


@dataclass
class Row:
    scenario: str
    repetitions: int = 0
    committed: int = 0
    duplicates: int = 0
    lost: int = 0
    orphans_left: int = 0
    recovery_seconds: float = 0.0
    notes: dict = field(default_factory=dict)

    def as_dict(self) -> dict:
        return asdict(self)

    def check(self) -> None:
        """Raise AssertionError unless nothing was lost, doubled, torn or left behind."""
        assert (self.duplicates, self.lost, self.orphans_left) == (0, 0, 0), self
        assert self.notes.get("torn", 0) == 0, self
        assert self.notes.get("stuck_claims", 0) == 0, self
        assert self.committed > 0, self


def settle_and_count(name: str, fleet, client: redis.Redis, plan_path: Path, first: dict,
                     fault_times: list[float], repetitions: int, **notes) -> Row:
    """Stop the beats, let the queues drain, then count (see harness.Ledger)."""
    for proc in fleet.procs:
        if "beat" in proc.argv:
            proc.stop()
    harness.drain(client, reconcile_env=fleet.env)
    ledger = harness.ledger(plan_path, client, first)
    stores = harness.home_stores(plan_path)
    left_by_faults = harness.orphans(stores)
    reaped = harness.reap(stores)
    left = sum(harness.orphans(stores).values())
    return Row(name, repetitions, ledger.committed, ledger.duplicates, ledger.lost, left,
               harness.recovery_seconds(client, fault_times),
               notes={"expected_slots": ledger.expected, "missed_recorded": ledger.missed,
                      "torn": ledger.torn, "reaped": reaped, "stuck_claims": len(harness.stuck_claims(client)),
                      **harness.reconcile_counts(client),
                      **left_by_faults, **notes,
                      **({"problems": ledger.problems()} if ledger.lost or ledger.duplicates else {})})


def worker_kills(tmp: Path, broker_url: str, *, kills: int, datasets: int = 6, every: int = 2,
                 whole_worker_every: int = 5, seed: int = 1) -> Row:
    """SIGKILL a pool process (or, every ``whole_worker_every``-th time, the whole worker,
    which is then restarted) at random moments while beat sends backups."""
    rng = random.Random(seed)
    client = redis.Redis.from_url(broker_url)
    plan = harness.write_fault_plan(tmp / "plan", datasets=datasets, every=every, payload_bytes=4 << 20)
    env = harness.fault_env()
    fleet = harness.new_fleet(tmp, broker_url, plan, env)
    try:
        worker = fleet.worker("eu-central", concurrency=2)
        fleet.beat()
        first = harness.first_slots(client, plan)
        kill_times, whole = [], 0
        while len(kill_times) < kills:
            time.sleep(rng.uniform(0.3, 2.0))
            if (len(kill_times) + 1) % whole_worker_every == 0:
                worker.kill()
                whole += 1
                kill_times.append(time.time())
                worker = fleet.worker("eu-central", concurrency=2)
            elif harness.kill_pool_child(worker, rng):
                kill_times.append(time.time())
        time.sleep(2 * every)
        return settle_and_count("worker SIGKILL during backups", fleet, client, plan, first,
                                kill_times, len(kill_times), whole_worker_kills=whole)
    finally:
        fleet.stop()


def redis_restarts(tmp: Path, *, restarts: int, down_seconds: float = 3, long_stop_seconds: float = 0,
                   datasets: int = 4, every: int = 2, seed: int = 2) -> Row:
    """Restart the fleet's Redis (append-only file on, as compose/ runs it) ``restarts``
    times while beat sends backups; with ``long_stop_seconds``, one more stop that long."""
    from tests.fixtures.redis_server import RedisServer

    rng = random.Random(seed)
    server = RedisServer(extra_args=["--appendonly", "yes", "--appendfsync", "everysec"]).start()
    client = redis.Redis.from_url(server.url)
    plan = harness.write_fault_plan(tmp / "plan", datasets=datasets, every=every)
    fleet = harness.new_fleet(tmp, server.url, plan, harness.fault_env())
    try:
        fleet.worker("eu-central", concurrency=2)
        fleet.beat()
        first = harness.first_slots(client, plan)
        back_times = []
        stops = [down_seconds] * restarts + ([long_stop_seconds] if long_stop_seconds else [])
        for seconds in stops:
            time.sleep(rng.uniform(2, 5))
            server.stop()
            time.sleep(seconds)
            server.start()
            back_times.append(time.time())
        time.sleep(3 * every)
        alive = [p for p in fleet.procs if p.proc.poll() is None]
        row = settle_and_count("Redis restarted during backups", fleet, client, plan, first, back_times,
                               len(stops), longest_stop_seconds=max(stops),
                               processes_exited=len(fleet.procs) - len(alive))
        return row
    finally:
        fleet.stop()
        server.cleanup()


def _a_backup_running(client: redis.Redis, timeout: float = 60) -> None:
    wait_for(lambda: next(client.scan_iter(match="drfleet:running:*", count=100), None) is not None,
             timeout=timeout, interval=0.05, what="a backup to be running")


def redis_killed_mid_backup(tmp: Path, *, kills: int, appendfsync: str = "always", down_seconds: float = 5,
                            datasets: int = 4, every: int = 2) -> Row:
    """SIGKILL the fleet's Redis (append-only file, ``appendfsync``) while a backup runs,
    ``kills`` times, restarting it ``down_seconds`` later. The worker loses its connection
    mid-task, terminates the task and acknowledges its message; the visibility timeout is an
    hour here, so only the reconcile pass can bring the lost work back."""
    from tests.fixtures.redis_server import RedisServer

    server = RedisServer(extra_args=["--appendonly", "yes", "--appendfsync", appendfsync]).start()
    client = redis.Redis.from_url(server.url)
    plan = harness.write_fault_plan(tmp / "plan", datasets=datasets, every=every, payload_bytes=4 << 20)
    fleet = harness.new_fleet(tmp, server.url, plan, harness.fault_env(DRFLEET_VISIBILITY_TIMEOUT="3600"))
    try:
        fleet.worker("eu-central", concurrency=2)
        fleet.beat()
        first = harness.first_slots(client, plan)
        back_times = []
        for _ in range(kills):
            _a_backup_running(client)
            server.kill()
            time.sleep(down_seconds)
            server.start()
            back_times.append(time.time())
            wait_for(lambda: harness.backup_successes(client, since=back_times[-1]), timeout=60,
                     what="a backup to commit after Redis came back")
        return settle_and_count(f"Redis SIGKILLed mid-backup (AOF, appendfsync {appendfsync})", fleet, client,
                                plan, first, back_times, kills, down_seconds=down_seconds)
    finally:
        fleet.stop()
        server.cleanup()


def whole_worker_kills(tmp: Path, broker_url: str, *, kills: int, datasets: int = 3, every: int = 2) -> Row:
    """SIGKILL a whole worker (main process and pool) while it runs a backup and start a
    new one; with an hour-long visibility timeout only the reconcile pass (the dead worker's
    heartbeat is gone) gives its message to the new worker. Recovery: kill to the next commit."""
    client = redis.Redis.from_url(broker_url)
    plan = harness.write_fault_plan(tmp / "plan", datasets=datasets, every=every, payload_bytes=4 << 20)
    fleet = harness.new_fleet(tmp, broker_url, plan, harness.fault_env(DRFLEET_VISIBILITY_TIMEOUT="3600"))
    try:
        worker = fleet.worker("eu-central", concurrency=1)
        fleet.beat()
        first = harness.first_slots(client, plan)
        kill_times = []
        for _ in range(kills):
            _a_backup_running(client)
            worker.kill()
            kill_times.append(time.time())
            worker = fleet.worker("eu-central", concurrency=1)
            wait_for(lambda: harness.backup_successes(client, since=kill_times[-1]), timeout=60,
                     what="a backup to commit after the worker was killed")
        return settle_and_count("whole worker SIGKILLed mid-backup", fleet, client, plan, first, kill_times, kills)
    finally:
        fleet.stop()


REGIONS = ("eu-central", "us-east", "ap-southeast")


def sentinel_failovers(tmp: Path, *, kills: int, datasets: int = 6, every: int = 2) -> Row:
    """Three redis-servers and three sentinels (quorum 2); workers in three regions and two
    beats, all configured with the sentinels and the master's name only. The master is
    SIGKILLed while backups run, ``kills`` times (and restarted, to rejoin as a replica):
    the sentinels promote a replica; workers, beats, the reconcile passes and the CLI follow
    it. Recovery: a kill to the next committed backup (the failover included)."""
    import subprocess
    import sys

    from drfleet.state.fleet_redis import connect_state, fleet_redis
    from tests.fixtures.sentinel import SentinelCluster

    cluster = SentinelCluster().start()
    plan = harness.write_fault_plan(tmp / "plan", datasets=datasets, regions=REGIONS, every=every,
                                    payload_bytes=1 << 20)
    env = harness.fault_env(DRFLEET_VISIBILITY_TIMEOUT="3600", **cluster.env())
    fleet = harness.Fleet(tmp, None, plan, env)
    client = connect_state(fleet_redis(fleet.env), socket_timeout=5)
    try:
        for region in REGIONS:
            fleet.worker(region, concurrency=1)
        fleet.beat()
        fleet.beat()
        first = harness.first_slots(client, plan)
        kill_times, failover_seconds = [], []
        for _ in range(kills):
            _a_backup_running(client)
            old = cluster.kill_master()
            kill_times.append(time.time())
            cluster.wait_for_failover(old.port)
            failover_seconds.append(round(time.time() - kill_times[-1], 2))
            old.start()  # comes back as a replica of the promoted server
            wait_for(lambda: harness.backup_successes(client, since=kill_times[-1]), timeout=120, interval=0.5,
                     what="a backup to commit after the failover")
        status = subprocess.run([sys.executable, "-m", "drfleet.cli.main", "status", "--json"], env=fleet.env,
                                capture_output=True, text=True, timeout=60)
        assert status.returncode == 0, status.stderr
        return settle_and_count("Redis master killed (Sentinel failover)", fleet, client, plan, first, kill_times,
                                kills, failover_seconds=failover_seconds,
                                cli_broker=json.loads(status.stdout)["broker"])
    finally:
        fleet.stop()
        cluster.stop()


def region_lost(tmp: Path, *, lose: str = "eu-central", datasets: int = 6, every: int = 2,
                watch_seconds: float = 12) -> Row:
    """Three regions, each with a Redis server, a sentinel and a worker; beats in two of
    them. Everything of ``lose`` is SIGKILLed at once (its Redis node, sentinel, worker and
    beat), the master among them when it lives there. The other regions keep their
    schedules: counted from the stores, every slot of their datasets sent after the loss is
    committed once or recorded missed. (The lost region's own datasets wait for it: nothing
    runs their backups, and ``drfleet status`` lists them as unaccounted.)"""
    from drfleet.state.fleet_redis import connect_state, fleet_redis
    from tests.fixtures.sentinel import SentinelCluster

    cluster = SentinelCluster().start()
    plan = harness.write_fault_plan(tmp / "plan", datasets=datasets, regions=REGIONS, every=every)
    env = harness.fault_env(DRFLEET_VISIBILITY_TIMEOUT="3600", **cluster.env())
    fleet = harness.Fleet(tmp, None, plan, env)
    client = connect_state(fleet_redis(fleet.env), socket_timeout=5)
    survivors = set(REGIONS) - {lose}
    try:
        workers = {region: fleet.worker(region, concurrency=1) for region in REGIONS}
        beats = {REGIONS[0]: fleet.beat(), REGIONS[1]: fleet.beat()}
        first = harness.first_slots(client, plan)
        i = REGIONS.index(lose)
        lost_master = cluster.master() is cluster.servers[i]
        cluster.sentinels[i].kill()
        cluster.servers[i].kill()
        workers[lose].kill()
        if lose in beats:
            beats[lose].kill()
        lost_at = time.time()
        if lost_master:
            cluster.wait_for_failover(cluster.servers[i].port)
        wait_for(lambda: harness.backup_successes(client, since=lost_at), timeout=120, interval=0.5,
                 what="the surviving regions to commit a backup")
        time.sleep(watch_seconds)  # the survivors keep their schedules
        for proc in fleet.procs:
            if "beat" in proc.argv:
                proc.stop()
        harness.drain(client, reconcile_env=fleet.env, regions=survivors)
        ledger = harness.ledger(plan, client, first, regions=survivors)
        return Row(f"region lost ({lose}: its Redis node, sentinel, worker and beat)", 1, ledger.committed,
                   ledger.duplicates, ledger.lost, 0, harness.recovery_seconds(client, [lost_at]),
                   notes={"expected_slots": ledger.expected, "missed_recorded": ledger.missed, "torn": ledger.torn,
                          "lost_region_held_the_master": lost_master,
                          **({"problems": ledger.problems()} if ledger.lost or ledger.duplicates else {})})
    finally:
        fleet.stop()
        cluster.stop()


def beat_failovers(tmp: Path, broker_url: str, *, failovers: int, datasets: int = 3, every: int = 2) -> Row:
    """Two beats; the one holding RedBeat's lock is SIGKILLed ``failovers`` times (a new
    standby started each time). Recovery: kill to the next committed backup."""
    client = redis.Redis.from_url(broker_url)
    plan = harness.write_fault_plan(tmp / "plan", datasets=datasets, every=every)
    fleet = harness.new_fleet(tmp, broker_url, plan, harness.fault_env())
    try:
        fleet.worker("eu-central", concurrency=2)
        beats = [fleet.beat(), fleet.beat()]
        first = harness.first_slots(client, plan)
        kill_times = []
        for _ in range(failovers):
            time.sleep(3)
            active = next(b for b in beats if "Acquired lock" in b.output() and b.proc.poll() is None)
            active.kill()
            kill_times.append(time.time())
            beats.remove(active)
            before = len(harness.backup_successes(client))
            beats.append(fleet.beat())
            wait_for(lambda: len(harness.backup_successes(client)) > before + datasets, timeout=60,
                             what="the standby beat to take over")
        return settle_and_count("two beats, active one SIGKILLed", fleet, client, plan, first, kill_times,
                                failovers)
    finally:
        fleet.stop()


S3_FAULTS = [("503", 2), ("500", 2), ("reset", 2), ("cut", 1), ("slow", 0), ("outage", 0)]


def s3_faults(tmp: Path, s3_server, proxy, *, rounds: int = 1, payload_bytes: int = 20 << 20,
              outage_seconds: float = 8) -> Row:
    """Backups (multipart uploads of ~3 parts) through ``proxy`` while it answers 503/500,
    resets or cuts connections, slows down, or fails every request for ``outage_seconds``
    mid-upload (the backup then commits after botocore's retries or fails with
    StoreUnavailable; anything else counts as lost). Counts committed backups, clear
    failures and incomplete uploads left before and after the store reaper."""
    import os

    from drfleet.datapath.backup import run_backup
    from drfleet.plan.loader import load_plan
    from drfleet.providers.storage.errors import StoreUnavailable

    os.environ.update(DRFLEET_FAULT_S3_KEY=s3_server.access_key_id, DRFLEET_FAULT_S3_SECRET=s3_server.secret_access_key)
    bucket = s3_server.new_bucket("faults")
    spec = {"kind": "s3", "bucket": bucket, "endpoint_url": proxy.endpoint_url, "s3_region": s3_server.region,
            "access_key": {"env": "DRFLEET_FAULT_S3_KEY"}, "secret_key": {"env": "DRFLEET_FAULT_S3_SECRET"}}
    plan_path = harness.write_fault_plan(tmp / "plan", datasets=1, payload_bytes=payload_bytes,
                                         storage={"eu-central": spec})
    plan = load_plan(plan_path)
    moto = s3_server.client()
    committed = failed_clearly = unexpected = left_by_faults = 0
    worst = 0.0
    seconds: dict = {}
    errors: list = []
    for round_ in range(rounds):
        for i, (mode, count) in enumerate(S3_FAULTS):
            slot = f"2026-01-01T{round_ % 24:02d}:{i:02d}:00+00:00"
            started = time.time()
            try:
                if mode == "slow":
                    proxy.delay = 0.01
                elif mode == "outage":
                    _outage_mid_upload(proxy, moto, bucket, outage_seconds)
                else:
                    proxy.inject(mode, count)
                run_backup(plan, "ds000", harness.POLICY, region="eu-central", slot=slot)
                committed += 1
            except StoreUnavailable:
                failed_clearly += 1
                if mode != "outage":
                    unexpected += 1
            except Exception as exc:  # noqa: BLE001 - anything but a clear store error is a finding
                unexpected += 1
                errors.append(f"{mode}: {type(exc).__name__}: {exc}"[:300])
            finally:
                proxy.delay = 0.0
                proxy.heal()
            worst = max(worst, time.time() - started)
            seconds[mode] = max(seconds.get(mode, 0), round(time.time() - started, 1))
            left_by_faults += len(moto.list_multipart_uploads(Bucket=bucket).get("Uploads", []))
            stores = harness.home_stores(plan_path)
            harness.reap(stores)
    stores = harness.home_stores(plan_path)
    counts, torn = harness.committed_slots(stores)
    left = sum(harness.orphans(stores).values())
    return Row("S3 endpoint 500/503, resets, cuts, slow, outage", rounds * len(S3_FAULTS), committed,
               sum(n - 1 for n in counts.values() if n > 1), unexpected, left, round(worst, 2),
               notes={"failed_clearly": failed_clearly, "incomplete_uploads_left_by_faults": left_by_faults,
                      "torn": torn, "connections_faulted": proxy.faulted, "seconds_by_fault": seconds,
                      **({"errors": errors} if errors else {})})


def _outage_mid_upload(proxy, moto, bucket: str, seconds: float) -> None:
    """From a background thread: once a multipart upload has started, fail every request
    for a while (longer than botocore's retries), then heal."""
    import threading

    def outage():
        deadline = time.time() + 60
        while time.time() < deadline and not moto.list_multipart_uploads(Bucket=bucket).get("Uploads"):
            time.sleep(0.02)
        proxy.fault_all("503")
        time.sleep(seconds)
        proxy.heal()

    proxy.delay = 0.005  # give the thread time to see the upload in progress
    threading.Thread(target=outage, daemon=True).start()


REGIONS = ("eu-central", "us-east", "ap-south")


def soak(tmp: Path, broker_url: str, *, datasets: int, every: int, seconds: float,
         sample_every: float = 5.0) -> Row:
    """``datasets`` small datasets over three regions firing every ``every`` seconds for
    ``seconds``: one worker per region (two processes each) and one beat. Samples worker RSS
    and open fds, Redis memory and queue depth; afterwards every slot is accounted for."""
    client = redis.Redis.from_url(broker_url)
    plan = harness.write_fault_plan(tmp / "plan", datasets=datasets, regions=REGIONS, every=every,
                                    payload_bytes=1000)
    fleet = harness.new_fleet(tmp, broker_url, plan, harness.fault_env(DRFLEET_CATCHUP_SECONDS=str(every)))
    try:
        workers = [fleet.worker(region, concurrency=2) for region in REGIONS]
        fleet.beat()
        first = harness.first_slots(client, plan, timeout=120)
        samples = []
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            time.sleep(sample_every)
            rss = fds = 0
            for w in workers:
                r, f = harness.rss_and_fds(w)
                rss, fds = rss + r, fds + f
            samples.append({"rss": rss, "fds": fds, "redis": int(client.info("memory")["used_memory"]),
                            "queued": harness.queued(client)})
        row = settle_and_count(f"soak: {datasets} datasets, 3 regions, every {every}s", fleet, client, plan,
                               first, [], 1)
        row.repetitions = row.notes["expected_slots"]
        row.notes.update(flow_figures(samples), queued_after=harness.queued(client),
                         minutes=round(seconds / 60, 1))
        return row
    finally:
        fleet.stop()


def flow_figures(samples: list[dict]) -> dict:
    """First-third vs last-third averages of the samples (the first sample is warm-up)."""
    body = samples[1:] or samples
    third = max(1, len(body) // 3)

    def avg(rows, k):
        return sum(r[k] for r in rows) / len(rows)

    head, tail = body[:third], body[-third:]
    return {"rss_mb_start": round(avg(head, "rss") / 2**20, 1), "rss_mb_end": round(avg(tail, "rss") / 2**20, 1),
            "fds_start": round(avg(head, "fds")), "fds_end": round(avg(tail, "fds")),
            "redis_mb_max": round(max(r["redis"] for r in body) / 2**20, 1),
            "redis_mb_start": round(avg(head, "redis") / 2**20, 1),
            "redis_mb_end": round(avg(tail, "redis") / 2**20, 1),
            "queued_max": max(r["queued"] for r in body)}


# -- data sources and stores: a clear failure, then the retry commits ---------------------
#
# Each repetition backs up one slot of its own; the fault makes the first attempt fail,
# a retry of the same slot follows once the fault is over. Counted like S3 above:
# committed = manifests per slot, duplicates = a slot with more than one, lost = a slot
# the retry did not commit or an attempt that ended in anything but the clear error
# expected of the fault, orphans = what is left after the store reapers; recovery = from
# the fault's end to the retry's commit.

def _retried_slots_row(name: str, plan_path: Path, slots: list[str], repetitions: int, unexpected: int,
                       recovery: list[float], left_by_faults: dict, **notes) -> Row:
    stores = harness.home_stores(plan_path)
    counts, torn = harness.committed_slots(stores)
    reaped = harness.reap(stores)
    left = sum(harness.orphans(stores).values())
    per_slot = {slot: sum(n for (_, s), n in counts.items() if s == slot) for slot in slots}
    return Row(name, repetitions, sum(counts.values()), sum(n - 1 for n in counts.values() if n > 1),
               unexpected + sum(1 for n in per_slot.values() if n == 0), left, max(recovery, default=0.0),
               notes={"torn": torn, "reaped": reaped, **left_by_faults, **notes})


def _leftovers(plan_path: Path) -> dict:
    """Orphans in the stores right after a failed attempt, before any reaper ran."""
    return harness.orphans(harness.home_stores(plan_path))


def _add(total: dict, more: dict) -> None:
    for k, v in more.items():
        total[k] = total.get(k, 0) + v


def pg_restarts(tmp: Path, broker_url: str, *, restarts: int, megabytes: int = 24) -> Row:
    """PostgreSQL restarted (``pg_ctl stop -m fast``, start) while a real worker's
    ``drfleet.backup`` is streaming pg_dump's table data. The attempt must fail with
    SourceToolFailed carrying pg_dump's stderr tail (audited as ``retrying``, logged by the
    worker) and leave nothing committed; the task's own in-slot retry (a transient source
    failure, DRFLEET_BACKUP_RETRY_SECONDS=1 here) then commits the slot once."""
    import uuid

    from drfleet.backup_format.keyring import create_keyring
    from drfleet.state import audit
    from drfleet.tasks.backup import backup
    from tests.faults.injectors import POSTGRES_DATASET, RestartDuringDump, fill_database
    from tests.fixtures.fleet import write_plan
    from tests.fixtures.postgres_cluster import PostgresCluster

    cluster = PostgresCluster()
    client = redis.Redis.from_url(broker_url)
    fleet = None
    try:
        cluster.start()
        dsn = fill_database(cluster, "faultdb", megabytes)
        plan_path = write_plan(tmp / "plan", regions=("eu-central",), extra="verification: {after_backup: none}\n",
                               datasets=POSTGRES_DATASET.format(name="orders-db", env="DRFLEET_FAULT_PG_URL",
                                                                policy=harness.POLICY))
        (tmp / "plan" / "keys").mkdir(mode=0o700, exist_ok=True)
        create_keyring(tmp / "plan" / "keys" / "content.keyring", "content")
        env = harness.fault_env(DRFLEET_FAULT_PG_URL=dsn, DRFLEET_BACKUP_RETRY_SECONDS="1")
        fleet = harness.new_fleet(tmp, broker_url, plan_path, env)
        worker = fleet.worker("eu-central")
        slots, recovery, errors, left_by_faults = [], [], [], {}
        unexpected = failed_clearly = 0
        for i in range(restarts):
            slot = f"2026-02-01T00:{i:02d}:00+00:00"
            slots.append(slot)
            kwargs = {"dataset": "orders-db", "policy": harness.POLICY, "region": "eu-central", "slot": slot}
            task_id = str(uuid.uuid4())
            fault = RestartDuringDump(cluster, "faultdb").start()
            result = backup.apply_async(kwargs=kwargs, task_id=task_id)
            outcome = result.get(timeout=180, propagate=False)
            fault.join()
            retrying = [r["details"].get("error") for r in audit.entries(
                action="drfleet.backup", limit=10_000, client=client, task_id=task_id) if r["outcome"] == "retrying"]
            said = worker.output().rsplit(f"[{task_id}] retry:", 1)[-1]
            committed_once = result.state == "SUCCESS" and isinstance(outcome, dict) and \
                outcome.get("status") == "committed"
            if fault.hit and committed_once and retrying[:1] == ["SourceToolFailed"] and "pg_dump: error:" in said:
                failed_clearly += 1
            else:
                unexpected += 1
                errors.append(f"slot {slot}: hit={fault.hit} state={result.state} retrying={retrying} "
                              f"{str(result.result)[:200]}")
            _add(left_by_faults, _leftovers(plan_path))
            recovery.append(round(max(harness.backup_successes(client)) - fault.back_at, 2))
        pg_dump_said = sorted(set(re.findall(r"pg_dump: error: [^\\'\n]{0,120}", worker.output())))[:3]
        return _retried_slots_row("PostgreSQL restarted during a dump", plan_path, slots, restarts, unexpected,
                                  recovery, left_by_faults, failed_clearly=failed_clearly,
                                  retried_by="the task's own in-slot retry on a real worker",
                                  pg_dump_said=pg_dump_said, **({"errors": errors} if errors else {}))
    finally:
        if fleet:
            fleet.stop()
        cluster.cleanup()


SSH_FAULTS = ("drop", "outage")


def ssh_drops(tmp: Path, *, drops: int, file_bytes: int = 1 << 20, bwlimit_kbps: int = 1000) -> Row:
    """A remote files dataset staged by rsync over a real sshd, with a new file of
    ``file_bytes`` to transfer each repetition (rate-limited, so the fault lands
    mid-transfer). Alternately: ``drop`` kills every sshd connection (the listener stays):
    rsync's own retry (``remote_trees.with_retries``) resumes from ``.rsync-partial`` and
    the same run commits; ``outage`` stops sshd until the run has failed, which must be
    RemoteTreeUnavailable (transient, naming dataset and host) with nothing committed;
    sshd is started again and ``run_backup`` run again for the same slot (data path only:
    what the fleet's next delivery would do)."""
    from drfleet.backup_format.keyring import create_keyring
    from drfleet.datapath import remote_trees
    from drfleet.datapath.backup import run_backup
    from drfleet.datapath.remote_trees import RemoteTreeUnavailable
    from drfleet.plan.loader import load_plan
    from tests.faults.injectors import remote_files_dataset, when_transferring
    from tests.fixtures.fleet import write_plan
    from tests.fixtures.sshd import SshServer

    saved = (os.environ.get("DRFLEET_HOME"), list(remote_trees.RSYNC_OPTIONS), remote_trees.RSYNC_RETRY_DELAY)
    os.environ["DRFLEET_HOME"] = str(tmp / "worker-home")
    remote_trees.RSYNC_OPTIONS = [*saved[1], f"--bwlimit={bwlimit_kbps}"]
    remote_trees.RSYNC_RETRY_DELAY = 0.2
    server = SshServer().start()
    try:
        remote = tmp / "remote" / "uploads"
        remote.mkdir(parents=True)
        (remote / "keep.conf").write_text("x = 1\n")
        datasets, hosts = remote_files_dataset("uploads", harness.POLICY, server, remote)
        plan_path = write_plan(tmp / "plan", regions=("eu-central",), datasets=datasets,
                               extra=hosts + "verification: {after_backup: none}\n")
        (tmp / "plan" / "keys").mkdir(mode=0o700, exist_ok=True)
        create_keyring(tmp / "plan" / "keys" / "content.keyring", "content")
        plan = load_plan(plan_path)
        mirror = remote_trees.mirror_path("uploads")
        slots, recovery, errors, left_by_faults = [], [], [], {}
        unexpected = failed_clearly = resumed_in_run = 0
        for i in range(drops):
            kind = SSH_FAULTS[i % len(SSH_FAULTS)]
            slot = f"2026-03-01T00:{i:02d}:00+00:00"
            slots.append(slot)
            (remote / f"upload-{i:03d}.bin").write_bytes(os.urandom(file_bytes))
            fault_end = [0.0]

            def fault(kind=kind):
                (server.drop_connections if kind == "drop" else server.stop)()
                fault_end[0] = time.time()

            injector = when_transferring(mirror, min(256 << 10, file_bytes // 4), fault)
            try:
                run_backup(plan, "uploads", harness.POLICY, region="eu-central", slot=slot)
                injector.join()
                if kind == "drop":
                    resumed_in_run += 1
                else:
                    unexpected += 1
                    errors.append(f"{kind}: the backup committed through an sshd outage")
            except RemoteTreeUnavailable as exc:
                injector.join()
                clear = exc.transient and exc.facts.get("dataset") == "uploads" and exc.facts.get("host") == "web1"
                if kind == "outage" and clear:
                    failed_clearly += 1
                else:
                    unexpected += 1
                    errors.append(f"{kind}: {exc}"[:300])
                _add(left_by_faults, _leftovers(plan_path))
                server.start()
                fault_end[0] = time.time()
                run_backup(plan, "uploads", harness.POLICY, region="eu-central", slot=slot)
            except Exception as exc:  # noqa: BLE001 - anything but the clear error is a finding
                unexpected += 1
                errors.append(f"{kind}: {type(exc).__name__}: {exc}"[:300])
                server.start()
            recovery.append(round(time.time() - fault_end[0], 2))
        partials = os.path.join(mirror, ".rsync-partial")
        return _retried_slots_row("SSH peer dropping mid-transfer (rsync of a remote tree)", plan_path, slots, drops,
                                  unexpected, recovery, left_by_faults, failed_clearly=failed_clearly,
                                  resumed_by_rsync_retry=resumed_in_run,
                                  retried_by="rsync's own retry (drop); run_backup again for the slot (outage)",
                                  rsync_partial_left=len(os.listdir(partials)) if os.path.isdir(partials) else 0,
                                  **({"errors": errors} if errors else {}))
    finally:
        server.cleanup()
        remote_trees.RSYNC_OPTIONS, remote_trees.RSYNC_RETRY_DELAY = saved[1], saved[2]
        if saved[0] is None:
            os.environ.pop("DRFLEET_HOME", None)
        else:
            os.environ["DRFLEET_HOME"] = saved[0]


DISK_FAULTS = ("object", "manifest")  # what the free space is too small for


def disk_full(tmp: Path, *, rounds: int = 1, payload_bytes: int = 1 << 20, size_bytes: int = 16 << 20) -> Row:
    """The filesystem store on a tmpfs of ``size_bytes`` (mounted as root), filled by a
    filler file so that a backup finds too little space for its first object
    (``object``), or just the room its objects took last time, so the manifest is what
    does not fit (``manifest``). Each attempt must fail with StoreFull naming the key
    and leave no temp file, object or manifest; the filler is then removed (space freed)
    and ``run_backup`` run again for the same slot (data path only). Returns a row with
    ``notes["skipped"]`` when no tmpfs can be mounted here."""
    from drfleet.backup_format.keyring import create_keyring
    from drfleet.datapath.backup import run_backup
    from drfleet.plan.loader import load_plan
    from drfleet.providers.storage import StoreFull
    from tests.faults.injectors import Tmpfs

    plan_path = harness.write_fault_plan(tmp / "plan", datasets=1, payload_bytes=payload_bytes)
    (tmp / "plan" / "keys").mkdir(mode=0o700, exist_ok=True)
    if not (tmp / "plan" / "keys" / "content.keyring").exists():
        create_keyring(tmp / "plan" / "keys" / "content.keyring", "content")
    disk = Tmpfs(tmp / "plan" / "stores" / "eu-central", size_bytes)
    name = "filesystem store out of space"
    if not disk.mount():
        return Row(name, notes={"skipped": "cannot mount a tmpfs here (needs root)"})
    saved_home = os.environ.get("DRFLEET_HOME")
    os.environ["DRFLEET_HOME"] = str(tmp / "worker-home")
    try:
        plan = load_plan(plan_path)
        source = tmp / "plan" / "src" / "ds000" / "data.bin"
        slots, recovery, errors, left_by_faults, full_at = [], [], [], {}, []
        unexpected = failed_clearly = 0
        last_objects = None
        for i in range(rounds * len(DISK_FAULTS)):
            kind = DISK_FAULTS[i % len(DISK_FAULTS)]
            slot = f"2026-04-01T00:{i:02d}:00+00:00"
            slots.append(slot)
            source.write_bytes(os.urandom(payload_bytes))
            if kind == "manifest" and last_objects is None:  # learn the objects' size first
                last_objects = _objects_on_disk(run_backup(plan, "ds000", harness.POLICY, region="eu-central"),
                                                plan_path)
            disk.fill(64 << 10 if kind == "object" else last_objects)
            try:
                run_backup(plan, "ds000", harness.POLICY, region="eu-central", slot=slot)
                unexpected += 1
                errors.append(f"{kind}: committed on a full store")
            except StoreFull as exc:
                key = exc.facts.get("key") or ""
                full_at.append("manifest" if "/manifests/" in key else "object" if "/backups/" in key else key)
                leftovers = _leftovers(plan_path)
                _add(left_by_faults, leftovers)
                if any(leftovers.values()) or not key:
                    unexpected += 1
                    errors.append(f"{kind}: left {leftovers} (key {key!r})")
                else:
                    failed_clearly += 1
            except Exception as exc:  # noqa: BLE001 - anything but StoreFull is a finding
                unexpected += 1
                errors.append(f"{kind}: {type(exc).__name__}: {exc}"[:300])
            disk.free_space()
            freed = time.time()
            summary = run_backup(plan, "ds000", harness.POLICY, region="eu-central", slot=slot)
            recovery.append(round(time.time() - freed, 2))
            last_objects = _objects_on_disk(summary, plan_path)
        row = _retried_slots_row(name, plan_path, slots, len(slots), unexpected, recovery, left_by_faults,
                                 failed_clearly=failed_clearly, full_at=full_at,
                                 retried_by="run_backup again for the slot once the filler was removed",
                                 **({"errors": errors} if errors else {}))
        row.committed = sum(harness.committed_slots(harness.home_stores(plan_path))[0][("ds000", s)] for s in slots)
        return row
    finally:
        disk.umount()
        if saved_home is None:
            os.environ.pop("DRFLEET_HOME", None)
        else:
            os.environ["DRFLEET_HOME"] = saved_home


def _objects_on_disk(summary: dict, plan_path: Path) -> int:
    """Bytes (whole 4 KiB pages) the objects of the backup in ``summary`` take up."""
    import json

    store = harness.home_stores(plan_path)[summary["location"]]
    manifest = json.loads(store.get_bytes(f"datasets/{summary['dataset']}/manifests/{summary['backup_id']}.json"))
    return sum(-(-o["size"] // 4096) * 4096 for o in manifest["objects"])
