"""What each input is explained for: the target interface and how ``targets=`` is resolved.

A target turns the model's raw output into scores. Class indices are one kind: ``None`` means
each input's top class, an ``int`` the same class for all inputs, and a sequence (list, numpy
array, 1-D tensor) one class per input; the model's ``(N, K)`` output columns are then the scores.
Every other kind is a ``Target``: it maps the raw output (a tensor, a tuple/list, a dict of
tensors, a list of torchvision-style detection dicts — whatever the model or the adapter hands
over) to scores ``(rows, T)``, one column per thing it scores (``T`` = 1 for a target shared by
all inputs, ``T`` = N for one target per input), and says which column each input is explained
for. The adapter is bound to it (``ModelAdapter.with_score_function``), its scores become
``(rows, T)`` and each input resolves to its column; perturbed copies of input ``i`` are scored in
column ``i`` whatever batch they run in, so batching never changes a result.

A plain callable ``(raw output) -> (N,)`` is a one-column target; a list of N ``Target`` objects
is one per input. A sequence of the wrong length is an error, never a silent truncation.
"""
from __future__ import annotations

import numbers
from typing import TYPE_CHECKING, Any, Callable, ClassVar, Sequence, Union

import numpy as np
import torch

from .errors import InvalidTarget

if TYPE_CHECKING:
    from .adapter import ModelAdapter

ScoreFunction = Callable[[Any], torch.Tensor]


class Target:
    """A target kind: the model's raw output → scores ``(rows, width)``.

    Subclasses set ``name`` (the kind's lowercase identifier, as ``--target NAME=...`` spells it)
    and ``summary``, set ``count`` (None: one target for every input, scored in column 0; an int:
    one target per input, input ``i`` scored in column ``i``) and implement ``score``. Optional:
    ``width`` (columns per row, default 1 or ``count``), ``columns`` (None lets each input take its
    top column on the unperturbed output), ``check`` (warn about the unperturbed scores),
    ``describe``, ``from_text`` (build from CLI text) and ``stack`` (one vectorised target from a
    list of per-input ones).
    """

    name: ClassVar[str] = ""
    summary: ClassVar[str] = ""
    #: None: one target for all inputs; an int: one target per input, that many inputs
    count: int | None = None

    @property
    def width(self) -> int | None:
        """The number of score columns ``score`` returns per row (None: it depends on the output)."""
        return 1 if self.count is None else self.count

    def score(self, output: Any) -> torch.Tensor:
        """Float scores ``(rows, width)`` of the raw model ``output``, differentiable w.r.t. it."""
        raise NotImplementedError(f"{type(self).__name__}.score")

    def __call__(self, output: Any) -> torch.Tensor:
        return self.score(output)

    def columns(self, inputs: int) -> torch.Tensor | None:
        """int64 ``(inputs,)``: the score column each input is explained for; None: each input's
        highest column on the unperturbed output."""
        if self.count is None:
            return torch.zeros(inputs, dtype=torch.int64)
        if self.count != inputs:
            raise InvalidTarget(f"{self.describe()} gives {self.count} targets but there are {inputs} inputs; give one per input, or one for all")
        return torch.arange(inputs, dtype=torch.int64)

    def check(self, scores: torch.Tensor) -> None:
        """Called with each input's score ``(N,)`` on the unperturbed inputs; may ``notices.warn``."""

    def describe(self) -> str:
        """A short text for messages and ``exp.options["targets"]``."""
        return self.name or type(self).__name__

    @classmethod
    def from_text(cls, text: str, class_names: Sequence[str] | None = None, input_size: tuple[int, int] | None = None) -> "Target":
        """The target written as ``text`` (what follows ``NAME=`` in ``--target NAME=TEXT``)."""
        raise InvalidTarget(f"target kind '{cls.name}' cannot be written as text; build it in Python")

    @classmethod
    def stack(cls, targets: Sequence["Target"]) -> "Target | None":
        """One target scoring ``targets`` (one per input) in one vectorised call, or None when they
        cannot be merged (then each is scored in turn)."""
        return None


class FunctionTarget(Target):
    """A callable ``f(raw output) -> (rows,)`` (or ``(rows, 1)``) float scores, as one column."""

    name = "callable"
    summary = "any callable mapping the raw output to one score per input"

    def __init__(self, function: ScoreFunction):
        self.function = function

    def score(self, output: Any) -> torch.Tensor:
        rows = _rows(output)
        values = self.function(output)
        if not isinstance(values, torch.Tensor) or not values.is_floating_point():
            kind = f"{values.dtype} tensor" if isinstance(values, torch.Tensor) else type(values).__name__
            raise InvalidTarget(f"a callable target must return a float tensor of {rows or 'N'} scores (one per input); got {kind}")
        if values.dim() not in (1, 2) or (values.dim() == 2 and values.shape[1] != 1) or (rows is not None and values.shape[0] != rows):
            raise InvalidTarget(f"a callable target must return one score per input, shape ({rows or 'N'},); got shape {tuple(values.shape)}")
        return values.reshape(-1, 1)

    def describe(self) -> str:
        return f"callable {getattr(self.function, '__qualname__', type(self.function).__name__)}"


class PerInput(Target):
    """One target per input (a list of N one-column targets), scored each in turn: column ``i`` is
    ``targets[i]``'s score."""

    name = "per_input"
    summary = "one target per input"

    def __init__(self, targets: Sequence[Target]):
        wide = [t.describe() for t in targets if t.width != 1 or t.count is not None]
        if wide:
            raise InvalidTarget(f"a list of targets takes one target per input, each for one input; {wide[0]} already scores several")
        self.targets = list(targets)
        self.count = len(self.targets)

    def score(self, output: Any) -> torch.Tensor:
        return torch.cat([t.score(output).reshape(-1, 1) for t in self.targets], dim=1)

    def check(self, scores: torch.Tensor) -> None:
        for i, target in enumerate(self.targets):
            target.check(scores[i : i + 1])

    def describe(self) -> str:
        return "[" + ", ".join(t.describe() for t in self.targets) + "]"


Targets = Union[None, int, Sequence[int], np.ndarray, torch.Tensor, ScoreFunction, Target, Sequence[Target]]


def as_target(targets: Any, count: int) -> Target | None:
    """The ``Target`` behind ``targets`` (a Target, a list of Targets, a callable), or None for class indices."""
    if isinstance(targets, Target):
        return targets
    if isinstance(targets, (list, tuple)) and targets and all(isinstance(t, Target) for t in targets):
        if len(targets) != count:
            raise InvalidTarget(f"targets has {len(targets)} entries but there are {count} inputs; give one target per input")
        kinds = {type(t) for t in targets}
        stacked = kinds.pop().stack(targets) if len(kinds) == 1 else None
        return stacked if stacked is not None else PerInput(targets)
    if isinstance(targets, (list, tuple)) and any(isinstance(t, Target) for t in targets):
        raise InvalidTarget("a list of targets must hold only target objects (vx.targets.Box, Region, ...), one per input")
    if callable(targets) and not isinstance(targets, (np.ndarray, torch.Tensor)):
        return FunctionTarget(targets)
    return None


class TargetRequest:
    """The user's ``targets`` checked against the number of inputs, resolved batch by batch.

    ``score_function`` is the ``Target`` when targets are not class indices (the adapter is bound
    to it); ``per_input`` the column (class) of each input, or None with ``fixed`` None: each
    input's top column.
    """

    def __init__(self, targets: Targets, count: int):
        self.count = count
        self.fixed: int | None = None
        self.per_input: torch.Tensor | None = None
        self.score_function: Target | None = None
        if targets is None:
            return
        target = as_target(targets, count)
        if target is not None:
            self.score_function = target
            self.per_input = target.columns(count)
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
                f"targets must be None, an int, a sequence of {count} ints, a vx.targets object or a callable scoring the model's output; got {type(targets).__name__} {targets!r}"
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
    def class_targets(self) -> bool:
        """Whether the targets index the model's class scores (softmax probabilities make sense)."""
        return self.score_function is None

    @property
    def description(self) -> Any:
        """What to record in ``exp.options``: ``"top"``, an int, the list of ints, or the target's description."""
        if self.score_function is not None:
            return self.score_function.describe()
        if self.fixed is not None:
            return self.fixed
        if self.per_input is not None:
            return self.per_input.tolist()
        return "top"

    def select(self, scores: torch.Tensor, start: int = 0) -> torch.Tensor:
        """Target columns (int64, on ``scores``' device) for rows ``start .. start + len(scores)``."""
        rows, classes = scores.shape[0], scores.shape[1]
        width = None if self.score_function is None else self.score_function.width
        if self.score_function is not None and width is not None and classes != width:
            raise InvalidTarget(
                f"{self.score_function.describe()} needs scores of shape (N, {self.score_function.width}) from an adapter bound with with_score_function; got {tuple(scores.shape)}"
            )
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

    def check(self, scores: torch.Tensor, chosen: torch.Tensor) -> None:
        """Let the target warn about the unperturbed scores ``(N, T)`` at the ``chosen`` columns."""
        if self.score_function is not None and scores is not None and chosen is not None:
            self.score_function.check(gather_scores(scores.detach(), chosen.to(scores.device)))


def bind_targets(adapter: "ModelAdapter", targets: Targets, count: int) -> tuple["ModelAdapter", TargetRequest]:
    """The one setup ``explain`` and ``evaluate`` share: ``targets`` resolved for ``count`` inputs and
    the adapter bound to the target's scores when they are not class indices."""
    request = TargetRequest(targets, count)
    if request.score_function is not None:
        adapter = adapter.with_score_function(request.score_function)
    return adapter, request


def _rows(output: Any) -> int | None:
    """The batch size of a raw output when it can be read: a tensor's first dimension, a list of
    per-image dicts' length, the first tensor of a tuple or dict."""
    if isinstance(output, torch.Tensor):
        return output.shape[0] if output.dim() > 0 else None
    if isinstance(output, (list, tuple)) and output and all(isinstance(o, dict) for o in output):
        return len(output)
    values = list(output.values()) if isinstance(output, dict) else list(output) if isinstance(output, (list, tuple)) else []
    for value in values:
        if isinstance(value, torch.Tensor) and value.dim() > 0:
            return value.shape[0]
    return None


def _class_index(value: numbers.Integral) -> int:
    """``value`` as an int, refused beyond int64 (no model has that many classes; the range check
    against the model's classes comes in ``select``)."""
    if not -(2**63) <= int(value) < 2**63:
        raise InvalidTarget(f"target {int(value)} is not a class index; give an int in 0..K-1 for a model with K classes")
    return int(value)


def apply_score_function(function: ScoreFunction, output: Any, rows: int) -> torch.Tensor:
    """``function(output)`` checked and shaped as scores ``(rows, T)``; a wrong result raises ``InvalidTarget``.

    ``function`` is a ``Target`` (``T`` = its width) or a plain callable (``T`` = 1). ``rows`` is the
    batch's input count, used when ``output`` does not say (e.g. detections); a tensor output's
    first dimension wins (a layer replacement may score many rows per input).
    """
    target = function if isinstance(function, Target) else FunctionTarget(function)
    known = _rows(output)
    rows = known if known is not None else rows
    values = target.score(output)
    if values.dim() == 1 and target.width == 1:
        values = values[:, None]
    if values.dim() != 2 or values.shape[0] != rows or target.width not in (None, values.shape[1]):
        raise InvalidTarget(f"{target.describe()} must score each of {rows} rows in {target.width or 'its'} columns; got shape {tuple(values.shape)}")
    return values


def gather_scores(scores: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """``scores[i, targets[i]]`` for each row."""
    return scores.gather(1, targets.view(-1, 1)).squeeze(1)


def differentiable(scores: torch.Tensor) -> torch.Tensor:
    """``scores``, or ``InvalidTarget`` when they do not depend on the model's output (no gradient)."""
    if not scores.requires_grad:
        raise InvalidTarget("the explained scores do not depend on the model's output (a detached or constant callable target?); return a tensor computed from the output")
    return scores
