"""The half of a provider client that does not depend on the provider: construction from a
plan, spec defaults, and waiting.

Waiting is one loop (``BaseCloudClient._poll``): fetch, stop when done, otherwise sleep the
next interval of a pluggable schedule (``PollBackoff`` by default) without passing the
deadline. A finished-with-error action raises ``ActionFailed`` at once; running out of time
raises ``ActionTimedOut``. ``sleep`` and ``clock`` are injectable, so a test's fake clock
makes an hour-long deadline take no time.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, replace
from typing import Any, Callable, ClassVar, Mapping, TypeVar

from drfleet.providers.clouds.base import (
    ACTION_ERROR,
    ACTION_SUCCESS,
    Action,
    ActionFailed,
    ActionTimedOut,
    CloudConfigError,
    PollSchedule,
    Server,
    ServerSpec,
)
from drfleet.providers.http import ErrorDetail, JsonSession, RateLimitWait, equal_jitter

T = TypeVar("T")

PLAN_KEYS = frozenset({"token_env", "base_url", "region", "size", "image",
                       "timeout_seconds", "max_attempts"})


@dataclass(frozen=True)
class PollBackoff:
    """Poll schedule: ``initial_seconds * factor**n``, never more than ``max_seconds``."""

    initial_seconds: float = 1.0
    factor: float = 1.5
    max_seconds: float = 15.0

    def __call__(self, n: int) -> float:
        return min(self.max_seconds, self.initial_seconds * self.factor ** n)


class BaseCloudClient:
    """Shared construction and waiting; a provider module subclasses it.

    Every method that talks to the provider raises what ``JsonSession.request`` raises:
    ProviderAuthError (token rejected or unset), ProviderNotFound (e.g. ``get_server`` of an
    id that does not exist), ProviderRateLimited, ProviderUnavailable, or ProviderError with
    the provider's status, code and request id. ``create_server`` raises CloudConfigError
    when region/size/image are neither in the spec nor plan defaults.
    """

    provider: ClassVar[str]
    default_base_url: ClassVar[str]
    default_token_env: ClassVar[str]
    rate_limit_wait: ClassVar[RateLimitWait | None] = None  # 429 without Retry-After
    retry_codes: ClassVar[frozenset[tuple[int, str]]] = frozenset()  # documented "retry"

    def __init__(self, *, token_env: str | None = None, base_url: str | None = None,
                 region: str | None = None, size: str | None = None, image: str | None = None,
                 timeout_seconds: float = 30.0, max_attempts: int = 5,
                 sleep: Callable[[float], None] = time.sleep,
                 clock: Callable[[], float] = time.monotonic,
                 now: Callable[[], float] = time.time,
                 jitter: Callable[[float], float] | None = equal_jitter,
                 environ: Mapping[str, str] = os.environ) -> None:
        self.session = JsonSession(
            provider=self.provider, base_url=base_url or self.default_base_url,
            token_env=token_env or self.default_token_env, parse_error=self.parse_error,
            timeout_seconds=timeout_seconds, max_attempts=max_attempts,
            rate_limit_wait=type(self).rate_limit_wait, retry_codes=self.retry_codes,
            jitter=jitter, sleep=sleep, now=now,
            environ=environ)
        self.defaults = {"region": region, "size": size, "image": image}
        self._sleep = sleep
        self._clock = clock

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.session!r})"

    @classmethod
    def from_plan(cls, settings: Mapping[str, Any], **injected: Any) -> "BaseCloudClient":
        """Build a client from a plan's provider settings.

        ``settings``: ``token_env`` (the NAME of the variable holding the token), optional
        ``base_url``, ``region``/``size``/``image`` defaults, ``timeout_seconds``,
        ``max_attempts``. ``injected`` passes ``sleep``/``clock``/``now``/``jitter``/``environ``.
        Raises CloudConfigError for unknown keys (typos would otherwise be silently ignored).
        """
        unknown = sorted(set(settings) - PLAN_KEYS)
        if unknown:
            raise CloudConfigError(f"unknown {cls.provider} setting(s): {', '.join(unknown)}",
                                   provider=cls.provider, allowed=sorted(PLAN_KEYS))
        return cls(**dict(settings), **injected)

    @staticmethod
    def parse_error(status: int, body: Any, headers: Mapping[str, str]) -> ErrorDetail:
        raise NotImplementedError

    # ------------------------------------------------------------------ shared behaviour

    def get_action(self, action_id: str) -> Action:
        raise CloudConfigError(f"{self.provider} has no action objects to poll",
                               provider=self.provider, action_id=action_id,
                               hint="wait on the Server instead (wait_until_running)")

    def wait_for(self, action_or_server: Action | Server, *, deadline_seconds: float,
                 poll: PollSchedule | None = None) -> Action | Server:
        """Wait for an Action to succeed, or a Server to be running; return its final state.

        Raises ActionFailed (the action ended in error, with the provider's error code) and
        ActionTimedOut (still unfinished after ``deadline_seconds``).
        """
        if isinstance(action_or_server, Action):
            return self.wait_for_action(action_or_server, deadline_seconds=deadline_seconds,
                                        poll=poll)
        if isinstance(action_or_server, Server):
            return self.wait_until_running(action_or_server.id, deadline_seconds, poll=poll)
        raise TypeError(f"wait_for takes an Action or a Server, not {type(action_or_server)!r}")

    def wait_for_action(self, action: Action, *, deadline_seconds: float,
                        poll: PollSchedule | None = None) -> Action:
        """Poll ``action`` until it succeeds. Raises ActionFailed, ActionTimedOut."""

        def fetch() -> Action:
            current = action if action.finished else self.get_action(action.id)
            if current.status == ACTION_ERROR:
                raise ActionFailed(
                    f"{self.provider}: action {current.id} ({current.command}) failed: "
                    f"{current.error_message or current.error_code or 'no reason given'}",
                    provider=self.provider, code=current.error_code, action_id=current.id,
                    resource_id=current.resource_id)
            return current

        return self._poll(fetch, lambda a: a.status == ACTION_SUCCESS,
                          deadline_seconds=deadline_seconds, poll=poll,
                          what=f"action {action.id} ({action.command})",
                          facts={"action_id": action.id, "resource_id": action.resource_id})

    def wait_until_running(self, server_id: str, deadline_seconds: float, *,
                           poll: PollSchedule | None = None) -> Server:
        """Poll the server until its status is running. Raises ActionTimedOut."""
        return self._poll(lambda: self.get_server(str(server_id)), lambda s: s.is_running,
                          deadline_seconds=deadline_seconds, poll=poll,
                          what=f"server {server_id} to be running",
                          facts={"server_id": str(server_id)})

    def _poll(self, fetch: Callable[[], T], done: Callable[[T], bool], *,
              deadline_seconds: float, poll: PollSchedule | None, what: str,
              facts: dict[str, Any]) -> T:
        schedule = poll or PollBackoff()
        start = self._clock()
        n = 0
        while True:
            current = fetch()
            if done(current):
                return current
            waited = self._clock() - start
            remaining = deadline_seconds - waited
            if remaining <= 0:
                raise ActionTimedOut(
                    f"{self.provider}: gave up waiting for {what} after {deadline_seconds}s",
                    provider=self.provider, waited_seconds=waited, polls=n + 1,
                    last_status=getattr(current, "provider_status", None)
                    or getattr(current, "status", None), **facts)
            self._sleep(max(0.0, min(schedule(n), remaining)))
            n += 1

    def _complete_spec(self, spec: ServerSpec) -> ServerSpec:
        """Fill region/size/image from the plan defaults. Raises CloudConfigError if unset."""
        filled = replace(spec, **{k: getattr(spec, k) or v for k, v in self.defaults.items()})
        missing = [k for k in ("region", "size", "image") if not getattr(filled, k)]
        if missing:
            raise CloudConfigError(f"{self.provider}: server spec lacks {', '.join(missing)}",
                                   provider=self.provider, server_name=spec.name,
                                   hint="set them in the ServerSpec or as plan defaults")
        return filled
