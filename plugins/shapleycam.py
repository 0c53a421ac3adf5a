"""ShapleyCAM (Cai et al., 2025): CAM weights from the gradient and a Hessian-vector product."""
from __future__ import annotations

from typing import Any

import torch

from vexplain.core.adapter import ACTIVATION_HESSIAN, ActivationResult, ModelAdapter
from vexplain.core.errors import InvalidTarget
from vexplain.core.explainer import Attribution
from vexplain.core.hookspecs import hookimpl
from vexplain.core.notices import warn
from vexplain.core.options import Option, choice
from vexplain.core.targets import TargetRequest

from .cam_base import CamExplainer, CamStep
from .finercam import _class_scores

LOGIT, REST = "logit", "rest"


def rest_score(scores: torch.Tensor, cls: int) -> torch.Tensor:
    """The residual softmax target-class score ``(N,)``: y_c − CE(y, c) = y_c + log softmax(y)_c."""
    return scores[:, cls] + torch.log_softmax(scores, dim=1)[:, cls]


class _HessianAdapter:
    """The adapter as the CAM base sees it: its ``activation_gradients`` is the adapter's
    ``activation_hessian``, whose result (with H·A) it keeps for the step."""

    def __init__(self, adapter: ModelAdapter):
        self._adapter = adapter
        self.result: ActivationResult | None = None

    def __getattr__(self, name: str) -> Any:
        return getattr(self._adapter, name)

    def activation_gradients(self, inputs: torch.Tensor, layer: str, targets: TargetRequest) -> ActivationResult:
        self.result = self._adapter.activation_hessian(inputs, layer, targets)
        return self.result


class ShapleyCam(CamExplainer):
    """ShapleyCAM: ReLU(Σ_k w_k A_k) with w_k = mean over pixels of (∂S/∂A − ½ H·A)_k, where H is
    the Hessian of the score S with respect to the layer's activations A and H·A its product with A
    (a double backward pass). The second-order Taylor expansion of S around A, read as a game whose
    players are the activations, gives these weights as the activations' Shapley values, so
    Grad-CAM is its first-order version. As pytorch-grad-cam's ``ShapleyCAM`` (mean of
    grads − 0.5·hvp, ReLU on the map).

    Option ``score``: "logit" (default: S = y_t, as every vexplain method and pytorch-grad-cam's
    default ``ClassifierOutputTarget``) or "rest" (the paper's residual softmax target-class score
    S = y_t − CE(y, t) = y_t + log softmax(y)_t, pytorch-grad-cam's ``ClassifierOutputReST``; it
    needs class indices). When the path from the layer to S is piecewise linear (ReLU, pooling and
    linear layers, as after the last block of a ResNet), H·A is zero, ShapleyCAM equals Grad-CAM
    and a warning says so; "rest" then adds the softmax's curvature. A callable target's own
    curvature counts too. Other options as the CAM base: ``layer``, ``aug_smooth``,
    ``eigen_smooth``, ``grid``/``prefix`` for token layers. Needs second derivatives (PyTorch).
    """

    name = "shapleycam"
    requires = (ACTIVATION_HESSIAN,)
    summary = "ReLU(Σ_k w_k A_k), w_k = mean over pixels of (∂S/∂A − ½ H·A)_k: second-order Taylor (Shapley) weights"
    paper = "Cai et al., CAMs as Shapley Value-based Explainers, arXiv 2501.06261, 2025"
    uses_gradients = True
    relu_output = True
    options = {**CamExplainer.options, "score": Option(LOGIT, choice(LOGIT, REST), "S = the target's logit, or 'rest': y_t + log softmax(y)_t (the paper's)")}

    def attribute(self, adapter: ModelAdapter, inputs: torch.Tensor, targets: TargetRequest, options: dict[str, Any]) -> Attribution:
        if options["score"] == LOGIT:
            return super().attribute(adapter, inputs, targets, options)
        if targets.score_function is not None:
            raise InvalidTarget("shapleycam with score='rest' builds its score from class scores: give targets as None, an int or one int per input, not a callable")
        scores = adapter.forward(inputs).to(inputs.device)
        main = targets.select(scores).to(inputs.device)
        maps = layer_maps = None
        notes: dict[str, Any] = {}
        for cls in sorted(set(main.tolist())):
            rows = (main == cls).nonzero()[:, 0]
            bound = adapter.with_score_function(lambda output, cls=cls: rest_score(_class_scores(output), cls))
            part = super().attribute(bound, inputs[rows], TargetRequest(None, len(rows)), options)
            if maps is None:
                maps = part.maps.new_zeros((len(inputs), *part.maps.shape[1:]))
                layer_maps = part.layer_maps.new_zeros((len(inputs), *part.layer_maps.shape[1:]))
            maps[rows], layer_maps[rows] = part.maps, part.layer_maps
            notes.update(part.notes)
        return Attribution(maps=maps, scores=scores, targets=main, layer_maps=layer_maps, notes=notes)

    def _step(self, adapter: ModelAdapter, inputs: torch.Tensor, targets: TargetRequest, options: dict[str, Any], layer: str) -> CamStep:
        hessian = _HessianAdapter(adapter)
        step = super()._step(hessian, inputs, targets, options, layer)
        products = step.to_map(hessian.result.hessian_products.to(inputs.device))
        if not bool(products.any()):
            hint = "; score='rest' adds the softmax's curvature" if options["score"] == LOGIT else ""
            warn(f"shapleycam: the score is piecewise linear in layer '{layer}' (H·A = 0), so ShapleyCAM equals Grad-CAM here{hint}")
        step.second_order = products  # read by ``weights``; CamStep has no field for it
        return step

    def weights(self, step: CamStep) -> torch.Tensor:
        return (step.gradients - 0.5 * step.second_order).mean(dim=(2, 3))


@hookimpl
def register_explainers(register) -> None:
    register(ShapleyCam)
