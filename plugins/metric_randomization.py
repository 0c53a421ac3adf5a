"""Cascading model-parameter randomisation (Adebayo et al., Sanity Checks for Saliency Maps, 2018)."""
from __future__ import annotations

from typing import Any

import numpy as np
import torch

from vexplain.core.adapter import FORWARD
from vexplain.core.concurrency import GLOBAL_RNG
from vexplain.core.errors import UnsupportedCapability
from vexplain.core.hookspecs import hookimpl
from vexplain.core.metric import METHOD, EvaluationCase, Metric, MetricResult
from vexplain.core.options import Option, integer, optional, seed
from vexplain.core.progress import progress
from vexplain.core.similarity import spearman, ssim


def cascade(model: torch.nn.Module) -> list[tuple[str, torch.nn.Module]]:
    """Modules that own parameters, from the output down: reverse definition order, which is the
    reverse of execution order for models defined in the order they run."""
    owners = [(name, m) for name, m in model.named_modules() if any(True for _ in m.parameters(recurse=False))]
    return owners[::-1]


def randomize(module: torch.nn.Module, seed: int) -> None:
    """Redraw ``module``'s own parameters in place: PyTorch's default initialisation
    (``reset_parameters()``) under ``seed``, keeping buffers such as BatchNorm running statistics;
    a module without ``reset_parameters`` gets N(mean, std) of each original tensor. Seeding and
    drawing hold ``GLOBAL_RNG``, so re-initialisations in two threads never interleave."""
    buffers = {name: b.detach().clone() for name, b in module.named_buffers(recurse=False)}
    with GLOBAL_RNG, torch.random.fork_rng(devices=[]), torch.no_grad():
        torch.manual_seed(seed)
        if callable(getattr(module, "reset_parameters", None)):
            module.reset_parameters()
        else:
            for parameter in module.parameters(recurse=False):
                std = float(parameter.std()) if parameter.numel() > 1 else 1.0
                parameter.normal_(float(parameter.mean()), std)
        for name, saved in buffers.items():
            module.get_buffer(name).copy_(saved)


class Randomization(Metric):
    """Re-initialise the model's layers cumulatively from the output down (after step i, the i + 1
    layers nearest the output are random), re-explain the same inputs for the same classes with the
    same method and options, and compare each new map with the original: ``spearman_abs`` (Spearman
    rank correlation of |maps|), ``spearman`` (of the signed maps) and ``ssim`` (of |maps| min-max
    scaled to [0, 1]). Curves hold one value per layer (x = layer names); values are their means
    over the cascade. A map that stays similar ignores the model: lower is better. A constant map
    correlates 0.0 with anything.

    The model is restored bit for bit afterwards (every parameter and buffer copied back in a
    ``finally``), even after an error. Needs a PyTorch ``nn.Module`` (not TorchScript) and the
    method, not only its maps.

    Defaults: ``layers`` = None (the whole cascade; an int stops after that many layers), ``seed`` = 0.
    """

    name = "randomization"
    requires = (FORWARD,)
    needs = (METHOD,)
    summary = "similarity of the map to maps of the model with its layers randomised from the output down (lower is better)"
    paper = "Adebayo et al., Sanity Checks for Saliency Maps, NeurIPS 2018"
    headline = "spearman_abs"
    higher_is_better = False
    options = {
        "layers": Option(None, optional(integer(1)), "randomise only this many layers from the output (default: all)"),
        "seed": Option(0, seed(), "seed of the re-initialisation (layer i uses seed + i), 0 .. 2**63 - 1"),
    }

    def evaluate(self, case: EvaluationCase, options: dict[str, Any]) -> MetricResult:
        from vexplain.core.api import explain

        model = getattr(case.adapter, "model", None)
        if not isinstance(model, torch.nn.Module) or isinstance(model, torch.jit.ScriptModule):
            raise UnsupportedCapability(case.adapter.describe(), "parameter randomization", [], "the randomization metric needs a PyTorch nn.Module")
        layers = cascade(model)[: options["layers"]]
        targets = case.targets.cpu()
        original = case.maps.detach().cpu().numpy().astype(np.float64)
        n = len(original)
        curves = {key: np.zeros((n, len(layers))) for key in ("spearman_abs", "spearman", "ssim")}
        saved = {name: tensor.detach().clone() for name, tensor in model.state_dict().items()}
        method_options = _single_use_engine(case.method, case.method_options)
        try:
            for step, (_, module) in enumerate(progress(layers, total=len(layers), description="randomization")):
                randomize(module, options["seed"] + step)
                new = explain(case.adapter, case.inputs, method=case.method, targets=targets, **method_options).maps
                for i in range(n):
                    curves["spearman_abs"][i, step] = spearman(np.abs(original[i]), np.abs(new[i]))
                    curves["spearman"][i, step] = spearman(original[i], new[i])
                    curves["ssim"][i, step] = ssim(np.abs(original[i]), np.abs(new[i]))
        finally:
            with torch.no_grad():
                for name, tensor in model.state_dict().items():
                    tensor.copy_(saved[name])
        names = [name for name, _ in layers]
        return MetricResult(
            values={key: curve.mean(axis=1) for key, curve in curves.items()},
            curves=curves,
            curve_x={key: names for key in curves},
            notes={"layers": len(layers)},
        )


def _single_use_engine(method: str, method_options: dict[str, Any]) -> dict[str, Any]:
    """``method_options`` for explaining randomised weights, each used once: an ``engine="auto"``
    that can only mean ONNX Runtime or torch becomes torch, since exporting every randomised model
    to ONNX (and evicting the real model's cached export) costs more than it saves. Engines that
    compute less without exporting (occlusion's incremental) are left as they are."""
    from vexplain.core.registry import REGISTRY

    declared = REGISTRY.explainer(method).obj.options.get("engine")
    if declared is None or method_options.get("engine") != "auto":
        return dict(method_options)
    try:
        declared.coerce("incremental")
    except ValueError:
        return {**method_options, "engine": "torch"}
    return dict(method_options)


@hookimpl
def register_metrics(register) -> None:
    register(Randomization)
