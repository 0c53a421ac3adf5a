"""Finer-CAM (Zhang et al., CVPR 2025): Grad-CAM of the target's lead over its most similar classes."""
from __future__ import annotations

from typing import Any

import torch

from vexplain.core.errors import InvalidTarget
from vexplain.core.explainer import Attribution
from vexplain.core.hookspecs import hookimpl
from vexplain.core.notices import warn
from vexplain.core.options import Option, integer, number
from vexplain.core.targets import TargetRequest

from .gradcam import GradCam

#: pytorch-grad-cam's guard against an all-zero weight sum
EPSILON = 1e-9


def reference_classes(scores: torch.Tensor, main: int, references: int) -> torch.Tensor:
    """``(N, R)``: for each row of ``scores`` ``(N, K)``, the ``R`` classes other than ``main`` whose
    scores are closest to the score of ``main`` (smallest |y_j − y_main| first; ties by index)."""
    distance = (scores - scores[:, main : main + 1]).abs()
    distance[:, main] = float("inf")
    return distance.argsort(dim=1, stable=True)[:, :references]


def finer_score(scores: torch.Tensor, main: int, references: int, alpha: float) -> torch.Tensor:
    """``(N,)``: S = Σ_d p_d (y_main − α y_d) / (Σ_d p_d + 1e-9) over the reference classes d
    (``reference_classes``), p = softmax(y) (differentiated through, as pytorch-grad-cam's
    ``FinerWeightedTarget``)."""
    chosen = reference_classes(scores.detach(), main, references)
    weights = torch.softmax(scores, dim=1).gather(1, chosen)
    lead = scores[:, main : main + 1] - alpha * scores.gather(1, chosen)
    return (weights * lead).sum(dim=1) / (weights.sum(dim=1) + EPSILON)


class FinerCam(GradCam):
    """Finer-CAM: Grad-CAM (α_k = mean over pixels of ∂S/∂A_k, map ReLU(Σ_k α_k A_k)) of the score
    S = Σ_d p_d (y_t − α y_d) / Σ_d p_d (``finer_score``) instead of y_t, where d runs over the
    ``references`` classes whose scores are closest to y_t and p = softmax(y). Explaining the
    target's lead over the classes the model confuses it with suppresses the evidence they share
    (the paper's y^c − γ y^d, aggregated over several references).

    As pytorch-grad-cam's ``FinerCAM`` (base ``GradCAM``, ``targets=None``, ``target_idx`` = the
    target): references = its ``comparison_categories`` (1, 2, 3), i.e. the 2nd to 4th entries of
    the classes sorted by |y_j − y_t| (the 1st is the target itself), and the softmax weights carry
    gradient. The authors' paper states the single-reference y^c − γ y^d and that several references
    may be aggregated; the probability weighting and its gradient are pytorch-grad-cam's (the
    authors' own contribution there), not checked against a formula in the paper. Differences:
    ties in |y_j − y_t| are broken by class index (NumPy's argsort in pytorch-grad-cam leaves them
    unspecified); the target is excluded by index, not by rank.

    Options: ``layer`` (default: the last feature map before global pooling), ``alpha`` = 1
    (comparison strength, pytorch-grad-cam's default; the paper's γ), ``references`` = 3 (fewer
    when the model has fewer other classes, with a warning), ``eigen_smooth``. No ``aug_smooth``:
    pytorch-grad-cam's ``FinerCAM`` has none, and the reference classes of a flipped or rescaled
    input are not those of the original. Targets: None, an int or one per input (a callable target
    is refused: Finer-CAM builds its own score from class scores). Needs gradients (PyTorch).
    ``exp.options["reference_classes"]`` lists each image's reference classes.
    """

    name = "finercam"
    class_targets_only = True
    summary = "Grad-CAM of S = Σ_d p_d (y_t − α y_d) / Σ_d p_d over the classes d scored closest to the target"
    paper = "Zhang et al., Finer-CAM: Spotting the Difference Reveals Finer Details for Visual Explanation, CVPR 2025"
    options = {
        **{name: option for name, option in GradCam.options.items() if name != "aug_smooth"},
        "alpha": Option(1.0, number(minimum=0), "comparison strength α (the paper's γ): S uses y_t − α y_d"),
        "references": Option(3, integer(minimum=1), "how many of the classes scored closest to the target are compared with it"),
    }

    def attribute(self, adapter, inputs: torch.Tensor, targets: TargetRequest, options: dict[str, Any]) -> Attribution:
        if targets.score_function is not None:
            raise InvalidTarget("finercam needs class indices (it builds its own score from the class scores): give targets as None, an int or one int per input, not a callable")
        scores = adapter.forward(inputs).to(inputs.device)
        if scores.dim() != 2 or scores.shape[1] < 2:
            raise InvalidTarget(f"finercam compares the target with other classes; the model's scores have shape {tuple(scores.shape)}, it needs (N, K) with K >= 2")
        main = targets.select(scores).to(inputs.device)
        references = min(options["references"], scores.shape[1] - 1)
        if references < options["references"]:
            warn(f"finercam: references={options['references']} but the model has only {scores.shape[1] - 1} other classes; compared with {references}")
        maps = layer_maps = None
        notes: dict[str, Any] = {}
        chosen = torch.empty(len(inputs), references, dtype=torch.int64)
        for cls in sorted(set(main.tolist())):
            rows = (main == cls).nonzero()[:, 0]
            bound = adapter.with_score_function(lambda output, cls=cls: finer_score(_class_scores(output), cls, references, options["alpha"]))
            part = self._attribute_once(bound, inputs[rows], TargetRequest(None, len(rows)), options)
            if maps is None:
                maps = part.maps.new_zeros((len(inputs), *part.maps.shape[1:]))
                layer_maps = part.layer_maps.new_zeros((len(inputs), *part.layer_maps.shape[1:]))
            maps[rows], layer_maps[rows] = part.maps, part.layer_maps
            chosen[rows.cpu()] = reference_classes(scores[rows], cls, references).cpu()
            notes.update(part.notes)
        notes["reference_classes"] = chosen.tolist()
        return Attribution(maps=maps, scores=scores, targets=main, layer_maps=layer_maps, notes=notes)


def _class_scores(output: Any) -> torch.Tensor:
    """The class scores in the model's raw ``output``: the tensor itself, or the one obvious entry
    of a structured output (a Hugging Face object's or a dict's ``logits``)."""
    if not isinstance(output, torch.Tensor):
        logits = output.get("logits") if isinstance(output, dict) else getattr(output, "logits", None)
        output = logits if isinstance(logits, torch.Tensor) else output
    if not isinstance(output, torch.Tensor) or output.dim() != 2:
        shape = tuple(output.shape) if isinstance(output, torch.Tensor) else type(output).__name__
        raise InvalidTarget(f"finercam needs the model to output class scores (N, K); it outputs {shape}")
    return output


@hookimpl
def register_explainers(register) -> None:
    register(FinerCam)
