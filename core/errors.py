"""Typed errors. Every message is one line naming what was wrong and what would be right."""
from __future__ import annotations

from typing import Iterable


class VexplainError(Exception):
    """Base of every error vexplain raises on purpose; the CLI prints these as one line."""


class InvalidInput(VexplainError, ValueError):
    """Inputs of the wrong type, rank, channel count, or with NaN/inf values."""


class InvalidTarget(VexplainError, ValueError):
    """Targets of the wrong type, the wrong length, or out of the model's class range."""


class InvalidOption(VexplainError, TypeError):
    """An option unknown to the method, or a value of the wrong type or range."""


class UnknownMethod(VexplainError, LookupError):
    """A method name that no plugin registered."""


class UnknownLayer(VexplainError, LookupError):
    """A layer name the model does not have."""


class ModelLoadError(VexplainError, ValueError):
    """A model file or object vexplain cannot (or will not) load."""


class ImageLoadError(VexplainError, ValueError):
    """An image file that is missing, unreadable or corrupt."""


class OutputError(VexplainError, OSError):
    """An output folder or file vexplain cannot write (a file where a folder is wanted, a failed write)."""


class PluginError(VexplainError):
    """A plugin registered something invalid, or two plugins registered the same name."""


class UnsupportedCapability(VexplainError):
    """The adapter lacks a capability a method requires.

    The message names the adapter, the capability, and the methods that would still work.
    """

    def __init__(self, adapter: str, capability: str, working_methods: Iterable[str] = (), hint: str = ""):
        self.adapter = adapter
        self.capability = capability
        self.working_methods = sorted(working_methods)
        works = ", ".join(self.working_methods) or "none"
        extra = f" ({hint})" if hint else ""
        super().__init__(
            f"{adapter} does not support '{capability}'{extra}; methods that work on this model: {works}"
        )


def did_you_mean(name: str, choices: Iterable[str], n: int = 3) -> str:
    """' Did you mean: a, b?' for the closest choices, or '' when none is close."""
    import difflib

    close = difflib.get_close_matches(name, list(choices), n=n, cutoff=0.5)
    return f"; did you mean: {', '.join(close)}?" if close else ""


def one_line(error: BaseException, typed: bool = True) -> str:
    """``error``'s message on one line, after ``Type: `` when ``typed`` (or when it is empty)."""
    message = " ".join(str(error).split())
    return f"{type(error).__name__}: {message}" if typed or not message else message
