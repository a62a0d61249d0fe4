"""Fleet state kept outside the broker: idempotency claims, missed beat slots, the audit
log, and run records. It lives in Redis under the ``drfleet:`` prefix, at
``DRFLEET_STATE_URL`` (default: the broker's URL)."""
