"""Run every benchmark and print its figures (``make bench``)."""

from __future__ import annotations

import json
import platform
import time


def main() -> None:
    from bench import fleet_overhead, schedule_generation

    print(f"# drfleet benchmarks, {time.strftime('%Y-%m-%d')}, {platform.processor() or platform.machine()}, "
          f"{__import__('os').cpu_count()} cores")
    for name, fn in (("schedule_generation", schedule_generation.run), ("fleet_overhead", fleet_overhead.run)):
        print(name, json.dumps(fn()))


if __name__ == "__main__":
    main()
