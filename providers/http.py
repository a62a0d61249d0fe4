"""One small JSON-over-HTTPS session shared by every provider client.

``JsonSession`` sends a request with the bearer token read from an environment variable
(named at construction, read on each request, never logged, never in repr or errors),
retries only what is safe to retry, and turns every failure into a ``ProviderError``
subclass carrying the provider's error code and request id.

Retried: 429 (waiting ``Retry-After`` seconds or HTTP-date, else what the provider's
``rate_limit_wait`` computes from its rate-limit headers, else the backoff), 502, 503, 504
(``Retry-After`` honoured there too), the (status, error code) pairs a provider documents as
"nothing was done, retry" (``retry_codes``, e.g. Hetzner's 409 ``conflict``), connect
timeouts, and read timeouts of idempotent methods (a POST that timed out may have created
something, so it is not repeated). Nothing else: a 4xx or 500 raises at once. Backoff is
capped exponential with jitter; ``sleep``/``now``/``jitter`` are injectable so tests never
wait for real.

``collect_pages`` is the one pagination loop; each provider supplies how to fetch a page.
"""

from __future__ import annotations

import email.utils
import json as jsonlib
import logging
import os
import random
import time
from dataclasses import dataclass
from typing import Any, Callable, Iterable, Mapping, TypeVar
from urllib.parse import urlencode, urlsplit

import urllib3
from urllib3.exceptions import ConnectTimeoutError, HTTPError, NewConnectionError, ReadTimeoutError

from drfleet.errors import DrfleetError
from drfleet.safe_load import DocumentRefused, load_json

# ---------------------------------------------------------------------------- errors


class ProviderError(DrfleetError):
    """The provider answered with an error, or could not be reached.

    Facts: provider, HTTP status, the provider's error code and request id, the action id.
    """

    hint = "read the provider's message and error code above; quote the request id to support"

    def __init__(self, message: str, *, provider: str, status: int | None = None,
                 code: str | None = None, request_id: str | None = None,
                 action_id: str | None = None, hint: str | None = None, **facts: Any) -> None:
        self.provider = provider
        self.status = status
        self.code = code
        self.request_id = request_id
        self.action_id = action_id
        super().__init__(message, hint=hint, provider=provider, http_status=status,
                         provider_code=code, request_id=request_id, action_id=action_id,
                         **facts)


class ProviderAuthError(ProviderError):
    """The token was rejected (401/403) or its environment variable is unset."""

    def __init__(self, message: str, *, token_env: str, **kwargs: Any) -> None:
        self.token_env = token_env
        kwargs.setdefault("hint", f"check that the environment variable {token_env} holds a "
                                  "valid, unexpired API token with read/write scope")
        super().__init__(message, token_env=token_env, **kwargs)


class ProviderNotFound(ProviderError):
    """The server, action or key does not exist (404)."""

    hint = "check the id; the resource may already have been deleted"


class ProviderRateLimited(ProviderError):
    """The provider kept answering 429 after every allowed retry."""

    hint = "slow down: fewer parallel workers, or wait for the provider's rate-limit window"

    def __init__(self, message: str, *, retry_after: float | None = None, **kwargs: Any) -> None:
        self.retry_after = retry_after
        super().__init__(message, retry_after_seconds=retry_after, **kwargs)


class ProviderUnavailable(ProviderError):
    """No usable answer: connection failed, or timeouts/5xx persisted past every retry."""

    hint = "check the provider's status page and this host's network, then retry"


log = logging.getLogger("drfleet.providers.http")

RETRY_STATUSES = frozenset({429, 502, 503, 504})
IDEMPOTENT_METHODS = frozenset({"GET", "HEAD", "PUT", "DELETE", "OPTIONS"})
MAX_PAYLOAD_BYTES = 32 << 20  # an API answer larger or deeper than this is refused, not parsed
T = TypeVar("T")


@dataclass(frozen=True)
class ErrorDetail:
    """What a provider's error body says: its machine code, human message, request id."""

    code: str | None
    message: str | None
    request_id: str | None


ErrorParser = Callable[[int, Any, Mapping[str, str]], ErrorDetail]
"""(HTTP status, decoded JSON body or None, response headers) -> ErrorDetail."""

RateLimitWait = Callable[[Mapping[str, str], float], "float | None"]
"""(lower-cased response headers of a 429 without Retry-After, now) -> seconds to wait, or
None to fall back to the backoff."""


def wait_until_reset(header: str) -> RateLimitWait:
    """For providers whose reset header is the epoch second one more request is allowed
    (DigitalOcean: the oldest request leaves the window; Linode: the window restarts)."""
    def wait(headers: Mapping[str, str], now: float) -> float | None:
        try:
            return max(0.0, float(headers[header]) - now) if headers.get(header) else None
        except ValueError:
            return None
    return wait


@dataclass(frozen=True)
class JsonResponse:
    status: int
    body: Any
    headers: Mapping[str, str]


def equal_jitter(delay: float) -> float:
    return delay / 2 + random.uniform(0, delay / 2)


class JsonSession:
    """Bearer-token JSON client for one provider's API base URL."""

    def __init__(self, *, provider: str, base_url: str, token_env: str, parse_error: ErrorParser,
                 timeout_seconds: float = 30.0, connect_timeout_seconds: float = 10.0,
                 max_attempts: int = 5, backoff_base_seconds: float = 1.0,
                 backoff_cap_seconds: float = 30.0, max_retry_after_seconds: float = 300.0,
                 rate_limit_wait: RateLimitWait | None = None,
                 retry_codes: frozenset[tuple[int, str]] = frozenset(),
                 jitter: Callable[[float], float] | None = equal_jitter,
                 sleep: Callable[[float], None] = time.sleep,
                 now: Callable[[], float] = time.time,
                 environ: Mapping[str, str] = os.environ,
                 pool: urllib3.PoolManager | None = None) -> None:
        if max_attempts < 1:
            raise ValueError("max_attempts must be >= 1")
        self.provider = provider
        self.base_url = base_url.rstrip("/")
        self.token_env = token_env
        self._parse_error = parse_error
        self._timeout = urllib3.Timeout(connect=connect_timeout_seconds, read=timeout_seconds)
        self.max_attempts = max_attempts
        self._backoff_base = backoff_base_seconds
        self._backoff_cap = backoff_cap_seconds
        self._max_retry_after = max_retry_after_seconds
        self._rate_limit_wait = rate_limit_wait
        self._retry_codes = retry_codes
        self._jitter = jitter
        self._sleep = sleep
        self._now = now
        self._environ = environ
        self._pool = pool or urllib3.PoolManager(retries=False)

    def __repr__(self) -> str:
        return (f"JsonSession(provider={self.provider!r}, base_url={self.base_url!r}, "
                f"token_env={self.token_env!r})")

    # ------------------------------------------------------------------ public

    def get(self, path: str, **kwargs: Any) -> JsonResponse:
        return self.request("GET", path, **kwargs)

    def post(self, path: str, **kwargs: Any) -> JsonResponse:
        return self.request("POST", path, **kwargs)

    def delete(self, path: str, **kwargs: Any) -> JsonResponse:
        return self.request("DELETE", path, **kwargs)

    def request(self, method: str, path: str, *, params: Mapping[str, Any] | None = None,
                json: Any = None, headers: Mapping[str, str] | None = None,
                action_id: str | None = None) -> JsonResponse:
        """Send one request (retrying transient failures) and return the decoded answer.

        Raises ProviderAuthError (401/403, or the token variable unset), ProviderNotFound
        (404), ProviderRateLimited (429 past every retry), ProviderUnavailable (connection
        failure, or timeouts/502/503/504 past every retry) and ProviderError otherwise.
        """
        url = self._url(path, params)
        token = self._token()
        send_headers = {"Authorization": f"Bearer {token}", "Accept": "application/json",
                        "User-Agent": "drfleet-clouds/1"}
        body = None
        if json is not None:
            body = jsonlib.dumps(json).encode()
            send_headers["Content-Type"] = "application/json"
        send_headers.update(headers or {})
        where = urlsplit(url).path
        for attempt in range(1, self.max_attempts + 1):
            last = attempt == self.max_attempts
            try:
                raw = self._pool.request(method, url, body=body, headers=send_headers,
                                         timeout=self._timeout, retries=False,
                                         redirect=False, preload_content=False)
                data = _read_bounded(raw)
            except NewConnectionError as exc:  # refused/DNS: nothing sent, nothing to wait for
                raise self._unreachable(method, where, attempt, exc, action_id) from None
            except (ConnectTimeoutError, ReadTimeoutError) as exc:
                kind = "connect" if isinstance(exc, ConnectTimeoutError) else "read"
                if last or (kind == "read" and method not in IDEMPOTENT_METHODS):
                    raise self._unreachable(method, where, attempt, exc, action_id,
                                            maybe_processed=kind == "read") from None
                delay = self._backoff(attempt)
                log.warning("%s %s %s: %s timeout (attempt %d/%d); retrying in %.2fs",
                            self.provider, method, where, kind, attempt, self.max_attempts, delay)
                self._sleep(delay)
                continue
            except HTTPError as exc:
                raise self._unreachable(method, where, attempt, exc, action_id) from None
            response = JsonResponse(raw.status, _decode(data, self.provider), _lower(raw.headers))
            log.debug("%s %s %s -> %d (attempt %d)", self.provider, method, where,
                      response.status, attempt)
            if response.status < 400:
                return response
            if not last and (response.status in RETRY_STATUSES or self._retry_code(response)):
                delay = self._retry_delay(response, attempt)
                if delay is not None:
                    log.warning("%s %s %s -> %d (attempt %d/%d); retrying in %.2fs",
                                self.provider, method, where, response.status, attempt,
                                self.max_attempts, delay)
                    self._sleep(delay)
                    continue
            raise self._error(method, where, response, attempt, action_id)
        raise AssertionError("unreachable")  # pragma: no cover

    # ------------------------------------------------------------------ internals

    def _token(self) -> str:
        token = self._environ.get(self.token_env, "").strip()
        if not token:
            raise ProviderAuthError(f"{self.provider}: the API token environment variable is "
                                    "not set", provider=self.provider, token_env=self.token_env,
                                    hint=f"export {self.token_env} with the provider's API token")
        return token

    def _url(self, path: str, params: Mapping[str, Any] | None) -> str:
        if path.startswith(("http://", "https://")):
            base, target = urlsplit(self.base_url), urlsplit(path)
            if (target.scheme, target.netloc) != (base.scheme, base.netloc):
                # Never send the token to a host the plan did not name, nor in clear text.
                raise ProviderError("provider returned a link to another scheme or host",
                                    provider=self.provider, link_host=target.netloc,
                                    link_origin=f"{target.scheme}://{target.netloc}",
                                    expected_origin=f"{base.scheme}://{base.netloc}",
                                    hint="the link was not followed (the API token would have "
                                         "gone there); check base_url in the plan")
            url = path
        else:
            url = self.base_url + "/" + path.lstrip("/")
        query = urlencode({k: v for k, v in (params or {}).items() if v is not None}, doseq=True)
        if query:
            url += ("&" if "?" in url else "?") + query
        return url

    def _backoff(self, attempt: int) -> float:
        delay = min(self._backoff_cap, self._backoff_base * (2 ** (attempt - 1)))
        return self._jitter(delay) if self._jitter else delay

    def _retry_code(self, response: JsonResponse) -> bool:
        """Is this a (status, code) the provider documents as safe to send again?"""
        if not self._retry_codes or response.status not in {s for s, _ in self._retry_codes}:
            return False
        code = self._parse_error(response.status, response.body, response.headers).code
        return (response.status, code) in self._retry_codes

    def _retry_delay(self, response: JsonResponse, attempt: int) -> float | None:
        """Seconds to wait before retrying, or None when the provider asks for too long.

        ``Retry-After`` wins whenever present (RFC 9110 defines it for 429 and 503), and one
        past ``max_retry_after_seconds`` gives up. A 429 without it waits what the provider's
        ``rate_limit_wait`` computes from its rate-limit headers (capped at
        ``max_retry_after_seconds`` rather than given up on), then the backoff.
        """
        wait = retry_after_seconds(response.headers.get("retry-after"), self._now())
        if wait is not None:
            return wait if wait <= self._max_retry_after else None
        if response.status == 429 and self._rate_limit_wait:
            computed = self._rate_limit_wait(response.headers, self._now())
            if computed is not None:
                return min(computed, self._max_retry_after)
        return self._backoff(attempt)

    def _error(self, method: str, where: str, response: JsonResponse, attempts: int,
               action_id: str | None) -> ProviderError:
        detail = self._parse_error(response.status, response.body, response.headers)
        message = self._redact(detail.message or "no error message in the response")
        kwargs: dict[str, Any] = dict(provider=self.provider, status=response.status,
                                      code=self._redact(detail.code), request_id=detail.request_id,
                                      action_id=action_id, request=f"{method} {where}",
                                      attempts=attempts)
        text = f"{self.provider} API error: {message}"
        if response.status in (401, 403):
            return ProviderAuthError(f"{self.provider} rejected the API token: {message}",
                                     token_env=self.token_env, **kwargs)
        if response.status == 404:
            return ProviderNotFound(text, **kwargs)
        if response.status == 429:
            wait = retry_after_seconds(response.headers.get("retry-after"), self._now())
            return ProviderRateLimited(text, retry_after=wait, **kwargs)
        if response.status in RETRY_STATUSES:
            return ProviderUnavailable(text, **kwargs)
        return ProviderError(text, **kwargs)

    def _unreachable(self, method: str, where: str, attempts: int, exc: Exception,
                     action_id: str | None, maybe_processed: bool = False) -> ProviderUnavailable:
        hint = ("the provider may have carried out the request before timing out: list what "
                "exists before retrying a create") if maybe_processed else None
        return ProviderUnavailable(f"{self.provider} API did not answer", hint=hint,
                                   provider=self.provider, action_id=action_id,
                                   request=f"{method} {where}", attempts=attempts,
                                   cause=self._redact(type(exc).__name__ + ": " + str(exc)))

    def _redact(self, text: str | None) -> str | None:
        """Belt and braces: scrub the token from any provider-supplied text we repeat."""
        token = self._environ.get(self.token_env, "").strip()
        if text and token and token in text:
            return text.replace(token, "***")
        return text


def retry_after_seconds(value: str | None, now: float) -> float | None:
    """Parse ``Retry-After``: delay-seconds or an HTTP-date (RFC 9110 10.2.3)."""
    if not value:
        return None
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - now)


def collect_pages(fetch_page: Callable[[Any], tuple[Iterable[T], Any]], *, provider: str,
                  max_pages: int = 10_000) -> list[T]:
    """Call ``fetch_page(cursor)`` from cursor None until it returns no next cursor.

    ``fetch_page`` returns ``(items, next_cursor)``; a cursor seen twice, or more than
    ``max_pages`` pages, raises ProviderError (a provider bug would otherwise loop forever).
    """
    items: list[T] = []
    cursor: Any = None
    seen: set[Any] = set()
    for _ in range(max_pages):
        page, cursor = fetch_page(cursor)
        items.extend(page)
        if cursor in (None, "", 0):
            return items
        if cursor in seen:
            raise ProviderError("pagination repeated a page", provider=provider,
                                cursor=str(cursor))
        seen.add(cursor)
    raise ProviderError("pagination did not end", provider=provider, max_pages=max_pages)


def _read_bounded(raw: Any) -> bytes:
    """The answer's body, read no further than one byte past MAX_PAYLOAD_BYTES (``_decode``
    refuses it then): a huge answer is never held in memory whole. The connection goes back
    to the pool, or is closed when the rest of an oversized body is left unread."""
    try:
        data = raw.read(MAX_PAYLOAD_BYTES + 1, decode_content=True)
    except BaseException:
        raw.close()
        raise
    if len(data) > MAX_PAYLOAD_BYTES:
        raw.close()
    else:
        raw.release_conn()
    return data


def _decode(data: bytes, provider: str = "api") -> Any:
    """The JSON of an answer (None when it is empty or not JSON). Raises ProviderError for
    an answer larger than MAX_PAYLOAD_BYTES or nested too deeply (drfleet.safe_load)."""
    if not data:
        return None
    try:
        return load_json(data, source="the API's answer", max_bytes=MAX_PAYLOAD_BYTES)
    except DocumentRefused as exc:
        if exc.reason.startswith(("not valid JSON", "not UTF-8")):
            return None
        raise ProviderError(f"the API's answer was refused: {exc.reason}", provider=provider) from None


def _lower(headers: Mapping[str, str]) -> dict[str, str]:
    return {k.lower(): v for k, v in headers.items()}
