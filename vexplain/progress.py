"""Progress bars for long work: off by default, on inside ``with progress_bars():``.

``progress(items, total, description)`` wraps an iterable; inside a ``progress_bars(True)``
block it shows a tqdm bar on stderr (methods, metrics and data-set runs use it), elsewhere it
yields the items unchanged. The switch is per thread and per async task (a context variable).
"""
from vexplain.core.progress import progress, progress_bars

__all__ = ["progress", "progress_bars"]
