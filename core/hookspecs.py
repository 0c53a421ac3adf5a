"""Hook specifications: what a vexplain plugin can provide.

A plugin is a module (or object) with ``@hookimpl`` functions, found through the ``vexplain``
entry-point group. Each hook receives a ``register`` callable; call it once per thing provided.
"""
from __future__ import annotations

from typing import Callable

import pluggy

PROJECT = "vexplain"
hookspec = pluggy.HookspecMarker(PROJECT)
hookimpl = pluggy.HookimplMarker(PROJECT)


@hookspec
def register_explainers(register: Callable[[type], None]) -> None:
    """Register explanation methods: ``register(ExplainerSubclass)`` for each.

    The class must set ``name`` (lowercase identifier, unique across plugins), ``requires``
    (adapter capabilities), ``summary``, ``paper`` and ``options``, and implement ``attribute``.
    """


@hookspec
def register_adapters(register: Callable[[object], None]) -> None:
    """Register model backends: ``register(factory)`` for each.

    A factory has ``name`` (unique), ``priority`` (higher is tried first), ``accepts(model) -> bool``
    and ``adapt(model, **options) -> ModelAdapter``.
    """
