"""Feature ablation over superpixels (Captum's ``FeatureAblation`` with a feature mask)."""
from __future__ import annotations

from typing import Any

import torch

from vexplain.core.adapter import FORWARD, ModelAdapter
from vexplain.core.explainer import Attribution, Explainer
from vexplain.core.hookspecs import hookimpl
from vexplain.core.targets import TargetRequest, gather_scores

from ._features import CoalitionScorer, feature_options, notes_of, painted, prepared
from ._superpixels import feature_labels


class FeatureAblation(Explainer):
    """φ_f = y_t(x) − y_t(x with feature f's pixels set to ``baseline``), one forward pass per
    feature; every pixel of feature f gets φ_f.

    Features are superpixels (see ``_superpixels``). Options (defaults): ``segments="grid"``,
    ``cells=8`` (64 grid cells), ``baseline=0.0`` (preprocessed units: the data mean),
    ``batch_size`` derived from ``memory_mb=1024``, ``engine="auto"`` (ONNX Runtime for a PyTorch
    model on the CPU). Forward passes only, so it runs on ONNX models. Equals Captum's
    ``FeatureAblation`` with the same feature mask and baseline. Occlusion with a window equal to
    the cell and stride equal to the window is the grid case.
    """

    name = "feature_ablation"
    requires = (FORWARD,)
    summary = "y_t(x) − y_t(x with superpixel f set to a baseline), painted on f: the score each superpixel holds up alone"
    paper = "Zeiler & Fergus, ECCV 2014 (occlusion); Kokhlikyan et al., Captum, arXiv:2009.07896, 2020"
    options = feature_options()

    def attribute(self, adapter: ModelAdapter, inputs: torch.Tensor, targets: TargetRequest, options: dict[str, Any]) -> Attribution:
        scorer, scores, chosen, batch_size = prepared(adapter, inputs, targets, options, self.name, options["cells"] ** 2)
        labels = feature_labels(inputs, options)
        base = gather_scores(scores, chosen).double()
        values = []
        for n, (image, label) in enumerate(zip(inputs, labels)):
            coalitions = CoalitionScorer(scorer, image, label, options["baseline"], chosen[n], batch_size)
            features = coalitions.features
            values.append(base[n] - coalitions.run(1.0 - torch.eye(features, device=inputs.device)))
        return Attribution(maps=painted(values, labels), scores=scores, targets=chosen, notes=notes_of(scorer, batch_size, labels))


@hookimpl
def register_explainers(register) -> None:
    register(FeatureAblation)
