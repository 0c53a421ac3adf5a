"""The class-activation-map family: one base, each variant overrides one narrow step.

For a layer A (default: the last 4-D activation feeding global pooling), a variant gives either
channel weights w ``(N, C)`` (``weights``; the layer map is then Σ_k w_k A_k) or the layer map
itself (``cam``, for element-wise variants). ``relu_output`` applies ReLU to the layer map where
the method's paper defines one. The map is the layer map upsampled bilinearly
(``align_corners=False``) to the input size; ``layer_maps`` keep the layer's resolution.

Several layers (``layer="a,b"`` or ``layer=["a", "b"]``): the map is computed at each layer and
upsampled to the input size, each per-layer map is min-max scaled to [0, 1] per image (a constant
map becomes zeros), and the result is their mean, as pytorch-grad-cam aggregates target layers
(it also applies ReLU to every layer's map first and min-max scales the mean; vexplain applies
ReLU only where the method defines one, and ``exp.normalized("minmax")`` gives the final scaling).
``layer_maps`` are then ``(N, L, H, W)``: each layer's raw map at input size, in the order given.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar

import torch

from vexplain.core.adapter import ActivationResult, ModelAdapter
from vexplain.core.errors import InvalidOption
from vexplain.core.explainer import Attribution, Explainer
from vexplain.core.options import Option
from vexplain.core.postprocess import relu, upsample
from vexplain.core.targets import TargetRequest


def layer_names(value: Any) -> str | tuple[str, ...]:
    """A layer name, or several as a comma-separated string or a list/tuple of names."""
    names = value.split(",") if isinstance(value, str) else value
    if not isinstance(names, (list, tuple)) or not names or not all(isinstance(n, str) and n.strip() for n in names):
        raise ValueError("must be a layer name, a comma-separated string of names, or a list of names")
    names = tuple(n.strip() for n in names)
    if len(set(names)) != len(names):
        raise ValueError("must not name a layer twice")
    return names[0] if len(names) == 1 else names


def optional_layers(value: Any) -> Any:
    return None if value is None else layer_names(value)


LAYER_OPTION = Option(
    None,
    optional_layers,
    "layer name (see `vexplain layers MODEL`), or several (comma-separated or a list); default the last feature map before global pooling",
)


@dataclass
class CamStep:
    """Everything one layer's step may use. ``notes`` collects choices to report in ``exp.options``."""

    adapter: ModelAdapter
    inputs: torch.Tensor
    layer: str
    activations: torch.Tensor
    gradients: torch.Tensor | None
    scores: torch.Tensor
    targets: torch.Tensor
    options: dict[str, Any]
    notes: dict[str, Any] = field(default_factory=dict)


def minmax(maps: torch.Tensor) -> torch.Tensor:
    """Each ``(H, W)`` map of ``(N, H, W)`` scaled to [0, 1]; a constant map becomes zeros."""
    flat = maps.reshape(len(maps), -1)
    low = flat.min(dim=1, keepdim=True).values
    span = flat.max(dim=1, keepdim=True).values - low
    scaled = torch.where(span > 0, (flat - low) / torch.where(span > 0, span, torch.ones_like(span)), torch.zeros_like(flat))
    return scaled.reshape(maps.shape)


class CamExplainer(Explainer):
    """Base of CAM-style methods. Subclasses implement ``weights`` or ``cam``."""

    uses_gradients: ClassVar[bool] = False
    relu_output: ClassVar[bool] = False
    #: take each image's activations from a forward pass of that image alone (batching-exact)
    per_image_activations: ClassVar[bool] = False
    options = {"layer": LAYER_OPTION}

    def weights(self, step: CamStep) -> torch.Tensor:
        """``(N, C)`` weights of the layer's channels for each input's target."""
        raise NotImplementedError(f"{type(self).__name__} implements neither weights() nor cam()")

    def cam(self, step: CamStep) -> torch.Tensor:
        """The layer map ``(N, h, w)`` before ``relu_output``: Σ_k w_k A_k by default."""
        return torch.einsum("nc,nchw->nhw", self.weights(step), step.activations)

    def attribute(self, adapter: ModelAdapter, inputs: torch.Tensor, targets: TargetRequest, options: dict[str, Any]) -> Attribution:
        chosen = options["layer"]
        layers = (adapter.default_cam_layer(inputs[:1]),) if chosen is None else ((chosen,) if isinstance(chosen, str) else chosen)
        notes: dict[str, Any] = {}
        per_layer = []
        for layer in layers:
            if chosen is not None:
                adapter.check_layer(layer)
            step = self._step(adapter, inputs, targets, options, layer)
            layer_map = self.cam(step)
            per_layer.append(relu(layer_map) if self.relu_output else layer_map)
            notes.update(step.notes)
        size = tuple(inputs.shape[2:])
        if len(layers) == 1:
            layer_maps = per_layer[0]
            maps = upsample(layer_maps, size)
            notes["layer"] = layers[0]
        else:
            upsampled = [upsample(m, size) for m in per_layer]
            maps = torch.stack([minmax(m) for m in upsampled]).mean(dim=0)
            layer_maps = torch.stack(upsampled, dim=1)
            notes["layer"] = list(layers)
        return Attribution(maps=maps, scores=step.scores, targets=step.targets, layer_maps=layer_maps, notes=notes)

    def _step(self, adapter: ModelAdapter, inputs: torch.Tensor, targets: TargetRequest, options: dict[str, Any], layer: str) -> CamStep:
        if self.uses_gradients:
            result = adapter.activation_gradients(inputs, layer, targets)
            chosen = result.targets
        elif self.per_image_activations:
            results = [adapter.activations(inputs[i : i + 1], layer) for i in range(len(inputs))]
            result = ActivationResult(torch.cat([r.activations for r in results]), torch.cat([r.scores for r in results]))
            chosen = targets.select(result.scores)
        else:
            result = adapter.activations(inputs, layer)
            chosen = targets.select(result.scores)
        activations = result.activations.to(inputs.device)
        if activations.dim() != 4 or activations.shape[2] * activations.shape[3] < 2:
            raise InvalidOption(f"layer '{layer}' outputs shape {tuple(activations.shape)}; CAM methods need a (N, C, h, w) feature map with more than one position")
        gradients = None if result.gradients is None else result.gradients.to(inputs.device)
        return CamStep(adapter, inputs, layer, activations, gradients, result.scores.to(inputs.device), chosen.to(inputs.device), options)
