"""The explainer interface: a method declares its name, the capabilities it requires and its options."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar, Mapping

import torch

from .adapter import CLASSIFIER_WEIGHTS, ModelAdapter
from .options import Option
from .targets import TargetRequest


@dataclass
class Attribution:
    """What a method computes; ``explain()`` wraps it into an ``Explanation``.

    ``maps`` ``(N, H, W)`` at input resolution, raw; ``attributions`` ``(N, C, H, W)`` or None;
    ``layer_maps`` ``(N, h, w)`` for layer-based methods (``(N, L, H, W)`` with several layers) or None; ``scores`` the model's output on
    the unperturbed inputs; ``targets`` the classes explained; ``notes`` choices made while running
    (an engine, a derived batch size), merged into ``exp.options``; ``extras`` further named arrays
    a method defines beyond the map (e.g. DFF's per-concept maps), ``exp.extras``.
    """

    maps: torch.Tensor
    scores: torch.Tensor
    targets: torch.Tensor
    attributions: torch.Tensor | None = None
    layer_maps: torch.Tensor | None = None
    notes: dict[str, Any] = field(default_factory=dict)
    extras: dict[str, torch.Tensor] = field(default_factory=dict)


class Explainer:
    """Base of every method. Subclasses set the class attributes and implement ``attribute``.

    ``requires`` is checked against the adapter before any work is done.
    """

    name: ClassVar[str] = ""
    aliases: ClassVar[tuple[str, ...]] = ()  # other names users type (matched ignoring case, '-', '_', spaces)
    requires: ClassVar[tuple[str, ...]] = ("forward",)
    summary: ClassVar[str] = ""
    paper: ClassVar[str] = ""
    options: ClassVar[Mapping[str, Option]] = {}
    #: options for a quick look (``vexplain demo``): cheaper than the defaults where those take
    #: minutes on small images (fewer optimisation steps), validated like any options; {} for most
    quick_options: ClassVar[Mapping[str, Any]] = {}
    #: whether only class-index targets can be explained (the method reads the classifier's weight
    #: row of the class, or compares the class with others): a callable or Target object is an
    #: ``InvalidTarget``. None (the default): True exactly when ``requires`` has classifier weights
    class_targets_only: ClassVar[bool | None] = None

    @classmethod
    def classes_only_for(cls, options: Mapping[str, Any]) -> bool:
        """Whether a call with these (unresolved) options explains class-index targets only:
        ``class_targets_only``, its default (None) read off ``requires``, unless an option chooses
        another method (a base method) whose answer it then is."""
        return CLASSIFIER_WEIGHTS in cls.requires if cls.class_targets_only is None else bool(cls.class_targets_only)

    @classmethod
    def requires_for(cls, options: Mapping[str, Any]) -> tuple[str, ...]:
        """The capabilities a call with these (unresolved) options needs: ``requires`` unless an
        option changes them (a method over a chosen base method)."""
        return tuple(cls.requires)

    def attribute(
        self, adapter: ModelAdapter, inputs: torch.Tensor, targets: TargetRequest, options: dict[str, Any]
    ) -> Attribution:
        raise NotImplementedError(f"{type(self).__name__}.attribute")
