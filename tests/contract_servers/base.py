"""Shared machinery for the provider contract servers.

A ``ContractServer`` is a real HTTP server (``http.server.ThreadingHTTPServer``) on a free
loopback port, serving the subset of one provider's documented API that drfleet's client
uses. A subclass declares routes and the provider's JSON shapes; this base does the rest:

* bearer-token check (a wrong token gets the provider's own 401 body),
* provider rate-limit and request-id headers on every answer,
* every request checked against the provider's published OpenAPI document (``spec.py``)
  where it is installed: a request it does not allow is answered 400 and recorded in
  ``violations``, and so is each answer of this server's that the document does not allow
  (fixtures fail a test that leaves ``violations`` non-empty),
* small page sizes (``page_size_cap``) so clients must cross several pages,
* a request log (``requests``, ``count``) for assertions,
* a control surface for faults: ``fail_next`` (N answers with a status, optional
  ``Retry-After``), ``rate_limit_next``, ``hang_next`` (hold answers past a client's read
  timeout), and ``next_create_outcome`` (the next created server's async work succeeds after
  a few polls, fails with a provider error code, or never finishes).

Progress is counted in polls, never in wall-clock time, so tests are deterministic.
"""

from __future__ import annotations

import itertools
import json
import re
import threading
import uuid
from collections import deque
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Callable
from urllib.parse import parse_qs, urlsplit

from tests.contract_servers.spec import Spec, provider_spec
from tests.fixtures.util import port_open, wait_for

SUCCESS, ERROR, NEVER = "success", "error", "never"


@dataclass
class Request:
    method: str
    path: str                      # without the API prefix, e.g. "/servers/12"
    query: dict[str, list[str]]
    headers: dict[str, str]        # lower-cased names; Authorization is not kept
    body: Any
    authorized: bool
    request_id: str = ""           # the id this server's answer carried (where it sends one)
    params: dict[str, str] = field(default_factory=dict)

    def arg(self, name: str, default: str | None = None) -> str | None:
        values = self.query.get(name)
        return values[0] if values else default


@dataclass
class Reply:
    status: int
    body: Any = None
    headers: dict[str, str] = field(default_factory=dict)


@dataclass
class Fault:
    status: int | None             # None: hang instead of answering
    retry_after: str | None = None
    body: Any = None
    path: str | None = None        # only requests whose path starts with this
    method: str | None = None      # only requests with this method
    effect: Callable[[], None] | None = None  # runs when the fault fires (e.g. a racing client)


@dataclass
class Outcome:
    result: str = SUCCESS          # success | error | never
    polls: int = 2                 # polls of the work (or its server) before it finishes
    code: str | None = None
    message: str | None = None


@dataclass
class Job:
    """A provider's asynchronous work item (Hetzner/DO action, Linode event)."""

    id: int
    command: str
    resource_id: str
    outcome: Outcome
    status: str = "running"        # running | success | error (mapped by each provider)
    polls_left: int = 0
    on_finish: Callable[["Job"], None] | None = None

    def tick(self) -> None:
        if self.status != "running" or self.outcome.result == NEVER:
            return
        self.polls_left -= 1
        if self.polls_left <= 0:
            self.status = SUCCESS if self.outcome.result == SUCCESS else ERROR
            if self.on_finish:
                self.on_finish(self)


Route = tuple[str, re.Pattern[str], Callable[[Request], Reply]]


class ContractServer:
    """Base of one provider's contract server; use as a context manager or start()/stop()."""

    provider = "contract"
    api_prefix = ""

    def __init__(self, token: str = "contract-token", *, page_size_cap: int = 2,
                 hang_seconds: float = 10.0) -> None:
        self.token = token
        self.page_size_cap = page_size_cap
        self.hang_seconds = hang_seconds
        self.lock = threading.RLock()
        self.requests: list[Request] = []
        self.servers: dict[str, dict[str, Any]] = {}
        self.jobs: dict[int, Job] = {}
        self.ssh_keys: dict[str, dict[str, Any]] = {}
        self._ids = itertools.count(1001)
        self._faults: deque[Fault] = deque()
        self._outcomes: deque[Outcome] = deque()
        self._release = threading.Event()
        self._routes: list[Route] = []
        self._httpd: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None
        self.spec: Spec | None = provider_spec(self.provider)
        self.violations: list[str] = []
        self.register_routes()

    # ------------------------------------------------------------------ lifecycle

    @property
    def port(self) -> int:
        assert self._httpd is not None, "server not started"
        return self._httpd.server_address[1]

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}{self.api_prefix}"

    def start(self) -> "ContractServer":
        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), _handler_for(self))
        self._httpd.daemon_threads = True
        self._thread = threading.Thread(target=self._httpd.serve_forever, args=(0.05,),
                                        name=f"{self.provider}-contract", daemon=True)
        self._thread.start()
        wait_for(lambda: port_open(self.port), timeout=10, what=f"{self.provider} contract server")
        return self

    def stop(self) -> None:
        self._release.set()
        if self._httpd:
            self._httpd.shutdown()
            self._httpd.server_close()
        if self._thread:
            self._thread.join(timeout=10)

    def __enter__(self) -> "ContractServer":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # ------------------------------------------------------------------ control surface

    def fail_next(self, n: int, status: int, *, retry_after: str | None = None,
                  body: Any = None, path: str | None = None, method: str | None = None,
                  effect: Callable[[], None] | None = None) -> None:
        """The next ``n`` requests (optionally only ``method`` under ``path``) get ``status``;
        ``effect`` runs as each fault fires."""
        with self.lock:
            for _ in range(n):
                self._faults.append(Fault(status, retry_after, body, path, method, effect))

    def rate_limit_next(self, n: int, *, retry_after: str | None = "1",
                        path: str | None = None) -> None:
        """The next ``n`` requests get the provider's 429 answer with ``Retry-After``."""
        self.fail_next(n, 429, retry_after=retry_after, body=self.rate_limited_body(), path=path)

    def hang_next(self, n: int = 1, *, path: str | None = None) -> None:
        """The next ``n`` requests get no answer until ``release()`` or ``hang_seconds``."""
        self._release.clear()
        with self.lock:
            for _ in range(n):
                self._faults.append(Fault(None, path=path))

    def release(self) -> None:
        self._release.set()

    def next_create_outcome(self, result: str = SUCCESS, *, polls: int = 2,
                            code: str | None = None, message: str | None = None) -> None:
        """How the next created server's asynchronous work ends (default: success)."""
        with self.lock:
            self._outcomes.append(Outcome(result, polls, code, message))

    def assert_no_violations(self) -> None:
        """Fail (AssertionError listing them) when a request this server received, or an
        answer it gave, broke the provider's specification; fixtures call it at teardown."""
        with self.lock:
            found = list(self.violations)
        assert not found, (f"{len(found)} request(s) or answer(s) the {self.provider} "
                           "specification does not allow:\n" + "\n".join(found[:20]))

    def count(self, method: str, path_pattern: str) -> int:
        """How many requests of ``method`` had a path fully matching ``path_pattern``."""
        return len(self.matching(method, path_pattern))

    def matching(self, method: str, path_pattern: str) -> list[Request]:
        """The logged requests of ``method`` whose path fully matches ``path_pattern``."""
        pattern = re.compile(path_pattern)
        return [r for r in self.requests if r.method == method and pattern.fullmatch(r.path)]

    # ------------------------------------------------------------------ for subclasses

    def register_routes(self) -> None:
        raise NotImplementedError

    def route(self, method: str, pattern: str, handler: Callable[[Request], Reply]) -> None:
        self._routes.append((method, re.compile(pattern), handler))

    def unauthorized(self) -> Reply:
        raise NotImplementedError

    def error_reply(self, status: int, message: str, code: str | None = None) -> Reply:
        raise NotImplementedError

    def rate_limited_body(self) -> Any:
        return self.error_reply(429, "rate limit exceeded").body

    def standard_headers(self, request_id: str) -> dict[str, str]:
        return {}

    def new_id(self) -> int:
        return next(self._ids)

    def new_job(self, command: str, resource_id: str,
                on_finish: Callable[[Job], None] | None = None) -> Job:
        with self.lock:
            outcome = self._outcomes.popleft() if self._outcomes else Outcome()
        job = Job(self.new_id(), command, resource_id, outcome, polls_left=outcome.polls,
                  on_finish=on_finish)
        if outcome.polls <= 0:
            job.polls_left = 1
            job.tick()
        self.jobs[job.id] = job
        return job

    def page_size(self, requested: str | None, default: int) -> int:
        size = int(requested) if requested and requested.isdigit() else default
        return max(1, min(size, self.page_size_cap))

    # ------------------------------------------------------------------ dispatch

    def dispatch(self, method: str, raw_path: str, headers: dict[str, str],
                 raw_body: bytes) -> Reply:
        parts = urlsplit(raw_path)
        path = parts.path
        if self.api_prefix and path.startswith(self.api_prefix):
            path = path[len(self.api_prefix):] or "/"
        try:
            body = json.loads(raw_body) if raw_body else None
        except ValueError:
            body = None
        authorized = headers.get("authorization") == f"Bearer {self.token}"
        kept = {k: v for k, v in headers.items() if k != "authorization"}
        request_id = str(uuid.uuid4())
        request = Request(method, path, parse_qs(parts.query), kept, body, authorized, request_id)
        with self.lock:
            self.requests.append(request)
            fault = self._take_fault(method, path) if authorized else None
        if fault is not None:
            reply = self._fault_reply(fault)
        else:
            reply = self._checked(request, parts.path, body if raw_body else None)
        reply.headers = {**self.standard_headers(request_id), **reply.headers}
        return reply

    def _checked(self, request: Request, raw_path: str, body: Any) -> Reply:
        """The answer to ``request``, both checked against the provider's document."""
        if self.spec is None:
            return self._route(request) if request.authorized else self.unauthorized()
        problems = self.spec.check_request(request.method, raw_path, request.query,
                                           request.headers, body)
        if problems:
            with self.lock:
                self.violations += problems
            return self.error_reply(400, "not allowed by the specification: " + "; ".join(problems))
        reply = self._route(request) if request.authorized else self.unauthorized()
        if not isinstance(reply.body, bytes):
            reply.body = self.spec.complete_response(request.method, raw_path, reply.status, reply.body)
        problems = self.spec.check_response(request.method, raw_path, reply.status, reply.body)
        with self.lock:
            self.violations += [f"this server's answer: {p}" for p in problems]
        return reply

    def _take_fault(self, method: str, path: str) -> Fault | None:
        for fault in self._faults:
            if (fault.path is None or path.startswith(fault.path)) and \
                    fault.method in (None, method):
                self._faults.remove(fault)
                if fault.effect:
                    fault.effect()
                return fault
        return None

    def _fault_reply(self, fault: Fault) -> Reply:
        if fault.status is None:
            self._release.wait(self.hang_seconds)
            return self.error_reply(504, "held by hang_next")
        body = fault.body if fault.body is not None else \
            self.error_reply(fault.status, f"injected {fault.status}").body
        headers = {"Retry-After": fault.retry_after} if fault.retry_after is not None else {}
        return Reply(fault.status, body, headers)

    def _route(self, request: Request) -> Reply:
        for method, pattern, handler in self._routes:
            match = pattern.fullmatch(request.path)
            if match and method == request.method:
                request.params = match.groupdict()
                with self.lock:
                    return handler(request)
        return self.error_reply(404, f"no route for {request.method} {request.path}", "not_found")


def _handler_for(server: ContractServer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        wbufsize = -1                   # send headers and body in one write...
        disable_nagle_algorithm = True  # ...and at once (no 40 ms delayed-ACK stalls)

        def _serve(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            raw_body = self.rfile.read(length) if length else b""
            headers = {k.lower(): v for k, v in self.headers.items()}
            reply = server.dispatch(self.command, self.path, headers, raw_body)
            raw = isinstance(reply.body, bytes)  # e.g. a load balancer's HTML error page
            data = reply.body if raw else json.dumps(reply.body).encode() \
                if reply.body is not None else b""
            try:
                self.send_response(reply.status)
                for name, value in reply.headers.items():
                    self.send_header(name, value)
                if data:
                    self.send_header("Content-Type", "text/html" if raw else "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)
            except (BrokenPipeError, ConnectionResetError):
                pass  # the client gave up (read timeout); nothing to tell it

        do_GET = do_POST = do_PUT = do_DELETE = _serve

        def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
            pass

    return Handler
