"""The model adapter interface: one object per model, capabilities declared, absent ones raise.

Every adapter can ``forward`` a batch to scores ``(N, K)``. Each other capability is a method
that raises ``UnsupportedCapability`` when the backend lacks it. Tensors are torch tensors on
``adapter.device`` in and out, whatever the backend computes with.
"""
from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import Any, Callable, ClassVar

import torch

from .errors import InvalidTarget, UnknownLayer, UnsupportedCapability, did_you_mean
from .targets import ScoreFunction, TargetRequest

FORWARD = "forward"
GRADIENTS = "gradients"
ACTIVATIONS = "activations"
ACTIVATION_GRADIENTS = "activation_gradients"
CLASSIFIER_WEIGHTS = "classifier_weights"
GUIDED_GRADIENTS = "guided_gradients"
ACTIVATION_REPLACEMENT = "activation_replacement"
RULE_GRADIENTS = "rule_gradients"
ATTENTION = "attention"
BIAS_GRADIENTS = "bias_gradients"
ACTIVATION_HESSIAN = "activation_hessian"
#: not a capability methods require, but what CAM methods lack when no ``layer=`` is given and none can be inferred
DEFAULT_CAM_LAYER = "default CAM layer"
ALL_CAPABILITIES = (FORWARD, GRADIENTS, ACTIVATIONS, ACTIVATION_GRADIENTS, CLASSIFIER_WEIGHTS, ACTIVATION_REPLACEMENT, GUIDED_GRADIENTS, RULE_GRADIENTS, ATTENTION, BIAS_GRADIENTS, ACTIVATION_HESSIAN)


@dataclass
class GradientResult:
    """d(target score)/d(input) with the scores and the targets they were taken for."""

    gradients: torch.Tensor
    scores: torch.Tensor
    targets: torch.Tensor


@dataclass
class ActivationResult:
    """A layer's output (and, when asked, d(target score)/d(that output)) with the model's scores."""

    activations: torch.Tensor
    scores: torch.Tensor
    targets: torch.Tensor | None = None
    gradients: torch.Tensor | None = None
    #: H·A for ``activation_hessian`` (the Hessian of y_t in A, applied to A), else None
    hessian_products: torch.Tensor | None = None


@dataclass
class BiasGradientResult:
    """The full-gradient decomposition's parts (Srinivas & Fleuret): d(y_t)/d(x) ``(N, C, H, W)``
    and, for each module with a bias (``layers``, in the order they ran), its bias ``(C,)`` (a
    BatchNorm's implicit one, β − μ·γ/√(σ² + ε)) with d(y_t)/d(its output), whose axis
    ``channel_axes`` holds the bias's channels (1 for convolutions, -1 for ``Linear``)."""

    input_gradients: torch.Tensor
    layers: list[str]
    biases: list[torch.Tensor]
    gradients: list[torch.Tensor]
    scores: torch.Tensor
    targets: torch.Tensor
    channel_axes: list[int]


@dataclass
class AttentionResult:
    """Each attention module's probabilities ``(N, heads, T, T)`` (float32, in the order the
    modules ran, named by ``layers``) with the model's scores ``(N, K)``."""

    attentions: list[torch.Tensor]
    layers: list[str]
    scores: torch.Tensor
    #: d(target score)/d(each layer's probabilities), same shapes, when asked (``attention_gradients``)
    gradients: list[torch.Tensor] | None = None
    targets: torch.Tensor | None = None


@dataclass
class Scorer:
    """A batched forward used by perturbation methods: ``run(batch) -> scores``, engine named."""

    run: Callable[[torch.Tensor], torch.Tensor]
    engine: str
    notes: dict[str, Any] = field(default_factory=dict)


@dataclass
class BoxScorer:
    """Scores of one image whose boxes (all one size) are set to a value, many boxes per call:
    ``run(tops, lefts) -> (B, K)`` with ``tops``/``lefts`` long tensors on the CPU (window positions
    are known there, so no engine has to wait for a GPU to learn them) and the scores on the
    adapter's device; ``base`` is the unoccluded image's ``(K,)`` scores from the same engine. ``engine`` names what computes them; ``notes`` go into ``exp.options``."""

    run: Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
    base: torch.Tensor
    engine: str
    notes: dict[str, Any] = field(default_factory=dict)


class ModelAdapter(ABC):
    """One model behind one backend. Subclasses set ``backend`` and ``capabilities``."""

    backend: ClassVar[str] = "abstract"
    capabilities: ClassVar[frozenset[str]] = frozenset({FORWARD})

    #: preprocessing and class names when known: keys ``class_names``, ``input_size``, ``mean``, ``std``
    metadata: dict[str, Any]

    def __init__(self) -> None:
        self.metadata = {}

    @property
    def device(self) -> torch.device:
        """Where the adapter wants its inputs and returns its outputs."""
        return torch.device("cpu")

    @property
    def input_channels(self) -> int | None:
        """The channel count the model takes, when the backend knows it."""
        return None

    @property
    def exclusive_keys(self) -> tuple[Any, ...]:
        """The objects whose locks an ``explain``/``evaluate`` call holds (``core/concurrency.py``):
        two calls that share one run one after the other. By default the adapter itself; empty
        when calls may overlap (the backend is thread-safe and the model is never changed)."""
        return (self,)

    def describe(self) -> str:
        """A short human name, used in messages: e.g. ``"ONNX Runtime model 'net.onnx'"``."""
        return f"{self.backend} model"

    def supports(self, capability: str) -> bool:
        return capability in self.capabilities

    def require(self, capabilities: tuple[str, ...], who: str) -> None:
        """Raise ``UnsupportedCapability`` (listing the methods that do work) for the first of
        ``capabilities`` this adapter lacks; ``who`` names what needs them, e.g. "method 'gradcam'"."""
        for capability in capabilities:
            if not self.supports(capability):
                raise self._unsupported(capability, f"{who} requires it")

    def _unsupported(self, capability: str, hint: str = "") -> UnsupportedCapability:
        from .registry import methods_supported_by

        return UnsupportedCapability(self.describe(), capability, methods_supported_by(self), hint)

    @abstractmethod
    def forward(self, inputs: torch.Tensor, batch_size: int | None = None) -> torch.Tensor:
        """Scores ``(N, K)`` for inputs ``(N, C, H, W)``, computed in batches of ``batch_size``."""

    def engines(self, purpose: str) -> tuple[str, ...]:
        """The exact engines this adapter runs for ``purpose`` ("forward": ``scorer``; "occlusion":
        ``box_scorers``), "auto" first; ``engine="auto"`` times them (``core/engine_choice.py``).
        By default the backend's own engine only."""
        return ("auto", self.backend)

    def engine_key(self) -> str:
        """What identifies this model for the engine-choice cache (``core/engine_choice.py``): by
        default the adapter object itself, for this process."""
        return f"{type(self).__qualname__}@{id(self):x}"

    def check_engine(self, purpose: str, engine: str) -> None:
        """``UnsupportedCapability`` naming the declared engines when ``engine`` is not one of them."""
        offered = self.engines(purpose)
        if engine not in offered:
            raise self._unsupported(f"engine '{engine}'", f"choose {', '.join(repr(e) for e in offered[:-1])} or {offered[-1]!r}" if len(offered) > 1 else f"choose {offered[0]!r}")

    def scorer(self, engine: str = "auto", sample: torch.Tensor | None = None) -> Scorer:
        """The fastest exact batched forward for many perturbed inputs (``engine`` may force one)."""
        self.check_engine("forward", engine)
        return Scorer(lambda batch: self.forward(batch), self.backend)

    def box_scorers(
        self, images: torch.Tensor, window: tuple[int, int], baseline: float, engine: str = "auto", field_limit: float | None = None,
        precision: str = "fp32",
    ) -> list[BoxScorer]:
        """Occlusion's forward passes, a ``BoxScorer`` per image of ``images`` ``(N, C, H, W)``: by
        default the boxed images are built as batches and run by one ``scorer(engine)``; backends
        may compute less (incrementally). ``field_limit`` asks an incremental engine to cut changed
        regions (approximate); engines that compute full maps ignore it and say so in the notes.
        ``precision`` "bf16"/"fp16" (approximate) is for backends that can lower it; this one
        computes in the model's own precision and refuses them."""
        if precision != "fp32":
            raise self._unsupported(f"precision '{precision}'", "reduced precision runs PyTorch models only; use precision='fp32'")
        from .perturbation import batched_box_scorers

        return batched_box_scorers(self.scorer(engine, sample=images[:1]), images, window, baseline, field_limit)

    def gradients(self, inputs: torch.Tensor, targets: TargetRequest, batch_size: int | None = None) -> GradientResult:
        """d(y_t)/d(x) for each input, ``(N, C, H, W)``, in batches of ``batch_size`` (default: the adapter's)."""
        raise self._unsupported(GRADIENTS)

    def guided_gradients(self, inputs: torch.Tensor, targets: TargetRequest, batch_size: int | None = None) -> GradientResult:
        """Guided backpropagation (Springenberg et al.): d(y_t)/d(x) with every ReLU's backward pass
        also clamping negative gradients to zero, ``(N, C, H, W)``, in batches as ``gradients``."""
        raise self._unsupported(GUIDED_GRADIENTS)

    def rule_gradients(
        self, inputs: torch.Tensor, targets: TargetRequest, rule: str, references: torch.Tensor | None = None, batch_size: int | None = None
    ) -> GradientResult:
        """d(y_t)/d(x) with the nonlinearities' backward pass replaced by ``rule``: ``"rescale"``
        (DeepLift's multipliers against ``references``, one per input) or ``"deconvolution"``
        (ReLU backward = max(grad, 0)), ``(N, C, H, W)``, in batches of ``batch_size`` inputs; a
        ``core.propagation.Propagation`` returns LRP / excitation-backprop relevance instead."""
        raise self._unsupported(RULE_GRADIENTS)

    def with_score_function(self, function: ScoreFunction) -> "ModelAdapter":
        """An adapter whose scores are ``function(raw model output)`` as ``(N, 1)`` (callable targets)."""
        raise InvalidTarget(f"callable targets need a backend that exposes the raw model output; {self.describe()} takes class indices (None, an int, or one int per input)")

    def bias_gradients(self, inputs: torch.Tensor, targets: TargetRequest, batch_size: int | None = None) -> BiasGradientResult:
        """d(y_t)/d(x) and every bias module's bias with d(y_t)/d(its output) (``BiasGradientResult``)."""
        raise self._unsupported(BIAS_GRADIENTS)

    def activation_hessian(self, inputs: torch.Tensor, layer: str, targets: TargetRequest) -> ActivationResult:
        """``activation_gradients`` plus ``hessian_products`` = H·A, the Hessian of y_t with respect
        to the layer's output A applied to A itself (a double backward pass)."""
        raise self._unsupported(ACTIVATION_HESSIAN)

    def attentions(self, inputs: torch.Tensor) -> AttentionResult:
        """The attention probabilities of every attention module for ``inputs`` ``(N, C, H, W)``."""
        raise self._unsupported(ATTENTION)

    def attention_gradients(self, inputs: torch.Tensor, targets: TargetRequest) -> AttentionResult:
        """``attentions`` with d(target score)/d(each layer's attention probabilities)."""
        raise self._unsupported(ATTENTION)

    def activations(self, inputs: torch.Tensor, layer: str) -> ActivationResult:
        """The output of ``layer`` for each input, with the model's scores."""
        raise self._unsupported(ACTIVATIONS)

    def activation_gradients(self, inputs: torch.Tensor, layer: str, targets: TargetRequest) -> ActivationResult:
        """The output of ``layer`` and d(y_t)/d(that output), from one forward and one backward pass."""
        raise self._unsupported(ACTIVATION_GRADIENTS)

    def classifier_weights(self, sample: torch.Tensor | None = None) -> torch.Tensor:
        """The ``(K, C)`` weight matrix applied after global average pooling, of the classifier
        that computes the explained output (``sample``: an input to trace the model with)."""
        raise self._unsupported(CLASSIFIER_WEIGHTS)

    def replaced_scores(self, inputs: torch.Tensor, layer: str, activations: torch.Tensor) -> torch.Tensor:
        """Scores ``(B, K)`` of one input ``(1, C, H, W)`` when ``layer``'s output is replaced by each
        of the ``B`` activations ``(B, c, h, w)``; backends recompute only what follows the layer."""
        raise self._unsupported(ACTIVATION_REPLACEMENT)

    def replacement_engine(self, layer: str) -> str:
        """How ``replaced_scores`` ran for ``layer`` (after a call), for ``exp.options``."""
        return f"{self.backend} graph split"

    def layers(self) -> list[str]:
        """Names a user can pass as ``layer=``."""
        return []

    def layer_shapes(self, sample: torch.Tensor) -> dict[str, tuple[int, ...]]:
        """The layers whose output on ``sample`` is a 4-D feature map of more than one position
        (usable as ``layer=`` by the CAM family), with their shapes, in ``layers()`` order."""
        return {}

    def layer_grids(self, sample: torch.Tensor) -> dict[str, tuple[tuple[int, ...], dict[str, Any]]]:
        """Layers whose output on ``sample`` is a token grid or a channels-last map (``core.token_grids``):
        ``{name: (shape, {"grid", "prefix", "layout"})}``; none unless the backend can tell."""
        return {}

    def patch_stride(self) -> tuple[int, int] | None:
        """The stride of the model's patch embedding (to infer token grids), or ``None`` when unknown."""
        return None

    def output_notes(self) -> dict[str, Any]:
        """Which output was explained and how it was scored (e.g. ``output``, ``scores``), for ``exp.options``."""
        return {}

    def default_cam_layer(self, sample: torch.Tensor | None = None) -> str:
        """The last 4-D activation that feeds global pooling (``sample``: an input to trace shapes with)."""
        raise self._unsupported(ACTIVATIONS, "no layer names are known for this model")

    def check_layer(self, layer: str) -> str:
        """``layer`` itself when the model has it, else ``UnknownLayer`` naming the nearest ones."""
        names = self.layers()
        if layer not in names:
            hint = did_you_mean(layer, names) or f"; run `vexplain layers MODEL` to list the {len(names)} layers"
            raise UnknownLayer(f"{self.describe()} has no layer '{layer}'{hint}")
        return layer
