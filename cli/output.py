"""How every command prints: for people, tables (rich) with local times, human durations
("2 m 03 s", "0.14 s") and sizes; for scripts, ``--json`` (on every command) prints JSON
instead: one document for a result, one object per line for a list. Progress (with total,
percentage, rate and ETA when the total is known) goes to stderr: a live bar on a terminal,
plain lines otherwise, so stdout stays a result a script can read.

Commands print through ``result``, ``rows`` and ``progress``; nothing else in cli/ formats
times, durations or sizes itself."""

from __future__ import annotations

import json
import math
import shutil
import sys
import time
from collections.abc import Callable, Iterable, Sequence
from datetime import UTC, datetime
from typing import Any, Self

import click

_META = "drfleet.json"


# -- the --json switch ----------------------------------------------------------------------

def json_mode() -> bool:
    """True when the running command was given ``--json``."""
    ctx = click.get_current_context(silent=True)
    while ctx is not None:
        if ctx.params.get("as_json") or ctx.meta.get(_META):
            return True
        ctx = ctx.parent
    return False


def _set_json(ctx: click.Context, _param, value: bool) -> None:
    if value:
        ctx.meta[_META] = True


def add_json_option(command: click.Command) -> None:
    """Give ``command`` (and every subcommand of a group) a ``--json`` flag, unless it
    declares its own (a parameter named ``as_json``)."""
    if isinstance(command, click.Group):
        for sub in command.commands.values():
            add_json_option(sub)
        return
    if any(p.name in ("as_json", "json_flag") for p in command.params):
        return
    command.params.append(click.Option(["--json", "json_flag"], is_flag=True, expose_value=False,
                                       is_eager=True, callback=_set_json,
                                       help="Print JSON for scripts instead of tables."))


# -- values for people ----------------------------------------------------------------------

def duration(seconds: float | None) -> str:
    """``0.14 s``, ``4.2 s``, ``2 m 03 s``, ``1 h 05 m``, ``3 d 04 h``; ``-`` for None."""
    if seconds is None:
        return "-"
    seconds = float(seconds)
    sign = "-" if seconds < 0 else ""
    s = abs(seconds)
    if s < 10:
        return f"{sign}{s:.2f} s" if s < 1 else f"{sign}{s:.1f} s"
    s = round(s)
    if s < 60:
        return f"{sign}{s} s"
    if s < 3600:
        return f"{sign}{s // 60} m {s % 60:02d} s"
    if s < 86400:
        return f"{sign}{s // 3600} h {s % 3600 // 60:02d} m"
    return f"{sign}{s // 86400} d {s % 86400 // 3600:02d} h"


def size(n: float | None) -> str:
    """``512 B``, ``1.5 kB``, ``12.3 MB``, ``4.10 GB`` (powers of 1000); ``-`` for None."""
    if n is None:
        return "-"
    n = float(n)
    for unit in ("B", "kB", "MB", "GB", "TB"):
        if abs(n) < 1000 or unit == "TB":
            if unit == "B":
                return f"{int(n)} B"
            return f"{n:.2f} {unit}" if abs(n) < 10 else f"{n:.1f} {unit}"
        n /= 1000
    return f"{n:.1f} PB"  # pragma: no cover


def timestamp(value: float | str | datetime | None) -> str:
    """A moment in the local time zone: ``2026-12-03 15:04:05 CET``. Takes seconds since the
    epoch, a datetime (naive ones are UTC) or an ISO 8601 string; other strings unchanged."""
    if value is None or value == "":
        return "-"
    if isinstance(value, (int, float)):
        moment = datetime.fromtimestamp(float(value), tz=UTC)
    elif isinstance(value, datetime):
        moment = value if value.tzinfo else value.replace(tzinfo=UTC)
    else:
        try:
            moment = datetime.fromisoformat(str(value))
        except ValueError:
            return str(value)
        if moment.tzinfo is None:
            moment = moment.replace(tzinfo=UTC)
    return moment.astimezone().strftime("%Y-%m-%d %H:%M:%S %Z")


def human(key: str, value: Any) -> str:
    """One value of a result for people, chosen by its key's name: ``*seconds`` and
    ``*duration`` as durations, ``*size`` and ``*bytes`` as sizes, ``*_at`` and ``at``
    as local times; lists and mappings as compact JSON; None as ``-``."""
    if value is None:
        return "-"
    name = key.lower()
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, (int, float)):
        if name.endswith(("seconds", "duration")) or name in ("elapsed", "took"):
            return duration(value)
        if name.endswith(("size", "bytes")) and "per_second" not in name:
            return size(value)
        if name.endswith("per_second"):
            return size(value) + "/s"
        if name == "at" or name.endswith("_at"):
            return timestamp(value)
        return f"{value:,}" if isinstance(value, int) else f"{value:g}"
    if isinstance(value, (datetime,)) or (isinstance(value, str) and (name == "at" or name.endswith("_at"))):
        return timestamp(value)
    if isinstance(value, (list, tuple, dict)):
        return json.dumps(value, default=str, sort_keys=True)
    return str(value)


# -- printing -------------------------------------------------------------------------------

def _console(err: bool = False):
    from rich.console import Console
    stream = sys.stderr if err else sys.stdout
    terminal = stream.isatty()
    # not a terminal: wide enough that no cell is wrapped, so lines can be grepped
    width = shutil.get_terminal_size((100, 40)).columns if terminal else 400
    return Console(file=stream, width=width, soft_wrap=False,
                   highlight=False, force_terminal=terminal or None, no_color=not terminal)


def table(columns: Sequence[str], rows: Iterable[Sequence[Any]], *, title: str | None = None,
          empty: str = "nothing to show") -> None:
    """Print a table. Cells are never cut short: long words fold onto the next line on a
    terminal, and are printed whole otherwise."""
    from rich import box
    from rich.table import Table

    rows = [list(r) for r in rows]
    if not rows:
        click.echo(empty)
        return
    t = Table(title=title, box=box.SIMPLE_HEAD, show_edge=False, title_justify="left", pad_edge=False)
    for name in columns:
        t.add_column(name, overflow="fold")
    for r in rows:
        t.add_row(*("-" if c is None else str(c) for c in r))
    _console().print(t)


def result(data: Any, *, title: str | None = None, keys: Sequence[str] | None = None) -> None:
    """Print one result: JSON with ``--json``, else a two-column table of its fields (values
    through ``human``; ``keys`` chooses and orders them). Lists of mappings print as
    ``rows`` does."""
    if json_mode():
        click.echo(json.dumps(data, indent=2, default=str, sort_keys=False))
        return
    if isinstance(data, list):
        rows(data, title=title)
        return
    if not isinstance(data, dict):
        click.echo(str(data))
        return
    names = [k for k in (keys or data.keys()) if k in data]
    table(["field", "value"], [(k, human(k, data[k])) for k in names], title=title)


def rows(items: Sequence[dict], *, columns: Sequence[str] | None = None, title: str | None = None,
         empty: str = "nothing to show", render: Callable[[dict], Sequence[Any]] | None = None,
         headers: Sequence[str] | None = None) -> None:
    """Print a list: one JSON object per line with ``--json``, else a table of ``columns``
    (default: the first item's keys) through ``human``, or of ``render(item)`` under
    ``headers``."""
    if json_mode():
        for item in items:
            click.echo(json.dumps(item, default=str, sort_keys=True))
        return
    if render is not None:
        table(list(headers or []), [render(i) for i in items], title=title, empty=empty)
        return
    columns = list(columns or (items[0].keys() if items else []))
    table(columns, [[human(c, i.get(c)) for c in columns] for i in items], title=title, empty=empty)


def done(data: dict, text: str) -> None:
    """A one-line outcome: ``text`` for people, ``data`` as JSON with ``--json``."""
    if json_mode():
        click.echo(json.dumps(data, default=str, sort_keys=True))
    else:
        click.echo(text)


def note(text: str) -> None:
    """A line for people on stderr (what is happening, what was sent)."""
    click.echo(text, err=True)


# -- progress -------------------------------------------------------------------------------

class Progress:
    """Progress of one operation on stderr: ``update(done, total=..., step=...)``; a live
    bar (done, total, percentage, rate, ETA) on a terminal, else a plain line at most every
    ``every`` seconds and one at the end. Units: ``bytes`` (sizes) or ``items`` (counts)."""

    def __init__(self, label: str, *, total: float | None = None, unit: str = "bytes",
                 every: float = 2.0, stream=None) -> None:
        self.label, self.total, self.unit, self.every = label, total, unit, every
        self.stream = stream or sys.stderr
        self.done, self.step = 0.0, ""
        self.started = time.monotonic()
        self._last_line = -math.inf
        self._live = None
        self._task = None
        self.terminal = self.stream.isatty()

    def __enter__(self) -> Self:
        if self.terminal:
            from rich.console import Console
            from rich.progress import BarColumn, TextColumn
            from rich.progress import Progress as RichProgress
            from rich.table import Column
            # the bar keeps its width; on a narrow terminal the figures wrap under themselves
            self._live = RichProgress(TextColumn("{task.description}", table_column=Column(no_wrap=True)),
                                      BarColumn(bar_width=20, table_column=Column(min_width=20, no_wrap=True)),
                                      TextColumn("{task.fields[figures]}", table_column=Column(overflow="fold")),
                                      console=Console(file=self.stream,
                                                      width=shutil.get_terminal_size((100, 40)).columns),
                                      transient=False)
            self._live.__enter__()
            self._task = self._live.add_task(self.label, total=self.total, figures="starting")
        return self

    def __exit__(self, *exc) -> None:
        if self._live is not None:
            self._render(force=True)
            self._live.__exit__(*exc)
        elif exc[0] is None:
            self._render(force=True)

    def _amount(self, n: float) -> str:
        return size(n) if self.unit == "bytes" else f"{int(n):,} {self.unit}"

    def figures(self) -> str:
        """``12.0 MB of 40.0 MB (30%) at 5.0 MB/s, ETA 6.0 s``; parts without a total left out."""
        elapsed = max(time.monotonic() - self.started, 1e-9)
        rate = self.done / elapsed if self.done else 0.0
        text = self._amount(self.done)
        if self.total:
            pct = min(100.0, 100.0 * self.done / self.total)
            text += f" of {self._amount(self.total)} ({pct:.0f}%)"
        if rate:
            text += f" at {self._amount(rate)}/s" if self.unit == "bytes" else f" at {rate:.1f}/s"
        if self.total and rate and self.done < self.total:
            text += f", ETA {duration((self.total - self.done) / rate)}"
        text += f", {duration(elapsed)} elapsed"
        if self.step:
            text = f"{self.step}: {text}"
        return text

    def update(self, done: float | None = None, *, total: float | None = None, step: str | None = None,
               advance: float | None = None) -> None:
        if total:
            self.total = total
        if done is not None:
            self.done = float(done)
        if advance:
            self.done += advance
        if step is not None:
            self.step = step
        self._render()

    def _render(self, force: bool = False) -> None:
        if self._live is not None:
            self._live.update(self._task, completed=self.done, total=self.total, figures=self.figures())
            return
        now = time.monotonic()
        if force or now - self._last_line >= self.every:
            self._last_line = now
            self.stream.write(f"{self.label}: {self.figures()}\n")
            self.stream.flush()
