"""The OpenSSH client command line for an ``SshTarget``, for tools that run ``ssh``
themselves (rsync ``-e``). Same policy as ``SshSession``: only the given key, only the
given known_hosts file, strict host key checking, never a prompt.
"""

from __future__ import annotations

import math
import os

__all__ = ["ssh_argv"]


def _expandable_path(path: str) -> str:
    """An absolute path as ssh expects it where it expands ``%`` tokens and ``${VAR}``.

    Raises ValueError for a path containing ``${``, which ssh cannot be told to keep.
    """
    path = os.path.abspath(path)
    if "${" in path:
        raise ValueError(f"ssh would expand '${{' in the path {path!r}; rename it")
    return path.replace("%", "%%")


def _config_quoted(value: str) -> str:
    """Double-quote a value for ssh's config-line parser (``-o Key=value``)."""
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def ssh_argv(target, *, server_alive_interval: int = 15) -> list[str]:
    """``ssh ...`` options (without the destination) for ``target``.

    ``-F none`` ignores ~/.ssh/config and /etc/ssh/ssh_config so behaviour does not
    depend on the machine; the system known_hosts file is ignored too, and the given one
    is never modified (``UpdateHostKeys=no``). Dead connections are detected after about
    ``4 * server_alive_interval`` seconds. The key is given as ``-o IdentityFile=``
    rather than ``-i`` because ``-i`` cannot name a path containing ``%``.
    """
    key_file = _config_quoted(_expandable_path(target.key_file))
    known_hosts = _config_quoted(_expandable_path(target.known_hosts_file))
    return [
        "ssh", "-F", "none",
        "-p", str(target.port),
        "-o", f"IdentityFile={key_file}",
        "-o", f"UserKnownHostsFile={known_hosts}",
        "-o", "GlobalKnownHostsFile=/dev/null",
        "-o", "StrictHostKeyChecking=yes",
        "-o", "UpdateHostKeys=no",
        "-o", "BatchMode=yes",
        "-o", "IdentitiesOnly=yes",
        "-o", "IdentityAgent=none",
        "-o", f"ConnectTimeout={max(1, math.ceil(target.connect_timeout))}",
        "-o", f"ServerAliveInterval={server_alive_interval}",
        "-o", "ServerAliveCountMax=4",
    ]
