"""Numerics and silent garbage: occlusion windows that leave pixels uncovered, a drill-down whose
coarse grid holds every fine window, Grad-CAM on a frozen backbone, and the post-checks that turn
non-finite scores into typed errors and doubtful maps into ``exp.warnings`` lines."""
from __future__ import annotations

import copy
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from torch import nn

import vexplain as vx
from vexplain.core.adapter import ATTENTION
from vexplain.cli.main import main
from vexplain.demo.model import build

from models import HAND_CONV, HAND_X, HandCamNet, LinearNet, TrainFlagCNN, assert_untouched, images, onnx_bytes, quick_options, seeded_cnn, snapshot

pytestmark = pytest.mark.filterwarnings("ignore:Input Tensor .* did not already require gradients", "ignore:Setting backward hooks")

DEMO_ONNX = Path(__file__).resolve().parents[1] / "demo" / "assets" / "demo_cnn.onnx"
BATCH_SIZES = (1, 2, 4, 16)
#: options that keep every registered method quick on 16x16 inputs
FAST = {**quick_options(), "occlusion": {"window": 4, "stride": 4}, "smoothgrad": {"samples": 3}, "integrated_gradients": {"steps": 5}, "rise": {"masks": 64}}


def _gradient_cam_methods() -> list[str]:
    return [m.name for m in vx.methods() if "activation_gradients" in m.requires]


# ------------------------------------------------------------------------------------------
# Defect 3: stride larger than the window
# ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("engine", ["torch", "onnx", "incremental", "auto"])
@pytest.mark.parametrize("mode", ["exact", "drilldown"])
def test_stride_larger_than_window_is_refused_on_every_engine(engine, mode):
    with pytest.raises(vx.InvalidOption, match=r"stride \(4, 4\) is larger than the window \(2, 2\).*stride=\(2, 2\)") as error:
        vx.explain(seeded_cnn(), images(2), method="occlusion", window=2, stride=4, engine=engine, mode=mode)
    assert "\n" not in str(error.value)


def test_stride_larger_than_window_on_one_axis_only_is_refused():
    with pytest.raises(vx.InvalidOption, match=r"stride \(2, 3\) is larger than the window \(4, 2\)"):
        vx.explain(seeded_cnn(), images(1), method="occlusion", window=(4, 2), stride=(2, 3))


@pytest.mark.parametrize("mode", ["exact", "drilldown"])
def test_stride_larger_than_window_is_refused_on_an_onnx_model(mode):
    x = np.zeros((1, 3, 64, 64), dtype=np.float32)
    with pytest.raises(vx.InvalidOption, match=r"stride \(12, 12\) is larger than the window \(8, 8\)"):
        vx.explain(DEMO_ONNX, x, method="occlusion", window=8, stride=12, mode=mode)


def test_explicit_coarse_stride_larger_than_window_is_refused():
    with pytest.raises(vx.InvalidOption, match=r"coarse_stride \(8, 8\) is larger than the window \(4, 4\)"):
        vx.explain(seeded_cnn(), images(1), method="occlusion", window=4, stride=2, mode="drilldown", coarse_stride=8)


def test_default_coarse_stride_stays_within_the_window():
    # window 8, stride 6: twice the stride (12) would leave coarse holes, so the default is 8
    exp = vx.explain(seeded_cnn(), images(2), method="occlusion", window=8, stride=6, mode="drilldown")
    assert exp.options["coarse_stride"] == (8, 8)
    assert np.isfinite(exp.maps).all()


def test_stride_equal_to_window_tiles_exactly():
    # LinearNet on ones: the drop of a window is the sum of the target's weights inside it, and
    # windows 2x2 every 2 tile the 4x4 image, so the map is that sum on each tile.
    weight = np.arange(16, dtype=np.float32).reshape(1, 16)
    exp = vx.explain(LinearNet(weight), np.ones((1, 1, 4, 4), np.float32), method="occlusion", window=2, stride=2, targets=0)
    w = weight.reshape(4, 4)
    tiles = np.array([[w[:2, :2].sum(), w[:2, 2:].sum()], [w[2:, :2].sum(), w[2:, 2:].sum()]])
    np.testing.assert_allclose(exp.maps[0], np.kron(tiles, np.ones((2, 2))), atol=1e-5)
    assert exp.warnings == []


# ------------------------------------------------------------------------------------------
# Defect 5: drill-down whose coarse grid already holds every fine window
# ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("coarse_stride", [8, None])  # None: the default, capped at the window
def test_drilldown_with_every_fine_window_coarse_is_exact(coarse_stride):
    model, x = seeded_cnn(), images(16, size=32, seed=3)
    exact = vx.explain(model, x, method="occlusion", window=8, stride=8, engine="torch")
    for batch_size in BATCH_SIZES:
        exp = vx.explain(model, x, method="occlusion", window=8, stride=8, mode="drilldown", coarse_stride=coarse_stride, batch_size=batch_size)
        assert exp.options["coarse_stride"] == (8, 8)
        assert exp.options["windows_evaluated"] == [16] * 16  # the 4x4 coarse windows, nothing more
        np.testing.assert_allclose(exp.maps, exact.maps, atol=1e-5)


def test_drilldown_with_every_fine_window_coarse_on_an_onnx_model():
    x = images(2, size=64, seed=4)
    exact = vx.explain(DEMO_ONNX, x, method="occlusion", window=16, stride=16)
    exp = vx.explain(DEMO_ONNX, x, method="occlusion", window=16, stride=16, mode="drilldown", coarse_stride=16)
    np.testing.assert_allclose(exp.maps, exact.maps, atol=1e-5)


# ------------------------------------------------------------------------------------------
# Defect 4: frozen backbone
# ------------------------------------------------------------------------------------------


def _frozen(model: nn.Module, everything: bool) -> nn.Module:
    frozen = copy.deepcopy(model)
    (frozen if everything else frozen.features).requires_grad_(False)
    return frozen


@pytest.mark.parametrize("method", _gradient_cam_methods())
@pytest.mark.parametrize("everything", [False, True])
def test_gradient_cams_work_on_a_frozen_backbone_and_leave_it_untouched(method, everything):
    model, x = seeded_cnn(), images(16, seed=5)
    reference = vx.explain(model, x, method=method)
    frozen = _frozen(model, everything)
    before = snapshot(frozen)
    for batch_size in BATCH_SIZES:
        exp = vx.explain(vx.adapt(frozen, batch_size=batch_size), x, method=method)
        np.testing.assert_allclose(exp.maps, reference.maps, rtol=1e-5, atol=1e-6)
        np.testing.assert_array_equal(exp.targets, reference.targets)
    assert_untouched(frozen, before)


def test_frozen_backbone_with_in_place_relu_after_the_layer():
    # TrainFlagCNN's ReLU(inplace=True) follows features.3: the captured output must not be the
    # tensor the ReLU overwrites, frozen or not
    torch.manual_seed(0)
    model = TrainFlagCNN().eval()
    x = images(4, seed=6)
    reference = vx.explain(model, x, method="gradcam", layer="features.3")
    frozen = _frozen(model, everything=False)
    before = snapshot(frozen)
    exp = vx.explain(frozen, x, method="gradcam", layer="features.3")
    np.testing.assert_allclose(exp.maps, reference.maps, rtol=1e-5, atol=1e-6)
    assert_untouched(frozen, before)


def test_frozen_backbone_hand_computed_gradcam():
    # HandCamNet, class 0: y = mean(A_0) - mean(A_1) over the 2x2 layer, so the Grad-CAM weights
    # are +1/4 and -1/4 and the layer map is ReLU((A_0 - A_1) / 4), with A = ReLU(conv(x)).
    model = HandCamNet()
    model.features.requires_grad_(False)
    exp = vx.explain(model, HAND_X, method="gradcam", targets=0)
    blocks = HAND_X[0, 0].reshape(2, 2, 2, 2).transpose(0, 2, 1, 3)  # (row, col, 2, 2) blocks
    acts = np.maximum(np.einsum("ijab,kab->kij", blocks, HAND_CONV[:, 0]), 0)
    np.testing.assert_allclose(exp.layer_maps[0], np.maximum((acts[0] - acts[1]) / 4, 0), atol=1e-6)


def test_a_layer_that_does_not_feed_the_score_is_still_a_typed_error():
    class TwoHeads(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.a = nn.Conv2d(3, 4, 3, padding=1)
            self.b = nn.Conv2d(3, 4, 3, padding=1)
            self.fc = nn.Linear(4, 2)

        def forward(self, x):
            self.b(x)  # runs, but its output is unused
            return self.fc(self.a(x).mean((2, 3)))

    model = TwoHeads().requires_grad_(False)
    with pytest.raises(vx.InvalidTarget, match="does not depend on layer 'b'"):
        vx.explain(model, images(1), method="gradcam", layer="b")


# ------------------------------------------------------------------------------------------
# Defect 10: non-finite scores are typed errors
# ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("method", [m.name for m in vx.methods() if ATTENTION not in m.requires])  # attention methods: test_vit_rollout.py
def test_huge_finite_inputs_are_an_invalid_input_for_every_method(method):
    x = np.full((2, 3, 16, 16), 3e38, dtype=np.float32)
    with pytest.raises(vx.InvalidInput, match=r"scores are NaN or infinite for inputs 0, 1 \(largest \|input\| 3e\+38\)") as error:
        vx.explain(seeded_cnn(), x, method=method, **FAST.get(method, {}))
    assert "\n" not in str(error.value)


@pytest.mark.parametrize("method", ["occlusion", "rise", "scorecam"])
def test_huge_finite_inputs_are_an_invalid_input_on_onnx(method):
    x = np.full((1, 3, 64, 64), 3e38, dtype=np.float32)
    options = {"occlusion": {"window": 16, "stride": 16}, "rise": {"masks": 16}}.get(method, {})
    with pytest.raises(vx.InvalidInput, match="scores are NaN or infinite for input 0"):
        vx.explain(DEMO_ONNX, x, method=method, **options)


class NaNOnInput(nn.Module):
    """A linear model whose scores are NaN for the inputs ``bad`` flags (one float per input)."""

    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(3 * 16 * 16, 4)

    def forward(self, x):
        scores = self.fc(torch.flatten(x, 1))
        return torch.where(x[:, :1, :1, :1].flatten(1) > 100, torch.full_like(scores, float("nan")), scores)


@pytest.mark.parametrize("backend", ["torch", "onnx"])
def test_a_model_returning_nan_is_an_invalid_input_naming_the_inputs(backend):
    torch.manual_seed(0)
    model = NaNOnInput().eval()
    x = images(4, seed=7)
    x[2, 0, 0, 0] = 1000.0
    subject = model if backend == "torch" else onnx_bytes(model, (3, 16, 16))
    with pytest.raises(vx.InvalidInput, match="scores are NaN or infinite for input 2 "):
        vx.explain(subject, x, method="occlusion", window=8, stride=8)


@pytest.mark.parametrize("method", ["occlusion", "saliency", "gradcam"])
def test_a_callable_target_returning_nan_is_an_invalid_target(method):
    def nan_score(output: torch.Tensor) -> torch.Tensor:
        return output[:, 0] * float("nan")

    with pytest.raises(vx.InvalidTarget, match="callable target returned NaN or infinite scores for inputs 0, 1"):
        vx.explain(seeded_cnn(), images(2), method=method, targets=nan_score, **FAST.get(method, {}))


# ------------------------------------------------------------------------------------------
# Defect 10: doubtful maps are warnings, one line per condition
# ------------------------------------------------------------------------------------------


def _saturated_softmax_model() -> nn.Module:
    model = seeded_cnn()
    with torch.no_grad():
        model.fc.weight.mul_(1000)
    return nn.Sequential(model, nn.Softmax(dim=1)).eval()


@pytest.mark.parametrize("method", ["saliency", "occlusion", "gradcam"])
def test_saturated_probabilities_warn_and_suggest_logits(method):
    exp = vx.explain(_saturated_softmax_model(), images(2, seed=1), method=method, **FAST.get(method, {}))
    assert np.all(exp.scores.max(1) == 1.0)
    saturated = [w for w in exp.warnings if "saturated softmax/sigmoid" in w]
    assert len(saturated) == 1 and "inputs 0, 1" in saturated[0] and "logits" in saturated[0]
    assert "the maps of inputs 0, 1 are all zero: the method found no pixel that changes the explained score" in exp.warnings


def test_logits_of_the_same_model_do_not_warn():
    exp = vx.explain(_saturated_softmax_model()[0], images(2, seed=1), method="saliency")
    assert exp.warnings == []


def test_warnings_name_the_same_inputs_at_every_batch_size():
    # class 1 has zero weights (and a bias of 5, so its score is no probability): the saliency
    # of inputs 3 and 9, explained for class 1, is all zero, the others' is not
    weight = np.zeros((2, 3 * 16 * 16), np.float32)
    weight[0] = np.linspace(-1, 1, weight.shape[1])
    targets = np.zeros(16, np.int64)
    targets[[3, 9]] = 1
    model, x = LinearNet(weight, bias=[0.0, 5.0]), images(16, seed=8)
    seen = []
    for batch_size in BATCH_SIZES:
        exp = vx.explain(vx.adapt(model, batch_size=batch_size), x, method="saliency", targets=targets)
        seen.append(exp.warnings)
        assert (exp.maps[[3, 9]] == 0).all() and (np.abs(exp.maps[[0, 1, 2, 4]]) > 0).all()
    assert seen[0] == ["the maps of inputs 3, 9 are all zero: the method found no pixel that changes the explained score"]
    assert all(lines == seen[0] for lines in seen)


def test_a_constant_map_warns_with_its_hand_computed_value():
    # one window covering the whole 4x4 image: every pixel gets the same drop, sum(W_0 * x)
    weight = np.arange(1, 17, dtype=np.float32).reshape(1, 16)
    x = np.ones((1, 1, 4, 4), np.float32)
    exp = vx.explain(LinearNet(weight), x, method="occlusion", window=4, stride=4, targets=0)
    np.testing.assert_allclose(exp.maps, np.full((1, 4, 4), weight.sum()), rtol=1e-6)
    assert exp.warnings == ["the maps of input 0 are constant (every pixel the same value): they rank no pixel above another"]


@pytest.mark.parametrize("engine", ["torch", "onnx", "incremental"])
def test_non_finite_map_values_with_finite_scores_warn(engine):
    # the clean scores are finite, but a baseline of 3e38 makes every occluded score infinite
    weight = np.full((1, 16), 2.0, np.float32)
    x = np.ones((2, 1, 4, 4), np.float32)
    for batch_size in (1, 2, 4):
        exp = vx.explain(LinearNet(weight), x, method="occlusion", window=2, stride=2, baseline=3e38, engine=engine, batch_size=batch_size, targets=0)
        assert np.isfinite(exp.scores).all() and not np.isfinite(exp.maps).any()
        assert exp.warnings == [
            "the maps of inputs 0, 1 contain 32 NaN or infinite values (scores of perturbed inputs or gradients overflowed); do not trust those maps"
        ]


def test_a_healthy_explanation_has_no_warnings():
    for method in ("gradcam", "saliency", "occlusion"):
        assert vx.explain(seeded_cnn(), images(4), method=method, **FAST.get(method, {})).warnings == []


def test_many_flagged_inputs_are_listed_briefly():
    model = _saturated_softmax_model()
    exp = vx.explain(model, images(9, seed=1), method="saliency")
    line = next(w for w in exp.warnings if "all zero" in w)
    assert "inputs 0, 1, 2, 3, 4 and 4 more" in line


def test_evaluate_keeps_the_explanations_warnings():
    model, x = _saturated_softmax_model(), images(2, seed=1)
    built = vx.evaluate(model, x, "saliency", metric="deletion", steps=4)
    assert any("saturated" in w for w in built.warnings)
    given = vx.evaluate(model, x, vx.explain(model, x, method="saliency"), metric="deletion", steps=4)
    assert given.warnings == built.warnings


# ------------------------------------------------------------------------------------------
# The command line: one-line errors with exit 2, warnings on stderr
# ------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def cli_files(tmp_path_factory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("numerics_cli")
    torch.manual_seed(0)
    weights = folder / "weights.pt"
    torch.save(build().eval().state_dict(), weights)
    image = folder / "scene.png"
    cv2.imwrite(str(image), np.random.default_rng(0).integers(0, 255, (32, 32, 3), dtype=np.uint8))
    return {"weights": weights, "image": image}


def _cli(capsys, *argv) -> tuple[int, str, str]:
    code = main([str(a) for a in argv])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_cli_refuses_stride_larger_than_window_and_writes_nothing(capsys, cli_files, tmp_path):
    code, _, err = _cli(
        capsys, "explain", "vexplain.demo.model:build", cli_files["image"], "--weights", cli_files["weights"], "--size", 32, 32,
        "--method", "occlusion", "--option", "window=2", "--option", "stride=4", "--out", tmp_path,
    )
    assert code == 2
    assert err.strip().count("\n") == 0 and err.startswith("vexplain explain: error: occlusion stride (4, 4) is larger than the window (2, 2)")
    assert list(tmp_path.iterdir()) == []


class NaNScores(nn.Module):
    """A small CNN whose scores are all NaN."""

    def __init__(self) -> None:
        super().__init__()
        self.features = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.ReLU())
        self.fc = nn.Linear(4, 2)

    def forward(self, x):
        return self.fc(self.features(x).mean((2, 3))) * float("nan")


def nan_scores() -> NaNScores:
    """Factory for the CLI: ``test_hardening_numerics:nan_scores``."""
    return NaNScores().eval()


@pytest.mark.parametrize("method", ["saliency", "occlusion", "gradcam"])
def test_cli_non_finite_scores_are_a_one_line_error(capsys, cli_files, tmp_path, method):
    code, _, err = _cli(
        capsys, "explain", "test_hardening_numerics:nan_scores", cli_files["image"], "--random-weights", "--size", 32, 32, "--method", method, "--out", tmp_path,
    )
    assert code == 2 and err.strip().count("\n") == 0
    assert err.startswith("vexplain explain: error: the model's scores are NaN or infinite for input 0")
    assert list(tmp_path.iterdir()) == []


def test_cli_prints_each_warning_on_stderr(capsys, cli_files, tmp_path):
    code, out, err = _cli(
        capsys, "explain", "vexplain.demo.model:build", cli_files["image"], "--weights", cli_files["weights"], "--size", 32, 32,
        "--method", "occlusion", "--option", "window=32", "--option", "stride=32", "--out", tmp_path,
    )
    assert code == 0 and "scene.png" in out
    assert err.splitlines() == ["vexplain explain: warning: scene.png: the maps of input 0 are constant (every pixel the same value): they rank no pixel above another"]


def test_evaluate_cli_prints_and_stores_warnings(capsys, tmp_path):
    code, _, err = _cli(
        capsys, "evaluate", "--images", 2, "--methods", "occlusion", "--metrics", "pointing_game",
        "--option", "occlusion.window=64", "--option", "occlusion.stride=64", "--out", tmp_path,
    )
    assert code == 0
    assert "vexplain evaluate: warning: occlusion: the maps of inputs 0, 1 are constant" in err
    import json

    stored = json.loads((tmp_path / "results.json").read_text())["methods"]["occlusion"]["warnings"]
    assert stored == ["the maps of inputs 0, 1 are constant (every pixel the same value): they rank no pixel above another"]
