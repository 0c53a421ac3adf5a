"""XRAI (Kapishnikov et al., ICCV 2019): region attribution over an over-segmentation, regions
ranked greedily by the density of a base attribution."""
from __future__ import annotations

from typing import Any, Mapping

import numpy as np
import torch

from vexplain.core.adapter import GRADIENTS, ModelAdapter
from vexplain.core.errors import InvalidOption, UnknownMethod
from vexplain.core.explainer import Attribution, Explainer
from vexplain.core.hookspecs import hookimpl
from vexplain.core.options import MAX_SAMPLES, Option, integer, number, optional, resolve_options, text
from vexplain.core.perturbation import batch_options, derived_batch_size
from vexplain.core.targets import TargetRequest

from ._gradient_maps import GRADIENT_MEMORY_FACTOR, request_for, resolve_targets
from ._xrai_regions import felzenszwalb_masks, ranked_regions
from .integrated_gradients import integrate
from .smoothgrad import mapping

#: the built-in base: PAIR's Integrated Gradients, averaged over a black and a white baseline
PAIR_IG = "pair_ig"


def base_method(name: str) -> type[Explainer] | None:
    """The registered method ``name`` (None for ``pair_ig``); anything else, or xrai itself, raises
    ``InvalidOption``."""
    if name == PAIR_IG:
        return None
    from vexplain.core.registry import REGISTRY

    try:
        entry = REGISTRY.explainer(name)
    except UnknownMethod:
        entry = None
    if entry is None or entry.name == XRAI.name:
        raise InvalidOption(f"option 'base' of method 'xrai' must be '{PAIR_IG}' or a registered method other than xrai (see `vexplain methods`); got {name!r}")
    return entry.obj


def pair_ig(adapter: ModelAdapter, inputs: torch.Tensor, chosen: torch.Tensor, steps: int, batch_size: int) -> torch.Tensor:
    """``(N, C, H, W)``: the mean over b ∈ {min(x)·1, max(x)·1} (per image) of
    (x − b) ⊙ (1/steps) Σ_{k<steps} ∂y_t/∂x(b + α_k (x − b)), α_k = k/(steps − 1) (PAIR's rule:
    both path ends, equal weights)."""
    alphas = np.linspace(0.0, 1.0, steps)
    weights = np.full(steps, 1.0 / steps)
    total = torch.zeros_like(inputs)
    for image in range(len(inputs)):
        x = inputs[image : image + 1]
        for value in (x.min(), x.max()):
            baseline = torch.full_like(x, float(value))
            path = integrate(adapter, x, baseline, chosen[image : image + 1], alphas, weights, batch_size)
            total[image] += ((x - baseline) * path)[0] / 2
    return total


class XRAI(Explainer):
    """map: each pixel gets the gain of the region that first covers it when regions are added
    greedily, best first, where a region's gain is the mean base attribution over its pixels not
    yet covered (regions adding fewer than ``min_pixel_diff`` new pixels are dropped; pixels left
    when the covered fraction exceeds ``area`` take the mean over all of them). Regions: scikit-image's
    Felzenszwalb segmentation of the image (min-max scaled to [−1, 1], resized to 224²) at scales
    50, 100, 150, 250, 500, 1200 (σ 0.8, min size 150), resized back and dilated by a disk of
    ``dilation`` pixels. The pixel attribution is the base's ``attributions`` maxed over channels
    (its ``maps`` when it has none).

    Options (defaults, PAIR's): ``base="pair_ig"`` — Integrated Gradients averaged over the black
    and the white image (each image's min and max), ``steps=100`` path points α = k/(steps − 1)
    with weights 1/steps — or any registered method (``base_options`` its options): a
    gradient-free base (occlusion, rise, ...) runs on ONNX models; ``area=1.0``,
    ``min_pixel_diff=50``, ``dilation=5``, ``batch_size`` path points per pass (``pair_ig``;
    default from ``memory_mb=1024``). Needs scikit-image (the ``superpixels`` extra). Equals PAIR
    saliency's ``XRAI.GetMask`` (algorithm ``full``) within 1e-4 given the same base attribution.
    ``exp.attributions`` hold the base's pixel attribution ``(N, 1, H, W)``.
    """

    name = "xrai"
    requires = (GRADIENTS,)
    summary = "regions of a multi-scale Felzenszwalb over-segmentation, added greedily by their density of a base attribution (IG)"
    paper = "Kapishnikov et al., XRAI: Better Attributions Through Regions, ICCV 2019"
    options = {
        "base": Option(PAIR_IG, text(), "the pixel attribution ranked by region: 'pair_ig' or a registered method"),
        "base_options": Option(None, optional(mapping), "options of the base method (default: its defaults)"),
        "steps": Option(100, integer(2, MAX_SAMPLES), "path points of the pair_ig base"),
        "area": Option(1.0, number(minimum=0, maximum=1), "regions are added until this fraction of the image is covered"),
        "min_pixel_diff": Option(50, integer(1), "regions adding fewer new pixels than this are dropped"),
        "dilation": Option(5, integer(0), "radius of the disk each segment is dilated by (pixels)"),
        **batch_options("path points per forward+backward pass (pair_ig)"),
    }

    @classmethod
    def requires_for(cls, options: Mapping[str, Any]) -> tuple[str, ...]:
        base = options.get("base", PAIR_IG)
        if not isinstance(base, str):
            return cls.requires
        try:
            chosen = base_method(base)
        except InvalidOption:
            return ("forward",)  # the option itself is refused once options are resolved
        return cls.requires if chosen is None else tuple(chosen.requires)

    def attribute(self, adapter: ModelAdapter, inputs: torch.Tensor, targets: TargetRequest, options: dict[str, Any]) -> Attribution:
        base = base_method(options["base"])
        if options["base_options"] and base is None:
            raise InvalidOption("option 'base_options' of method 'xrai' applies to a registered base method; with base='pair_ig' use steps=")
        scores, chosen = resolve_targets(adapter, inputs, targets)
        notes: dict[str, Any] = {}
        if base is None:
            batch_size = derived_batch_size(options, inputs.shape[1:], GRADIENT_MEMORY_FACTOR)
            pixels = pair_ig(adapter, inputs, chosen, options["steps"], batch_size).amax(dim=1)
            notes["batch_size"] = batch_size
        else:
            adapter.require(base.requires, f"xrai's base '{base.name}'")
            base_options = resolve_options(base.name, base.options, options["base_options"] or {})
            result = base().attribute(adapter, inputs, request_for(chosen), base_options)
            pixels = result.maps if result.attributions is None else result.attributions.amax(dim=1)
            notes["base_options"] = base_options
        maps = torch.stack([
            ranked_regions(attr, felzenszwalb_masks(image, options["dilation"]), options["area"], min(options["min_pixel_diff"], image[0].numel() + 1))
            for image, attr in zip(inputs, pixels.to(inputs.device))
        ])
        return Attribution(maps=maps.to(inputs.dtype), scores=scores, targets=chosen, attributions=pixels[:, None].to(inputs.dtype), notes=notes)


@hookimpl
def register_explainers(register) -> None:
    register(XRAI)
