"""The one base class of every error drfleet raises on purpose.

An operator reading an error at 3 AM needs three things: what went wrong, the facts that
locate it (dataset, backup id, key id, host, the tool's last stderr lines), and what to do
next. ``DrfleetError`` carries all three and renders them in one message. Facts must never
hold secret values: callers pass names and ids, not credentials.
"""

from __future__ import annotations

from typing import Any


class DrfleetError(Exception):
    """Base class for drfleet's own errors.

    ``message`` says what went wrong; ``facts`` (keyword arguments) name what it concerns;
    ``hint`` says what the operator should do next. Subclasses set a default ``hint``.
    """

    hint: str = ""

    def __init__(self, message: str, *, hint: str | None = None, **facts: Any) -> None:
        self.message = message
        self.facts = {k: v for k, v in facts.items() if v is not None}
        if hint is not None:
            self.hint = hint
        # args carry the whole rendering, so the facts survive Celery's result backend
        # (which rebuilds an exception from its args on the client side)
        super().__init__(self.render())

    def __str__(self) -> str:
        return self.render()

    def render(self) -> str:
        parts = [self.message]
        for key, value in self.facts.items():
            if isinstance(value, (list, tuple)):
                value = "\n    ".join(str(v) for v in value)
                parts.append(f"  {key}:\n    {value}")
            else:
                parts.append(f"  {key}: {value}")
        if self.hint:
            parts.append(f"  what to do: {self.hint}")
        return "\n".join(parts)
