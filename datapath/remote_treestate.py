"""The tree survey of ``datapath.treestate`` for a tree on a plan host, over SSH.

One ``find -H ROOT -printf ...`` lists every entry with the same stat fields a local walk
reads; for on-change, one ``xargs -0 sha256sum -z`` reads only the files whose stat key
the cache cannot vouch for. The host needs GNU findutils and coreutils, nothing of
drfleet. Entries are sorted like the local walk, so a remote survey of a tree has the
same digest as a local survey of that tree. ctimes come from the host's clock: the
change-time estimate assumes synchronised clocks (NTP), and the watch clamps it between
its own surveys anyway.

Raised: TreeMissing (no such directory on the host), TreeUnreadable (find or sha256sum
failed for another reason than an entry vanishing; with their stderr tail), and the
``providers.ssh`` errors (HostUnreachable, UnknownHostKey, HostKeyChanged,
AuthenticationFailed, RemoteCommandTimedOut).
"""

from __future__ import annotations

import time

from drfleet.datapath.treestate import Entry, Survey, TreeMissing, TreeUnreadable, digest_entries
from drfleet.plan.models import Plan
from drfleet.providers.ssh import SshSession, SshTarget

FIND_FORMAT = "%y\\0%P\\0%m\\0%U\\0%G\\0%s\\0%T@\\0%C@\\0%i\\0%l\\0"
FIELDS = 10
COMMAND_TIMEOUT = 300.0
VANISHED = "No such file or directory"


def ssh_target(plan: Plan, host_name: str) -> SshTarget:
    """The plan host's SshTarget (key and known_hosts by path only)."""
    host = plan.hosts[host_name]
    return SshTarget(host=host.address, port=host.port, user=host.user, key_file=host.key_file,
                     known_hosts_file=host.known_hosts)


def survey_remote(target: SshTarget, root: str, *, kind: str, since: float | None = None,
                  hashes: dict[str, list] | None = None) -> Survey:
    """Survey ``root`` on ``target`` (see ``treestate.survey`` for ``kind``, ``since``
    and ``hashes``)."""
    started = time.time()
    with SshSession(target) as session:
        entries = remote_entries(session, root, host=str(target))
        return digest_entries(entries, kind=kind, since=since, hashes=hashes, started=started,
                              read_hashes=lambda members: remote_hashes(session, root, members, host=str(target)))


def remote_entries(session: SshSession, root: str, *, host: str) -> list[Entry]:
    result = session.run(["find", "-H", root, "-printf", FIND_FORMAT], check=False, timeout=COMMAND_TIMEOUT)
    if result.exit_status != 0:
        if not result.stdout and VANISHED in result.stderr_tail:
            raise TreeMissing("the tree to watch does not exist on its host", path=root, host=host)
        if _unexpected(result.stderr_tail):
            raise TreeUnreadable("cannot list the tree on its host", path=root, host=host,
                                 reason=f"find exited {result.exit_status}", stderr_tail=result.stderr_tail)
    parts = result.stdout.split(b"\0")[:-1]
    if len(parts) % FIELDS:
        raise TreeUnreadable("find printed a listing that cannot be parsed", path=root, host=host,
                             reason="is find GNU findutils?")
    entries = []
    for i in range(0, len(parts), FIELDS):
        ftype, member, mode, uid, gid, size, mtime, ctime, ino, target = (
            p.decode("utf-8", "surrogateescape") for p in parts[i:i + FIELDS])
        if ftype not in ("d", "f", "l"):
            continue  # sockets, FIFOs, devices: the dump skips them too
        entries.append(Entry(member or ".", ftype, int(mode, 8), int(uid), int(gid), int(size),
                             _ns(mtime), _ns(ctime), int(ino), target if ftype == "l" else ""))
    if not entries or entries[0].member != "." or entries[0].ftype != "d":
        raise TreeUnreadable("the tree to watch is not a directory on its host", path=root, host=host,
                             reason="not a directory")
    entries.sort(key=lambda e: (e.member != ".", e.member.split("/")))
    return entries


def remote_hashes(session: SshSession, root: str, members: list[str], *, host: str) -> dict[str, str]:
    """SHA-256 of ``members`` (files under ``root``); files that vanished are left out."""
    if not members:
        return {}
    base = root.rstrip("/") + "/"
    by_path = {(base + m).encode("utf-8", "surrogateescape"): m for m in members}
    result = session.run(["xargs", "-0", "-r", "sha256sum", "-z", "--"], input=b"\0".join(by_path),
                         check=False, timeout=COMMAND_TIMEOUT)
    if result.exit_status != 0 and _unexpected(result.stderr_tail):
        raise TreeUnreadable("cannot read files of the tree on its host", path=root, host=host,
                             reason=f"sha256sum exited {result.exit_status}", stderr_tail=result.stderr_tail)
    out = {}
    for record in result.stdout.split(b"\0"):
        path = record[66:]  # "<64 hex><two-character separator><path>"
        if path in by_path:
            out[by_path[path]] = record[:64].decode()
    return out


def _unexpected(stderr_tail: str) -> bool:
    return any(line.strip() and VANISHED not in line for line in stderr_tail.splitlines())


def _ns(text: str) -> int:
    seconds, _, fraction = text.partition(".")
    return int(seconds) * 10**9 + int((fraction + "000000000")[:9])
