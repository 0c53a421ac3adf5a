"""pytorch-grad-cam for agreement tests (test-only; never shipped in the package).

``pip install torch==2.13.0 grad-cam==1.5.7`` takes torchvision 0.28.0, a CUDA build whose compiled
ops cannot load beside the CPU torch: ``import torchvision`` then fails at
``register_fake("torchvision::nms")`` with "operator torchvision::nms does not exist" (upstream
pytorch/vision #9337). Only when that exact error occurs, the ``nms`` and ``qnms`` schemas are
defined (no kernels) in a ``torch.library.Library`` kept alive here, and torchvision is imported
again: its pure-Python parts and pytorch-grad-cam's CAM classes and targets then work; ``nms``
itself still raises torchvision's own error. ``grad_cam()`` skips the calling test when
pytorch-grad-cam is not installed.
"""
from __future__ import annotations

import importlib
import importlib.util
import sys
import types

import pytest
import torch

__test__ = False  # nothing to collect here

_MISSING_OP = "operator torchvision::nms does not exist"
_SCHEMAS: list[torch.library.Library] = []


def _import_torchvision() -> None:
    try:
        importlib.import_module("torchvision")
    except RuntimeError as error:
        if _MISSING_OP not in str(error):
            raise
        for name in [n for n in sys.modules if n == "torchvision" or n.startswith("torchvision.")]:
            del sys.modules[name]  # the half-imported package
        library = torch.library.Library("torchvision", "DEF")
        library.define("nms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor")
        library.define("qnms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor")
        _SCHEMAS.append(library)
        importlib.import_module("torchvision")


def grad_cam() -> types.ModuleType:
    """The ``pytorch_grad_cam`` package (its ``utils.model_targets`` imported), or a skip."""
    if importlib.util.find_spec("pytorch_grad_cam") is None:
        pytest.skip("pytorch-grad-cam is not installed (pip install torch==2.13.0 grad-cam==1.5.7)")
    _import_torchvision()  # before pytorch_grad_cam, which imports it
    package = importlib.import_module("pytorch_grad_cam")
    importlib.import_module("pytorch_grad_cam.utils.model_targets")
    return package
