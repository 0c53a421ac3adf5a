"""Warnings gathered during one ``explain`` or ``evaluate`` call, for ``Explanation.warnings``.

Any part of vexplain (an adapter, a method, a target) calls ``warn(line)`` while it works; the
entry point opens ``collecting()`` around the call and stores the lines it gathered. The collector
lives in a ``contextvars.ContextVar``, so calls running in other threads never see each other's
lines. Outside any collector ``warn`` does nothing. Each line is one sentence naming the
condition and, where there is one, what would avoid it; a line repeated in one call is kept once.
"""
from __future__ import annotations

import contextlib
import contextvars
from typing import Iterator

_CURRENT: contextvars.ContextVar[list[str] | None] = contextvars.ContextVar("vexplain_warnings", default=None)


@contextlib.contextmanager
def collecting() -> Iterator[list[str]]:
    """A fresh list that ``warn`` appends to until the block ends (nested blocks keep their own)."""
    lines: list[str] = []
    token = _CURRENT.set(lines)
    try:
        yield lines
    finally:
        _CURRENT.reset(token)


def warn(line: str) -> None:
    """Record ``line`` for the call in progress (once); nothing happens outside ``collecting()``."""
    lines = _CURRENT.get()
    line = " ".join(str(line).split())
    if lines is not None and line not in lines:
        lines.append(line)
