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

    The class must subclass ``vexplain.Explainer``, set ``name`` (lowercase identifier, unique
    across plugins), ``requires`` (a tuple of adapter capabilities), ``summary``, ``paper`` and
    ``options`` (``{name: vexplain.Option}``), and implement
    ``attribute(adapter, inputs, targets, options) -> vexplain.Attribution``.
    """


@hookspec
def register_adapters(register: Callable[[object], None]) -> None:
    """Register model backends: ``register(factory)`` for each.

    A factory has ``name`` (lowercase identifier, unique), ``priority`` (a number; higher is tried
    first), ``accepts(model) -> bool``, ``adapt(model, **options) -> ModelAdapter`` and
    ``capabilities`` (the capability names its adapters may have, used to list which methods run
    on which backend).
    """


@hookspec
def register_metrics(register: Callable[[type], None]) -> None:
    """Register evaluation metrics: ``register(MetricSubclass)`` for each.

    The class must subclass ``vexplain.Metric``, set ``name`` (lowercase identifier, unique across
    plugins), ``requires`` (a tuple of adapter capabilities), ``needs`` (what the evaluation must
    supply beyond the maps: ``"masks"``, ``"method"``), ``summary``, ``paper``, ``headline`` (the
    value key that ranks methods), ``higher_is_better`` and ``options``, and implement
    ``evaluate(case, options) -> vexplain.MetricResult``.
    """


@hookspec
def register_targets(register: Callable[[type], None]) -> None:
    """Register target kinds: ``register(TargetSubclass)`` for each.

    The class must subclass ``vexplain.targets.Target``, set ``name`` (lowercase identifier, unique
    across plugins; the CLI builds it from ``--target NAME=TEXT``) and ``summary``, and implement
    ``score(output) -> (rows, width)`` float scores of the model's raw output; ``from_text(text,
    class_names, input_size)`` makes it usable from the CLI.
    """
