"""File trees to back up, as local directories: the plan's path for a local tree, a
staging mirror refreshed over rsync/SSH for a tree on a plan host.

Why a mirror (rsync into ``$DRFLEET_HOME/mirrors/{dataset}/tree``, then back the mirror
up like a local tree) rather than streaming a tar produced on the remote host:

* the network carries only what changed: rsync's own change detection and delta
  transfer move about 1% of a tree for a 1%-changed daily incremental, where a remote tar
  would move the whole tree (or need drfleet's change detection running on the remote
  host, i.e. Python and drfleet installed there);
* change detection, the file index and the archive are then exactly those of local trees
  (one code path, one set of tests), and restores do not depend on the remote host;
* failures are simple: if rsync fails (host unreachable, connection reset mid-transfer)
  nothing is backed up and the half-updated mirror is repaired by the next run (rsync
  resumes interrupted files from ``.rsync-partial``, which the backup never includes);
* the cost is local disk the size of the tree, per remote dataset.

The mirror is *quiescent*: only rsync changes it, under the lock, and rsync replaces a
changed file by a new inode (or changes its mode/owner/mtime in place), so the racy-
timestamp rule of change detection (docs/format.md) is not needed for it; without this,
every file rsync has just written would be stored again by the next incremental.

The mirror keeps the remote's modes, numeric owners (when the worker runs as root),
nanosecond mtimes, symlinks and hard links (``rsync -a --hard-links --numeric-ids``). A
file's ctime and inode are the mirror's: they change when rsync rewrites the file, which
change detection then sees; if the worker moves to another machine, the new mirror's first
incremental stores every file once (still correct, just larger).

Security: the SSH target holds the plan's key and known_hosts *paths*; it is built on the
worker from the plan, never carried in a task message. Before rsync runs, a paramiko
session checks the host key against the plan's known_hosts (an unknown or changed key is
refused with the presented fingerprint: ``UnknownHostKey``/``HostKeyChanged``) and that
the remote path is a directory; rsync's ssh then runs with strict host key checking on
the same known_hosts file. Two backups of the same remote dataset on one worker take
turns on the mirror (an exclusive ``flock``).
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
from dataclasses import dataclass
from typing import Iterator

from drfleet.datapath.errors import DataPathError
from drfleet.paths import drfleet_home
from drfleet.plan.models import Plan
from drfleet.providers.ssh import RemoteCommandFailed, RsyncFailed, SshSession, SshTarget, rsync_pull, with_retries

logger = logging.getLogger("drfleet.remote_trees")

MIRROR_EXCLUDE = (".rsync-partial",)  # rsync's resume area, never part of the tree
# --modify-window=-1: compare times to the nanosecond, not the second (rsync's default),
# so a file rewritten with the same size within one second, or a directory whose time
# rsync itself moved within the second, is still brought exactly in line with the host.
RSYNC_OPTIONS = ["--hard-links", "--modify-window=-1"]
RSYNC_ATTEMPTS = 3  # transient failures (connection lost, timeouts) are retried
RSYNC_RETRY_DELAY = 5.0


class RemoteTreeUnavailable(DataPathError):
    """The remote tree could not be staged (rsync failed); nothing was backed up."""

    hint = ("nothing was committed; if `transient` is true the next run retries and resumes, "
            "otherwise read stderr_tail and fix the cause first")


class RemoteTreeMissing(DataPathError):
    hint = "check the dataset's source path in the plan and that it exists on the host"


@dataclass(frozen=True)
class StagedTree:
    """A local directory to back up: ``path`` to walk, ``root_id`` naming the tree in the
    file index (the local path, or ``{host}:{path}``), patterns to ``exclude``;
    ``quiescent`` when only drfleet changes it (the mirror, under its lock)."""

    path: str
    root_id: str
    exclude: tuple[str, ...] = ()
    quiescent: bool = False


def rsync_options(plan: Plan, host_name: str) -> list[str]:
    """rsync's options for staging ``host_name``: RSYNC_OPTIONS, and ``--bwlimit`` (KiB/s)
    when the host has a ``bandwidth_limit``."""
    limit = plan.hosts[host_name].bandwidth_limit
    return RSYNC_OPTIONS + ([f"--bwlimit={max(1, limit // 1024)}"] if limit else [])


def ssh_target_for(plan: Plan, host_name: str) -> SshTarget:
    """The SshTarget of plan host ``host_name`` (key and known_hosts by path only)."""
    host = plan.hosts[host_name]
    return SshTarget(host=host.address, port=host.port, user=host.user, key_file=host.key_file,
                     known_hosts_file=host.known_hosts)


def mirror_path(dataset: str) -> str:
    """Where the staging mirror of remote dataset ``dataset`` lives on this worker."""
    return os.path.join(drfleet_home(), "mirrors", dataset, "tree")


def tree_location(plan: Plan, dataset: str) -> StagedTree:
    """Where ``dataset``'s tree is read from, without refreshing anything (for a remote
    tree: the mirror as the last backup left it)."""
    source = plan.dataset(dataset).source
    if not source.host:
        path = os.path.abspath(source.path)
        return StagedTree(path, path)
    return StagedTree(mirror_path(dataset), f"{source.host}:{source.path}", MIRROR_EXCLUDE, True)


@contextlib.contextmanager
def staged_tree(plan: Plan, dataset: str) -> Iterator[StagedTree]:
    """Yield the tree of files dataset ``dataset`` ready to be backed up.

    For a remote tree: lock the mirror, check the host key and the remote path over
    paramiko, rsync the remote path into the mirror, yield it, unlock. Raises the SSH
    provider's UnknownHostKey/HostKeyChanged/HostKeyRevoked (with the fingerprint),
    HostUnreachable, AuthenticationFailed; RemoteTreeMissing when the path is not a
    directory there; RemoteTreeUnavailable when rsync fails (after retrying transient
    failures RSYNC_ATTEMPTS times).
    """
    tree = tree_location(plan, dataset)
    source = plan.dataset(dataset).source
    if not source.host:
        yield tree
        return
    target = ssh_target_for(plan, source.host)
    os.makedirs(os.path.dirname(tree.path), mode=0o700, exist_ok=True)
    with open(tree.path + ".lock", "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        _check_remote_directory(target, source.path, dataset)
        try:
            result = with_retries(lambda: rsync_pull(target, source.path, tree.path, delete=True,
                                                     extra=rsync_options(plan, source.host)),
                                  attempts=RSYNC_ATTEMPTS, base_delay=RSYNC_RETRY_DELAY)
        except RsyncFailed as exc:
            error = RemoteTreeUnavailable(
                f"cannot stage the remote tree of dataset {dataset}: {exc.meaning}",
                dataset=dataset, host=source.host, address=f"{target.host}:{target.port}",
                remote_path=source.path, exit_code=exc.exit_code, transient=exc.transient,
                presented_fingerprint=exc.facts.get("presented_fingerprint"),
                stderr_tail=exc.stderr_tail.splitlines() or None)
            error.transient = exc.transient
            raise error from exc
        logger.info("staged %s from %s:%s: %d files (%d bytes) transferred, %d deleted",
                    dataset, source.host, source.path, result.files_transferred,
                    result.bytes_transferred, result.files_deleted)
        yield tree


def _check_remote_directory(target: SshTarget, path: str, dataset: str) -> None:
    with SshSession(target) as session:
        try:
            session.run(["test", "-d", path], timeout=max(30.0, target.connect_timeout))
        except RemoteCommandFailed:
            raise RemoteTreeMissing(f"the source of dataset {dataset} is not a directory on "
                                    f"{target.host}", dataset=dataset, host=str(target),
                                    remote_path=path) from None
