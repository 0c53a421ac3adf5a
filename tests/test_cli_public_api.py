"""The CLI is a thin layer over the public API (DESIGN.md): every import in cli/*.py is read with
``ast`` and checked against the contract written in ``vexplain/__init__.py``.

A cli module may import
- ``vexplain`` itself, a name of ``vexplain.__all__``, or a public submodule (``vexplain.PUBLIC_MODULES``);
- a name of a public submodule's ``__all__``;
- its sibling cli modules and the sibling packages ``vexplain.demo``, ``vexplain.datasets``,
  ``vexplain.viewer`` (shipped demo, data-set API, the viewer the ``serve`` command starts).
It may not import a ``vexplain.plugins`` module, a name starting with ``_`` (or from a module whose
path has one), or anything from ``vexplain.core`` / ``vexplain.adapters`` (stricter than "a name
that is not public": a public name is imported from where it is public, so core can move)."""
from __future__ import annotations

import ast
import importlib
from pathlib import Path

import pytest

import vexplain

ROOT = Path(__file__).resolve().parents[1]
CLI_FILES = sorted((ROOT / "cli").glob("*.py"))
SIBLINGS = ("vexplain.cli", "vexplain.demo", "vexplain.datasets", "vexplain.viewer")
INTERNAL = ("vexplain.core", "vexplain.adapters")


def public_names() -> dict[str, set[str]]:
    """Public module → the names it exports; ``vexplain`` exports ``__all__`` and its public submodules."""
    exported = {"vexplain": set(vexplain.__all__) | {m.rsplit(".", 1)[1] for m in vexplain.PUBLIC_MODULES}}
    for module_name in vexplain.PUBLIC_MODULES:
        exported[module_name] = set(importlib.import_module(module_name).__all__)
    return exported


def under(module: str, packages: tuple[str, ...]) -> bool:
    return any(module == p or module.startswith(p + ".") for p in packages)


def problems_of(source: str, public: dict[str, set[str]]) -> list[str]:
    """One line per import of ``source`` that breaks the contract."""
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            imported = [(alias.name, None) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            module = "vexplain.cli." + (node.module or "") if node.level else node.module or ""
            imported = [(module, alias.name) for alias in node.names]
        else:
            continue
        for module, name in imported:
            where = f"line {node.lineno}: {module}" + (f" import {name}" if name else "")
            if not under(module, ("vexplain",)):
                continue  # the standard library and third-party packages
            if any(part.startswith("_") for part in module.split(".")) or (name or "").startswith("_"):
                found.append(f"{where} (a private name)")
            elif under(module, ("vexplain.plugins",)):
                found.append(f"{where} (a plugin module; plugins are reached through the registry)")
            elif under(module, INTERNAL):
                found.append(f"{where} (core/adapters are implementation: import the public name from vexplain or a public submodule)")
            elif module in public:
                if name is not None and name not in public[module]:
                    found.append(f"{where} (not in {module}'s __all__)")
            elif not under(module, SIBLINGS):
                found.append(f"{where} (not a public module: {', '.join(sorted(public))})")
    return found


def test_the_public_modules_exist_have_docstrings_and_export_what_they_list():
    assert vexplain.__doc__ and "PUBLIC_MODULES" in vexplain.__doc__
    for module_name, names in public_names().items():
        module = importlib.import_module(module_name)
        assert module.__doc__, f"{module_name} has no docstring"
        missing = [n for n in names if not hasattr(module, n)]
        assert not missing, f"{module_name} lists names it does not have: {missing}"
        assert not [n for n in names if n.startswith("_")], f"{module_name} exports private names"


@pytest.mark.parametrize("path", CLI_FILES, ids=lambda p: p.name)
def test_a_cli_module_imports_only_the_public_api(path):
    problems = problems_of(path.read_text(), public_names())
    assert not problems, f"cli/{path.name} reaches past the public API:\n" + "\n".join(problems)


def test_the_checker_catches_each_kind_of_forbidden_import():
    public = public_names()
    bad = {
        "from vexplain.plugins.metric_pointing_game import peaks": "plugin",
        "import vexplain.plugins.occlusion": "plugin",
        "from vexplain.core.registry import REGISTRY": "implementation",
        "from vexplain.core.options import resolve_options": "implementation",  # not vx.resolve_options
        "from vexplain.core.errors import InvalidOption": "implementation",  # public as vexplain.errors.InvalidOption
        "from vexplain.core.adapter import _private": "private",
        "from vexplain._internal import x": "private",
        "from vexplain.images import not_exported": "__all__",
        "from vexplain.somewhere_else import thing": "not a public module",
        "def f():\n    from vexplain.core.evaluation import as_masks": "implementation",
        "import vexplain.adapters.onnx": "implementation",
    }
    for source, reason in bad.items():
        problems = problems_of(source, public)
        assert len(problems) == 1 and reason in problems[0], (source, problems)
    good = [
        "import vexplain as vx",
        "from vexplain import explain, methods, targets",
        "from vexplain.errors import InvalidOption",
        "from .model_loading import load_model",
        "from vexplain.demo.model import demo_adapter",
        "import numpy as np",
    ]
    for source in good:
        assert problems_of(source, public) == [], source


# What the CLI needed, now public: each works as its docstring says.


def test_methods_supported_by_keeps_exactly_the_methods_whose_capabilities_the_model_has():
    from vexplain.demo.model import ASSETS

    onnx = vexplain.adapt(str(ASSETS / "demo_cnn.onnx"))
    every = vexplain.methods()
    on_onnx = vexplain.methods(supported_by=onnx)
    assert [m.name for m in on_onnx] == [m.name for m in every if all(onnx.supports(c) for c in m.requires)]
    names = {m.name for m in on_onnx}
    assert "occlusion" in names and "saliency" not in names  # forward-only vs gradients
    assert {m.name for m in vexplain.methods(supported_by=str(ASSETS / "demo_cnn.onnx"))} == names  # a path or an adapter alike


def test_method_info_takes_names_and_aliases_and_suggests_on_a_typo():
    info = vexplain.method_info("Grad-CAM")
    assert info.name == "gradcam" and info == next(m for m in vexplain.methods() if m.name == "gradcam")
    with pytest.raises(vexplain.UnknownMethod, match="did you mean"):
        vexplain.method_info("occlusoin")


def test_metric_info_and_resolve_options_fill_defaults_and_refuse_bad_values():
    assert vexplain.metric_info("deletion").headline == "auc"
    with pytest.raises(vexplain.UnknownMetric):
        vexplain.metric_info("delection")
    resolved = vexplain.resolve_options("occlusion", {"window": 8})
    assert resolved["window"] == (8, 8)  # an int is a square window
    assert set(resolved) == set(vexplain.method_info("occlusion").options)
    assert vexplain.resolve_options("deletion", {"steps": 50}, kind="metric")["steps"] == 50
    with pytest.raises(vexplain.InvalidOption, match="window"):
        vexplain.resolve_options("occlusion", {"window": -1})
    with pytest.raises(vexplain.InvalidOption, match="kind"):
        vexplain.resolve_options("occlusion", {}, kind="methods")


def test_peaks_and_within_by_hand():
    import torch

    from vexplain.evaluation import as_masks, peaks, within

    maps = torch.zeros(2, 4, 5)
    maps[0, 1, 3] = 2.0
    maps[1, 2, 0] = maps[1, 3, 4] = 1.0  # a tie: the first in row-major order
    points = peaks(maps)
    assert points.tolist() == [[1, 3], [2, 0]]
    masks = as_masks([[3, 0, 5, 2], [2, 2, 4, 4]], 2, (4, 5))  # x0, y0, x1, y1 (end-exclusive)
    assert within(points, masks, tolerance=0).tolist() == [True, False]
    assert within(points, masks, tolerance=2).tolist() == [True, True]  # (2, 0) is 2 px from column 2
    assert within(points, masks, tolerance=1).tolist() == [True, False]
