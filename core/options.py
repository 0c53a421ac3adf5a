"""Declared method options: defaults, coercion and one-line errors.

Each explainer declares ``options = {"name": Option(default, coerce, help)}``. ``resolve_options``
fills defaults, rejects unknown names (suggesting close ones) and converts values with the
option's coercer, which raises ``ValueError("must be ...")`` naming what would be right.
"""
from __future__ import annotations

import ast
import math
from dataclasses import dataclass
from typing import Any, Callable, Mapping

from .errors import InvalidOption, did_you_mean

Coercer = Callable[[Any], Any]


@dataclass(frozen=True)
class Option:
    """One option of a method: its default (``None`` may mean "derived"), a coercer and help text."""

    default: Any
    coerce: Coercer
    help: str


def _is_int(value: Any) -> bool:
    import numbers

    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def _is_number(value: Any) -> bool:
    import numbers

    return isinstance(value, numbers.Real) and not isinstance(value, bool)


#: the most random draws (samples, coalitions, permutations) a sampling method takes per image:
#: beyond it a run would take hours on any machine, so it is refused before any work
MAX_SAMPLES = 100_000

#: the largest finite float32: option values end up in float32 tensors, where larger ones become inf
FLOAT32_MAX = 3.4028234663852886e38
#: seeds go to ``torch.Generator.manual_seed`` and ``numpy.random.default_rng``; both take 0 .. 2**63 - 1
SEED_MAX = 2**63 - 1


def integer(minimum: int | None = None, maximum: int | None = None) -> Coercer:
    """An int (bools refused), at least ``minimum`` and at most ``maximum`` when given."""

    def coerce(value: Any) -> int:
        too_small = minimum is not None and _is_int(value) and value < minimum
        too_large = maximum is not None and _is_int(value) and value > maximum
        if not _is_int(value) or too_small or too_large:
            if minimum is not None and maximum is not None:
                bound = f" in {minimum}..{maximum}"
            elif minimum is not None:
                bound = f" >= {minimum}"
            else:
                bound = f" <= {maximum}" if maximum is not None else ""
            raise ValueError(f"must be an int{bound}")
        return int(value)

    return coerce


def seed(maximum: int = SEED_MAX) -> Coercer:
    """A random seed: an int in 0 .. ``maximum`` (default ``SEED_MAX`` = 2**63 - 1, the range numpy's
    Generator and torch both take; numpy's legacy RandomState takes 0 .. 2**32 - 1)."""
    return integer(0, maximum)


def number(minimum: float | None = None, above: float | None = None, maximum: float | None = None) -> Coercer:
    """A finite real number within float32's range (±``FLOAT32_MAX``; bools, NaN and infinities
    refused), at least ``minimum`` or greater than ``above``, and at most ``maximum``, when given."""

    def coerce(value: Any) -> float:
        if not _is_number(value):
            raise ValueError("must be a finite number")
        try:
            as_float = float(value)
        except OverflowError:  # an int beyond float64
            as_float = math.inf
        if not math.isfinite(as_float):
            raise ValueError("must be a finite number")
        if abs(as_float) > FLOAT32_MAX:
            raise ValueError(f"must be a number within float32's range, -{FLOAT32_MAX:.4g} .. {FLOAT32_MAX:.4g}")
        if minimum is not None and as_float < minimum:
            raise ValueError(f"must be a number >= {minimum:g}")
        if above is not None and as_float <= above:
            raise ValueError(f"must be a number > {above:g}")
        if maximum is not None and as_float > maximum:
            raise ValueError(f"must be a number <= {maximum:g}")
        return as_float

    return coerce


def boolean() -> Coercer:
    """True or False."""

    def coerce(value: Any) -> bool:
        if not isinstance(value, bool):
            raise ValueError("must be True or False")
        return value

    return coerce


def int_pair(minimum: int = 1) -> Coercer:
    """An int ``k`` (meaning ``(k, k)``) or a pair ``(h, w)`` of ints, each at least ``minimum``."""

    def coerce(value: Any) -> tuple[int, int]:
        if _is_int(value):
            value = (value, value)
        if (
            isinstance(value, (tuple, list))
            and len(value) == 2
            and all(_is_int(v) and v >= minimum for v in value)
        ):
            return (int(value[0]), int(value[1]))
        raise ValueError(f"must be an int >= {minimum} or a pair (h, w) of such ints")

    return coerce


def choice(*allowed: str) -> Coercer:
    """One of the given strings."""

    def coerce(value: Any) -> str:
        if value not in allowed:
            raise ValueError(f"must be one of {', '.join(map(repr, allowed))}")
        return value

    return coerce


def text() -> Coercer:
    """A string."""

    def coerce(value: Any) -> str:
        if not isinstance(value, str):
            raise ValueError("must be a string")
        return value

    return coerce


def optional(inner: Coercer) -> Coercer:
    """``None`` or whatever ``inner`` accepts."""

    def coerce(value: Any) -> Any:
        return None if value is None else inner(value)

    return coerce


def checked(owner: str, name: str, value: Any, coerce: Coercer) -> Any:
    """``coerce(value)``; its ``ValueError`` becomes ``InvalidOption`` naming ``owner`` (e.g.
    "adapter 'torch'") and the option ``name``. For options outside a declared table."""
    try:
        return coerce(value)
    except ValueError as error:
        raise InvalidOption(f"option '{name}' of {owner} {error}; got {shown(value)}") from None


def resolve_options(owner: str, declared: Mapping[str, Option], given: Mapping[str, Any], kind: str = "method") -> dict[str, Any]:
    """Defaults filled in, values coerced; unknown names and bad values raise ``InvalidOption``
    naming the ``kind`` ("method", "metric") and name of the ``owner``."""
    resolved = {name: option.default for name, option in declared.items()}
    for name, value in given.items():
        if name not in declared:
            known = ", ".join(sorted(declared)) or "none"
            raise InvalidOption(
                f"{kind} '{owner}' has no option '{name}'{did_you_mean(name, declared)} (its options: {known})"
            )
        try:
            resolved[name] = declared[name].coerce(value)
        except ValueError as error:
            raise InvalidOption(f"option '{name}' of {kind} '{owner}' {error}; got {shown(value)}") from None
    return resolved


def shown(value: Any, limit: int = 80) -> str:
    """``repr(value)`` cut to ``limit`` characters, so an error about a huge value stays one short line."""
    text_value = repr(value)
    return text_value if len(text_value) <= limit else f"{text_value[: limit - 3]}..."


def parse_option_text(text_value: str) -> Any:
    """A CLI ``--option k=v`` value: a Python literal when it parses as one, else the string."""
    try:
        return ast.literal_eval(text_value)
    except (ValueError, SyntaxError):
        return text_value
