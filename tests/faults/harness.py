"""What every fault scenario shares: a plan of small files datasets on a compressed clock
(``every N seconds``), real workers and beats (tests/fixtures/fleet.py), and a ledger that
counts what happened from the stores and Redis, never from the processes' own say-so.

The ledger's rules (docs/faults.md):

* expected slots: for each backup entry, every slot after beat started up to the last
  slot beat recorded as sent (``drfleet:beat:last-slot:*``);
* committed: manifests in the stores, counted per (dataset, slot);
* duplicates: a slot committed more than once, or both committed and recorded missed;
* lost: an expected slot neither committed nor recorded missed;
* orphans: temp files in ``.partial/``, incomplete multipart uploads, and backup objects
  without a manifest. Killed processes leave these by nature; ``reap`` runs the store
  reapers (``FilesystemStore.reap_partials``, ``S3Store.abort_incomplete_uploads``, and
  the removal of manifest-less objects that prune does after its grace) and counts them;
  ``orphans_left`` is what remains after that.
"""

from __future__ import annotations

import collections
import json
import os
import random
import signal
import textwrap
import time
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

import redis

from drfleet.providers.storage import innermost
from tests.fixtures.fleet import CeleryProcess, Fleet, add_plan_queues, write_plan  # noqa: F401 - Fleet for scenarios
from tests.fixtures.util import wait_for

POLICY = "fast"


def dataset_names(count: int) -> list[str]:
    return [f"ds{i:03d}" for i in range(count)]


def write_fault_plan(directory: Path, *, datasets: int, regions=("eu-central",), every: int = 2,
                     payload_bytes: int = 2000, storage: dict | None = None) -> Path:
    """A plan of ``datasets`` files datasets spread over ``regions``, each with one policy
    ``fast`` firing every ``every`` seconds into its region's store, no follow-up verify.
    ``storage`` replaces a region's store by another location spec (e.g. S3)."""
    from drfleet.backup_format.keyring import create_keyring

    blocks = []
    rng = random.Random(7)
    for i, name in enumerate(dataset_names(datasets)):
        src = directory / "src" / name
        src.mkdir(parents=True, exist_ok=True)
        (src / "data.bin").write_bytes(rng.randbytes(payload_bytes))
        region = regions[i % len(regions)]
        blocks.append(textwrap.dedent(f"""\
            {name}:
              kind: files
              region: {region}
              source: {{path: {src}}}
              key: content
              rpo: 1h
              rto: 15m
              policies:
                - {{name: {POLICY}, trigger: every {every} seconds, keep: 100000 versions, copies: [home-region]}}
            """))
    plan_path = write_plan(directory, regions=regions, datasets="".join(blocks),
                           extra="verification: {after_backup: none}\n")
    if storage:  # swap a region's filesystem store for another spec, same name and region
        lines = plan_path.read_text().splitlines()
        for region, spec in storage.items():
            lines = [f"  {region}-store: {json.dumps({**spec, 'region': region})}"
                     if line.startswith(f"  {region}-store:") else line for line in lines]
        plan_path.write_text("\n".join(lines) + "\n")
    keys = directory / "keys"
    keys.mkdir(mode=0o700, exist_ok=True)
    if not (keys / "content.keyring").exists():
        create_keyring(keys / "content.keyring", "content")
    return plan_path


def fault_env(**overrides: str) -> dict:
    """Environment for fault runs: short leases, a short visibility timeout (so a message
    whose worker was SIGKILLed comes back in seconds, not hours), quick beat failover."""
    env = {"DRFLEET_CLAIM_LEASE_SECONDS": "6", "DRFLEET_DATA_SOFT_LIMIT": "10",
           "DRFLEET_DATA_HARD_LIMIT": "12", "DRFLEET_CONTROL_SOFT_LIMIT": "8",
           "DRFLEET_CONTROL_HARD_LIMIT": "10", "DRFLEET_VISIBILITY_TIMEOUT": "15",
           "DRFLEET_BEAT_LOCK_TIMEOUT": "6", "DRFLEET_BEAT_MAX_INTERVAL": "1",
           "DRFLEET_CATCHUP_SECONDS": "30", "DRFLEET_UNACKED_RESTORE_SECONDS": "1",
           "DRFLEET_RECONCILE_SECONDS": "2", "DRFLEET_RECONCILE_GRACE_SECONDS": "4"}
    env.update(overrides)
    return env


def use_broker(broker_url: str, plan_path: Path, env: dict) -> None:
    """Point this test process (audit reads, the Celery app) at the run's broker and plan."""
    os.environ.update({"DRFLEET_PLAN": str(plan_path), "DRFLEET_BROKER_URL": broker_url,
                       "DRFLEET_STATE_URL": broker_url, **env})
    from drfleet.workers import app
    app.conf.broker_url = broker_url
    app.conf.result_backend = broker_url
    app.conf.redbeat_redis_url = broker_url
    add_plan_queues(app, plan_path)


# -- processes --------------------------------------------------------------------------

def children(pid: int) -> list[int]:
    """Direct child pids of ``pid`` (the prefork pool of a worker)."""
    out = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
        except OSError:
            continue
        if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
            out.append(int(entry))
    return out


def kill_pool_child(worker: CeleryProcess, rng: random.Random) -> int | None:
    """SIGKILL one pool process of ``worker``; returns its pid (None if it had none)."""
    pids = children(worker.proc.pid)
    if not pids:
        return None
    pid = rng.choice(pids)
    try:
        os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        return None
    return pid


def process_tree(pid: int) -> list[int]:
    return [pid] + [c for child in children(pid) for c in process_tree(child)]


def rss_and_fds(worker: CeleryProcess) -> tuple[int, int]:
    """Resident memory (bytes) and open file descriptors of a worker and its pool."""
    rss = fds = 0
    for pid in process_tree(worker.proc.pid):
        try:
            for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    rss += int(line.split()[1]) * 1024
            fds += len(os.listdir(f"/proc/{pid}/fd"))
        except OSError:
            continue
    return rss, fds


# -- the ledger ---------------------------------------------------------------------------

@dataclass
class Ledger:
    expected: int = 0
    committed: int = 0
    duplicates: int = 0
    lost: int = 0
    missed: int = 0
    torn: int = 0  # manifests whose objects are not all there, whole
    lost_slots: list = field(default_factory=list)
    duplicate_slots: list = field(default_factory=list)

    def problems(self) -> str:
        return (f"lost={self.lost} {self.lost_slots[:10]} duplicates={self.duplicates} "
                f"{self.duplicate_slots[:10]} torn={self.torn}")


def home_stores(plan_path: Path) -> dict:
    """location name -> the Store of every location some dataset backs up into."""
    from drfleet.datapath.locations import home_location, store_for
    from drfleet.plan.loader import load_plan

    plan = load_plan(plan_path)
    return {loc: store_for(plan, loc) for loc in {home_location(plan, d) for d in plan.datasets}}


def committed_slots(stores: dict) -> tuple[collections.Counter, int]:
    """(dataset, slot) -> number of manifests, and how many manifests name an object that
    is missing or of the wrong size."""
    counts: collections.Counter = collections.Counter()
    torn = 0
    for store in stores.values():
        objects = {info.key: info.size for info in store.list("datasets/")}
        for key in objects:
            if "/manifests/" not in key:
                continue
            manifest = json.loads(store.get_bytes(key))
            counts[(manifest["dataset"], manifest["slot"])] += 1
            prefix = f"datasets/{manifest['dataset']}/backups/{manifest['backup_id']}/"
            if any(objects.get(prefix + o["name"]) != o["size"] for o in manifest["objects"]):
                torn += 1
    return counts, torn


def backup_entries(plan_path: Path) -> list[tuple[str, str]]:
    from drfleet.plan.loader import load_plan
    plan = load_plan(plan_path)
    return [(name, policy.name) for name, ds in plan.datasets.items() for policy in ds.policies]


def slot_marker(client: redis.Redis, dataset: str, policy: str) -> str | None:
    value = client.get(f"drfleet:beat:last-slot:backup {dataset} {policy}")
    return value.decode() if value else None


def first_slots(client: redis.Redis, plan_path: Path, *, timeout: float = 60) -> dict:
    """Wait until beat has sent a first slot of every backup entry; return them. The
    ledger expects that slot and every later one."""
    entries = backup_entries(plan_path)
    wait_for(lambda: all(slot_marker(client, *e) for e in entries), timeout=timeout,
             what="beat to send a first slot of every entry")
    return {e: slot_marker(client, *e) for e in entries}


def ledger(plan_path: Path, client: redis.Redis, first: dict, *, regions: set[str] | None = None) -> Ledger:
    """The ledger (module docstring) of every backup entry, or of the datasets of ``regions``."""
    from drfleet.plan.loader import load_plan
    from drfleet.state.missed import missed_slots

    plan = load_plan(plan_path)
    counts, torn = committed_slots(home_stores(plan_path))
    missed = collections.Counter((m["entry"].split()[1], m["slot"]) for m in missed_slots(client=client)
                                 if m["entry"].startswith("backup "))
    out = Ledger(committed=sum(counts.values()), missed=sum(missed.values()), torn=torn)
    for name, ds in plan.datasets.items():
        if regions is not None and ds.region not in regions:
            continue
        for policy in ds.policies:
            marker = slot_marker(client, name, policy.name)
            if marker is None or (name, policy.name) not in first:
                continue
            start = datetime.fromisoformat(first[(name, policy.name)])
            slots = [start] + policy.trigger.fires_between(start, datetime.fromisoformat(marker))
            for slot in slots:
                out.expected += 1
                ident = (name, slot.isoformat())
                if counts[ident] + missed[ident] == 0:
                    out.lost += 1
                    out.lost_slots.append(ident)
    for ident, n in counts.items():
        extra = n - 1 + (1 if missed[ident] else 0)
        if extra > 0:
            out.duplicates += extra
            out.duplicate_slots.append(ident)
    return out


# -- orphans --------------------------------------------------------------------------------

def orphans(stores: dict) -> dict:
    """Temp files, incomplete uploads and manifest-less backup objects, per kind."""
    from drfleet.providers.storage.filesystem import FilesystemStore
    from drfleet.providers.storage.s3 import S3Store

    found = {"temp_files": 0, "incomplete_uploads": 0, "objects_without_manifest": 0}
    for store in stores.values():
        raw = innermost(store)
        if isinstance(raw, FilesystemStore) and raw.partial_dir.is_dir():
            found["temp_files"] += len(os.listdir(raw.partial_dir))
        if isinstance(raw, S3Store):
            found["incomplete_uploads"] += len(raw.list_incomplete_uploads())
        found["objects_without_manifest"] += len(_manifestless(raw))
    return found


def _manifestless(store) -> list[str]:
    keys = [info.key for info in store.list("datasets/")]
    manifests = {k for k in keys if "/manifests/" in k}
    out = []
    for k in keys:
        parts = k.split("/")
        if len(parts) >= 5 and parts[2] == "backups":
            if f"datasets/{parts[1]}/manifests/{parts[3]}.json" not in manifests:
                out.append(k)
    return out


def reap(stores: dict) -> int:
    """Run the store reapers on a quiet fleet; returns how many leftovers they removed."""
    from drfleet.providers.storage.filesystem import FilesystemStore
    from drfleet.providers.storage.s3 import S3Store

    removed = 0
    for store in stores.values():
        raw = innermost(store)
        if isinstance(raw, FilesystemStore):
            removed += raw.reap_partials(0)
        if isinstance(raw, S3Store):
            removed += raw.abort_incomplete_uploads(0)
        for k in _manifestless(raw):
            raw.delete(k)
            removed += 1
    return removed


# -- waiting ------------------------------------------------------------------------------

def queued(client: redis.Redis) -> int:
    """Messages waiting in drfleet queues plus those delivered and not yet acknowledged."""
    total = client.hlen("unacked")
    for pattern in ("*.data*", "*.control*"):
        for name in client.scan_iter(match=pattern, count=1000):
            if client.type(name) == b"list":
                total += client.llen(name)
    return total


def queues_idle(client: redis.Redis, state: redis.Redis | None = None, regions: set[str] | None = None) -> bool:
    """No message waiting in any drfleet queue, none delivered but unacknowledged, and no
    backup or copy sent but not ended (``drfleet:inflight`` in ``state``, default the broker);
    with ``regions``, only their queues and work count."""
    if regions is not None:
        from drfleet.state import inflight
        from drfleet.workers.reconcile import queued_task_ids, reserved_messages
        queues = [f"{r}.{lane}" for r in regions for lane in ("data", "control")]
        return not (reserved_messages(client, queues) or queued_task_ids(client, queues) or
                    any(e.region in regions for e in inflight.entries(client=state or client)))
    if client.hlen("unacked") or (state or client).hlen("drfleet:inflight"):
        return False
    for name in client.scan_iter(match="*.data*", count=1000):
        if client.type(name) == b"list" and client.llen(name):
            return False
    for name in client.scan_iter(match="*.control*", count=1000):
        if client.type(name) == b"list" and client.llen(name):
            return False
    return True


RECONCILE_PASS = """
import json
import drfleet.tasks.backup  # noqa: F401 - the tasks a pass may send again
from drfleet.state.store import broker_client, state_client
from drfleet.workers import app
from drfleet.workers.plan_context import current_plan
from drfleet.workers.reconcile import reconcile_region
plan = current_plan()
print(json.dumps([reconcile_region(app, plan, r, broker=broker_client(), state=state_client()).to_dict()
                  for r in plan.region_names]))
"""


def reconcile_now(env: dict) -> list[dict]:
    """One reconcile pass per region, as the ``drfleet.reconcile`` task runs it (beat, which
    sends those tasks, is stopped while a scenario settles), in a process configured by the
    fleet's environment ``env``."""
    import subprocess
    import sys
    done = subprocess.run([sys.executable, "-c", RECONCILE_PASS], env=env, capture_output=True, text=True, timeout=120)
    if done.returncode != 0:
        raise RuntimeError(f"reconcile pass failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.splitlines()[-1])


def reconcile_counts(client: redis.Redis) -> dict:
    """How often the reconcile passes restored, re-sent or recorded missed (audit log)."""
    from drfleet.state import audit
    outcomes = collections.Counter(r["outcome"] for r in audit.entries(action="reconcile", limit=10**6, client=client))
    return {f"reconcile_{o}": outcomes.get(o, 0) for o in ("restored", "resent", "missed", "abandoned")}


def stuck_claims(client: redis.Redis) -> list[str]:
    """Jobs whose claim still says "running" although nothing runs any more."""
    stuck = []
    for name in client.scan_iter(match="drfleet:idem:*", count=1000):
        raw = client.get(name)
        if raw and json.loads(raw).get("state") == "running":
            stuck.append(name.decode())
    return stuck


def drain(client: redis.Redis, *, timeout: float = 120, reconcile_env: dict | None = None,
          state: redis.Redis | None = None, regions: set[str] | None = None) -> None:
    """Wait until the queues stay idle for two seconds in a row (with ``reconcile_env``, the
    fleet's environment, running a reconcile pass every two seconds meanwhile, as beat would)."""
    quiet_since = [None]
    last_pass = [0.0]

    def settled():
        if reconcile_env is not None and time.monotonic() - last_pass[0] > 2:
            reconcile_now(reconcile_env)
            last_pass[0] = time.monotonic()
        if not queues_idle(client, state, regions):
            quiet_since[0] = None
            return False
        quiet_since[0] = quiet_since[0] or time.monotonic()
        return time.monotonic() - quiet_since[0] > 2

    wait_for(settled, timeout=timeout, interval=0.2, what="the queues to drain")


def backup_successes(client: redis.Redis, since: float = 0) -> list[float]:
    """Times of succeeded backup audit records after ``since``."""
    from drfleet.state import audit
    return [r["at"] for r in audit.entries(action="drfleet.backup", since=since or None, limit=10**6,
                                           client=client) if r["outcome"] == "succeeded"]


def recovery_seconds(client: redis.Redis, fault_times: list[float]) -> float:
    """Worst time from a fault's end to the next committed backup."""
    successes = sorted(backup_successes(client))
    worst = 0.0
    for t in fault_times:
        later = [s for s in successes if s > t]
        worst = max(worst, (later[0] - t) if later else float("inf"))
    return round(worst, 2)


def new_fleet(tmp: Path, broker_url: str, plan_path: Path, env: dict) -> Fleet:
    use_broker(broker_url, plan_path, env)
    return Fleet(tmp, broker_url, plan_path, env_extra=env)
