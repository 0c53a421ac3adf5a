"""Captum's attribution methods against Captum itself: DeepLift, DeepLiftShap, Deconvolution,
GradientShap (the same seeded draws), feature ablation, Shapley value sampling, KernelSHAP and
LIME (the same feature mask and seed). Feature methods run on both engines (torch, ONNX Runtime)."""
from __future__ import annotations

import copy

import numpy as np
import pytest
import torch
from torch import nn

import vexplain as vx
from captum_fixtures import SIZE, model, top, x  # noqa: F401  (fixtures)
from vexplain.plugins._superpixels import grid_labels

captum_attr = pytest.importorskip("captum.attr")
pytestmark = pytest.mark.filterwarnings(
    "ignore:Input Tensor .* did not already require gradients", "ignore:Setting backward hooks", "ignore:Setting forward, backward hooks"
)

ATOL = 1e-6  # gradient attributions here are O(1e-2); differences measured are O(1e-9)
FEATURE_ATOL = 1e-5  # feature scores are O(0.1); ONNX Runtime and torch differ by O(1e-7)


def close(actual, reference, atol=ATOL):
    reference = reference.detach().numpy() if isinstance(reference, torch.Tensor) else reference
    assert np.abs(reference).max() > 100 * atol  # a comparison of near-zeros would prove nothing
    np.testing.assert_allclose(actual, reference, rtol=0, atol=atol)


class PoolNet(nn.Module):
    """conv → sigmoid → conv 1×1 → max pool 2×2 (non-overlapping) → conv → tanh → conv → ReLU →
    GAP → Linear: every nonlinearity Captum's DeepLift has a rule for, each after a linear layer
    (see ``test_deeplift_keeps_summation_to_delta_where_a_nonlinearity_feeds_max_pooling``)."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(7)
        self.features = nn.Sequential(
            nn.Conv2d(3, 6, 3, padding=1), nn.Sigmoid(), nn.Conv2d(6, 6, 1), nn.MaxPool2d(2),
            nn.Conv2d(6, 8, 3, padding=1), nn.Tanh(), nn.Conv2d(8, 8, 3, padding=1), nn.ReLU(),
        )
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(8, 4)
        with torch.no_grad():
            self.fc.weight.mul_(8.0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(torch.flatten(self.pool(self.features(x)), 1))


class Residual(nn.Module):
    """A ResNet basic block that calls one ReLU module twice (``shared=True``, as torchvision's
    does: Captum's DeepLift refuses it) or two separate ones."""

    def __init__(self, shared: bool) -> None:
        super().__init__()
        torch.manual_seed(3)
        self.conv1, self.conv2 = nn.Conv2d(3, 3, 3, padding=1), nn.Conv2d(3, 3, 3, padding=1)
        self.relu = nn.ReLU(inplace=True)
        self.relu2 = self.relu if shared else nn.ReLU(inplace=True)
        self.fc = nn.Linear(3, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.conv2(self.relu(self.conv1(x)))
        return self.fc(self.relu2(out + x).mean(dim=(2, 3)))


@pytest.fixture(scope="module")
def mask():
    return grid_labels((SIZE, SIZE), 4, torch.device("cpu"))[None, None]


@pytest.fixture(scope="module")
def background():
    return torch.randn((5, 3, SIZE, SIZE), generator=torch.Generator().manual_seed(11))


@pytest.mark.parametrize("baseline", [0.0, 0.3])
def test_deeplift(model, x, top, baseline):
    exp = vx.explain(model, x, method="deeplift", baseline=baseline, batch_size=2)
    reference, delta = captum_attr.DeepLift(model).attribute(torch.from_numpy(x), baselines=baseline, target=top, return_convergence_delta=True)
    close(exp.attributions, reference)
    close(exp.maps, reference.sum(dim=1))
    np.testing.assert_allclose(exp.options["completeness_gap"], delta.detach().numpy(), rtol=0, atol=1e-5)
    assert max(abs(g) for g in exp.options["completeness_gap"]) < 1e-4  # summation to delta


def test_deeplift_rules_for_sigmoid_tanh_and_max_pooling(x):
    net = PoolNet().eval()
    inputs = torch.from_numpy(x)
    target = net(inputs).argmax(1)
    exp = vx.explain(net, x, method="deeplift", baseline=0.1)
    close(exp.attributions, captum_attr.DeepLift(net).attribute(inputs, baselines=0.1, target=target))
    assert max(abs(g) for g in exp.options["completeness_gap"]) < 1e-4


def test_deeplift_keeps_summation_to_delta_where_a_nonlinearity_feeds_max_pooling(x):
    """Captum's module hooks lose it when a ReLU module feeds a MaxPool module directly (its own
    convergence delta is O(1e-3) there); the rescale rules composed per call keep it."""
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2), nn.Conv2d(4, 4, 3, padding=1), nn.Flatten(), nn.Linear(4 * 16 * 16, 3)).eval()
    exp = vx.explain(net, x, method="deeplift", baseline=0.1, targets=0)
    _, delta = captum_attr.DeepLift(net).attribute(torch.from_numpy(x), baselines=0.1, target=0, return_convergence_delta=True)
    assert delta.abs().max() > 1e-4
    assert max(abs(g) for g in exp.options["completeness_gap"]) < 1e-5


def test_deeplift_handles_a_relu_module_called_twice(x):
    shared, separate = Residual(shared=True).eval(), Residual(shared=False).eval()
    inputs = torch.from_numpy(x)
    target = separate(inputs).argmax(1)
    with pytest.raises(RuntimeError, match="used more than once"):
        captum_attr.DeepLift(copy.deepcopy(shared)).attribute(inputs, target=target)
    exp = vx.explain(shared, x, method="deeplift", targets=target.tolist())
    close(exp.attributions, captum_attr.DeepLift(separate).attribute(inputs, target=target))


def test_deeplift_shap(model, x, top, background):
    exp = vx.explain(model, x, method="deeplift_shap", baselines=background.numpy(), batch_size=4)
    reference, delta = captum_attr.DeepLiftShap(model).attribute(torch.from_numpy(x), baselines=background, target=top, return_convergence_delta=True)
    close(exp.attributions, reference)
    close(exp.maps, reference.sum(dim=1))
    assert exp.options["references"] == 5
    assert max(abs(g) for g in exp.options["completeness_gap"]) < 1e-4


def test_deconvolution(model, x, top):
    exp = vx.explain(model, x, method="deconvolution")
    reference = captum_attr.Deconvolution(model).attribute(torch.from_numpy(x), target=top)
    close(exp.attributions, reference)
    close(exp.maps, reference.abs().amax(dim=1))


@pytest.mark.parametrize("stdev", [0.0, 0.2])
def test_gradient_shap_draws_equal_captums(model, x, top, background, stdev):
    """vexplain gives every image the draws Captum makes for a one-image call seeded the same."""
    exp = vx.explain(model, x, method="gradient_shap", baselines=background, samples=9, stdev=stdev, seed=4, batch_size=5)
    for i in range(len(x)):
        np.random.seed(4)
        torch.manual_seed(4)
        reference = captum_attr.GradientShap(model).attribute(
            torch.from_numpy(x[i : i + 1]), baselines=background, n_samples=9, stdevs=stdev, target=top[i : i + 1]
        )
        close(exp.attributions[i : i + 1], reference)


@pytest.mark.parametrize("engine", ["torch", "onnx"])
def test_feature_ablation(model, x, top, mask, engine):
    exp = vx.explain(model, x, method="feature_ablation", cells=4, baseline=0.2, engine=engine)
    reference = captum_attr.FeatureAblation(model).attribute(torch.from_numpy(x), target=top, feature_mask=mask, baselines=0.2)
    assert exp.options["engine"] == engine and exp.options["features"] == [16, 16, 16]
    close(exp.maps, reference[:, 0], FEATURE_ATOL)


@pytest.mark.parametrize("engine", ["torch", "onnx"])
def test_shapley_sampling(model, x, top, mask, engine):
    exp = vx.explain(model, x, method="shapley_sampling", cells=4, samples=6, seed=2, engine=engine)
    torch.manual_seed(2)
    reference = captum_attr.ShapleyValueSampling(model).attribute(torch.from_numpy(x), target=top, feature_mask=mask, n_samples=6)
    close(exp.maps, reference[:, 0], FEATURE_ATOL)


@pytest.mark.parametrize("engine", ["torch", "onnx"])
def test_kernel_shap(model, x, top, mask, engine):
    pytest.importorskip("sklearn")  # Captum's KernelShap fits with scikit-learn
    exp = vx.explain(model, x, method="kernel_shap", cells=4, samples=80, seed=5, engine=engine)
    for i in range(len(x)):
        torch.manual_seed(5)
        reference = captum_attr.KernelShap(model).attribute(torch.from_numpy(x[i : i + 1]), target=top[i : i + 1], feature_mask=mask, n_samples=80)
        close(exp.maps[i : i + 1], reference[:, 0], FEATURE_ATOL)


@pytest.mark.parametrize("engine", ["torch", "onnx"])
def test_lime(model, x, top, mask, engine):
    pytest.importorskip("sklearn")
    from captum._utils.models.linear_model import SkLearnLasso

    exp = vx.explain(model, x, method="lime", cells=4, samples=80, seed=6, engine=engine)
    for i in range(len(x)):
        torch.manual_seed(6)
        lime = captum_attr.Lime(model, interpretable_model=SkLearnLasso(alpha=0.01, tol=1e-12, max_iter=1_000_000))
        reference = lime.attribute(torch.from_numpy(x[i : i + 1]), target=top[i : i + 1], feature_mask=mask, n_samples=80)
        close(exp.maps[i : i + 1], reference[:, 0], FEATURE_ATOL)
