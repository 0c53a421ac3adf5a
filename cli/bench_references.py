"""The same methods in Captum and pytorch-grad-cam, for ``vexplain bench``'s reference columns.

Each entry maps a vexplain method name to a builder ``(model, layer, inputs, targets, options) ->
call``; ``options`` are the vexplain method's resolved options, so both sides compute the same
thing (window and stride, steps, samples and noise). A library that is not importable simply has
no column; a method without a counterpart there has none either.
"""
from __future__ import annotations

import importlib.util
from typing import Any, Callable

import torch

Builder = Callable[[torch.nn.Module, torch.nn.Module | None, torch.Tensor, list[int], dict[str, Any]], Callable[[], Any]]


def available(library: str) -> bool:
    return importlib.util.find_spec(library) is not None


def _captum(name: str, model, layer, inputs, targets, options) -> Callable[[], Any]:
    from captum import attr

    target = torch.tensor(targets)
    if name == "saliency":
        method = attr.Saliency(model)
        return lambda: method.attribute(inputs, target=target, abs=True)
    if name == "input_x_gradient":
        method = attr.InputXGradient(model)
        return lambda: method.attribute(inputs, target=target)
    if name == "integrated_gradients":
        method = attr.IntegratedGradients(model)
        return lambda: method.attribute(inputs, baselines=options.get("baseline", 0.0), target=target, n_steps=options.get("steps", 50), internal_batch_size=options.get("batch_size") or 64)
    if name == "smoothgrad":
        method = attr.NoiseTunnel(attr.Saliency(model))
        return lambda: method.attribute(inputs, nt_type="smoothgrad", nt_samples=options.get("samples", 25), stdevs=options.get("noise", 0.15), target=target, abs=True)
    if name == "guided_backprop":
        method = attr.GuidedBackprop(model)
        return lambda: method.attribute(inputs, target=target)
    if name == "gradcam":
        method = attr.LayerGradCam(model, layer)
        return lambda: method.attribute(inputs, target=target, relu_attributions=True)
    if name == "guided_gradcam":
        method = attr.GuidedGradCam(model, layer)
        return lambda: method.attribute(inputs, target=target)
    if name == "occlusion":
        height, width = inputs.shape[2:]
        window = options.get("window") or (max(1, min(height, width) // 8),) * 2
        stride = options.get("stride") or (max(1, window[0] // 2), max(1, window[1] // 2))
        channels = inputs.shape[1]
        method = attr.Occlusion(model)
        return lambda: method.attribute(inputs, sliding_window_shapes=(channels, *window), strides=(channels, *stride), baselines=options.get("baseline", 0.0), target=target, perturbations_per_eval=16)
    raise KeyError(name)


CAPTUM_METHODS = ("saliency", "input_x_gradient", "integrated_gradients", "smoothgrad", "guided_backprop", "gradcam", "guided_gradcam", "occlusion")

#: vexplain name → pytorch-grad-cam class name
GRAD_CAM_CLASSES = {
    "gradcam": "GradCAM",
    "gradcam_plusplus": "GradCAMPlusPlus",
    "hirescam": "HiResCAM",
    "xgradcam": "XGradCAM",
    "layercam": "LayerCAM",
    "eigencam": "EigenCAM",
    "scorecam": "ScoreCAM",
    "ablationcam": "AblationCAM",
    "eigengradcam": "EigenGradCAM",
    "gradcam_elementwise": "GradCAMElementWise",
    "kpcacam": "KPCA_CAM",
    "shapleycam": "ShapleyCAM",
}


def _grad_cam(name: str, model, layer, inputs, targets, options) -> Callable[[], Any]:
    import pytorch_grad_cam
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

    method = getattr(pytorch_grad_cam, GRAD_CAM_CLASSES[name])(model=model, target_layers=[layer])
    wanted = [ClassifierOutputTarget(int(t)) for t in targets]
    return lambda: method(input_tensor=inputs, targets=wanted)


#: column name → (importable library, the vexplain methods it has, builder)
LIBRARIES: dict[str, tuple[str, tuple[str, ...], Callable[..., Callable[[], Any]]]] = {
    "captum": ("captum", CAPTUM_METHODS, _captum),
    "pytorch-grad-cam": ("pytorch_grad_cam", tuple(GRAD_CAM_CLASSES), _grad_cam),
}


def reference_calls(method: str, model: torch.nn.Module, layer: torch.nn.Module | None, inputs: torch.Tensor, targets: list[int], options: dict[str, Any]) -> dict[str, Callable[[], Any]]:
    """Column → a call computing ``method`` with that library, for each importable library that has it."""
    calls = {}
    for column, (library, names, builder) in LIBRARIES.items():
        if method in names and available(library):
            calls[column] = builder(method, model, layer, inputs, targets, options)
    return calls
