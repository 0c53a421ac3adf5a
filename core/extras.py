"""Optional dependencies (pyproject extras): import them, or say which extra installs them."""
from __future__ import annotations

import importlib
from types import ModuleType

from .errors import VexplainError


class MissingExtra(VexplainError, ImportError):
    """An optional dependency is not installed; the message names the extra that installs it."""


def require_extra(module: str, extra: str, purpose: str) -> ModuleType:
    """``module`` imported, or ``MissingExtra`` naming ``pip install 'vexplain[<extra>]'`` for ``purpose``."""
    try:
        return importlib.import_module(module)
    except ImportError as error:
        missing = getattr(error, "name", None) or module
        raise MissingExtra(
            f"{purpose} needs the '{extra}' extra ({missing} is not installed): pip install 'vexplain[{extra}]'"
        ) from None
