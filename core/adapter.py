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

from .errors import UnknownLayer, UnsupportedCapability, did_you_mean
from .targets import TargetRequest

FORWARD = "forward"
GRADIENTS = "gradients"
ACTIVATIONS = "activations"
ACTIVATION_GRADIENTS = "activation_gradients"
CLASSIFIER_WEIGHTS = "classifier_weights"
ALL_CAPABILITIES = (FORWARD, GRADIENTS, ACTIVATIONS, ACTIVATION_GRADIENTS, CLASSIFIER_WEIGHTS)


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


@dataclass
class Scorer:
    """A batched forward used by perturbation methods: ``run(batch) -> scores``, engine named."""

    run: Callable[[torch.Tensor], torch.Tensor]
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

    def describe(self) -> str:
        """A short human name, used in messages: e.g. ``"ONNX Runtime model 'net.onnx'"``."""
        return f"{self.backend} model"

    def supports(self, capability: str) -> bool:
        return capability in self.capabilities

    def _unsupported(self, capability: str, hint: str = "") -> UnsupportedCapability:
        from .registry import methods_supported_by

        return UnsupportedCapability(self.describe(), capability, methods_supported_by(self), hint)

    @abstractmethod
    def forward(self, inputs: torch.Tensor, batch_size: int | None = None) -> torch.Tensor:
        """Scores ``(N, K)`` for inputs ``(N, C, H, W)``, computed in batches of ``batch_size``."""

    def scorer(self, engine: str = "auto", sample: torch.Tensor | None = None) -> Scorer:
        """The fastest exact batched forward for many perturbed inputs (``engine`` may force one)."""
        if engine not in ("auto", self.backend):
            raise self._unsupported(f"engine '{engine}'", f"this adapter runs engine '{self.backend}' only")
        return Scorer(lambda batch: self.forward(batch), self.backend)

    def gradients(self, inputs: torch.Tensor, targets: TargetRequest) -> GradientResult:
        """d(y_t)/d(x) for each input, ``(N, C, H, W)``."""
        raise self._unsupported(GRADIENTS)

    def activations(self, inputs: torch.Tensor, layer: str) -> ActivationResult:
        """The output of ``layer`` for each input, with the model's scores."""
        raise self._unsupported(ACTIVATIONS)

    def activation_gradients(self, inputs: torch.Tensor, layer: str, targets: TargetRequest) -> ActivationResult:
        """The output of ``layer`` and d(y_t)/d(that output), from one forward and one backward pass."""
        raise self._unsupported(ACTIVATION_GRADIENTS)

    def classifier_weights(self) -> torch.Tensor:
        """The ``(K, C)`` weight matrix applied after global average pooling."""
        raise self._unsupported(CLASSIFIER_WEIGHTS)

    def layers(self) -> list[str]:
        """Names a user can pass as ``layer=``."""
        return []

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
