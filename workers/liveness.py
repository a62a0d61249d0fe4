"""A worker says it is alive: its main process renews ``drfleet:worker:{name}`` every few
seconds (``state.inflight``) from the moment it is ready until it shuts down. A worker that
is SIGKILLed, or whose host or region vanished, stops renewing; its heartbeat expires and
``workers.reconcile`` gives its unfinished messages to a live worker."""

from __future__ import annotations

import logging
import threading

import redis
from celery import signals

from drfleet.state import inflight

logger = logging.getLogger("drfleet.liveness")
_beating: dict[str, threading.Event] = {}


def _beat(name: str, stop: threading.Event) -> None:
    while not stop.is_set():
        try:
            inflight.heartbeat(name)
        except redis.RedisError as exc:  # Redis away or failing over: try again next beat
            logger.warning("worker %s: heartbeat not written (%s)", name, exc)
        stop.wait(inflight.HEARTBEAT_SECONDS)


@signals.worker_ready.connect
def _start_heartbeat(sender=None, **_):
    name = getattr(sender, "hostname", None)
    if not name or name in _beating:
        return
    stop = _beating[name] = threading.Event()
    threading.Thread(target=_beat, args=(name, stop), name="drfleet-heartbeat", daemon=True).start()


@signals.worker_shutdown.connect
def _stop_heartbeat(sender=None, **_):
    for name, stop in list(_beating.items()):
        stop.set()
        try:
            inflight.worker_gone(name)
        except redis.RedisError:
            pass
        del _beating[name]
