"""Memory-budget checks on option values, made before a method allocates anything.

A method that holds ``count`` items at once (RISE's masks, SmoothGrad's noise draws, Integrated
Gradients' path nodes) calls :func:`check_fits` with the bytes each item takes; a count whose
items exceed the budget raises ``InvalidOption`` naming the option and the largest count that
fits. The budget is the method's ``memory_mb`` option (default 1024 MB on the CPU, a quarter of
free memory on a GPU), which may not exceed the memory of the device the work runs on.
"""
from __future__ import annotations

import os
from typing import Any

import torch

from .errors import InvalidOption
from .perturbation import default_memory_mb


def device_memory_mb(device: torch.device) -> float | None:
    """Total memory of ``device`` in MB: the GPU's, or the machine's RAM; None when unknown."""
    if device.type == "cuda":
        return torch.cuda.get_device_properties(device).total_memory / 2**20
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**20
    except (ValueError, OSError, AttributeError):  # no sysconf (Windows) or no such name
        return None


def memory_budget_mb(owner: str, options: dict[str, Any], device: torch.device) -> float:
    """``options["memory_mb"]`` (or the device's default when it is None or absent), refused with
    ``InvalidOption`` when it exceeds the device's memory."""
    given = options.get("memory_mb")
    if given is None:
        return default_memory_mb(device)
    total = device_memory_mb(device)
    if total is not None and given > total:
        raise InvalidOption(
            f"option 'memory_mb' of method '{owner}' is {given:g} MB but the {device.type} device has {total:.0f} MB; give at most {total:.0f}"
        )
    return float(given)


def check_fits(owner: str, option: str, count: int, bytes_each: float, budget_mb: float, what: str) -> None:
    """``InvalidOption`` when ``count`` items of ``bytes_each`` bytes (``what``, e.g. "masks") exceed
    ``budget_mb``, naming ``option`` and the largest count that fits."""
    largest = int(budget_mb * 2**20 // bytes_each)
    if count > largest:
        raise InvalidOption(
            f"option '{option}' of method '{owner}' is {count}, but {count} {what} of {bytes_each:g} bytes "
            f"need {count * bytes_each / 2**20:.4g} MB, over the memory budget of {budget_mb:g} MB (memory_mb); "
            f"at most {largest} fit"
        )
