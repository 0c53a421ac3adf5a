"""Which class score each input is explained for.

``None`` means each input's top class, an ``int`` the same class for all inputs, and a sequence
(list, numpy array, 1-D tensor) one class per input. A sequence of the wrong length is an error,
never a silent truncation.
"""
from __future__ import annotations

import numbers
from typing import Any, Sequence, Union

import numpy as np
import torch

from .errors import InvalidTarget

Targets = Union[None, int, Sequence[int], np.ndarray, torch.Tensor]


class TargetRequest:
    """The user's ``targets`` checked against the number of inputs, resolved batch by batch."""

    def __init__(self, targets: Targets, count: int):
        self.count = count
        self.fixed: int | None = None
        self.per_input: torch.Tensor | None = None
        if targets is None:
            return
        if isinstance(targets, numbers.Integral) and not isinstance(targets, bool):
            self.fixed = int(targets)
            return
        if isinstance(targets, (np.ndarray, torch.Tensor)) and targets.ndim == 0:
            value = targets.item()  # a 0-d integer array or tensor (e.g. ``logits.argmax()``) is an int
            if isinstance(value, numbers.Integral) and not isinstance(value, bool):
                self.fixed = int(value)
                return
        if isinstance(targets, (str, bytes, bool, float)) or not hasattr(targets, "__len__"):
            raise InvalidTarget(
                f"targets must be None, an int, or a sequence of {count} ints; got {type(targets).__name__} {targets!r}"
            )
        array = np.asarray(targets.detach().cpu() if isinstance(targets, torch.Tensor) else targets)
        if array.ndim != 1 or not (np.issubdtype(array.dtype, np.integer) or array.size == 0):
            raise InvalidTarget(
                f"targets must be a 1-D sequence of {count} ints; got shape {array.shape} of {array.dtype}"
            )
        if len(array) != count:
            raise InvalidTarget(f"targets has {len(array)} entries but there are {count} inputs; give one target per input")
        self.per_input = torch.from_numpy(array.astype(np.int64))

    @property
    def description(self) -> Any:
        """What to record in ``exp.options``: ``"top"``, an int, or the list of ints."""
        if self.fixed is not None:
            return self.fixed
        if self.per_input is not None:
            return self.per_input.tolist()
        return "top"

    def select(self, scores: torch.Tensor, start: int = 0) -> torch.Tensor:
        """Target classes (int64, on ``scores``' device) for rows ``start .. start + len(scores)``."""
        rows, classes = scores.shape[0], scores.shape[1]
        if self.fixed is None and self.per_input is None:
            return scores.argmax(dim=1)
        if self.fixed is not None:
            chosen = torch.full((rows,), self.fixed, dtype=torch.int64)
        else:
            chosen = self.per_input[start : start + rows]
        bad = (chosen < 0) | (chosen >= classes)
        if bool(bad.any()):
            value = int(chosen[bad][0])
            raise InvalidTarget(f"target {value} is out of range for a model with {classes} classes (valid: 0..{classes - 1})")
        return chosen.to(scores.device)


def gather_scores(scores: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """``scores[i, targets[i]]`` for each row."""
    return scores.gather(1, targets.view(-1, 1)).squeeze(1)
