"""A store on any rclone remote (Google Cloud Storage, Backblaze B2, Azure Blob, WebDAV,
SFTP, S3, a local directory, ...), through Debian's ``rclone``.

``remote`` is ``REMOTE:PATH`` (a remote of ``config_file``, the file ``rclone config``
writes, and the directory in it); the object under key ``a/b`` is ``REMOTE:PATH/a/b``.

How it talks to rclone: one ``rclone rcd`` (remote control daemon) per config file and
process, on a random loopback port, started on first use and restarted if it dies. Its
rc password is random and passed in the environment (``RCLONE_RC_PASS``), like
everything secret: the command line holds the config file's *path* and flags only, and
the credentials stay in the config file. Uploads stream through ``operations/uploadfile``
(rclone's ``rcat``: no temp copy of a whole backup on the worker for backends that can
stream uploads, which GCS, B2, Azure Blob, S3, SFTP, WebDAV and local all can); reads
stream from the daemon's ``--rc-serve`` file server.

Nothing half-written is visible: a write goes to ``PATH/.partial/<random>.tmp`` and is
moved to its key (``operations/movefile``: a rename where the backend has one, else a
server-side copy and delete) only once the upload finished and its size matches. The
top-level name ``.partial`` is reserved and never listed.

``put_bytes(if_absent=True)`` checks and then moves: rclone has no conditional write, so
two writers racing on one key can both succeed (the last one wins).

Settings that are wrong are refused before anything is written: a config file that is
missing or readable by group or others (``InvalidStoreSettings``: chmod 600), a remote
that the config file does not define. Errors name the store and the remote (never a
credential, never the config file's contents).
"""

from __future__ import annotations

import atexit
import configparser
import ctypes
import http.client
import io
import json
import os
import queue
import re
import secrets
import shutil
import signal
import socket
import stat
import subprocess
import tempfile
import threading
import time
import urllib.parse
from base64 import b64encode
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from typing import Any, BinaryIO

from drfleet.providers.storage.base import ObjectInfo, ObjectWriter, Store, validate_key, validate_prefix
from drfleet.providers.storage.errors import (
    InvalidKey,
    InvalidStoreSettings,
    ObjectExists,
    ObjectNotFound,
    StoreAccessDenied,
    StoreError,
    StoreUnavailable,
)
from drfleet.providers.storage.support.streams import ObjectStream

PARTIAL_DIR = ".partial"
RCLONE = "rclone"
_NOT_FOUND = ("object not found", "directory not found", "not found")
_TRANSIENT_WORDS = ("connection refused", "connection reset", "timeout", "timed out", "eof",
                    "no such host", "temporarily", "503", "502", "500 internal", "too many requests")
_DENIED_WORDS = ("permission denied", "access denied", "403", "401", "unauthorized",
                 "forbidden", "authentication", "auth failed")
_CHUNK_QUEUE = 4  # chunks in flight between a writer and its upload thread


def check_config_file(config_file: str, store: str) -> None:
    """Refuse a missing rclone config file or one that group or others can read."""
    try:
        st = os.stat(config_file)
    except FileNotFoundError:
        raise InvalidStoreSettings("the rclone config file does not exist", store=store,
                                   config_file=config_file,
                                   hint="make it with `rclone config --config PATH`") from None
    except OSError as exc:
        raise InvalidStoreSettings("the rclone config file cannot be read", store=store,
                                   config_file=config_file, reason=exc.strerror) from None
    if not stat.S_ISREG(st.st_mode):
        raise InvalidStoreSettings("the rclone config path is not a file", store=store,
                                   config_file=config_file)
    if st.st_mode & 0o077:
        raise InvalidStoreSettings(
            "the rclone config file holds credentials but other users can read or change it",
            store=store, config_file=config_file, mode=oct(stat.S_IMODE(st.st_mode)),
            hint=f"chmod 600 {config_file} (and keep it owned by the worker's user)")


def config_remotes(config_file: str) -> set[str] | None:
    """The remote names a config file defines; None when it is encrypted (rclone checks)."""
    try:
        with open(config_file, encoding="utf-8", errors="replace") as handle:
            text = handle.read()
    except OSError:
        return None
    if "RCLONE_ENCRYPT_V0" in text:
        return None
    parser = configparser.ConfigParser(interpolation=None, strict=False)
    try:
        parser.read_string(text)
    except configparser.Error:
        return None
    return set(parser.sections())


class RcloneDaemon:
    """One ``rclone rcd --rc-serve`` on a random loopback port; see the module doc."""

    def __init__(self, config_file: str, *, bwlimit: str | None = None,
                 executable: str = RCLONE) -> None:
        self.config_file = config_file
        self.bwlimit = bwlimit
        self.executable = shutil.which(executable) or executable
        self.port = 0
        self.proc: subprocess.Popen | None = None
        self._auth = ""
        self._lock = threading.Lock()
        self._log = tempfile.TemporaryFile()  # noqa: SIM115 - lives as long as the daemon

    def ensure(self, store: str) -> int:
        """Start the daemon if it is not running; return its port."""
        with self._lock:
            if self.proc is not None and self.proc.poll() is None:
                return self.port
            if not os.path.exists(self.executable) and shutil.which(self.executable) is None:
                raise InvalidStoreSettings("rclone is not installed on this worker", store=store,
                                           hint="apt-get install rclone")
            for _ in range(3):
                self._start()
                if self._wait_ready():
                    return self.port
            raise StoreUnavailable(store, None, "rclone rcd did not start",
                                   log_tail=self.log_tail())

    def _start(self) -> None:
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            self.port = sock.getsockname()[1]
        password = secrets.token_urlsafe(24)
        self._auth = "Basic " + b64encode(f"drfleet:{password}".encode()).decode()
        env = {**os.environ, "RCLONE_RC_USER": "drfleet", "RCLONE_RC_PASS": password}
        argv = [self.executable, "rcd", "--config", self.config_file, "--rc-serve",
                "--rc-addr", f"127.0.0.1:{self.port}", "--log-level", "NOTICE",
                "--low-level-retries", "3", "--contimeout", "15s", "--timeout", "60s"]
        if self.bwlimit:
            argv += ["--bwlimit", self.bwlimit]
        self.proc = subprocess.Popen(argv, env=env, stdin=subprocess.DEVNULL,
                                     stdout=self._log, stderr=self._log,
                                     preexec_fn=_die_with_parent)  # noqa: PLW1509 - only prctl

    def _wait_ready(self) -> bool:
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                return False
            try:
                status, _ = self.request("POST", "/rc/noop", b"{}", timeout=2)
                if status == 200:
                    return True
            except OSError:
                pass
            time.sleep(0.02)
        self.stop()
        return False

    def request(self, method: str, path: str, body: Any = None, *, timeout: float = 300,
                headers: dict | None = None, stream: bool = False) -> Any:
        """One HTTP request to the daemon: (status, body bytes), or the response if ``stream``."""
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=timeout)
        all_headers = {"Authorization": self._auth, **(headers or {})}
        if isinstance(body, bytes):
            all_headers.setdefault("Content-Type", "application/json")
        conn.request(method, path, body=body, headers=all_headers,
                     encode_chunked=not isinstance(body, (bytes, type(None))))
        response = conn.getresponse()
        if stream:
            return response
        try:
            return response.status, response.read()
        finally:
            conn.close()

    def log_tail(self) -> str:
        self._log.seek(0, io.SEEK_END)
        size = self._log.tell()
        self._log.seek(max(0, size - 2000))
        return self._log.read().decode(errors="replace").strip()

    def stop(self) -> None:
        proc, self.proc = self.proc, None
        if proc is not None and proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


_LIBC = ctypes.CDLL(None)


def _die_with_parent() -> None:  # pragma: no cover - runs in the child before exec
    """The daemon gets SIGTERM when the worker that started it dies (PR_SET_PDEATHSIG)."""
    _LIBC.prctl(1, signal.SIGTERM)


_DAEMONS: dict[tuple[int, str, str | None], RcloneDaemon] = {}
_DAEMONS_LOCK = threading.Lock()


def daemon_for(config_file: str, bwlimit: str | None) -> RcloneDaemon:
    """The process's daemon for this config file and bandwidth limit (a forked child
    starts its own)."""
    key = (os.getpid(), os.path.abspath(config_file), bwlimit)
    with _DAEMONS_LOCK:
        daemon = _DAEMONS.get(key)
        if daemon is None:
            daemon = _DAEMONS[key] = RcloneDaemon(key[1], bwlimit=bwlimit)
        return daemon


@atexit.register
def _stop_daemons() -> None:
    for (pid, _, _), daemon in list(_DAEMONS.items()):
        if pid == os.getpid():
            daemon.stop()


class RcloneStore(Store):
    """Objects under ``remote`` (``REMOTE:PATH``) of ``config_file``; see the module doc.

    ``bwlimit`` is rclone's ``--bwlimit`` for this store's transfers (e.g. ``"10M"`` for
    10 MiB/s, or rclone's timetable form ``"08:00,512k 19:00,off"``).
    """

    def __init__(self, remote: str, config_file: str, *, name: str | None = None,
                 bwlimit: str | None = None, check_remote: bool = True) -> None:
        self.name = name or f"rclone:{remote}"
        if not remote or ":" not in remote:
            raise InvalidStoreSettings("an rclone store's remote is REMOTE:PATH", store=self.name,
                                       remote=remote)
        self.remote = remote.rstrip("/") if not remote.endswith(":") else remote
        self.config_file = os.path.abspath(config_file)
        check_config_file(self.config_file, self.name)
        remote_name = remote.split(":", 1)[0]
        if check_remote and remote_name and not remote.startswith(":") and "/" not in remote_name:
            known = config_remotes(self.config_file)
            if known is not None and remote_name not in known:
                raise InvalidStoreSettings(
                    f"the rclone config file has no remote named {remote_name!r}",
                    store=self.name, config_file=self.config_file,
                    known_remotes=", ".join(sorted(known)) or "none",
                    hint="add it with `rclone config --config PATH` or fix the location's remote")
        self.bwlimit = bwlimit
        self.daemon = daemon_for(self.config_file, bwlimit)

    def __repr__(self) -> str:
        return f"RcloneStore(name={self.name!r}, remote={self.remote!r})"

    # -- rc plumbing ----------------------------------------------------------------------

    def rc(self, command: str, key: str | None, **params: Any) -> dict:
        """Call ``operations/<command>`` (or another rc path) and return its JSON answer."""
        path = command if "/" in command else f"operations/{command}"
        body = json.dumps(params).encode()
        for attempt in range(2):
            self.daemon.ensure(self.name)
            try:
                status, data = self.daemon.request("POST", "/" + path, body)
                break
            except OSError as exc:
                if attempt == 1:
                    raise StoreUnavailable(self.name, key, f"rclone rcd: {exc}",
                                           remote=self.remote) from None
        answer = _json(data)
        if status != 200:
            raise self.translate(status, str(answer.get("error", data[:200])), key, path)
        return answer

    def translate(self, status: int, error: str, key: str | None, operation: str) -> StoreError:
        facts = {"remote": self.remote, "operation": operation}
        lowered = error.lower()
        if "didn't find section in config file" in lowered:
            return InvalidStoreSettings("the rclone config file has no such remote",
                                        store=self.name, config_file=self.config_file, **facts)
        if (status == 404 or any(w in lowered for w in _NOT_FOUND)) and key is not None:
            return ObjectNotFound(self.name, key, **facts)
        if any(w in lowered for w in _DENIED_WORDS):
            return StoreAccessDenied(self.name, key, error, **facts)
        if any(w in lowered for w in _TRANSIENT_WORDS) or status in (502, 503, 504):
            return StoreUnavailable(self.name, key, error, **facts)
        return StoreError(f"rclone failed: {error}", store=self.name, key=key, **facts)

    # -- writes ---------------------------------------------------------------------------

    def writer(self, key: str, *, storage_class: str | None = None) -> ObjectWriter:
        self._check(key)
        return _RcloneWriter(self, key)

    def put_bytes(self, key: str, data: bytes | bytearray | memoryview, *,
                  storage_class: str | None = None, if_absent: bool = False) -> ObjectInfo:
        self._check(key)
        writer = _RcloneWriter(self, key, if_absent=if_absent)
        writer.write(data)
        return writer.commit()

    def delete(self, key: str) -> None:
        self._check(key)
        try:
            self.rc("deletefile", key, fs=self.remote, remote=key)
        except ObjectNotFound:
            pass

    def partials(self) -> list[str]:
        """Temp objects under ``.partial/`` (writes in flight or abandoned)."""
        return [info.key for info in self._list(PARTIAL_DIR + "/", hide_partials=False)]

    def reap_partials(self, older_than_seconds: float) -> int:
        """Remove temp objects under ``.partial/`` not modified for ``older_than_seconds``
        (left by killed writers; prune calls this with its grace) and return how many."""
        try:
            answer = self.rc("list", None, fs=self.remote, remote=PARTIAL_DIR,
                             opt={"recurse": True, "filesOnly": True, "noMimeType": True})
        except StoreError as exc:
            if "directory not found" in exc.message:
                return 0
            raise
        cutoff = datetime.now(timezone.utc) - timedelta(seconds=older_than_seconds)
        removed = 0
        for item in answer.get("list") or ():
            modified = _mod_time(item.get("ModTime"))
            if modified is not None and modified > cutoff:
                continue
            name = item["Path"]  # relative to the remote, .partial/ included
            try:
                self.rc("deletefile", name, fs=self.remote, remote=name)
                removed += 1
            except ObjectNotFound:
                pass
        return removed

    # -- reads ----------------------------------------------------------------------------

    def stat(self, key: str) -> ObjectInfo:
        self._check(key)
        try:
            item = self.rc("stat", key, fs=self.remote, remote=key).get("item")
        except ObjectNotFound:
            item = None
        if not item or item.get("IsDir"):
            raise ObjectNotFound(self.name, key, remote=self.remote)
        return ObjectInfo(key, int(item["Size"]))

    def open(self, key: str) -> BinaryIO:
        self.stat(key)
        path = "/[" + urllib.parse.quote(self.remote, safe="") + "]/" + urllib.parse.quote(key)
        try:
            response = self.daemon.request("GET", path, stream=True)
        except OSError as exc:
            raise StoreUnavailable(self.name, key, f"rclone rcd: {exc}", remote=self.remote) from None
        if response.status != 200:
            error = response.read(500).decode(errors="replace")
            response.close()
            raise self.translate(response.status, error, key, "get")
        return _ReadStream(self, key, response)  # type: ignore[return-value]

    def list(self, prefix: str = "") -> Iterator[ObjectInfo]:
        validate_prefix(prefix, store=self.name)
        return iter(self._list(prefix))

    def _list(self, prefix: str, *, hide_partials: bool = True) -> list[ObjectInfo]:
        directory = prefix.rsplit("/", 1)[0] if "/" in prefix else ""
        try:
            answer = self.rc("list", None, fs=self.remote, remote=directory,
                             opt={"recurse": True, "filesOnly": True, "noModTime": True,
                                  "noMimeType": True})
        except StoreError as exc:
            if "directory not found" in exc.message:
                return []
            raise
        found = []
        for item in answer.get("list") or ():
            key = item["Path"]
            if not key.startswith(prefix) or item.get("IsDir"):
                continue
            if hide_partials and key.split("/", 1)[0] == PARTIAL_DIR:
                continue
            found.append(ObjectInfo(key, int(item["Size"])))
        return sorted(found)

    def _check(self, key: str) -> None:
        validate_key(key, store=self.name)
        if key.split("/", 1)[0] == PARTIAL_DIR:
            raise InvalidKey(key, f"'{PARTIAL_DIR}' is reserved for temp objects", store=self.name)


class _RcloneWriter(ObjectWriter):
    """Streams one multipart/form-data POST to ``operations/uploadfile`` from a thread fed
    by a small queue (bounded memory); commit checks the size and moves the temp object."""

    def __init__(self, store: RcloneStore, key: str, *, if_absent: bool = False) -> None:
        super().__init__(store.name, key)
        self._store, self._if_absent = store, if_absent
        self._temp_name = f"{secrets.token_hex(8)}.tmp"
        self._temp = f"{PARTIAL_DIR}/{self._temp_name}"
        self._queue: queue.Queue = queue.Queue(_CHUNK_QUEUE)
        self._result: tuple[int, bytes] | BaseException | None = None
        self._boundary = secrets.token_hex(16)
        store.daemon.ensure(store.name)
        self._thread = threading.Thread(target=self._upload, daemon=True,
                                        name=f"rclone-upload-{key}")
        self._thread.start()

    def _body(self) -> Iterator[bytes]:
        yield (f"--{self._boundary}\r\nContent-Disposition: form-data; name=\"file\"; "
               f"filename=\"{self._temp_name}\"\r\nContent-Type: application/octet-stream"
               "\r\n\r\n").encode()
        while (chunk := self._queue.get()) is not None:
            yield chunk
        yield f"\r\n--{self._boundary}--\r\n".encode()

    def _upload(self) -> None:
        query = urllib.parse.urlencode({"fs": self._store.remote, "remote": PARTIAL_DIR})
        try:
            self._result = self._store.daemon.request(
                "POST", f"/operations/uploadfile?{query}", self._body(),
                headers={"Content-Type": f"multipart/form-data; boundary={self._boundary}"})
        except BaseException as exc:  # noqa: BLE001 - reported by _finish
            self._result = exc
            while self._queue.get() is not None:  # let a blocked writer go on to _finish
                pass

    def _write(self, data: memoryview) -> None:
        if self._result is not None:
            self._finish()
        for offset in range(0, len(data), 1 << 20):
            self._queue.put(bytes(data[offset:offset + (1 << 20)]))

    def _finish(self) -> None:
        """End the upload (if running) and raise what it failed with, if anything."""
        if self._thread.is_alive():
            self._queue.put(None)
            self._thread.join()
        result = self._result
        if isinstance(result, BaseException):
            raise StoreUnavailable(self._store.name, self.key, f"upload to rclone failed: {result}",
                                   remote=self._store.remote)
        status, data = result
        if status != 200:
            raise self._store.translate(status, str(_json(data).get("error", data[:200])),
                                        self.key, "operations/uploadfile")

    def _commit(self) -> ObjectInfo:
        store = self._store
        self._finish()
        stored = store.rc("stat", self.key, fs=store.remote, remote=self._temp).get("item")
        if not stored or int(stored["Size"]) != self.bytes_written:
            raise StoreError("rclone stored a different size than was written", store=store.name,
                             key=self.key, written=self.bytes_written,
                             stored=stored and stored["Size"])
        if self._if_absent and store.exists(self.key):
            raise ObjectExists(store.name, self.key, remote=store.remote)
        store.rc("movefile", self.key, srcFs=store.remote, srcRemote=self._temp,
                 dstFs=store.remote, dstRemote=self.key)
        return ObjectInfo(self.key, self.bytes_written)

    def _abort(self) -> None:
        try:
            self._finish()
        except StoreError:
            pass  # the temp object may or may not exist: delete it either way
        try:
            self._store.rc("deletefile", self.key, fs=self._store.remote, remote=self._temp)
        except ObjectNotFound:
            pass


class _ReadStream(ObjectStream):
    def __init__(self, store: RcloneStore, key: str, response: http.client.HTTPResponse) -> None:
        super().__init__()
        self._store, self._key, self._response = store, key, response

    def _read(self, size: int | None) -> bytes:
        try:
            return self._response.read(size)
        except (OSError, http.client.HTTPException) as exc:
            raise StoreUnavailable(self._store.name, self._key, f"read from rclone failed: {exc}",
                                   remote=self._store.remote) from None

    def _release(self) -> None:
        self._response.close()


def _mod_time(text: Any) -> datetime | None:
    """rclone's ModTime (RFC 3339 with up to nanoseconds) as a datetime; None if unreadable."""
    if not isinstance(text, str):
        return None
    match = re.fullmatch(r"(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)(?:\.(\d+))?(Z|[+-]\d\d:\d\d)", text)
    if not match:
        return None
    fraction = (match.group(2) or "0")[:6].ljust(6, "0")
    zone = "+00:00" if match.group(3) == "Z" else match.group(3)
    return datetime.fromisoformat(f"{match.group(1)}.{fraction}{zone}")


def _json(data: bytes) -> dict:
    try:
        answer = json.loads(data or b"{}")
    except ValueError:
        return {"error": data[:200].decode(errors="replace")}
    return answer if isinstance(answer, dict) else {}
