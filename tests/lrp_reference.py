"""Test-only access to the relevance-propagation references: Zennit (``zennit==0.5.1``) for LRP and
TorchRay (``torchray==1.0.0.2``, installed with ``--no-deps``) for excitation backprop.

Both import torchvision at import time; beside the CPU torch build that fails with "operator
torchvision::nms does not exist" (see ``pgc_reference``), and only then the ``nms`` schemas are
defined and the import retried. A test is skipped when the library is not installed.
"""
from __future__ import annotations

import importlib
import sys
from types import ModuleType

import pytest

import pgc_reference


def reference(module: str, install: str) -> ModuleType:
    """``module`` imported (e.g. ``"zennit.composites"``); the calling test is skipped without it."""
    try:
        return importlib.import_module(module)
    except ModuleNotFoundError as error:
        if error.name is None or error.name.split(".")[0] not in (module.split(".")[0], "torchvision"):
            raise
        pytest.skip(f"{module.split('.')[0]} is not installed; {install}")
    except RuntimeError as error:
        if pgc_reference.MISSING_OP not in str(error) or pgc_reference._KEPT:
            raise
        for name in [n for n in sys.modules if n.split(".")[0] in ("torchvision", module.split(".")[0])]:
            del sys.modules[name]
        pgc_reference._define_schemas()
        return importlib.import_module(module)


def zennit(module: str = "zennit") -> ModuleType:
    return reference(module, "pip install zennit==0.5.1")


def torchray(module: str = "torchray.attribution.excitation_backprop") -> ModuleType:
    return reference(module, "pip install --no-deps torchray==1.0.0.2")
