"""LRP: hand-computed relevance per rule on a fixed-weight MLP, conservation, agreement with Zennit's
composites and Captum's LRP, batch invariance, options and model safety."""
from __future__ import annotations

import copy
import threading

import numpy as np
import pytest
import torch
import torch.nn as nn

import vexplain as vx
from lrp_reference import zennit
from models import assert_untouched, hook_counts, images, snapshot

#: x = (1, 2); W1 = [[1, -1], [2, -0.5]] → z1 = (-1, 1), a1 = (0, 1); W2 = [[1, 2], [-1, 1]] → y = (2, 1)
X = np.array([[[[1.0, 2.0]]]], np.float32)


def mlp(bias: bool = False) -> nn.Module:
    model = nn.Sequential(nn.Flatten(), nn.Linear(2, 2, bias=bias), nn.ReLU(), nn.Linear(2, 2, bias=bias))
    with torch.no_grad():
        model[1].weight.copy_(torch.tensor([[1.0, -1.0], [2.0, -0.5]]))
        model[3].weight.copy_(torch.tensor([[1.0, 2.0], [-1.0, 1.0]]))
    return model.eval()


@pytest.mark.parametrize(
    "options, expected",
    [
        # layer 2 (y_0 = 2 from a1_1 = 1 alone): R_a1 = (0, 2); layer 1, unit 1 (z = 1 = 1·2 + 2·(−0.5)):
        ({"composite": "epsilon", "epsilon": 0.0}, [4.0, -2.0]),  # x ⊙ w · R / z = (2, −1) · 2
        # W + γW⁺ = (2.5, −0.5): z = 1.5, R_x = (2.5, −1) · 2 / 1.5
        ({"composite": "gamma", "gamma": 0.25}, [10 / 3, -4 / 3]),
        # layer 2 has no negative part: R_a1 = 2 · (0, 2); layer 1: 2 · (2, 0)·4/2 − 1 · (0, −1)·4/(−1)
        ({"composite": "alpha2beta1"}, [8.0, -4.0]),
        ({"composite": "alpha1beta0"}, [2.0, 0.0]),  # positive contributions only: (2, 0) · 2 / 2
        # first layer flat: both inputs of unit 1 get half of its R = 2
        ({"composite": "epsilon_plus_flat"}, [1.0, 1.0]),
        # first layer z-box, low −1, high 3: z = 1 − 2·(−1) − (−0.5)·3 = 4.5; R = (2 + 2, −1 + 1.5) · 2 / 4.5
        ({"composite": "epsilon_gamma_box", "low": -1.0, "high": 3.0}, [16 / 9, 2 / 9]),
    ],
)
def test_hand_computed_rules(options, expected):
    exp = vx.explain(mlp(), X, method="lrp", targets=0, **options)
    np.testing.assert_allclose(exp.attributions.reshape(-1), expected, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(exp.maps.reshape(-1), expected, rtol=1e-5, atol=1e-5)  # one channel: sum = itself
    np.testing.assert_allclose(exp.scores[0], [2.0, 1.0], atol=1e-6)


def test_gamma_rule_takes_the_biases():
    """Zennit's gamma rule adds γb⁺ to the bias of the positive part: z = 1.5 + 1.25·b."""
    model = mlp(bias=True)
    with torch.no_grad():
        model[1].bias.copy_(torch.tensor([0.0, 0.4]))
        model[3].bias.zero_()
    exp = vx.explain(model, X, method="lrp", targets=0, composite="gamma")
    # z1_1 = 1.4; a1 = (0, 1.4); y_0 = 2.8, all of it on a1_1; z_γ = 2.5 − 1 + 0.5 = 2.0
    np.testing.assert_allclose(exp.attributions.reshape(-1), [2.5 * 2.8 / 2.0, -1.0 * 2.8 / 2.0], rtol=1e-5)


class BiasFreeCNN(nn.Module):
    def __init__(self):
        super().__init__()
        torch.manual_seed(3)
        self.features = nn.Sequential(
            nn.Conv2d(3, 6, 3, padding=1, bias=False), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(6, 8, 3, padding=1, bias=False), nn.ReLU(), nn.AvgPool2d(2),
        )
        self.fc = nn.Linear(8 * 4 * 4, 5, bias=False)

    def forward(self, x):
        return self.fc(torch.flatten(self.features(x), 1))


@pytest.mark.parametrize("composite", ["epsilon", "gamma", "alpha1beta0", "epsilon_plus_flat", "epsilon_gamma_box"])
def test_relevance_is_conserved_on_a_bias_free_net(composite):
    x = images(3, size=16, seed=1)
    exp = vx.explain(BiasFreeCNN().eval(), x, method="lrp", composite=composite, epsilon=1e-9, targets=[0, 1, 2])
    score = exp.scores[np.arange(3), [0, 1, 2]]
    np.testing.assert_allclose(exp.options["relevance_sum"], score, rtol=1e-4)
    np.testing.assert_allclose(exp.attributions.reshape(3, -1).sum(1), score, rtol=1e-4)


class ResidualBlock(nn.Module):
    """conv-BN, plus the identity, summed by Zennit's ``Sum`` module (what its canonizers need)."""

    def __init__(self, channels: int, summer: nn.Module):
        super().__init__()
        self.conv = nn.Sequential(nn.Conv2d(channels, channels, 3, padding=1), nn.BatchNorm2d(channels))
        self.relu = nn.ReLU()
        self.sum = summer

    def forward(self, x):
        return self.relu(self.sum(torch.stack([self.conv(x), x], dim=-1)))


def bn_residual_cnn() -> nn.Module:
    torch.manual_seed(0)
    summer = zennit("zennit.layer").Sum()
    model = nn.Sequential(
        nn.Conv2d(3, 6, 3, padding=1), nn.BatchNorm2d(6), nn.ReLU(), nn.MaxPool2d(2), ResidualBlock(6, summer),
        nn.AvgPool2d(2), nn.Flatten(), nn.Linear(6 * 4 * 4, 5),
    )
    for module in model.modules():
        if isinstance(module, nn.BatchNorm2d):  # statistics away from the identity, so merging matters
            module.running_mean.uniform_(-0.5, 0.5)
            module.running_var.uniform_(0.5, 2.0)
            module.weight.data.uniform_(0.5, 1.5)
            module.bias.data.uniform_(-0.3, 0.3)
    return model.eval()


def zennit_relevance(model: nn.Module, x: np.ndarray, composite, targets: np.ndarray) -> np.ndarray:
    attribution = zennit("zennit.attribution")
    inputs = torch.from_numpy(x)
    with torch.no_grad():
        scores = model(inputs)
    seed = torch.zeros_like(scores)
    seed[np.arange(len(x)), targets] = scores[np.arange(len(x)), targets]  # relevance y_t at the output, as vexplain
    with attribution.Gradient(model=model, composite=composite) as attributor:
        _, relevance = attributor(inputs, seed)
    return relevance.numpy()


def zennit_composite(name: str, canonizers: list, stabilizer: float = 1e-6):
    composites = zennit("zennit.composites")
    if name == "epsilon_gamma_box":
        return composites.EpsilonGammaBox(low=-3.0, high=3.0, stabilizer=stabilizer, canonizers=canonizers)
    if name == "epsilon_plus_flat":
        return composites.EpsilonPlusFlat(stabilizer=stabilizer, canonizers=canonizers)
    return composites.EpsilonAlpha2Beta1(stabilizer=stabilizer, canonizers=canonizers)


@pytest.mark.parametrize("stabilizer, tolerance", [(1e-12, 1e-5), (1e-6, 1e-3)])
@pytest.mark.parametrize("composite", ["epsilon_gamma_box", "epsilon_plus_flat", "epsilon_alpha2_beta1"])
def test_zennit_composites_on_batchnorm_and_residual(composite, stabilizer, tolerance):
    """Zennit's stabilizer also enters its Norm rule at the residual sum, which vexplain leaves
    unstabilized: with its default 1e-6 the two differ where a sum is near 0 (up to 2e-4 of the
    largest relevance here), with 1e-12 on both they agree to 1e-5 of it."""
    model = bn_residual_cnn()
    x = images(4, size=16, seed=2)
    before = snapshot(model)
    options = {"low": -3.0, "high": 3.0} if composite == "epsilon_gamma_box" else {}
    exp = vx.explain(model, x, method="lrp", composite=composite, stabilizer=stabilizer, **options)
    assert_untouched(model, before)
    canonizer = zennit("zennit.canonizers").SequentialMergeBatchNorm()
    reference = zennit_relevance(model, x, zennit_composite(composite, [canonizer], stabilizer), exp.targets)
    scale = np.abs(reference).max()
    assert scale > 1e-3  # a real signal, not zeros on both sides
    np.testing.assert_allclose(exp.attributions, reference, rtol=0, atol=tolerance * scale)
    np.testing.assert_allclose(exp.attributions, reference, rtol=0, atol=1e-4)


def resnet18():
    models = zennit("torchvision.models")
    torch.manual_seed(0)
    model = models.resnet18(num_classes=10)
    for module in model.modules():
        if isinstance(module, nn.BatchNorm2d):
            module.running_mean.uniform_(-0.2, 0.2)
            module.running_var.uniform_(0.5, 1.5)
    return model.eval()


def test_zennit_on_torchvision_resnet18():
    """A real ResNet: in-place `out += identity`, one ReLU module called twice per block, BatchNorm
    everywhere. Zennit needs its ResNetCanonizer (which rewrites the blocks' forward); vexplain
    needs nothing. Stabilizer 1e-12 on both (see the test above)."""
    model = resnet18()
    x = images(2, size=64, seed=4)
    exp = vx.explain(model, x, method="lrp", composite="epsilon_plus_flat", stabilizer=1e-12)
    canonizer = zennit("zennit.torchvision").ResNetCanonizer()
    reference = zennit_relevance(model, x, zennit_composite("epsilon_plus_flat", [canonizer], 1e-12), exp.targets)
    scale = np.abs(reference).max()
    assert scale > 0
    np.testing.assert_allclose(exp.attributions, reference, rtol=0, atol=1e-5 * scale)


class CaptumCNN(nn.Module):
    """Only layers Captum's LRP has rules for (it refuses ``nn.Flatten``: flattening is functional)."""

    def __init__(self, bias: bool):
        super().__init__()
        torch.manual_seed(5)
        self.features = nn.Sequential(
            nn.Conv2d(3, 6, 3, padding=1, bias=bias), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(6, 8, 3, padding=1, bias=bias), nn.ReLU(), nn.AdaptiveAvgPool2d(2),
        )
        self.fc = nn.Linear(32, 4, bias=bias)

    def forward(self, x):
        return self.fc(torch.flatten(self.features(x), 1))


def captum_cnn(bias: bool) -> nn.Module:
    return CaptumCNN(bias).eval()


@pytest.mark.parametrize("rule", ["epsilon", "gamma"])
def test_captum_lrp(rule):
    """Captum's LRP where it supports the layers (one module per ReLU, no residuals or BatchNorm).
    Its gamma rule leaves biases unmodified, Zennit's and vexplain's add γb⁺, and it applies
    W + γW⁺ to negative inputs too, where the generalized rule takes W + γW⁻: bias-free with
    non-negative images and positive target scores there (Montavon et al.'s setting, where the
    two coincide)."""
    captum_attr = pytest.importorskip("captum.attr")
    rules = pytest.importorskip("captum.attr._utils.lrp_rules")
    model = captum_cnn(bias=rule == "epsilon")
    x = images(3, size=8, seed=6)
    if rule == "gamma":
        x = np.abs(x)
    exp = vx.explain(model, x, method="lrp", composite=rule, epsilon=1e-9, gamma=0.25)
    assert rule == "epsilon" or (exp.scores.max(axis=1) > 0).all()
    reference_model = copy.deepcopy(model)
    if rule == "gamma":
        for module in reference_model.modules():
            if isinstance(module, (nn.Conv2d, nn.Linear)):
                module.rule = rules.GammaRule(gamma=0.25)
    reference = captum_attr.LRP(reference_model).attribute(torch.from_numpy(x), target=exp.targets.tolist()).detach().numpy()
    scale = np.abs(reference).max()
    assert scale > 1e-4
    np.testing.assert_allclose(exp.attributions, reference, rtol=0, atol=1e-4 * scale)


@pytest.mark.parametrize("composite", ["epsilon_plus_flat", "epsilon_gamma_box", "epsilon_alpha2_beta1"])
def test_batch_sizes_give_identical_results(composite):
    model = bn_residual_cnn()
    x = images(16, size=16, seed=8)
    runs = [vx.explain(model, x, method="lrp", composite=composite, batch_size=b).attributions for b in (1, 2, 4, 16)]
    for other in runs[1:]:
        np.testing.assert_allclose(other, runs[0], rtol=0, atol=1e-6)


@pytest.mark.parametrize(
    "options, fragment",
    [
        ({"composite": "epsilon_gamma"}, "composite"),
        ({"epsilon": -1.0}, "epsilon"),
        ({"gamma": "big"}, "gamma"),
        ({"low": []}, "low"),
        ({"high": [1.0, "x"]}, "high"),
    ],
)
def test_bad_options_are_typed_one_line_errors(options, fragment):
    with pytest.raises(vx.InvalidOption, match=fragment) as error:
        vx.explain(mlp(), X, method="lrp", **options)
    assert "\n" not in str(error.value)


def test_bounds_per_channel_must_match_the_channels():
    model = bn_residual_cnn()
    with pytest.raises(vx.InvalidOption, match="one per channel"):
        vx.explain(model, images(1, size=16), method="lrp", composite="epsilon_gamma_box", low=[0.0, 1.0])


class Prescaled(nn.Module):
    """Its first convolution takes 2·x, not the input itself."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3)
        self.fc = nn.Linear(4, 3)

    def forward(self, x):
        return self.fc(self.conv(x * 2).mean(dim=(2, 3)))


def test_first_layer_rule_needs_the_input_and_the_model_is_left_untouched():
    model = Prescaled().train()
    before = snapshot(model)
    with pytest.raises(vx.InvalidOption, match="first layer"):
        vx.explain(model, images(2, size=8), method="lrp", composite="epsilon_plus_flat")
    assert_untouched(model, before)
    assert hook_counts(model) == {} and model.training
    exp = vx.explain(model, images(2, size=8), method="lrp", composite="epsilon_alpha2_beta1")  # no first-layer rule
    assert np.isfinite(exp.maps).all()
    assert_untouched(model, before)


def test_torchscript_is_refused_with_a_typed_error():
    scripted = torch.jit.script(mlp())
    with pytest.raises(vx.UnsupportedCapability, match="rule_gradients") as error:
        vx.explain(scripted, X, method="lrp")
    assert "\n" not in str(error.value)


def test_threads_sharing_a_model_get_their_own_rules():
    """Zennit would swap the shared model's weights during each backward pass; here two threads
    with different composites run at once on one model and match their serial results."""
    model = bn_residual_cnn()
    x = images(4, size=16, seed=9)
    serial = {c: vx.explain(model, x, method="lrp", composite=c).attributions for c in ("epsilon_plus_flat", "epsilon_alpha2_beta1")}
    results: dict[str, list] = {c: [] for c in serial}

    def work(composite: str) -> None:
        for _ in range(3):
            results[composite].append(vx.explain(model, x, method="lrp", composite=composite).attributions)

    threads = [threading.Thread(target=work, args=(c,)) for c in serial]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    for composite, runs in results.items():
        assert len(runs) == 3
        for run in runs:
            np.testing.assert_allclose(run, serial[composite], rtol=0, atol=1e-7)
