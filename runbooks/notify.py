"""Notifications through apprise (mail, chat, webhooks: any apprise URL) for the events an
operator must hear about: a runbook step waiting for approval, a run finished or failed, a
drill failed, a target missed.

Where they go is ``recovery.notify`` in the plan, a secret reference ({env: VAR} or {file:
PATH}) to apprise URLs separated by spaces or newlines, because those URLs carry tokens.
Nothing is sent without it. ``notify`` never raises: a notification that cannot be sent is
logged (by event and destination scheme, never the URL) and the work goes on. The message
holds names, ids, statuses and numbers only.
"""

from __future__ import annotations

import logging
from typing import Any

from drfleet.plan.models import Plan

logger = logging.getLogger("drfleet.notify")

EVENTS = {"approval-needed": "warning", "runbook-finished": "success", "runbook-failed": "failure",
          "drill-failed": "failure", "target-missed": "failure", "alert-refused": "warning"}


def destinations(plan: Plan) -> list[str]:
    """The apprise URLs of ``recovery.notify`` (empty when unset or unresolvable)."""
    ref = (plan.recovery or {}).get("notify")
    if not ref:
        return []
    from drfleet.plan.models import SecretRef
    from drfleet.secrets import resolve_secret

    try:
        text = resolve_secret(SecretRef.model_validate(ref), what="recovery.notify")
    except Exception as exc:  # noqa: BLE001 - no destinations is logged, never fatal
        logger.warning("notifications not sent: recovery.notify cannot be read (%s)", type(exc).__name__)
        return []
    return [u for u in text.split() if u]


def notify(plan: Plan, event: str, title: str, body: str, **facts: Any) -> bool:
    """Send one notification of ``event`` (a key of EVENTS) to every destination; True when
    apprise reports every one sent. Never raises."""
    urls = destinations(plan)
    if not urls:
        return False
    try:
        import apprise

        sender = apprise.Apprise()
        for url in urls:
            if not sender.add(url):
                logger.warning("notification destination %s:// refused by apprise", url.split(":", 1)[0])
        lines = [body] + [f"{k}: {v}" for k, v in sorted(facts.items()) if v is not None]
        ok = bool(sender.notify(body="\n".join(lines), title=f"[drfleet] {title}",
                                notify_type=EVENTS.get(event, "info")))
    except Exception as exc:  # noqa: BLE001 - notifying must never break a runbook or a drill
        logger.warning("notification %s not sent: %s", event, type(exc).__name__)
        return False
    if not ok:
        logger.warning("notification %s: at least one destination failed", event)
    return ok
