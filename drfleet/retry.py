"""When to try again, in one place: an error says whether a later attempt may succeed
(``DrfleetError.transient``: an unavailable store, a dropped connection, a database
restarting), and ``Backoff`` says how long to wait before it.

Three callers use this one policy, each at its own level:

* ``retry_call`` in-process, for a short operation (a store call in ``RetryingStore``, an
  rsync in ``providers.ssh``);
* the task base (``workers.taskbase.FleetTask``), for a whole task: a transient failure
  re-queues the task with ``Backoff`` (backups, copies);
* nothing else retries on its own.
"""

from __future__ import annotations

import logging
import random
import time
from dataclasses import dataclass
from typing import Callable, TypeVar

from drfleet.errors import DrfleetError
from drfleet.settings import Setting

T = TypeVar("T")
log = logging.getLogger("drfleet.retry")


def is_transient(exc: BaseException) -> bool:
    """Whether a later attempt of the same operation may succeed: the error says so.
    Wrong keys, bad plans, full disks, refused logins and corrupt data are not transient;
    nor is anything that is not a ``DrfleetError``."""
    return isinstance(exc, DrfleetError) and bool(exc.transient)


@dataclass(frozen=True)
class Backoff:
    """``first * 2**n`` seconds before attempt ``n + 2`` (n from 0), at most ``cap``; with
    ``jitter`` each wait is scaled by a random factor in [0.5, 1] so many callers that
    failed together do not come back together. ``first`` may be a setting, read each time."""

    first: float | Setting
    cap: float
    jitter: bool = False

    def delay(self, retries_so_far: int) -> float:
        first = self.first.get() if isinstance(self.first, Setting) else self.first
        wait = min(self.cap, first * 2 ** max(0, retries_so_far))
        return wait * random.uniform(0.5, 1.0) if self.jitter else wait


def retry_call(call: Callable[[], T], *, attempts: int, backoff: Backoff, what: str,
               retry_on: Callable[[BaseException], bool] = is_transient,
               sleep: Callable[[float], None] = time.sleep) -> T:
    """``call()``, tried up to ``attempts`` times in all while ``retry_on`` says the error
    may pass, sleeping ``backoff`` between tries. Returns its result; re-raises an error
    ``retry_on`` refuses at once, and the last one (with a note) when attempts run out.
    Raises ValueError when ``attempts`` < 1."""
    if attempts < 1:
        raise ValueError("attempts must be at least 1")
    for attempt in range(1, attempts + 1):
        try:
            return call()
        except Exception as exc:
            if not retry_on(exc):
                raise
            if attempt == attempts:
                exc.add_note(f"gave up after {attempt} attempts")
                raise
            delay = backoff.delay(attempt - 1)
            log.warning("%s failed (attempt %d of %d), retrying in %.2fs: %s", what, attempt, attempts,
                        delay, getattr(exc, "message", exc))
            sleep(delay)
    raise AssertionError("unreachable")
