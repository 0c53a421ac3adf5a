"""The typed errors vexplain raises, and helpers to show them.

Every error is a ``VexplainError`` whose message is one line naming what was wrong and what
would be right; each subclass also derives from the built-in error it refines (``InvalidInput``
is a ``ValueError``, ``UnknownMethod`` a ``LookupError``...), so ``except ValueError`` keeps
working. ``one_line(error)`` formats any exception as one line (``Type: message``);
``require_extra(module, extra, purpose)`` imports an optional dependency or raises
``MissingExtra`` naming the pyproject extra that installs it.
"""
from vexplain.core.errors import (
    ImageLoadError,
    InvalidInput,
    InvalidOption,
    InvalidTarget,
    ModelLoadError,
    OutputError,
    PluginError,
    UnknownLayer,
    UnknownMethod,
    UnsupportedCapability,
    VexplainError,
    one_line,
)
from vexplain.core.extras import MissingExtra, require_extra
from vexplain.core.metric import UnknownMetric

__all__ = [
    "ImageLoadError",
    "InvalidInput",
    "InvalidOption",
    "InvalidTarget",
    "MissingExtra",
    "ModelLoadError",
    "OutputError",
    "PluginError",
    "UnknownLayer",
    "UnknownMethod",
    "UnknownMetric",
    "UnsupportedCapability",
    "VexplainError",
    "one_line",
    "require_extra",
]
