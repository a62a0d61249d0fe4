"""The one base class of every error drfleet raises on purpose.

An operator reading an error at 3 AM needs three things: what went wrong, the facts that
locate it (dataset, backup id, key id, host, the tool's last stderr lines), and what to do
next. ``DrfleetError`` carries all three and renders them in one message. Facts must never
hold secret values: callers pass names and ids, not credentials.
"""

from __future__ import annotations

import functools
from typing import Any


class DrfleetError(Exception):
    """Base class for drfleet's own errors.

    ``message`` says what went wrong; ``facts`` (keyword arguments) name what it concerns;
    ``hint`` says what the operator should do next. Subclasses set a default ``hint``.
    """

    hint: str = ""
    #: whether a later attempt of the same operation may succeed (a lost connection, an
    #: unavailable store) rather than needing an operator to fix something first
    transient: bool = False

    def __init__(self, message: str, *, hint: str | None = None, **facts: Any) -> None:
        self.message = message
        self.facts = {k: v for k, v in facts.items() if v is not None}
        if hint is not None:
            self.hint = hint
        # args carry the whole rendering, so the facts survive Celery's result backend
        # (which rebuilds an exception from its args on the client side)
        super().__init__(self.render())

    def __init_subclass__(cls, **kwargs: Any) -> None:
        """Let every subclass be rebuilt from its rendering alone, as Celery's result backend
        does on the client (``cls(*args)``): a subclass whose constructor takes other
        arguments would otherwise come back as a bare ``Exception`` and lose its type."""
        super().__init_subclass__(**kwargs)
        init = cls.__dict__.get("__init__")
        if init is None:
            return

        @functools.wraps(init)
        def __init__(self, *args: Any, **kw: Any) -> None:
            if len(args) == 1 and not kw and _looks_rendered(args[0]):
                DrfleetError._rebuild(self, args[0])
                return
            init(self, *args, **kw)

        cls.__init__ = __init__

    def _rebuild(self, rendered: str) -> None:
        self.message = rendered.splitlines()[0] if rendered else ""
        self.facts = {}
        self._rendered = rendered
        Exception.__init__(self, rendered)

    def __str__(self) -> str:
        return self.render()

    def render(self) -> str:
        if getattr(self, "_rendered", None) is not None:
            return self._rendered
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


def _looks_rendered(text: Any) -> bool:
    """A message ``render`` produced: facts or a hint on indented lines after the first.
    A plain one-line message goes to the subclass's own constructor as before."""
    return isinstance(text, str) and "\n  " in text


def error_text(exc: BaseException) -> str:
    """One line saying what went wrong (drfleet errors carry facts; others their type)."""
    if isinstance(exc, DrfleetError):
        facts = ", ".join(f"{k}={v}" for k, v in exc.facts.items() if not isinstance(v, (list, tuple)))
        return exc.message + (f" ({facts})" if facts else "")
    first = (str(exc).splitlines() or [""])[0][:300]
    return f"{type(exc).__name__}: {first}" if first else type(exc).__name__
