"""Agreement with Captum (the reference users know) on a small seeded CNN, as DESIGN.md states it."""
from __future__ import annotations

import numpy as np
import pytest
import torch

import vexplain as vx
from captum_fixtures import SIZE, model, top, x  # noqa: F401  (fixtures)

captum_attr = pytest.importorskip("captum.attr")
pytestmark = pytest.mark.filterwarnings("ignore:Input Tensor .* did not already require gradients")





def test_model_is_not_degenerate(model, x, top):
    # the checks below mean something only if the classes and the maps differ between inputs
    assert len(set(top.tolist())) > 1
    exp = vx.explain(model, x, method="saliency")
    assert exp.maps.std() > 0 and not np.allclose(exp.maps[0], exp.maps[1])


@pytest.mark.parametrize("targets", [None, [4, 0, 2]])
def test_saliency_matches_captum(model, x, top, targets):
    exp = vx.explain(model, x, method="saliency", targets=targets)
    expected_targets = top if targets is None else torch.tensor(targets)
    assert exp.targets.tolist() == expected_targets.tolist()
    reference = captum_attr.Saliency(model).attribute(torch.from_numpy(x), target=expected_targets, abs=True)
    np.testing.assert_allclose(exp.attributions, reference.numpy(), rtol=0, atol=1e-6)
    np.testing.assert_allclose(exp.maps, reference.amax(dim=1).numpy(), rtol=0, atol=1e-6)


def test_signed_saliency_matches_captum(model, x, top):
    exp = vx.explain(model, x, method="saliency", abs=False, reduce="sum")
    reference = captum_attr.Saliency(model).attribute(torch.from_numpy(x), target=top, abs=False)
    np.testing.assert_allclose(exp.maps, reference.sum(dim=1).numpy(), rtol=0, atol=1e-6)


@pytest.mark.parametrize(
    "window, stride, baseline, engine",
    [
        ((8, 8), (4, 4), 0.0, "auto"),  # (32 - 8) % 4 == 0: windows tile exactly
        ((6, 4), (2, 4), 0.5, "torch"),  # non-square window, per-axis strides, non-zero baseline
        ((4, 4), (4, 4), -1.0, "onnx"),  # disjoint windows
        ((5, 7), (3, 5), 0.25, "incremental"),  # odd sizes: patches grow unevenly and reach the edges
    ],
)
def test_occlusion_matches_captum(model, x, top, window, stride, baseline, engine):
    exp = vx.explain(model, x, method="occlusion", window=window, stride=stride, baseline=baseline, engine=engine)
    assert exp.options["engine"] == ("incremental" if engine == "auto" else engine) and "engine_fallback" not in exp.options
    reference = captum_attr.Occlusion(model).attribute(
        torch.from_numpy(x),
        sliding_window_shapes=(3, *window),
        strides=(3, *stride),
        target=top,
        baselines=baseline,
        perturbations_per_eval=64,
    )
    # all channels are occluded together, so Captum's channels are identical
    assert torch.equal(reference[:, 0], reference[:, 1])
    assert np.abs(reference[:, 0].numpy()).max() > 1e-3
    np.testing.assert_allclose(exp.maps, reference[:, 0].numpy(), rtol=0, atol=1e-4)


@pytest.mark.parametrize("layer", [None, "features.1"])
def test_gradcam_matches_captum_layer_gradcam(model, x, top, layer):
    captum_layer = model.features if layer is None else model.get_submodule(layer)
    exp = vx.explain(model, x, method="gradcam", layer=layer)
    assert exp.options["layer"] == (layer or "features")
    reference = captum_attr.LayerGradCam(model, captum_layer).attribute(
        torch.from_numpy(x), target=top, relu_attributions=True
    )
    reference = reference.detach()
    assert exp.layer_maps.shape == tuple(reference[:, 0].shape)
    assert reference.abs().max() > 0
    np.testing.assert_allclose(exp.layer_maps, reference[:, 0].numpy(), rtol=0, atol=1e-6)
    # upsampled the way Captum's LayerAttribution.interpolate does (bilinear, align_corners=False)
    upsampled = captum_attr.LayerAttribution.interpolate(reference, (SIZE, SIZE), "bilinear")
    np.testing.assert_allclose(exp.maps, upsampled[:, 0].numpy(), rtol=0, atol=1e-6)


def test_gradcam_with_explicit_targets_matches_captum(model, x):
    targets = np.array([1, 3, 3])
    exp = vx.explain(model, x, method="gradcam", targets=targets)
    reference = captum_attr.LayerGradCam(model, model.features).attribute(
        torch.from_numpy(x), target=torch.from_numpy(targets), relu_attributions=True
    )
    np.testing.assert_allclose(exp.layer_maps, reference[:, 0].detach().numpy(), rtol=0, atol=1e-6)


def test_cam_equals_unrelued_gradcam_times_area(model, x, top):
    # with GAP -> Linear after the layer, dy/dA_k = W[t,k] / (h w), so CAM = (h w) x Captum's
    # LayerGradCam without ReLU: ties CAM to an independent implementation.
    exp = vx.explain(model, x, method="cam")
    reference = captum_attr.LayerGradCam(model, model.features).attribute(
        torch.from_numpy(x), target=top, relu_attributions=False
    )[:, 0].detach()
    area = reference.shape[-1] * reference.shape[-2]
    assert (exp.layer_maps < 0).any()
    np.testing.assert_allclose(exp.layer_maps, reference.numpy() * area, rtol=0, atol=1e-5)
