"""Cascading randomisation: the model restored bit for bit, a reference computation, sanity."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy.stats import spearmanr

import vexplain as vx
from models import assert_untouched, images, seeded_cnn, snapshot
from vexplain.core.similarity import ssim
from vexplain.plugins.metric_randomization import cascade, randomize


def raw_bytes(model: torch.nn.Module) -> dict[str, bytes]:
    return {k: v.detach().contiguous().cpu().numpy().tobytes() for k, v in model.state_dict().items()}


def bn_model() -> torch.nn.Module:
    torch.manual_seed(3)
    model = torch.nn.Sequential(
        torch.nn.Conv2d(3, 4, 3, padding=1), torch.nn.BatchNorm2d(4), torch.nn.ReLU(),
        torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten(), torch.nn.Linear(4, 3),
    )
    with torch.no_grad():
        model[1].running_mean.normal_()
        model[1].running_var.uniform_(0.5, 2.0)
    return model.train()  # a training flag that must survive too


@pytest.mark.parametrize("method", ["saliency", "gradcam", "occlusion"])
def test_every_parameter_restored_bit_for_bit(method):
    model = bn_model()
    before_bytes, before = raw_bytes(model), snapshot(model)
    ev = vx.evaluate(model, images(2, size=8), method, metric="randomization")
    assert ev.curves["spearman_abs"].shape == (2, 3)
    assert raw_bytes(model) == before_bytes
    assert_untouched(model, before)


def test_model_restored_after_an_error_mid_cascade(monkeypatch):
    import vexplain.core.api as api

    model = bn_model()
    before = raw_bytes(model)
    calls = []
    real = api.explain

    def failing(*args, **kwargs):
        calls.append(1)
        if len(calls) == 2:  # the first randomised step
            assert raw_bytes(model) != before
            raise RuntimeError("boom")
        return real(*args, **kwargs)

    monkeypatch.setattr(api, "explain", failing)
    with pytest.raises(RuntimeError, match="boom"):
        vx.evaluate(model, images(1, size=8), "saliency", metric="randomization")
    assert raw_bytes(model) == before


def test_cascade_runs_from_the_output_down_and_keeps_buffers():
    model = bn_model()
    assert [name for name, _ in cascade(model)] == ["5", "1", "0"]
    stats = model[1].running_var.clone()
    randomize(model[1], seed=0)
    assert torch.equal(model[1].running_var, stats)
    assert torch.equal(model[1].weight, torch.ones(4))  # BatchNorm's default initialisation


def test_matches_a_reference_computation():
    model = seeded_cnn()
    x = images(2, size=16, seed=3)
    targets = [1, 4]
    ev = vx.evaluate(model, x, "saliency", metric="randomization", targets=targets, seed=5)
    original = vx.explain(model, x, method="saliency", targets=targets).maps
    reference = seeded_cnn()
    names = [name for name, _ in cascade(reference)]
    assert ev.curve_x["spearman"] == names == ["fc", "features.2", "features.0"]
    for step, name in enumerate(names):
        module = reference.get_submodule(name)
        with torch.random.fork_rng(devices=[]), torch.no_grad():
            torch.manual_seed(5 + step)
            module.reset_parameters()
        new = vx.explain(reference, x, method="saliency", targets=targets).maps
        for i in range(2):
            rho_abs = spearmanr(np.abs(original[i]).ravel(), np.abs(new[i]).ravel())[0]
            rho = spearmanr(original[i].ravel(), new[i].ravel())[0]
            np.testing.assert_allclose(ev.curves["spearman_abs"][i, step], rho_abs, atol=1e-9)
            np.testing.assert_allclose(ev.curves["spearman"][i, step], rho, atol=1e-9)
            np.testing.assert_allclose(ev.curves["ssim"][i, step], ssim(np.abs(original[i]), np.abs(new[i])), atol=1e-12)
    np.testing.assert_allclose(ev.values["spearman_abs"], ev.curves["spearman_abs"].mean(axis=1))


def test_ssim_of_identical_maps_is_one_and_of_unrelated_maps_small():
    rng = np.random.default_rng(0)
    a = rng.random((16, 16))
    assert ssim(a, a) == pytest.approx(1.0)
    assert ssim(a, 3 * a + 2) == pytest.approx(1.0)  # min-max scaled first
    assert abs(ssim(a, rng.random((16, 16)))) < 0.3


def test_an_input_only_map_ignores_the_model():
    """A method that does not look at the model (the README's Sobel plugin idea, here the input
    itself) stays perfectly correlated however the model is randomised: the check catches it."""
    model = seeded_cnn()
    x = images(1, size=16, seed=1)

    class InputMap(vx.Explainer):
        name = "test_input_map"
        requires = ("forward",)

        def attribute(self, adapter, inputs, targets, options):
            scores = adapter.forward(inputs)
            return vx.Attribution(maps=inputs.sum(dim=1), scores=scores, targets=targets.select(scores))

    from test_plugins_support import make_plugin, registered

    with registered(make_plugin(InputMap), "input_map_plugin"):
        blind = vx.evaluate(model, x, "test_input_map", metric="randomization")
        faithful = vx.evaluate(model, x, "gradcam", metric="randomization")
    np.testing.assert_allclose(blind.score, 1.0)
    assert faithful.score[0] < 0.9


def test_needs_the_method_and_a_torch_module():
    with pytest.raises(vx.InvalidOption, match="pass a method name or an Explanation"):
        vx.evaluate(seeded_cnn(), images(1, size=16), np.ones((1, 16, 16), np.float32), metric="randomization")
    from models import onnx_bytes

    onnx_model = onnx_bytes(seeded_cnn(), (3, 16, 16))
    with pytest.raises(vx.UnsupportedCapability, match="needs a PyTorch nn.Module"):
        vx.evaluate(onnx_model, images(1, size=16), "occlusion", metric="randomization")


def test_randomised_models_are_explained_without_an_onnx_export_each():
    from vexplain.plugins.metric_randomization import _single_use_engine

    assert _single_use_engine("rise", {"engine": "auto", "masks": 10}) == {"engine": "torch", "masks": 10}
    assert _single_use_engine("scorecam", {"engine": "onnx"}) == {"engine": "onnx"}  # asked for: kept
    assert _single_use_engine("occlusion", {"engine": "auto"}) == {"engine": "auto"}  # incremental exports nothing
    assert _single_use_engine("gradcam", {"layer": None}) == {"layer": None}
