"""Which class score each input is explained for.

``None`` means each input's top class, an ``int`` the same class for all inputs, and a sequence
(list, numpy array, 1-D tensor) one class per input. A sequence of the wrong length is an error,
never a silent truncation. A callable maps the model's raw output (any structure: a ``(N, K, H, W)``
segmentation, a regression value, detections) to one score per input, ``(N,)``; the adapter is
then bound to it (``ModelAdapter.with_score_function``), its scores become ``(N, 1)`` and every
target resolves to column 0.
"""
from __future__ import annotations

import numbers
from typing import Any, Callable, Sequence, Union

import numpy as np
import torch

from .errors import InvalidTarget

ScoreFunction = Callable[[Any], torch.Tensor]
Targets = Union[None, int, Sequence[int], np.ndarray, torch.Tensor, ScoreFunction]


class TargetRequest:
    """The user's ``targets`` checked against the number of inputs, resolved batch by batch."""

    def __init__(self, targets: Targets, count: int):
        self.count = count
        self.fixed: int | None = None
        self.per_input: torch.Tensor | None = None
        self.score_function: ScoreFunction | None = None
        if targets is None:
            return
        if callable(targets) and not isinstance(targets, (np.ndarray, torch.Tensor)):
            self.score_function = targets
            return
        if isinstance(targets, torch.Tensor) and (targets.device.type == "meta" or targets.layout != torch.strided):
            raise InvalidTarget(f"targets must be a dense tensor holding values; got a {targets.layout} tensor on '{targets.device.type}'")
        if isinstance(targets, numbers.Integral) and not isinstance(targets, bool):
            self.fixed = _class_index(targets)
            return
        if isinstance(targets, (np.ndarray, torch.Tensor)) and targets.ndim == 0:
            value = targets.item()  # a 0-d integer array or tensor (e.g. ``logits.argmax()``) is an int
            if isinstance(value, numbers.Integral) and not isinstance(value, bool):
                self.fixed = _class_index(value)
                return
        if isinstance(targets, (str, bytes, bool, float)) or not hasattr(targets, "__len__"):
            raise InvalidTarget(
                f"targets must be None, an int, a sequence of {count} ints, or a callable scoring the model's output; got {type(targets).__name__} {targets!r}"
            )
        array = np.asarray(targets.detach().cpu() if isinstance(targets, torch.Tensor) else targets)
        if array.ndim != 1 or not (np.issubdtype(array.dtype, np.integer) or array.size == 0):
            raise InvalidTarget(
                f"targets must be a 1-D sequence of {count} ints; got shape {array.shape} of {array.dtype}"
            )
        if array.dtype == np.uint64 and array.size and int(array.max()) >= 2**63:
            _class_index(int(array.max()))
        if len(array) != count:
            raise InvalidTarget(f"targets has {len(array)} entries but there are {count} inputs; give one target per input")
        self.per_input = torch.from_numpy(array.astype(np.int64))

    @property
    def description(self) -> Any:
        """What to record in ``exp.options``: ``"top"``, an int, the list of ints, or ``"callable <name>"``."""
        if self.score_function is not None:
            return f"callable {getattr(self.score_function, '__qualname__', type(self.score_function).__name__)}"
        if self.fixed is not None:
            return self.fixed
        if self.per_input is not None:
            return self.per_input.tolist()
        return "top"

    def select(self, scores: torch.Tensor, start: int = 0) -> torch.Tensor:
        """Target classes (int64, on ``scores``' device) for rows ``start .. start + len(scores)``."""
        rows, classes = scores.shape[0], scores.shape[1]
        if self.score_function is not None:
            if classes != 1:
                raise InvalidTarget(
                    f"a callable target needs scores of shape (N, 1) from an adapter bound with with_score_function; got {tuple(scores.shape)}"
                )
            return torch.zeros(rows, dtype=torch.int64, device=scores.device)
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


def _class_index(value: numbers.Integral) -> int:
    """``value`` as an int, refused beyond int64 (no model has that many classes; the range check
    against the model's classes comes in ``select``)."""
    if not -(2**63) <= int(value) < 2**63:
        raise InvalidTarget(f"target {int(value)} is not a class index; give an int in 0..K-1 for a model with K classes")
    return int(value)


def apply_score_function(function: ScoreFunction, output: Any, rows: int) -> torch.Tensor:
    """``function(output)`` checked and shaped as scores ``(rows, 1)``; a wrong result raises ``InvalidTarget``.

    ``rows`` is the batch's input count, used when ``output`` is not a tensor (e.g. detections);
    a tensor output's first dimension wins (a layer replacement may score many rows per input).
    """
    if isinstance(output, torch.Tensor) and output.dim() > 0:
        rows = output.shape[0]
    values = function(output)
    if not isinstance(values, torch.Tensor) or not values.is_floating_point():
        kind = f"{values.dtype} tensor" if isinstance(values, torch.Tensor) else type(values).__name__
        raise InvalidTarget(f"a callable target must return a float tensor of {rows} scores (one per input); got {kind}")
    if values.shape not in ((rows,), (rows, 1)):
        raise InvalidTarget(
            f"a callable target must return one score per input, shape ({rows},); got shape {tuple(values.shape)}"
        )
    return values.reshape(rows, 1)


def gather_scores(scores: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """``scores[i, targets[i]]`` for each row."""
    return scores.gather(1, targets.view(-1, 1)).squeeze(1)
