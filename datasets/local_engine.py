"""The embedded engine: one process, no Ray. A decoding thread reads and preprocesses the next
shards while the calling thread explains the current one (OpenCV decoding and PyTorch/ONNX
Runtime compute both release the GIL), through a queue of at most ``PREFETCH`` shards, so memory
holds a bounded number of shards whatever the data set's size."""
from __future__ import annotations

import queue
import threading
from pathlib import Path
from typing import Any, Callable, Iterator, Sequence

import numpy as np

from .pipeline import Decoded, decode, explain_decoded, to_table
from .plan import Plan
from .sources import Item
from .store import ShardStore

PREFETCH = 2
_DONE = object()


def run_local(model: Any, shards: Sequence[tuple[int, list[Item]]], plan: Plan, store: ShardStore, advance: Callable[[int], None]) -> int:
    """Explain and commit every ``(index, items)`` shard in order; ``advance(n)`` after each shard
    with its image count. Returns the rows written."""
    written, pins = 0, {}
    for index, decoded in _prefetched(shards, plan):
        columns, overlays = explain_decoded(model, decoded, plan, pins)
        _write_overlays(store, overlays)
        table = to_table(columns)
        store.commit(index, table, [item.name for item in decoded.items])
        written += table.num_rows
        advance(len(decoded.items))
    return written


def _prefetched(shards: Sequence[tuple[int, list[Item]]], plan: Plan) -> Iterator[tuple[int, Decoded]]:
    """``(index, decode(items))`` per shard, decoded ahead on a daemon thread; a decoding error is
    raised here, in the caller's thread; leaving the loop early stops the thread."""
    ready: queue.Queue = queue.Queue(maxsize=PREFETCH)
    stop = threading.Event()

    def offer(entry: Any) -> bool:
        while not stop.is_set():
            try:
                ready.put(entry, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def work() -> None:
        try:
            for index, items in shards:
                if not offer((index, decode(items, plan))):
                    return
        except BaseException as error:  # handed to the consumer, which re-raises it
            offer(error)
            return
        offer(_DONE)

    thread = threading.Thread(target=work, name="vexplain-decode", daemon=True)
    thread.start()
    try:
        while True:
            entry = ready.get()
            if entry is _DONE:
                return
            if isinstance(entry, BaseException):
                raise entry
            yield entry
    finally:
        stop.set()
        thread.join()


def _write_overlays(store: ShardStore, overlays: dict[tuple[str, str], np.ndarray]) -> None:
    import cv2

    for (image, method), picture in overlays.items():
        path: Path = store.overlay_path(image, method)
        path.parent.mkdir(parents=True, exist_ok=True)
        cv2.imwrite(str(path), cv2.cvtColor(picture, cv2.COLOR_RGB2BGR))
