"""Run every benchmark and print its figures (``make bench``; ``make bench-full`` for the
sizes the README quotes). Each benchmark also runs alone: ``python -m bench.NAME --help``."""

from __future__ import annotations

import importlib
import json
import os
import platform
import sys
import time

# (module, keyword arguments for the quick run, keyword arguments for the full run)
BENCHMARKS = [
    ("schedule_generation", {}, {}),
    ("fleet_overhead", {}, {}),
    ("failover", {"kills": 3, "tasks": 500}, {"kills": 10, "tasks": 2000}),
    ("prune_catalog", {}, {}),
    ("data_path", {"size_gb": 0.2}, {"size_gb": 1.0}),
    ("incremental_tree", {}, {"files": 100_000, "size": 2 << 30}),
    ("wal_push", {}, {"scale": 70, "seconds": 120}),
    ("audit_query", {"records": 20_000}, {"records": 100_000}),
    ("stores", {"size_mb": 64}, {"size_mb": 1024}),
    ("physical_backup", {"size_mb": 200}, {"size_mb": 1000}),
]


def main() -> None:
    full = "--full" in sys.argv
    print(f"# drfleet benchmarks, {time.strftime('%Y-%m-%d')}, {platform.processor() or platform.machine()}, "
          f"{os.cpu_count()} cores, load {os.getloadavg()[0]:.1f}, {'full' if full else 'quick'} sizes")
    for name, quick, big in BENCHMARKS:
        module = importlib.import_module(f"bench.{name}")
        print(name, json.dumps(module.run(**(big if full else quick))), flush=True)


if __name__ == "__main__":
    main()
