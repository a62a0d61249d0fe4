"""rsync over ssh between this machine and an ``SshTarget``, with retry classification.

Both directions run ``rsync -a --numeric-ids --partial-dir=.rsync-partial --stats
--itemize-changes`` with ssh locked down by ``providers.ssh.openssh.ssh_argv``. The
*contents* of the source directory are mirrored into the destination directory
(``--delete`` by default). An interrupted file is kept in ``.rsync-partial`` so a retry
resumes it instead of starting over. Remote paths are protected from the remote shell by
rsync itself (rsync >= 3.2.4 on both ends); ``*?[]`` in them still glob remotely.

Exit codes (rsync(1) "EXIT VALUES") counted as transient, i.e. worth retrying:
10 socket I/O, 12 protocol data stream (typically the connection dropped), 30 and 35
timeouts, 255 ssh connection failure -- unless ssh refused the host key or the key,
which retrying cannot fix -- and 24 (source files vanished while being read: a live
source; a new run builds a fresh file list). 23 (partial transfer due to error, e.g.
permission denied or I/O error on some files) is NOT transient: it repeats, and the
destination is incomplete and must not be published as a complete copy.
"""

from __future__ import annotations

import logging
import os
import re
import shlex
import subprocess
import threading
import time
from dataclasses import dataclass
from typing import Callable, TypeVar

from drfleet.providers.ssh.errors import RsyncFailed
from drfleet.providers.ssh.openssh import ssh_argv
from drfleet.providers.ssh.stderr_tail import StderrTail
from drfleet.retry import Backoff, retry_call

__all__ = ["RSYNC_EXIT_MEANINGS", "TRANSIENT_EXIT_CODES", "RsyncResult", "rsync_pull",
           "rsync_push", "with_retries"]

log = logging.getLogger(__name__)
T = TypeVar("T")

RSYNC_EXIT_MEANINGS = {
    1: "syntax or usage error", 2: "protocol incompatibility",
    3: "errors selecting input/output files, dirs", 4: "requested action not supported",
    5: "error starting client-server protocol", 6: "daemon unable to append to log-file",
    10: "error in socket I/O", 11: "error in file I/O", 12: "error in rsync protocol data stream",
    13: "errors with program diagnostics", 14: "error in IPC code",
    15: "sibling process crashed", 16: "sibling process was killed by a signal",
    19: "received SIGUSR1", 20: "received SIGINT, SIGTERM or SIGHUP",
    21: "some error returned by waitpid()", 22: "error allocating core memory buffers",
    23: "partial transfer due to error", 24: "partial transfer due to vanished source files",
    25: "the --max-delete limit stopped deletions", 30: "timeout in data send/receive",
    35: "timeout waiting for daemon connection", 255: "ssh connection failed or was lost",
}
TRANSIENT_EXIT_CODES = frozenset({10, 12, 24, 30, 35, 255})
_HOST_KEY_REFUSED = re.compile(r"Host key verification failed|REMOTE HOST IDENTIFICATION "
                               r"HAS CHANGED|host key is known for .* strict checking")
_PERMANENT_SSH = re.compile(r"Permission denied \(|Too many authentication failures|"
                            r"Bad configuration option|Load key .*: ")
_FINGERPRINT = re.compile(r"SHA256:[A-Za-z0-9+/]{43}")
_STATS = {
    "total_files": "Number of files", "files_transferred": "Number of regular files transferred",
    "files_deleted": "Number of deleted files", "total_bytes": "Total file size",
    "bytes_transferred": "Total transferred file size", "bytes_sent": "Total bytes sent",
    "bytes_received": "Total bytes received",
}
_STATS_LINE = re.compile(r"^(?P<name>[A-Za-z ]+): (?P<value>[\d,]+)")
_ITEMIZED = re.compile(r"^(\*deleting |[<>ch.*][fdLDS][.+?a-zA-Z ]{9,10} )")


@dataclass(frozen=True)
class RsyncResult:
    """What one rsync run did, from ``--stats`` and ``--itemize-changes``."""

    files_transferred: int = 0  # regular files whose data was sent
    bytes_transferred: int = 0  # size of those files (before delta compression)
    files_deleted: int = 0
    total_files: int = 0  # entries in the source file list
    total_bytes: int = 0  # size of all source files
    bytes_sent: int = 0  # on the wire
    bytes_received: int = 0
    changed_items: int = 0  # itemized lines: created, updated, attribute-changed, deleted
    exit_code: int = 0  # 24 only when accept_vanished allowed vanished files


def _remote_spec(target, path: str) -> str:
    host = f"[{target.host}]" if ":" in target.host else target.host
    return f"{target.user}@{host}:{path}"


def _contents(path: str) -> str:
    return path if path.endswith("/") else path + "/"


def _check_paths(source: str, destination: str, delete: bool) -> None:
    """Refuse empty paths (rsync would read "/" or the login directory) and mirroring
    with --delete onto a filesystem root. Raises ValueError."""
    if not str(source).strip() or not str(destination).strip():
        raise ValueError("rsync source and destination paths must not be empty")
    if delete and os.path.normpath(str(destination)) == "/":
        raise ValueError("refusing to mirror with --delete onto '/'")


def rsync_pull(target, remote_path: str, local_dir: str | os.PathLike, *,
               link_dest: str | os.PathLike | None = None, delete: bool = True,
               extra: list[str] | None = None, accept_vanished: bool = False) -> RsyncResult:
    """Mirror the contents of directory ``remote_path`` on ``target`` into ``local_dir``.

    ``link_dest`` is a previous local snapshot: unchanged files are hard-linked to it
    instead of copied. ``extra`` is appended to rsync's options (argv items, e.g.
    ``["--bwlimit=1000"]``). Raises ``RsyncFailed`` on a non-zero exit (``transient``
    says whether to retry; exit 24 is returned as success if ``accept_vanished``), and
    ValueError for an empty path or ``--delete`` onto ``/``.
    """
    _check_paths(remote_path, os.fspath(local_dir), delete)
    local_dir = os.path.abspath(local_dir)
    os.makedirs(local_dir, exist_ok=True)
    options = [f"--link-dest={os.path.abspath(link_dest)}"] if link_dest else []
    return _run_rsync(target, options, _remote_spec(target, _contents(remote_path)),
                      local_dir + "/", delete=delete, extra=extra,
                      accept_vanished=accept_vanished)


def rsync_push(local_path: str | os.PathLike, target, remote_dir: str, *,
               link_dest: str | None = None, delete: bool = True,
               extra: list[str] | None = None, accept_vanished: bool = False) -> RsyncResult:
    """Mirror local directory ``local_path``'s contents (or copy one file) into
    ``remote_dir`` on ``target``; ``remote_dir``'s parent must exist.

    ``link_dest`` is a remote path (absolute, or relative to ``remote_dir``). Otherwise
    as ``rsync_pull``.
    """
    _check_paths(os.fspath(local_path), remote_dir, delete)
    local_path = os.path.abspath(local_path)
    source = _contents(local_path) if os.path.isdir(local_path) else local_path
    options = [f"--link-dest={link_dest}"] if link_dest else []
    return _run_rsync(target, options, source, _remote_spec(target, _contents(remote_dir)),
                      delete=delete, extra=extra, accept_vanished=accept_vanished)


def rsync_argv(target, source: str, destination: str, options: list[str]) -> list[str]:
    """The full rsync command line; ``-e`` is one argument built with ``shlex.join``."""
    return ["rsync", "-a", "--numeric-ids", "--partial-dir=.rsync-partial", "--stats",
            "--itemize-changes", "-e", shlex.join(ssh_argv(target)), *options,
            "--", source, destination]


def _run_rsync(target, options: list[str], source: str, destination: str, *, delete: bool,
               extra: list[str] | None, accept_vanished: bool) -> RsyncResult:
    options = options + (["--delete"] if delete else []) + list(extra or [])
    argv = rsync_argv(target, source, destination, options)
    env = {k: v for k, v in os.environ.items() if not k.startswith("RSYNC_")}
    env["LC_ALL"] = "C"
    tail = StderrTail()
    try:
        process = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                   stderr=subprocess.PIPE, env=env)
    except FileNotFoundError:
        raise RsyncFailed(127, "rsync is not installed on this machine", "", target.host,
                          port=target.port, hint="install rsync (apt-get install rsync)") from None
    reader = threading.Thread(target=_drain, args=(process.stderr, tail), daemon=True)
    reader.start()
    stats: dict[str, int] = {}
    changed = 0
    for raw in process.stdout:
        line = raw.decode("utf-8", errors="replace").rstrip("\n")
        if _ITEMIZED.match(line):
            changed += 1
        elif match := _STATS_LINE.match(line):
            stats[match["name"]] = int(match["value"].replace(",", ""))
    code = process.wait()
    reader.join()
    if code == 0 or (code == 24 and accept_vanished):
        return RsyncResult(changed_items=changed, exit_code=code,
                           **{field: stats.get(name, 0) for field, name in _STATS.items()})
    raise _failure(code, tail.text(), target, argv)


def _drain(stream, tail: StderrTail) -> None:
    for chunk in iter(lambda: stream.read1(65536), b""):
        tail.feed(chunk)


def _failure(code: int, stderr_tail: str, target, argv: list[str]) -> RsyncFailed:
    meaning = RSYNC_EXIT_MEANINGS.get(code, "unknown rsync exit code")
    facts = dict(port=target.port, command=shlex.join(argv))
    if code < 0:
        meaning = f"rsync was killed by signal {-code}"
    if _HOST_KEY_REFUSED.search(stderr_tail):
        fingerprint = _FINGERPRINT.search(stderr_tail)
        return RsyncFailed(
            code, "ssh refused the host key (unknown or CHANGED; see stderr_tail)",
            stderr_tail, target.host, host_key_rejected=True,
            presented_fingerprint=fingerprint[0] if fingerprint else None,
            hint=("do not retry blindly: verify the host key out of band, then fix "
                  f"{target.known_hosts_file}"), **facts)
    transient = code in TRANSIENT_EXIT_CODES and not _PERMANENT_SSH.search(stderr_tail)
    return RsyncFailed(code, meaning, stderr_tail, target.host, transient=transient,
                       **facts)


def with_retries(fn: Callable[[], T], attempts: int = 3,
                 sleep: Callable[[float], None] = time.sleep, *, base_delay: float = 5.0,
                 max_delay: float = 120.0) -> T:
    """``fn()`` under drfleet's one retry policy (``drfleet.retry.retry_call``): up to
    ``attempts`` tries while the error is transient, sleeping ``base_delay * 2**n`` (at most
    ``max_delay``) between them. Returns ``fn``'s result; re-raises a non-transient error at
    once and the last error when attempts run out. Raises ValueError if ``attempts`` < 1."""
    return retry_call(fn, attempts=attempts, backoff=Backoff(base_delay, max_delay), what="rsync", sleep=sleep)
