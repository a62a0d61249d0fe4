"""Where a restore of a files dataset may write, checked twice: by the CLI where the path was
typed (a relative path becomes absolute there, against the operator's working directory,
before it goes into a message), and by the worker that runs the restore (on another host a
path may not exist or be writable; a relative path has no meaning there).

A directory target must be absent or an empty directory, and lie under the dataset's
``restore_under`` directories when the plan names them; never inside the dataset's own
source directory or a filesystem store of the plan."""

from __future__ import annotations

import os
import socket

from drfleet.datapath.errors import RestoreTargetInvalid
from drfleet.plan.models import Plan


def is_path_target(target: str) -> bool:
    """True when ``target`` names a directory (not env:, file:, or a URL)."""
    return bool(target) and not target.startswith(("env:", "file:")) and "://" not in target


def absolute_target(target: str) -> str:
    """``target`` made absolute against this process's working directory (``~`` expanded);
    other kinds of target unchanged. For the CLI, where the path was typed."""
    if not is_path_target(target):
        return target
    return os.path.abspath(os.path.expanduser(target))


def _inside(path: str, root: str) -> bool:
    root = os.path.realpath(root)
    return path == root or path.startswith(root.rstrip("/") + "/")


def check_directory_target(plan: Plan, dataset: str, target: str, *, here: str | None = None) -> str:
    """The real absolute path of ``target`` for a restore of ``dataset``; raises
    RestoreTargetInvalid when it is relative, a file, a non-empty directory, outside the
    dataset's ``restore_under``, inside its source or a store, or (``here``: the host
    running the restore) when no directory can be created there."""
    ds = plan.dataset(dataset)
    where = f" on {here}" if here else ""
    if not os.path.isabs(target):
        raise RestoreTargetInvalid(f"restore target {target!r} is a relative path; it has no meaning{where}",
                                   dataset=dataset, hint="give --to an absolute path (the CLI resolves relative ones)")
    path = os.path.realpath(target)
    if os.path.lexists(target):
        if not os.path.isdir(path):
            raise RestoreTargetInvalid(f"restore target {target} is a file, not a directory{where}", dataset=dataset,
                                       hint="restore into a new or empty directory")
        try:
            entries = os.listdir(path)
        except OSError as exc:
            raise RestoreTargetInvalid(f"restore target {target} cannot be read{where} ({exc.strerror})",
                                       dataset=dataset) from None
        if entries:
            raise RestoreTargetInvalid(f"restore target {target} is not empty{where} ({len(entries)} entries)",
                                       dataset=dataset, hint="restore into a new or empty directory")
    if ds.restore_under and not any(_inside(path, root) for root in ds.restore_under):
        raise RestoreTargetInvalid(f"restore target {target} is outside what the plan allows for {dataset}",
                                   dataset=dataset, allowed=", ".join(ds.restore_under),
                                   hint="restore under one of the dataset's restore_under directories")
    if ds.source is not None and not ds.source.host and _inside(path, ds.source.path):
        raise RestoreTargetInvalid(f"restore target {target} is inside the source directory of {dataset}",
                                   dataset=dataset, hint="restore into a new directory, then move what you need")
    for name, loc in plan.storage.items():
        if loc.kind == "filesystem" and loc.path and _inside(path, loc.path):
            raise RestoreTargetInvalid(f"restore target {target} is inside storage location {name}",
                                       dataset=dataset, hint="restore outside the plan's stores")
    if here:
        existing = path
        while not os.path.lexists(existing):
            existing = os.path.dirname(existing)
        if not os.path.isdir(existing) or not os.access(existing, os.W_OK | os.X_OK):
            raise RestoreTargetInvalid(f"restore target {target} cannot be created{where}: {existing} is not a "
                                       "writable directory", dataset=dataset,
                                       hint="choose a directory the worker's user can write on that host")
    return path


def this_host() -> str:
    return socket.gethostname()
