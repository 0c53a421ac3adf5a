"""Class activation maps (Zhou et al., 2016)."""
from __future__ import annotations

import torch

from vexplain.core.adapter import ACTIVATIONS, CLASSIFIER_WEIGHTS
from vexplain.core.errors import InvalidOption
from vexplain.core.hookspecs import hookimpl

from .cam_base import CamExplainer, CamStep


class Cam(CamExplainer):
    """CAM = Σ_k w_{t,k} A_k, where A is the feature map entering global average pooling and w the
    classifier's weights after it. Raw: no ReLU, no normalisation (the bias is left out, since it
    is constant over the image). Needs a conv → global average pooling → linear head."""

    name = "cam"
    aliases = ('class_activation_map',)
    requires = (ACTIVATIONS, CLASSIFIER_WEIGHTS)
    summary = "Σ_k w_{t,k} A_k: last conv feature maps weighted by the classifier's weights for the class"
    paper = "Zhou et al., Learning Deep Features for Discriminative Localization, CVPR 2016"

    def weights(self, step: CamStep) -> torch.Tensor:
        weights = step.adapter.classifier_weights(step.inputs[:1]).to(step.activations.device, step.activations.dtype)
        if weights.shape[1] != step.activations.shape[1]:
            raise InvalidOption(
                f"CAM needs the layer that feeds global pooling: layer '{step.layer}' has {step.activations.shape[1]} channels "
                f"but the classifier takes {weights.shape[1]}; leave layer unset or pick that layer"
            )
        return weights[step.targets]


@hookimpl
def register_explainers(register) -> None:
    register(Cam)
