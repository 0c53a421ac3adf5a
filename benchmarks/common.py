"""Helpers shared by the benchmark scripts: timing, environment description, table printing."""
from __future__ import annotations

import argparse
import datetime
import os
import platform
import statistics
import sys
import time
from pathlib import Path
from typing import Any, Callable

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:  # so `python benchmarks/x.py` can import `benchmarks.models`
    sys.path.insert(0, str(ROOT))


def timed(fn: Callable[[], Any]) -> tuple[float, Any]:
    """``(seconds, result)`` of one call."""
    started = time.perf_counter()
    result = fn()
    return time.perf_counter() - started, result


def best_of(fn: Callable[[], Any], repeats: int) -> tuple[float, list[float], Any]:
    """``(min seconds, all seconds, last result)`` over ``repeats`` calls."""
    times, result = [], None
    for _ in range(max(1, repeats)):
        seconds, result = timed(fn)
        times.append(seconds)
    return min(times), times, result


def median_of(fn: Callable[[], Any], repeats: int, warmup: int = 2) -> tuple[float, list[float]]:
    """``(median seconds, all seconds)`` after ``warmup`` untimed calls."""
    for _ in range(warmup):
        fn()
    times = [timed(fn)[0] for _ in range(max(1, repeats))]
    return statistics.median(times), times


class PeakMemory:
    """Peak resident memory above the level at entry, sampled every ``interval`` s by a thread
    (Linux ``/proc/self/statm``): ``with PeakMemory() as peak: ...; peak.megabytes``."""

    def __init__(self, interval: float = 0.005) -> None:
        self.interval = interval
        self.megabytes = 0.0

    @staticmethod
    def _resident() -> int:
        with open("/proc/self/statm") as statm:
            return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")

    def __enter__(self) -> "PeakMemory":
        import threading

        self._start = self._peak = self._resident()
        self._stop = threading.Event()

        def sample() -> None:
            while not self._stop.wait(self.interval):
                self._peak = max(self._peak, self._resident())

        self._thread = threading.Thread(target=sample, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self._peak = max(self._peak, self._resident())
        self.megabytes = (self._peak - self._start) / 2**20


def environment(device: Any = None) -> dict[str, Any]:
    """Versions, CPU count and load of this machine; with a CUDA ``device`` also the GPU, the CUDA
    version and the TF32 flags."""
    import captum
    import numpy
    import onnxruntime
    import torch

    env = {
        "date": datetime.date.today().isoformat(),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "cpu_count": os.cpu_count(),
        "torch": torch.__version__,
        "torch_threads": torch.get_num_threads(),
        "onnxruntime": onnxruntime.__version__,
        "captum": captum.__version__,
        "numpy": numpy.__version__,
        "load_average_at_start": os.getloadavg() if hasattr(os, "getloadavg") else None,
    }
    if device is not None and torch.device(device).type == "cuda":
        env.update(
            device=torch.cuda.get_device_name(device), cuda=torch.version.cuda,
            cudnn_allow_tf32=torch.backends.cudnn.allow_tf32, matmul_allow_tf32=torch.backends.cuda.matmul.allow_tf32,
        )
    return env


def print_table(headers: list[str], rows: list[list[Any]]) -> None:
    cells = [[_fmt(v) for v in row] for row in rows]
    widths = [max(len(h), *(len(r[i]) for r in cells)) for i, h in enumerate(headers)]
    line = "  ".join(h.ljust(w) for h, w in zip(headers, widths))
    print(line)
    print("-" * len(line))
    for row in cells:
        print("  ".join(v.ljust(w) for v, w in zip(row, widths)))


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        if value == 0 or abs(value) >= 0.01:
            return f"{value:.3f}"
        return f"{value:.2e}"
    return str(value)


def case_record(label: str, case: dict, weights: str, images: int, explanation: Any) -> dict[str, Any]:
    """The fields every occlusion benchmark result starts with: what ran, on what, how many windows."""
    return {
        "case": label,
        "model": case["name"],
        "weights": weights,
        "images": images,
        "window": case["window"],
        "stride": case["stride"],
        "windows_per_image": explanation.options["windows"],
    }


def interleaved_rounds(
    contenders: dict[str, Callable[[], Any]], repeats: int, measure: Callable[[Callable[[], Any]], tuple[float, float, Any]]
) -> tuple[dict[str, list[float]], dict[str, float], dict[str, Any]]:
    """Every contender once per round, ``repeats`` rounds, so a load change hits all alike.
    ``measure(fn)`` gives ``(seconds, peak MB, result)``. Returns the times of each contender, its
    largest peak, and its last result."""
    import gc

    times: dict[str, list[float]] = {name: [] for name in contenders}
    memory: dict[str, float] = {}
    last: dict[str, Any] = {}
    width = max(len(name) for name in contenders)
    for round_ in range(repeats):
        for name, fn in contenders.items():
            seconds, peak, last[name] = measure(fn)
            times[name].append(seconds)
            memory[name] = max(memory.get(name, 0.0), peak)
            print(f"round {round_ + 1}/{repeats} {name:{width}s}: {seconds:8.4f} s  peak +{peak:8.1f} MB", flush=True)
            gc.collect()
    return times, memory, last


def timed_with_peak_memory(fn: Callable[[], Any]) -> tuple[float, float, Any]:
    """``(seconds, peak resident MB above the start, result)`` of one call."""
    with PeakMemory() as peak:
        seconds, result = timed(fn)
    return seconds, peak.megabytes, result


#: largest |difference| between two exact results, relative to max(1, their peak |value|)
AGREEMENT = 1e-4


def agrees(max_abs_diff: float, peak: float = 1.0) -> bool:
    """Whether two results that should be equal are, within ``AGREEMENT`` × max(1, ``peak``)."""
    return max_abs_diff <= AGREEMENT * max(1.0, peak)


def write_results(path: Path | None, name: str, **payload: Any) -> None:
    """``{"benchmark": name, **payload}`` as JSON at ``path`` (folders made), when a path is given."""
    import json

    if path is None:
        return
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"benchmark": name, **payload}, indent=2))
    print(f"\nwrote {path}")


def bench_parser(doc: str, repeats: int, quick_repeats: int, quick_help: str, cases: bool = True) -> argparse.ArgumentParser:
    """The options the compare scripts share: ``--quick``, ``--json``, ``--repeats`` (median of that
    many timed calls; default ``repeats``, ``quick_repeats`` with ``--quick``) and, with ``cases``,
    ``--case MODEL-BATCH`` (repeatable). Read the repeats with :func:`repeats_of`."""
    parser = argparse.ArgumentParser(description=doc.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help=quick_help)
    parser.add_argument("--json", type=Path, help="write the results as JSON to this path")
    if cases:
        parser.add_argument("--case", action="append", help="run only this case, as MODEL-BATCH (e.g. resnet18-1); repeatable")
    parser.add_argument("--repeats", type=int, default=None,
                        help=f"timed calls per contender, median kept (default {repeats}, quick {quick_repeats})")
    parser.set_defaults(default_repeats=(repeats, quick_repeats))
    return parser


def repeats_of(args: Any) -> int:
    """``--repeats``, or the default of a ``bench_parser`` for a normal or ``--quick`` run."""
    repeats, quick_repeats = args.default_repeats
    return args.repeats or (quick_repeats if args.quick else repeats)


def chosen_cases(all_cases: list[dict], args: Any) -> list[dict]:
    """The cases named by ``--case MODEL-BATCH``, or all of them."""
    return [c for c in all_cases if not args.case or f"{c['name']}-{c['batch']}" in args.case]
