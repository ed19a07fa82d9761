"""Text output: one-line messages, tables that fit the terminal, times, durations, JSON."""

from __future__ import annotations

import datetime as _dt
import json
import shutil
import sys
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import click


def _one_line(text: str) -> str:
    return " ".join(str(text).split())


def _width() -> int:
    # get_terminal_size falls back to $COLUMNS, then 80, when stdout is not a terminal.
    return max(40, shutil.get_terminal_size((80, 24)).columns)


def _ellipsis() -> str:
    encoding = getattr(sys.stdout, "encoding", None) or "ascii"
    try:
        "…".encode(encoding)
        return "…"
    except (UnicodeEncodeError, LookupError):
        return "~"


def _clip(text: str, width: int) -> str:
    if len(text) <= width:
        return text
    if width <= 1:
        return text[:width]
    return text[: width - 1] + _ellipsis()


def render_table(
    headers: Sequence[str],
    rows: Sequence[Sequence[str]],
    *,
    width: int | None = None,
    shrink: Sequence[int] = (),
    minimum: Mapping[int, int] | None = None,
    right: Iterable[int] = (),
) -> list[str]:
    """Lines of a plain-text table no wider than ``width``.

    Columns listed in ``shrink`` give up width, in that order, down to ``minimum`` (default 4),
    and their cells are clipped with an ellipsis; ``right`` columns are right-aligned.
    """
    width = _width() if width is None else width
    minimum = dict(minimum or {})
    widths = [max([len(h)] + [len(r[i]) for r in rows]) for i, h in enumerate(headers)]
    total = sum(widths) + 2 * (len(widths) - 1)
    for i in shrink:  # in priority order: the first gives up all it can, then the next
        give = min(total - width, widths[i] - minimum.get(i, 4))
        if give > 0:
            widths[i] -= give
            total -= give
    right = set(right)

    def line(cells: Sequence[str]) -> str:
        out = []
        for i, cell in enumerate(cells):
            cell = _clip(cell, widths[i])
            out.append(cell.rjust(widths[i]) if i in right else cell.ljust(widths[i]))
        return "  ".join(out).rstrip()

    return [line(headers)] + [line(r) for r in rows]


def _local_time(t: Any, zone: str) -> str:
    import zoneinfo

    if not isinstance(t, int | float):
        return "?"
    return _dt.datetime.fromtimestamp(t, zoneinfo.ZoneInfo(zone)).strftime("%Y-%m-%d %H:%M:%S")


def _duration(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    s = max(0.0, float(seconds))
    if s < 10:
        return f"{s:.1f}s"
    if s < 60:
        return f"{s:.0f}s"
    m, sec = divmod(int(round(s)), 60)
    if m < 60:
        return f"{m}m{sec:02d}s"
    h, m = divmod(m, 60)
    if h < 24:
        return f"{h}h{m:02d}m"
    d, h = divmod(h, 24)
    return f"{d}d{h:02d}h"


def _events_text(num_events: Mapping[str, Any] | None) -> str:
    if not num_events:
        return "-"
    names = sorted(num_events, key=lambda s: (s != "primary", s))
    return ", ".join(f"{name} {num_events[name]}" for name in names)


def _json_out(value: Any) -> None:
    click.echo(json.dumps(value, indent=2, sort_keys=False, default=str))
