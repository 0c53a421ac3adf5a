"""Test-only access to pytorch-grad-cam (``grad-cam==1.5.7``), the reference for the CAM family.

PyPI's torchvision 0.28.0 is a CUDA build whose compiled ops cannot load beside the CPU torch:
``import torchvision`` then fails at ``register_fake("torchvision::nms")`` with "operator
torchvision::nms does not exist" (pytorch/vision #9337). Only when that exact error occurs, the
``nms`` and ``qnms`` schemas are defined (no kernels) in a library kept alive for the session, and
the import is retried: torchvision's pure-Python parts and pytorch-grad-cam's CAM classes then work.
Never shipped in the package.
"""
from __future__ import annotations

import importlib
import sys
from types import ModuleType

import pytest

MISSING_OP = "operator torchvision::nms does not exist"
_KEPT: list = []


def _define_schemas() -> None:
    import torch

    library = torch.library.Library("torchvision", "DEF")
    library.define("nms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor")
    library.define("qnms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor")
    _KEPT.append(library)


def pytorch_grad_cam() -> ModuleType:
    """The ``pytorch_grad_cam`` package; the calling test is skipped when it is not installed."""
    try:
        return importlib.import_module("pytorch_grad_cam")
    except ModuleNotFoundError as error:
        if error.name not in ("pytorch_grad_cam", "torchvision", "ttach"):
            raise
        pytest.skip(f"pytorch-grad-cam is not installed ({error.name}); pip install grad-cam==1.5.7 beside torch==2.13.0")
    except RuntimeError as error:
        if MISSING_OP not in str(error) or _KEPT:
            raise
        for name in [n for n in sys.modules if n.split(".")[0] in ("torchvision", "pytorch_grad_cam")]:
            del sys.modules[name]
        _define_schemas()
        return importlib.import_module("pytorch_grad_cam")
