"""Incremental file-tree backups against `rsync -a --link-dest` (issue 4).

A generated tree (mixed sizes: many small text-like files, some medium, a few large
random ones) is backed up in full; then 1% of its files are rewritten and two things are
timed side by side on the same change:

* drfleet's incremental backup (stat walk against the parent's index read back from the
  store, tar of the changed files, zstd, AES-256-GCM, filesystem store, manifest);
* `rsync -a --link-dest=PREVIOUS src/ NEW/`, the classic snapshot-with-hard-links.

Targets: the incremental takes at most 1.5x rsync's time; an unchanged tree finishes in
under 3 s (at 100,000 files). The full-size run (100,000 files, about 2 GB):

    .venv/bin/python -m bench.incremental_tree --files 100000 --size 2G

The default is smaller so that it runs in a few minutes on 2 cores. Work happens under
--dir (default: a temporary directory, removed afterwards).
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
import time
from pathlib import Path

FULL_SIZE_COMMAND = ".venv/bin/python -m bench.incremental_tree --files 100000 --size 2G"
FILES_PER_DIR = 100
SETTLE_SECONDS = 2.1  # the racy-timestamp window of change detection, plus a margin


def parse_size(text: str) -> int:
    units = {"K": 1 << 10, "M": 1 << 20, "G": 1 << 30}
    text = text.strip().upper().removesuffix("B")
    return int(float(text[:-1]) * units[text[-1]]) if text[-1] in units else int(text)


def file_sizes(files: int, total: int, rng: random.Random) -> list[int]:
    """Mixed sizes summing to about ``total``: 90% small (0.5-16 KiB), 9% medium, 1% large."""
    kinds = [rng.random() for _ in range(files)]
    small = [rng.randint(512, 16 << 10) if k < 0.90 else 0 for k in kinds]
    rest = max(total - sum(small), 0)
    medium_n = sum(1 for k in kinds if 0.90 <= k < 0.99) or 1
    large_n = sum(1 for k in kinds if k >= 0.99) or 1
    medium_each, large_each = int(rest * 0.4 / medium_n), int(rest * 0.6 / large_n)
    return [s if k < 0.90 else (max(1, int(medium_each * rng.uniform(0.5, 1.5))) if k < 0.99
                                else max(1, int(large_each * rng.uniform(0.5, 1.5))))
            for s, k in zip(small, kinds)]


def make_tree(root: Path, sizes: list[int], rng: random.Random) -> list[Path]:
    """Write the tree; half of every file is random bytes, half text (zstd gets ~2:1)."""
    noise = os.urandom(8 << 20)
    text = (b"lorem ipsum dolor sit amet, consectetur adipiscing elit " * 200_000)[: 8 << 20]
    paths = []
    for number, size in enumerate(sizes):
        directory = root / f"d{number // (FILES_PER_DIR * FILES_PER_DIR):03d}" / f"e{number // FILES_PER_DIR:05d}"
        if number % FILES_PER_DIR == 0:
            directory.mkdir(parents=True, exist_ok=True)
        path = directory / f"f{number:07d}.dat"
        with open(path, "wb") as out:
            left = size
            while left:
                piece = min(left, 4 << 20)
                source = noise if rng.random() < 0.5 else text
                start = rng.randrange(0, len(source) - piece + 1)
                out.write(source[start:start + piece])
                left -= piece
        paths.append(path)
    return paths


def change_files(paths: list[Path], fraction: float, rng: random.Random) -> int:
    chosen = rng.sample(paths, max(1, int(len(paths) * fraction)))
    for path in chosen:
        with open(path, "r+b") as handle:
            handle.seek(0)
            handle.write(os.urandom(min(4096, max(1, path.stat().st_size))))
    return len(chosen)


def write_plan(work: Path, src: Path) -> Path:
    from drfleet.backup_format.keyring import create_keyring

    (work / "keys").mkdir(mode=0o700)
    create_keyring(work / "keys" / "bench.keyring", "bench")
    plan = work / "plan.yaml"
    plan.write_text(textwrap.dedent(f"""\
        version: 1
        name: bench
        regions: [{{name: here, primary: true}}]
        storage: {{store: {{kind: filesystem, region: here, path: {work / 'store'}}}}}
        keys: {{bench: {{file: {work / 'keys' / 'bench.keyring'}}}}}
        datasets:
          tree:
            kind: files
            region: here
            source: {{path: {src}}}
            key: bench
            rpo: 24h
            rto: 1h
            policies:
              - {{name: weekly-full, trigger: "weekly on sunday at 03:00", keep: 4 weeks, copies: [home-region]}}
              - {{name: daily-incremental, trigger: "daily at 02:00", mode: incremental, keep: 30 days, copies: [home-region]}}
        """))
    return plan


def timed(fn) -> tuple[float, object]:
    started = time.perf_counter()
    result = fn()
    return time.perf_counter() - started, result


def rsync(args: list[str]) -> None:
    subprocess.run(["rsync", "-a", *args], check=True)


def run(files: int = 20_000, size: int = 400 << 20, fraction: float = 0.01, directory: str | None = None,
        seed: int = 4) -> dict:
    from drfleet.datapath.backup import run_backup
    from drfleet.plan.loader import load_plan

    rng = random.Random(seed)
    work = Path(tempfile.mkdtemp(prefix="drfleet-bench-incr-", dir=directory))
    try:
        src = work / "src"
        generate_s, paths = timed(lambda: make_tree(src, file_sizes(files, size, rng), rng))
        total = sum(p.stat().st_size for p in paths)
        plan = load_plan(write_plan(work, src))
        time.sleep(SETTLE_SECONDS)
        from bench import others
        others.init(work)
        others_s: dict[str, list] = {"restic": [], "borg": []}

        def with_others(step: int) -> None:
            others_s["restic"].append(others.restic_tree(work, src))
            others_s["borg"].append(others.borg_tree(work, src, f"snap{step}"))

        full_s, full = timed(lambda: run_backup(plan, "tree", "weekly-full", region="here"))
        rsync_full_s, _ = timed(lambda: rsync([f"{src}/", f"{work}/snap0/"]))
        with_others(0)
        changed = change_files(paths, fraction, rng)
        time.sleep(SETTLE_SECONDS)
        incr_s, incr = timed(lambda: run_backup(plan, "tree", "daily-incremental", region="here"))
        rsync_incr_s, _ = timed(lambda: rsync([f"--link-dest={work}/snap0", f"{src}/", f"{work}/snap1/"]))
        with_others(1)
        same_s, same = timed(lambda: run_backup(plan, "tree", "daily-incremental", region="here"))
        rsync_same_s, _ = timed(lambda: rsync([f"--link-dest={work}/snap1", f"{src}/", f"{work}/snap2/"]))
        with_others(2)
        side = {f"{tool}_{name}_s": (round(times[i], 2) if times[i] is not None else None)
                for tool, times in others_s.items() for i, name in enumerate(("full", "incremental", "unchanged"))}
        side.update(restic_repo_bytes=others.repo_bytes(work / "restic-repo"),
                    borg_repo_bytes=others.repo_bytes(work / "borg-repo"))
        if side.get("restic_incremental_s"):
            side["incremental_vs_restic"] = round(incr_s / side["restic_incremental_s"], 2)
        if side.get("borg_incremental_s"):
            side["incremental_vs_borg"] = round(incr_s / side["borg_incremental_s"], 2)
        return {**side,
            "files": len(paths), "bytes": total, "changed_files": changed, "generate_s": round(generate_s, 1),
            "full_s": round(full_s, 2), "full_stored_bytes": full["stored_size"], "rsync_full_s": round(rsync_full_s, 2),
            "incremental_s": round(incr_s, 2), "incremental_stored_entries": incr["stored_entries"],
            "incremental_stored_bytes": incr["stored_size"], "rsync_link_dest_s": round(rsync_incr_s, 2),
            "incremental_vs_rsync": round(incr_s / rsync_incr_s, 2),
            "unchanged_s": round(same_s, 2), "unchanged_stored_entries": same["stored_entries"],
            "unchanged_stored_bytes": same["stored_size"], "rsync_unchanged_s": round(rsync_same_s, 2),
        }
    finally:
        shutil.rmtree(work, ignore_errors=True)


def report(figures: dict, full_size: bool) -> str:
    f = figures
    ratio_ok = f["incremental_vs_rsync"] <= 1.5
    same_ok = f["unchanged_s"] < 3.0
    lines = [
        f"# incremental file tree: {f['files']:,} files, {f['bytes'] / 2**30:.2f} GiB, "
        f"{f['changed_files']:,} changed ({os.cpu_count()} cores)",
        f"{'':34} {'drfleet':>10} {'rsync':>10}",
        f"{'full backup / first copy (s)':34} {f['full_s']:>10} {f['rsync_full_s']:>10}",
        f"{'1% changed: incremental (s)':34} {f['incremental_s']:>10} {f['rsync_link_dest_s']:>10}"
        f"   ratio {f['incremental_vs_rsync']} (target <= 1.5: {'met' if ratio_ok else 'MISSED'})",
        f"{'unchanged tree (s)':34} {f['unchanged_s']:>10} {f['rsync_unchanged_s']:>10}"
        f"   (target < 3 s{' at 100,000 files' if not full_size else ''}: {'met' if same_ok else 'MISSED'})",
        f"restic (s): full {f.get('restic_full_s')}, incremental {f.get('restic_incremental_s')}, unchanged "
        f"{f.get('restic_unchanged_s')}; borg (s): full {f.get('borg_full_s')}, incremental "
        f"{f.get('borg_incremental_s')}, unchanged {f.get('borg_unchanged_s')}",
        f"stored: full {f['full_stored_bytes']:,} B; incremental {f['incremental_stored_entries']:,} entries, "
        f"{f['incremental_stored_bytes']:,} B; unchanged {f['unchanged_stored_entries']} entries, "
        f"{f['unchanged_stored_bytes']:,} B (index included)",
    ]
    if not full_size:
        lines.append(f"full size: {FULL_SIZE_COMMAND}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--files", type=int, default=20_000, help="files in the tree (full size: 100000)")
    parser.add_argument("--size", default="400M", help="total size, e.g. 400M, 2G (full size: 2G)")
    parser.add_argument("--changed", type=float, default=0.01, help="fraction of files changed")
    parser.add_argument("--dir", default=None, help="where to build the tree (default: a temp dir)")
    parser.add_argument("--json", action="store_true", help="print the figures as JSON")
    args = parser.parse_args(argv)
    figures = run(args.files, parse_size(args.size), args.changed, args.dir)
    full_size = args.files >= 100_000
    print(json.dumps(figures) if args.json else report(figures, full_size))


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    main()
