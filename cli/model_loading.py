"""The CLI's MODEL argument: ``core.model_specs`` with its refusals worded as the CLI's flags."""
from __future__ import annotations

from typing import Any

from vexplain import ModelAdapter
from vexplain import models as model_specs
from vexplain.models import METADATA_KEYS, is_factory

CLI_NAMES = ("--weights", "--random-weights")


def add_random_weights_argument(parser: Any) -> None:
    """``--random-weights``: accept a ``pkg.module:factory`` MODEL without ``--weights`` on purpose."""
    parser.add_argument(
        "--random-weights", action="store_true",
        help="explain a pkg.module:factory MODEL with the weights its factory draws (untrained), on purpose; without it such a MODEL needs --weights",
    )


def check_weights(spec: str, weights: str | None, random_weights: bool) -> None:
    """``core.model_specs.check_weights`` naming ``--weights`` / ``--random-weights``."""
    model_specs.check_weights(spec, weights, random_weights, CLI_NAMES)


def load_model(spec: str, weights: str | None = None, output: str | None = None, random_weights: bool = False) -> ModelAdapter:
    """``core.model_specs.load_model`` naming ``--weights`` / ``--random-weights`` in its refusals."""
    return model_specs.load_model(spec, weights, output, random_weights, CLI_NAMES)


__all__ = ["METADATA_KEYS", "add_random_weights_argument", "check_weights", "is_factory", "load_model"]
