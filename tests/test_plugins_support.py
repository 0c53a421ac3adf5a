"""Helpers for the plugin tests (no tests here): fake plugins, fake installed distributions,
a tiny fixed-weight model, registry snapshots and a clean-interpreter runner.

Imported by the ``test_plugins*.py`` files as ``support``.
"""
from __future__ import annotations

import contextlib
import importlib
import os
import subprocess
import sys
import textwrap
import types
from pathlib import Path
from typing import Iterator

import torch

import vexplain as vx
from vexplain.core.registry import DISABLE_VARIABLE, REGISTRY

__test__ = False  # nothing to collect here


def tiny_model() -> torch.nn.Module:
    """conv(3→2, 3x3) → ReLU → global average pool → linear(2→3), fixed weights, eval mode."""
    torch.manual_seed(0)
    model = torch.nn.Sequential(
        torch.nn.Conv2d(3, 2, 3, padding=1),
        torch.nn.ReLU(),
        torch.nn.AdaptiveAvgPool2d(1),
        torch.nn.Flatten(),
        torch.nn.Linear(2, 3),
    )
    return model.eval()


def tiny_inputs(n: int = 2, size: int = 8) -> torch.Tensor:
    generator = torch.Generator().manual_seed(1)
    return torch.randn(n, 3, size, size, generator=generator)


def make_plugin(*explainers: type, adapters: tuple = ()) -> types.SimpleNamespace:
    """A plugin object whose hooks register the given explainer classes and adapter factories."""

    @vx.hookimpl
    def register_explainers(register):
        for cls in explainers:
            register(cls)

    @vx.hookimpl
    def register_adapters(register):
        for factory in adapters:
            register(factory)

    return types.SimpleNamespace(register_explainers=register_explainers, register_adapters=register_adapters)


@contextlib.contextmanager
def registered(plugin: object, name: str) -> Iterator[str]:
    """Register ``plugin`` for the duration of a ``with`` block; always unregistered afterwards."""
    registered_name = REGISTRY.register_plugin(plugin, name=name)
    try:
        yield registered_name
    finally:
        REGISTRY.unregister_plugin(registered_name)


def snapshot() -> tuple:
    """What the registry holds: (method → plugin, adapter → plugin, failures, plugin names)."""
    return (
        {name: entry.plugin for name, entry in REGISTRY.explainers().items()},
        {name: entry.plugin for name, entry in REGISTRY.adapters().items()},
        list(REGISTRY.failures),
        sorted(name for name, _ in REGISTRY.manager.list_name_plugin()),
    )


def write_distribution(root: Path, dist: str, modules: dict[str, str], entry_points: dict[str, str]) -> Path:
    """An installed-looking distribution in ``root``: module files plus ``<dist>-0.1.dist-info``
    whose ``entry_points.txt`` declares ``entry_points`` (name → module) in the ``vexplain`` group."""
    root.mkdir(parents=True, exist_ok=True)
    for module, source in modules.items():
        (root / f"{module}.py").write_text(textwrap.dedent(source))
    info = root / f"{dist}-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {dist}\nVersion: 0.1\n")
    lines = "".join(f"{name} = {target}\n" for name, target in entry_points.items())
    (info / "entry_points.txt").write_text(f"[vexplain]\n{lines}")
    return root


@contextlib.contextmanager
def installed(monkeypatch, root: Path, modules: tuple[str, ...], env: dict[str, str] | None = None) -> Iterator[None]:
    """``root`` on sys.path (and ``env`` set) with a freshly reloaded registry; afterwards sys.path,
    the environment and the registry are restored and the plugin modules forgotten."""
    monkeypatch.syspath_prepend(str(root))  # also invalidates the import caches
    for key, value in (env or {}).items():
        monkeypatch.setenv(key, value)
    REGISTRY.reload()
    try:
        yield
    finally:
        monkeypatch.undo()
        for module in modules:
            sys.modules.pop(module, None)
        importlib.invalidate_caches()
        REGISTRY.reload()


FAKE_PLUGIN = '''
    """A third-party plugin: one method, ``fake_mean``, the channel mean of the input."""
    import vexplain as vx

    CALLS = []


    class FakeMean(vx.Explainer):
        name = "fake_mean"
        requires = ("forward",)
        summary = "channel mean of the input, times scale"
        paper = "none"
        options = {"scale": vx.Option(1.0, float, "factor applied to the map")}

        def attribute(self, adapter, inputs, targets, options):
            scores = adapter.forward(inputs)
            return vx.Attribution(
                maps=inputs.mean(dim=1) * options["scale"], scores=scores, targets=targets.select(scores)
            )


    @vx.hookimpl
    def register_explainers(register):
        CALLS.append("register_explainers")
        register(FakeMean)
'''


def run_clean_python(code: str, pythonpath: Path | None = None, env: dict[str, str] | None = None) -> str:
    """Run ``code`` in a fresh interpreter (plugins disabled only if ``env`` says so); its stdout."""
    environment = {k: v for k, v in os.environ.items() if k != DISABLE_VARIABLE}
    if pythonpath is not None:
        environment["PYTHONPATH"] = os.pathsep.join(filter(None, [str(pythonpath), environment.get("PYTHONPATH")]))
    environment.update(env or {})
    result = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        capture_output=True,
        text=True,
        env=environment,
        timeout=120,
    )
    assert result.returncode == 0, f"subprocess failed:\n{result.stdout}\n{result.stderr}"
    return result.stdout
