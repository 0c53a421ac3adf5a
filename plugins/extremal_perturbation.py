"""Extremal perturbations (Fong, Patrick & Vedaldi, ICCV 2019): the smooth mask of a given area
that keeps (or deletes) the most of the class score, found by gradient ascent on the mask."""
from __future__ import annotations

from typing import Any, Sequence

import torch

from vexplain.core.adapter import GRADIENTS, ModelAdapter
from vexplain.core.errors import InvalidOption
from vexplain.core.explainer import Attribution, Explainer
from vexplain.core.hookspecs import hookimpl
from vexplain.core.options import MAX_SAMPLES, Option, boolean, choice, integer, number
from vexplain.core.perturbation import batch_options, derived_batch_size
from vexplain.core.targets import TargetRequest

from ._extremal_masks import MaskGenerator, area_penalty, area_reference, perturbed, pyramid
from ._gaussian import MAX_SIGMA
from ._gradient_maps import GRADIENT_MEMORY_FACTOR, request_for, resolve_targets

VARIANTS = ("preserve", "delete", "dual")
PERTURBATIONS = ("blur", "fade")
#: the most perturbation levels: each is a whole copy of the images (TorchRay takes 8)
MAX_LEVELS = 256
#: TorchRay's optimiser: SGD with these, and the area weight λ growing by GROWTH per iteration
LEARNING_RATE, MOMENTUM, AREA_WEIGHT, GROWTH = 0.01, 0.9, 300.0, 1.0035


def area_list(value: Any) -> tuple[float, ...]:
    """One area or a non-empty list of them, each a number in (0, 1)."""
    values = [value] if isinstance(value, (int, float)) and not isinstance(value, bool) else value
    if isinstance(values, (str, bytes)) or not isinstance(values, Sequence) or not values:
        raise ValueError("must be a number in (0, 1) or a non-empty list of them, e.g. 0.1 or [0.05, 0.1, 0.2]")
    areas = []
    for item in values:
        if isinstance(item, bool) or not isinstance(item, (int, float)) or not 0 < item < 1:
            raise ValueError(f"must hold numbers in (0, 1) (fractions of the image); got {item!r}")
        areas.append(float(item))
    return tuple(areas)


class ExtremalPerturbation(Explainer):
    """For each area a: the smooth mask m (``_extremal_masks.MaskGenerator``: a grid of
    parameters every ``step`` pixels, bumps of radius ``sigma``) maximising
    y_t(x ⊙ m) − λ · mean((sort(m) − r_a)²), where x ⊙ m reads each pixel from a perturbation
    pyramid at level m (``num_levels`` levels from the image blurred with σ = ``max_blur`` to the
    image; ``perturbation="fade"``: from black) and r_a is the sorted binary mask of area a (the
    area-rank constraint). ``delete`` maximises −y_t(x ⊙ (1 − m)); ``dual`` the difference of both.
    Gradient ascent: ``max_iter`` SGD steps (lr 0.01, momentum and dampening 0.9) from m̄ = 1, the
    parameters clamped to [0, 1], λ from 300 growing 0.35 % per step; with ``jitter`` the perturbed
    image is flipped left-right on even steps. No random draws: the result is deterministic.
    map = Σ over areas of the last step's masks (each in [0, 1]).

    Options (defaults, TorchRay's): ``areas=0.1`` (a number or a list), ``variant="preserve"``,
    ``perturbation="blur"``, ``max_iter=800``, ``num_levels=8``, ``step=7``, ``sigma=21.0``,
    ``max_blur=20.0``, ``jitter=True``, ``batch_size`` perturbed inputs per forward+backward pass
    (default from ``memory_mb=1024``). Needs the model's input gradient (the mask is optimised
    through it), so it refuses ONNX models; images of a batch are optimised together, each
    independently. Agrees with TorchRay's ``extremal_perturbation`` (which switches off
    ``requires_grad`` on the model's parameters and leaves it so; here the model is untouched).
    """

    name = "extremal_perturbation"
    aliases = ("extremal_perturbations", "meaningful_perturbation")
    #: 100 steps take about 3 s for one 64×64 demo scene on one CPU thread, so the default 800 take
    #: about 25 s (32 demo scenes: minutes); a quick look takes 50, a mask that has started to form
    #: rather than the converged one
    quick_options = {"max_iter": 50}
    requires = (GRADIENTS,)
    summary = "smooth masks of fixed area that keep the class score, optimised through the model's gradient"
    paper = "Fong, Patrick & Vedaldi, Understanding Deep Networks via Extremal Perturbations and Smooth Masks, ICCV 2019"
    options = {
        "areas": Option((0.1,), area_list, "fraction(s) of the image each mask may keep"),
        "variant": Option("preserve", choice(*VARIANTS), "preserve: keep the score; delete: remove it; dual: both"),
        "perturbation": Option("blur", choice(*PERTURBATIONS), "what a masked-out pixel becomes: blurred, or faded to 0"),
        "max_iter": Option(800, integer(1, MAX_SAMPLES), "gradient steps on the mask"),
        "num_levels": Option(8, integer(2, MAX_LEVELS), "perturbation levels interpolated between"),
        "step": Option(7, integer(1), "pixels between mask parameters"),
        "sigma": Option(21.0, number(above=0, maximum=MAX_SIGMA), "smoothness radius of the mask (pixels)"),
        "max_blur": Option(20.0, number(above=0, maximum=MAX_SIGMA), "σ of the strongest blur (pixels)"),
        "jitter": Option(True, boolean(), "flip the perturbed image left-right on even steps"),
        **batch_options("perturbed inputs per forward+backward pass"),
    }

    def attribute(self, adapter: ModelAdapter, inputs: torch.Tensor, targets: TargetRequest, options: dict[str, Any]) -> Attribution:
        scores, chosen = resolve_targets(adapter, inputs, targets)
        areas, variant = options["areas"], options["variant"]
        count, device = len(inputs), inputs.device
        check_mask_size(tuple(inputs.shape[2:]), options)
        generator = MaskGenerator(tuple(inputs.shape[2:]), options["step"], options["sigma"], device)
        levels = pyramid(inputs, options["num_levels"], options["perturbation"], options["max_blur"])
        image_of = torch.arange(count, device=device).repeat_interleave(len(areas))
        area_of = torch.tensor(areas, device=device).repeat(count)
        canvas_size = generator.shape_out[0] * generator.shape_out[1]
        reference = torch.stack([area_reference(float(a), canvas_size, device) for a in area_of])
        params = torch.ones((len(image_of), *generator.shape_in), device=device, requires_grad=True)
        optimizer = torch.optim.SGD([params], lr=LEARNING_RATE, momentum=MOMENTUM, dampening=MOMENTUM)
        batch_size = derived_batch_size(options, inputs.shape[1:], GRADIENT_MEMORY_FACTOR)
        rows = image_of.repeat(2) if variant == "dual" else image_of
        signs = {"preserve": [1.0], "delete": [-1.0], "dual": [1.0, -1.0]}[variant]
        sign = torch.tensor(signs, device=device).repeat_interleave(len(image_of))
        weight = AREA_WEIGHT
        with torch.enable_grad():
            for iteration in range(options["max_iter"]):
                mask, canvas = generator.generate(params)
                kept = {"preserve": [mask], "delete": [1 - mask], "dual": [mask, 1 - mask]}[variant]
                points = perturbed(levels[rows], torch.cat(kept))
                if options["jitter"] and iteration % 2 == 0:
                    points = torch.flip(points, dims=(3,))
                grads = adapter.gradients(points.detach(), request_for(chosen[rows]), batch_size=batch_size).gradients.to(device)
                # −energy = −Σ sign·y_t(points) + λ Σ penalty: the model's part enters through its gradient
                surrogate = -(points * (sign.view(-1, 1, 1, 1) * grads)).sum() + weight * area_penalty(canvas, reference).sum()
                optimizer.zero_grad()
                surrogate.backward()
                optimizer.step()
                with torch.no_grad():
                    params.clamp_(0, 1)
                weight *= GROWTH
        masks = mask.detach().reshape(count, len(areas), *mask.shape[1:])
        notes = {"batch_size": batch_size}
        return Attribution(maps=masks.sum(dim=1).to(inputs.dtype), scores=scores, targets=chosen, notes=notes)


def check_mask_size(shape: tuple[int, int], options: dict[str, Any]) -> None:
    """Refuse a ``step`` beyond the image's side, a ``sigma`` too small for the ``step`` (TorchRay's
    canvas would not cover the image), and a ``sigma``/``step`` whose table for one mask
    would not fit ``memory_mb`` (about 23 MB for 224² images at the defaults), before anything is
    allocated."""
    step, sigma, side = options["step"], options["sigma"], max(shape)
    if step > side:
        raise InvalidOption(f"option 'step' of method 'extremal_perturbation' is {step}, more than the side of the {shape[0]}x{shape[1]} images; give at most {side}")
    canvas = MaskGenerator.geometry(shape, step, sigma)[-1]
    if any(out < round(sigma) + side_of for out, side_of in zip(canvas, shape)):
        raise InvalidOption(
            f"options step={step} and sigma={sigma:g} of method 'extremal_perturbation' give a {canvas[0]}x{canvas[1]} mask canvas, "
            f"too small to cover the {shape[0]}x{shape[1]} images and a margin of sigma; give a sigma above 1.5 times the step (the defaults: step 7, sigma 21)"
        )
    needed = MaskGenerator.bytes_per_mask(shape, step, sigma) / 2**20
    if needed > options["memory_mb"]:
        raise InvalidOption(
            f"options sigma={sigma:g} and step={step} of method 'extremal_perturbation' need {needed:.0f} MB per mask of "
            f"{shape[0]}x{shape[1]} images, more than memory_mb={options['memory_mb']:g}; give a smaller sigma, a larger step or a larger memory_mb"
        )


@hookimpl
def register_explainers(register) -> None:
    register(ExtremalPerturbation)
