"""Checks every method's result gets in ``explain`` before it is returned, so no doubtful map is silent.

One place for all methods (``check_attribution``), vectorised over the batch: a few reductions on
the result's tensors on their device and one small copy of per-image flags, whatever N is.

Decisions, one per condition:

- **Non-finite explained scores** (the model's own output on the user's inputs, for the class or
  callable target explained): a typed error, since nothing computed from them means anything —
  ``InvalidInput`` for a model's scores (naming the largest input magnitude: finite inputs near
  float32's range overflow inside the model), ``InvalidTarget`` for a callable target's scores.
  A method that fails on such scores with an untyped error (an SVD of NaN) gets the same typed
  error instead (``blaming_non_finite_scores``).
- **Non-finite scores of other classes** (the explained one is finite): a warning; the map
  may still hold, but a softmax over those scores would not.
- **Saturated scores**: the explained score is exactly 0 or 1 and every score of that input lies
  in [0, 1] (a softmax/sigmoid output saturated in float32), so gradients and occlusion drops
  vanish: a warning that suggests explaining the logits.
- **Non-finite map values** (finite scores, e.g. perturbed inputs or gradients overflowed): a
  warning naming the inputs; the raw map is returned as computed.
- **An all-zero map**, **a constant map** (every pixel the same non-zero value): a warning each;
  such a map ranks no pixel above another.

Each warning names the inputs concerned (the first few indices and how many more).
"""
from __future__ import annotations

import contextlib
from typing import Iterator

import torch

from .adapter import ModelAdapter
from .errors import InvalidInput, InvalidTarget, VexplainError
from .explainer import Attribution
from .notices import warn

#: how many input indices a message lists before "and N more"
LISTED = 5
#: a map whose spread (max − min) is at most this fraction of its largest magnitude is constant
CONSTANT_TOLERANCE = 1e-6


@contextlib.contextmanager
def blaming_non_finite_scores(adapter: ModelAdapter, inputs: torch.Tensor, callable_target: bool) -> Iterator[None]:
    """Around a method's work: when it fails with an untyped error (an SVD that cannot converge, a
    sort of NaN), score the clean inputs once and, when those scores are not finite, raise the
    typed error ``check_attribution`` would have raised, from the failure. Costs nothing unless
    the method fails."""
    try:
        yield
    except VexplainError:
        raise
    except Exception as failure:
        try:
            scores = adapter.forward(inputs).float()
        except Exception:  # the model itself fails on these inputs: the original failure says more
            raise failure from None
        bad = ~torch.isfinite(scores).all(1)
        if bool(bad.any()):
            raise _non_finite_error(bad.cpu(), inputs, callable_target) from failure
        raise


def check_attribution(result: Attribution, inputs: torch.Tensor, callable_target: bool) -> None:
    """Raise for non-finite explained scores, ``warn`` for every other doubtful condition (see the
    module's docstring). ``inputs`` are the explained inputs; ``callable_target`` says whether the
    scores came from a callable target rather than from the model's classes."""
    scores = result.scores.detach().float()
    targets = result.targets.to(scores.device).long().view(-1, 1)
    explained = scores.gather(1, targets).squeeze(1)
    finite_scores = torch.isfinite(scores)
    maps = result.maps.detach().flatten(1)
    # two passes over the maps: amax/amin propagate NaN and keep ±inf, so a row is all finite
    # exactly when both its extremes are
    highest, lowest = maps.amax(1).float(), maps.amin(1).float()
    finite_rows = torch.isfinite(highest) & torch.isfinite(lowest)
    largest = torch.maximum(highest.abs(), lowest.abs())
    # a target's own score (a box's, a region's) is no class probability; its zero is warned by the target
    in_unit = ((scores >= 0) & (scores <= 1)).all(1) & (not callable_target) & (scores.shape[1] > 1)
    flags = torch.stack(
        [
            ~torch.isfinite(explained),
            ~finite_scores.all(1),
            in_unit & ((explained == 0) | (explained == 1)),
            ~finite_rows,
            finite_rows & (largest == 0),
            finite_rows & (largest > 0) & (highest - lowest <= CONSTANT_TOLERANCE * largest),
        ]
    ).cpu()
    bad_explained, bad_scores, saturated, bad_maps, zero, constant = flags
    if bool(bad_explained.any()):
        raise _non_finite_error(bad_explained, inputs, callable_target)
    if bool(bad_scores.any()):
        warn(f"the model's scores of classes other than the explained one are NaN or infinite for {_inputs(bad_scores)}; check the inputs' scale and the model")
    if bool(saturated.any()):
        warn(
            f"the explained score is exactly 0 or 1 for {_inputs(saturated)} and the scores look like probabilities: "
            "a saturated softmax/sigmoid makes gradients and occlusion drops vanish; explain the logits (drop the final softmax/sigmoid)"
        )
    if bool(bad_maps.any()):
        count = int((~torch.isfinite(maps)).sum())
        warn(f"the maps of {_inputs(bad_maps)} contain {count} NaN or infinite values (scores of perturbed inputs or gradients overflowed); do not trust those maps")
    if bool(zero.any()):
        warn(f"the maps of {_inputs(zero)} are all zero: the method found no pixel that changes the explained score")
    if bool(constant.any()):
        warn(f"the maps of {_inputs(constant)} are constant (every pixel the same value): they rank no pixel above another")


def _non_finite_error(flags: torch.Tensor, inputs: torch.Tensor, callable_target: bool) -> VexplainError:
    """The typed error for explained scores that are not finite on the inputs ``flags`` marks."""
    where = _inputs(flags)
    if callable_target:
        return InvalidTarget(f"the callable target returned NaN or infinite scores for {where}; return finite scores")
    magnitude = float(inputs.detach().abs().amax())
    return InvalidInput(
        f"the model's scores are NaN or infinite for {where} (largest |input| {magnitude:.3g}); "
        "give preprocessed inputs on the scale the model was trained on, and check the model for NaN weights"
    )


def _inputs(flags: torch.Tensor) -> str:
    """``"input 3"``, ``"inputs 0, 1, 2"`` or ``"inputs 0, 1, 2, 3, 4 and 7 more"`` for a bool ``(N,)``."""
    indices = flags.nonzero().flatten().tolist()
    listed = ", ".join(str(i) for i in indices[:LISTED])
    more = f" and {len(indices) - LISTED} more" if len(indices) > LISTED else ""
    return f"input{'s' if len(indices) > 1 else ''} {listed}{more}"
