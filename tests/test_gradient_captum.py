"""The gradient family against Captum on a small seeded CNN: IntegratedGradients (every rule),
InputXGradient, GuidedBackprop, GuidedGradCam and NoiseTunnel with the very same noise, injected
into both (Captum's own draws are replaced, so no RNG has to match)."""
from __future__ import annotations

import numpy as np
import pytest
import torch

import vexplain as vx
from captum_fixtures import model, top, x  # noqa: F401  (fixtures)
from vexplain.core.registry import REGISTRY
from vexplain.plugins.smoothgrad import smooth

captum_attr = pytest.importorskip("captum.attr")
pytestmark = pytest.mark.filterwarnings("ignore:Input Tensor .* did not already require gradients", "ignore:Setting backward hooks")

ATOL = 1e-6  # attributions here are O(1e-2); the differences measured are O(1e-9)




def close(actual, reference, atol=ATOL):
    reference = reference.detach().numpy() if isinstance(reference, torch.Tensor) else reference
    assert np.abs(reference).max() > 100 * atol  # a comparison of near-zeros would prove nothing
    np.testing.assert_allclose(actual, reference, rtol=0, atol=atol)


@pytest.mark.parametrize("rule", ["gausslegendre", "riemann_trapezoid", "riemann_left", "riemann_right", "riemann_middle"])
@pytest.mark.parametrize("baseline", [0.0, 0.5])
def test_integrated_gradients(model, x, top, rule, baseline):
    exp = vx.explain(model, x, method="integrated_gradients", rule=rule, steps=20, baseline=baseline, batch_size=7)
    reference, delta = captum_attr.IntegratedGradients(model).attribute(
        torch.from_numpy(x), baselines=baseline, target=top, n_steps=20, method=rule, return_convergence_delta=True
    )
    close(exp.attributions, reference)
    close(exp.maps, reference.sum(dim=1))
    np.testing.assert_allclose(exp.options["completeness_gap"], delta.numpy(), rtol=0, atol=1e-5)


def test_integrated_gradients_explicit_targets(model, x):
    targets = [4, 0, 2]
    exp = vx.explain(model, x, method="integrated_gradients", targets=targets, steps=10)
    reference = captum_attr.IntegratedGradients(model).attribute(torch.from_numpy(x), target=torch.tensor(targets), n_steps=10)
    close(exp.attributions, reference)


def test_input_x_gradient(model, x, top):
    exp = vx.explain(model, x, method="input_x_gradient")
    reference = captum_attr.InputXGradient(model).attribute(torch.from_numpy(x), target=top)
    close(exp.attributions, reference, atol=1e-7)
    close(exp.maps, reference.sum(dim=1), atol=1e-7)


def test_guided_backprop(model, x, top):
    exp = vx.explain(model, x, method="guided_backprop")
    reference = captum_attr.GuidedBackprop(model).attribute(torch.from_numpy(x), target=top)
    close(exp.attributions, reference, atol=1e-7)
    close(exp.maps, reference.abs().amax(dim=1), atol=1e-7)
    plain = captum_attr.Saliency(model).attribute(torch.from_numpy(x), target=top, abs=False)
    assert (plain - reference).abs().max() > 1e-3  # guiding really changes the gradient here


@pytest.mark.parametrize("mode", ["bilinear", "nearest"])
@pytest.mark.parametrize("layer", [None, "features.2"])
def test_guided_gradcam(model, x, top, mode, layer):
    exp = vx.explain(model, x, method="guided_gradcam", interpolate=mode, layer=layer)
    captum_layer = model.features if layer is None else model.get_submodule(layer)
    reference = captum_attr.GuidedGradCam(model, captum_layer).attribute(torch.from_numpy(x), target=top, interpolate_mode=mode)
    close(exp.attributions, reference, atol=1e-7)


@pytest.mark.parametrize("variant, nt_type", [("smoothgrad", "smoothgrad"), ("squared", "smoothgrad_sq"), ("vargrad", "vargrad")])
@pytest.mark.parametrize(
    "base, base_options, captum_method, captum_options",
    [
        ("saliency", {}, "Saliency", {"abs": True}),
        ("input_x_gradient", {}, "InputXGradient", {}),
        ("integrated_gradients", {"steps": 5}, "IntegratedGradients", {"n_steps": 5}),
    ],
)
def test_noise_tunnel_with_injected_noise(monkeypatch, model, x, top, variant, nt_type, base, base_options, captum_method, captum_options):
    samples = 4
    draws = torch.from_numpy(np.random.default_rng(0).normal(0.0, 0.3, (len(x), samples, *x.shape[1:])).astype(np.float32))

    def same_noise(input, stdev, nt_samples_partition):
        assert nt_samples_partition == samples
        return input.repeat_interleave(samples, dim=0) + draws.reshape(-1, *x.shape[1:])  # image-major, as Captum orders samples

    monkeypatch.setattr(captum_attr.NoiseTunnel, "_add_noise_to_input", staticmethod(same_noise))
    tunnel = captum_attr.NoiseTunnel(getattr(captum_attr, captum_method)(model))
    reference = tunnel.attribute(torch.from_numpy(x), nt_type=nt_type, nt_samples=samples, stdevs=1.0, target=top, **captum_options)

    explainer = REGISTRY.explainer(base).obj
    options = vx.core.options.resolve_options(base, explainer.options, base_options)
    _, attributions, _ = smooth(explainer(), vx.adapt(model), torch.from_numpy(x), top, options, draws, torch.ones(len(x)), variant, 5)
    scale = float(reference.abs().max())  # squares and variances of O(1e-3) gradients are O(1e-6)
    print(f"{base} {variant}: max |diff| / max |reference| = {float((attributions - reference).abs().max()) / scale:.1e}")
    close(attributions.numpy() / scale, reference / scale, atol=1e-5)
