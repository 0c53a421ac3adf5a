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

Two smoothing options, shared by the whole family (pytorch-grad-cam's names):

* ``eigen_smooth`` (default False): the layer map is the first principal component of the
  per-channel contributions ``weighted_activations`` (w_k A_k for weight-based variants, the
  element-wise products for element-wise ones) instead of their sum over channels
  (``first_component_projection``; sign oriented toward that sum, pytorch-grad-cam leaves the SVD's
  sign). Only variants whose layer map is such a sum offer it (Eigen-CAM and other variants that
  override ``cam`` do not).
* ``aug_smooth`` (default False): test-time augmentation as pytorch-grad-cam's default ``ttach``
  transforms: the input multiplied by 0.9, 1 and 1.1, each also flipped horizontally (6 inputs).
  Each augmented input is explained for the target chosen on the original input (pytorch-grad-cam
  takes each augmented input's own top class when no target is given), its map and layer map
  flipped back and min-max scaled to [0, 1] per image (as pytorch-grad-cam scales every map it
  averages; a constant map becomes zeros), and ``maps``/``layer_maps`` are the mean over the 6.
  The result is in [0, 1], not in the method's raw units. The five augmented copies run as one
  batch of 5·N inputs.

Token-grid layers (``vexplain.core.token_grids``): a layer outputting ``(N, T, D)`` tokens or a
channels-last ``(N, h, w, C)`` map is read as the ``(N, C, h, w)`` map of its patch grid (prefix
tokens dropped, for activations and gradients alike); the grid and prefix are inferred from the
patch embedding's stride and the input size, ``grid=(h, w)`` / ``prefix=k`` override, and
``exp.options`` records ``grid``, ``prefix`` and ``layout``.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, ClassVar

import torch

from vexplain.core.adapter import ActivationResult, ModelAdapter
from vexplain.core.errors import InvalidOption
from vexplain.core.explainer import Attribution, Explainer
from vexplain.core.notices import warn
from vexplain.core.options import Option, boolean
from vexplain.core.postprocess import relu, upsample
from vexplain.core.targets import TargetRequest
from vexplain.core.token_grids import CHANNELS_FIRST, TokenLayout, grid_option, prefix_option, token_layout

#: aug_smooth's test-time augmentations (horizontal flip, intensity factor), identity first
AUGMENTATIONS: tuple[tuple[bool, float], ...] = tuple((flip, factor) for flip in (False, True) for factor in (1.0, 0.9, 1.1))


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
AUG_SMOOTH_OPTION = Option(False, boolean(), "average the min-max scaled maps of the input x 0.9, 1, 1.1, each also flipped horizontally")
EIGEN_SMOOTH_OPTION = Option(False, boolean(), "layer map = first principal component of the per-channel contributions instead of their sum")


GRID_OPTION = Option(None, grid_option, "patch grid (h, w) of a token layer; default inferred from the patch embedding's stride and the input size, else from the token count")
PREFIX_OPTION = Option(None, prefix_option, "count of prefix tokens (class, distillation, register) before a token layer's patch grid; default the tokens beyond the grid")


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
    #: the layer's raw output layout to the ``(N, C, h, w)`` map of ``activations`` (token grids,
    #: channels-last); for a step that asks the adapter for more activations or gradients itself
    to_map: Callable[[torch.Tensor], torch.Tensor] = field(default=lambda tensor: tensor)


def minmax(maps: torch.Tensor) -> torch.Tensor:
    """Each ``(H, W)`` map of ``(N, H, W)`` scaled to [0, 1]; a constant map becomes zeros."""
    flat = maps.reshape(len(maps), -1)
    low = flat.min(dim=1, keepdim=True).values
    span = flat.max(dim=1, keepdim=True).values - low
    scaled = torch.where(span > 0, (flat - low) / torch.where(span > 0, span, torch.ones_like(span)), torch.zeros_like(flat))
    return scaled.reshape(maps.shape)


def minmax_last2(maps: torch.Tensor) -> torch.Tensor:
    """``minmax`` over the last two dimensions of ``(..., H, W)`` maps."""
    return minmax(maps.reshape(-1, *maps.shape[-2:])).reshape(maps.shape)


#: |cosine| between projection and channel sum below which their agreement orients nothing
ORIENTATION_TOLERANCE = 1e-6


def first_component_projection(activations: torch.Tensor) -> torch.Tensor:
    """``(N, h, w)``: each image's activations, as h·w points in C dimensions centred per channel,
    projected on their first principal component (the first right singular vector). Computed in
    float64. Sign: chosen so the projection correlates non-negatively with the centred channel sum
    Σ_k A_k, i.e. the map is high where the layer is active; where they do not correlate (a
    LayerNorm output, whose channels sum to a constant) the sign is arbitrary, and a warning says so."""
    n, c, h, w = activations.shape
    points = activations.reshape(n, c, h * w).transpose(1, 2).double()  # (N, hw, C)
    points = points - points.mean(dim=1, keepdim=True)
    _, _, vh = torch.linalg.svd(points, full_matrices=False)
    projection = points @ vh[:, 0, :, None]  # (N, hw, 1)
    channel_sum = points.sum(dim=2)
    agreement = (projection[..., 0] * channel_sum).sum(dim=1)
    sum_norm = channel_sum.norm(dim=1)
    undetermined = (agreement.abs() <= ORIENTATION_TOLERANCE * projection[..., 0].norm(dim=1) * sum_norm) | (sum_norm <= ORIENTATION_TOLERANCE * points.norm(dim=(1, 2)))
    if bool(undetermined.any()):
        which = ", ".join(str(i) for i in undetermined.nonzero().flatten().tolist())
        warn(
            f"the first principal component's sign is undetermined for input(s) {which}: the projection does not correlate "
            "with the channel sum (a normalised layer such as a LayerNorm output); the map may be negated, so compare its shape, not its sign"
        )
    sign = torch.where(agreement < 0, -1.0, 1.0).to(projection.dtype)
    return (projection[..., 0] * sign[:, None]).reshape(n, h, w).to(activations.dtype)


class CamExplainer(Explainer):
    """Base of CAM-style methods. Subclasses implement ``weights``, ``weighted_activations`` or
    ``cam`` (a subclass overriding ``cam`` loses the ``eigen_smooth`` option)."""

    uses_gradients: ClassVar[bool] = False
    relu_output: ClassVar[bool] = False
    #: take each image's activations from a forward pass of that image alone (batching-exact)
    per_image_activations: ClassVar[bool] = False
    options = {"layer": LAYER_OPTION, "grid": GRID_OPTION, "prefix": PREFIX_OPTION, "aug_smooth": AUG_SMOOTH_OPTION, "eigen_smooth": EIGEN_SMOOTH_OPTION}

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if cls.cam is not CamExplainer.cam and "eigen_smooth" in cls.options:
            cls.options = {name: option for name, option in cls.options.items() if name != "eigen_smooth"}

    def weights(self, step: CamStep) -> torch.Tensor:
        """``(N, C)`` weights of the layer's channels for each input's target."""
        raise NotImplementedError(f"{type(self).__name__} implements neither weights(), weighted_activations() nor cam()")

    def weighted_activations(self, step: CamStep) -> torch.Tensor:
        """``(N, C, h, w)`` per-channel contributions whose channel sum is the layer map: w_k A_k by default."""
        return self.weights(step)[:, :, None, None] * step.activations

    def cam(self, step: CamStep) -> torch.Tensor:
        """The layer map ``(N, h, w)`` before ``relu_output``: the channel sum of
        ``weighted_activations``, or with ``eigen_smooth`` their first principal component."""
        contributions = self.weighted_activations(step)
        if step.options.get("eigen_smooth"):
            return first_component_projection(contributions)
        return contributions.sum(dim=1)

    def attribute(self, adapter: ModelAdapter, inputs: torch.Tensor, targets: TargetRequest, options: dict[str, Any]) -> Attribution:
        if not options.get("aug_smooth"):
            return self._attribute_once(adapter, inputs, targets, options)
        plain = self._attribute_once(adapter, inputs, targets, options)
        n, others = len(inputs), AUGMENTATIONS[1:]
        augmented = torch.cat([_augment(inputs, flip, factor) for flip, factor in others])
        request = TargetRequest(plain.targets.cpu().repeat(len(others)), len(augmented))
        result = self._attribute_once(adapter, augmented, request, options)

        def smoothed(first: torch.Tensor, rest: torch.Tensor) -> torch.Tensor:
            parts = [first] + [_augment(part, flip, 1.0) for part, (flip, _) in zip(rest.split(n), others)]
            return torch.stack([minmax_last2(part) for part in parts]).mean(dim=0)

        notes = {**result.notes, **plain.notes, "augmentations": [f"{'flip, ' if flip else ''}x{factor:g}" for flip, factor in AUGMENTATIONS]}
        return Attribution(
            maps=smoothed(plain.maps, result.maps), scores=plain.scores, targets=plain.targets,
            layer_maps=smoothed(plain.layer_maps, result.layer_maps), notes=notes,
        )

    def _attribute_once(self, adapter: ModelAdapter, inputs: torch.Tensor, targets: TargetRequest, options: dict[str, Any]) -> Attribution:
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
        layout = token_layout(tuple(activations.shape), tuple(inputs.shape[2:]), adapter.patch_stride(), layer, options.get("grid"), options.get("prefix"))
        gradients = None if result.gradients is None else layout.to_map(result.gradients.to(inputs.device))
        native, activations = activations, layout.to_map(activations)
        if activations.shape[2] * activations.shape[3] < 2:
            raise InvalidOption(f"layer '{layer}' outputs shape {tuple(native.shape)}; CAM methods need a feature map or token grid with more than one position")
        step_adapter = adapter if layout.kind == CHANNELS_FIRST else _GridAdapter(adapter, layout, native, inputs)
        step = CamStep(step_adapter, inputs, layer, activations, gradients, result.scores.to(inputs.device), chosen.to(inputs.device), options)
        step.notes.update(layout.notes())
        step.to_map = layout.to_map
        return step


class _GridAdapter:
    """The adapter seen by a CAM step on a token-grid layer: replacement activations given as
    ``(M, C, h, w)`` maps go back to the layer's own layout (prefix tokens from the image's own
    output) before the adapter swaps them in; everything else is the adapter's."""

    def __init__(self, adapter: ModelAdapter, layout: TokenLayout, native: torch.Tensor, inputs: torch.Tensor):
        self._adapter, self._layout, self._native, self._inputs = adapter, layout, native, inputs

    def __getattr__(self, name: str) -> Any:
        return getattr(self._adapter, name)

    def replaced_scores(self, inputs: torch.Tensor, layer: str, activations: torch.Tensor) -> torch.Tensor:
        if len(inputs) != 1:
            raise InvalidOption(f"a replacement on token-grid layer '{layer}' takes one image at a time, got {len(inputs)}")
        return self._adapter.replaced_scores(inputs, layer, self._layout.from_map(activations, self._native[self._image(inputs[0])]))

    def _image(self, image: torch.Tensor) -> slice:
        """The row of the step's inputs equal to ``image`` (equal images have equal prefix tokens)."""
        for i, row in enumerate(self._inputs):
            if torch.equal(row, image.to(row.device)):
                return slice(i, i + 1)
        raise InvalidOption("a replacement on a token-grid layer must be for one of the explained images")


def _augment(tensor: torch.Tensor, flip: bool, factor: float) -> torch.Tensor:
    """``tensor`` times ``factor``, flipped along its last (width) axis when ``flip``."""
    scaled = tensor * factor if factor != 1.0 else tensor
    return scaled.flip(-1) if flip else scaled
