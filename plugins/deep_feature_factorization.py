"""Deep Feature Factorization (Collins, Achanta & Süsstrunk, ECCV 2018): concepts by NMF of a layer."""
from __future__ import annotations

from typing import Any

import torch

from vexplain.core.adapter import ACTIVATIONS, CLASSIFIER_WEIGHTS, ModelAdapter
from vexplain.core.errors import InvalidOption, UnsupportedCapability
from vexplain.core.explainer import Attribution, Explainer
from vexplain.core.hookspecs import hookimpl
from vexplain.core.options import MAX_SAMPLES, Option, integer, number
from vexplain.core.postprocess import upsample
from vexplain.core.targets import TargetRequest
from vexplain.core.token_grids import token_layout

from ._nmf import nmf
from .cam_base import GRID_OPTION, PREFIX_OPTION


def single_layer(value: Any) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str) or not value.strip() or "," in value:
        raise ValueError("must be one layer name (DFF factorises one layer)")
    return value.strip()


class DeepFeatureFactorization(Explainer):
    """Deep Feature Factorization: each image's layer activations A ``(C, h, w)``, as the matrix
    V ``(C, h·w)`` shifted per channel by its minimum m_c to be non-negative, factorised by NMF as
    V ≈ W H into k concepts: W ``(C, k)`` the concepts' channel vectors, H ``(k, h·w)`` where each
    concept is present. A concept's class scores are the classifier applied to its vector,
    s_j = U (W_j + m) with U the ``(K, C)`` weights after global pooling (``classifier_weights``,
    without the bias, which adds the same constant to every concept's score of a class).

    It is not a per-class map. The Explanation holds:
    ``maps`` ``(N, H, W)`` / ``layer_maps`` ``(N, h, w)``: the map H_j* of the concept j* scoring
    highest for the image's target (raw NMF values, ≥ 0, upsampled bilinearly), j* per image in
    ``exp.options["concepts_chosen"]``; ``exp.extras["concept_maps"]`` ``(N, k, H, W)`` every concept's
    map (``concept_layer_maps`` ``(N, k, h, w)`` at the layer's resolution), ``exp.extras["concept_scores"]`` ``(N, k, K)`` and ``exp.extras["concepts"]`` ``(N, k, C)``
    (W_j + m). NMF runs per image (``plugins/_nmf.py``: scikit-learn's coordinate descent and random
    initialisation, float64), so batching changes nothing.

    pytorch-grad-cam's ``DeepFeatureFactorization`` factorises the whole batch as one matrix
    (concepts shared by the images of a call, so an image's result depends on its batch); for one
    image it computes this factorisation (``sklearn.decomposition.NMF(init="random",
    random_state=0)``), min-max scales each concept map before resizing it, and returns the
    classifier's scores with the bias. Options: ``layer`` (one layer; default the last feature map
    before global pooling; token grids as the CAM family, with ``grid``/``prefix``), ``concepts``
    k = 5 (pytorch-grad-cam's ``dff`` and ``run_dff_on_image`` default), ``max_iter`` = 200,
    ``tol`` = 1e-4, ``seed`` = 0 (scikit-learn's defaults and pytorch-grad-cam's seed). Forward
    passes only: runs on ONNX models.
    """

    name = "deep_feature_factorization"
    aliases = ("dff",)
    requires = (ACTIVATIONS, CLASSIFIER_WEIGHTS)
    summary = "NMF of the layer's activations into k concepts; map = the concept whose classifier score for the target is highest"
    paper = "Collins, Achanta & Süsstrunk, Deep Feature Factorization for Concept Discovery, ECCV 2018"
    options = {
        "layer": Option(None, single_layer, "layer name (see `vexplain layers MODEL`); default the last feature map before global pooling"),
        "grid": GRID_OPTION,
        "prefix": PREFIX_OPTION,
        "concepts": Option(5, integer(minimum=1), "number k of NMF concepts"),
        "max_iter": Option(200, integer(minimum=1, maximum=MAX_SAMPLES), "most coordinate-descent iterations of the NMF"),
        "tol": Option(1e-4, number(minimum=0), "stop when the projected gradient falls to tol times its first value"),
        "seed": Option(0, integer(minimum=0, maximum=2**32 - 1), "seed of the NMF's random initialisation (NumPy RandomState)"),
    }

    def attribute(self, adapter: ModelAdapter, inputs: torch.Tensor, targets: TargetRequest, options: dict[str, Any]) -> Attribution:
        layer = options["layer"] or adapter.default_cam_layer(inputs[:1])
        if options["layer"] is not None:
            adapter.check_layer(layer)
        result = adapter.activations(inputs, layer)
        activations = result.activations.to(inputs.device)
        layout = token_layout(tuple(activations.shape), tuple(inputs.shape[2:]), adapter.patch_stride(), layer, options.get("grid"), options.get("prefix"))
        native, activations = activations, layout.to_map(activations)
        n, c, h, w = activations.shape
        k = options["concepts"]
        if h * w < 2:
            raise InvalidOption(f"layer '{layer}' outputs shape {tuple(native.shape)}; DFF needs a feature map or token grid with more than one position")
        if k > c:
            raise InvalidOption(f"option 'concepts' of method 'deep_feature_factorization' is {k}, more than the {c} channels of layer '{layer}'; give at most {c}")
        try:  # without a sample an adapter that knows its classifier needs no extra forward pass
            weights = adapter.classifier_weights()
        except UnsupportedCapability:
            weights = adapter.classifier_weights(inputs[:1])
        weights = weights.to(inputs.device).double()
        if weights.shape[1] != c:
            raise InvalidOption(f"layer '{layer}' has {c} channels but the classifier takes {weights.shape[1]}; pick the layer whose pooled output feeds the classifier")
        matrix = activations.reshape(n, c, h * w).double()
        offset = matrix.amin(dim=2, keepdim=True)
        factors, presence, iterations = nmf(matrix - offset, k, options["max_iter"], options["tol"], options["seed"])
        concepts = (factors.to(inputs.device) + offset).transpose(1, 2)  # (N, k, C)
        concept_scores = concepts @ weights.T  # (N, k, K)
        scores = result.scores.to(inputs.device)
        chosen = targets.select(scores).to(inputs.device)
        best = concept_scores.gather(2, chosen[:, None, None].expand(n, k, 1))[:, :, 0].argmax(dim=1)
        layer_concepts = presence.to(inputs.device).reshape(n, k, h, w).float()
        concept_maps = upsample(layer_concepts.reshape(n * k, h, w), tuple(inputs.shape[2:])).reshape(n, k, *inputs.shape[2:])
        rows = torch.arange(n, device=inputs.device)
        notes = {"layer": layer, "concepts_chosen": best.tolist(), "nmf_iterations": iterations.tolist(), **layout.notes()}
        return Attribution(
            maps=concept_maps[rows, best], scores=scores, targets=chosen, layer_maps=layer_concepts[rows, best], notes=notes,
            extras={"concept_maps": concept_maps, "concept_layer_maps": layer_concepts, "concept_scores": concept_scores.float(), "concepts": concepts.float()},
        )


@hookimpl
def register_explainers(register) -> None:
    register(DeepFeatureFactorization)
