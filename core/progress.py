"""Progress bars for long work, off by default in the API and switched on by the CLI."""
from __future__ import annotations

import contextlib
import contextvars
from typing import Iterable, Iterator, TypeVar

T = TypeVar("T")
_ENABLED: contextvars.ContextVar[bool] = contextvars.ContextVar("vexplain_progress", default=False)


@contextlib.contextmanager
def progress_bars(enabled: bool = True) -> Iterator[None]:
    """Inside the block, ``progress()`` shows tqdm bars on stderr."""
    token = _ENABLED.set(enabled)
    try:
        yield
    finally:
        _ENABLED.reset(token)


def progress(items: Iterable[T], total: int | None = None, description: str = "") -> Iterable[T]:
    """``items`` unchanged, wrapped in a tqdm bar when bars are enabled and the work is long."""
    if not _ENABLED.get() or (total is not None and total < 2):
        return items
    from tqdm import tqdm

    return tqdm(items, total=total, desc=description, leave=False, unit="batch")


class _Silent:
    def update(self, count: int = 1) -> None:
        """Nothing to show."""


@contextlib.contextmanager
def progress_counter(total: int, description: str = "", unit: str = "it") -> Iterator["_Silent"]:
    """A bar advanced by ``update(count)`` inside the block (for work counted in items, not
    loop steps); a silent stand-in when bars are off or the work is short."""
    if not _ENABLED.get() or total < 2:
        yield _Silent()
        return
    from tqdm import tqdm

    with tqdm(total=total, desc=description, leave=False, unit=unit) as bar:
        yield bar
