"""Timing and peak memory of one call, for ``vexplain bench``."""
from __future__ import annotations

import os
import statistics
import threading
import time
from dataclasses import dataclass
from typing import Any, Callable

import torch

_PAGE = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096


def _rss() -> int | None:
    """Resident set size of this process in bytes (Linux ``/proc``), None elsewhere."""
    try:
        with open("/proc/self/statm") as handle:
            return int(handle.read().split()[1]) * _PAGE
    except (OSError, ValueError, IndexError):
        return None


class PeakMemory:
    """Peak extra memory inside a ``with`` block: on CUDA the allocator's peak over the start;
    on the CPU the resident set sampled every millisecond, peak minus start (None off Linux)."""

    def __init__(self, device: torch.device) -> None:
        self.device = device
        self.peak_bytes: int | None = None
        self._stop = threading.Event()

    def __enter__(self) -> "PeakMemory":
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
            torch.cuda.reset_peak_memory_stats(self.device)
            self._start = torch.cuda.memory_allocated(self.device)
            return self
        self._start = _rss()
        self._peak = self._start
        if self._start is not None:
            self._thread = threading.Thread(target=self._sample, daemon=True)
            self._thread.start()
        return self

    def _sample(self) -> None:
        while not self._stop.wait(0.001):
            now = _rss()
            if now is not None and now > self._peak:
                self._peak = now

    def __exit__(self, *exc: Any) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
            self.peak_bytes = torch.cuda.max_memory_allocated(self.device) - self._start
            return
        if self._start is None:
            return
        self._stop.set()
        self._thread.join()
        now = _rss()
        self.peak_bytes = max(self._peak, now or 0) - self._start


@dataclass
class Timing:
    """Median seconds of the timed calls, all of them, and the peak extra memory in MB."""

    seconds: float
    runs: list[float]
    peak_mb: float | None


def measure(call: Callable[[], Any], device: torch.device, repeats: int, warmup: int = 1) -> Timing:
    """``call`` run ``warmup`` times untimed (exports, caches), then ``repeats`` times timed; the
    memory peak is taken over the first timed run."""
    for _ in range(warmup):
        call()
    runs, peak = [], None
    for index in range(max(1, repeats)):
        memory = PeakMemory(device) if index == 0 else None
        started = time.perf_counter()
        if memory is not None:
            with memory:
                call()
            peak = memory.peak_bytes
        else:
            call()
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        runs.append(time.perf_counter() - started)
    return Timing(statistics.median(runs), runs, None if peak is None else max(0, peak) / 2**20)
