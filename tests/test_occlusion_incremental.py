"""Exact incremental occlusion: hand-computed values, agreement with batched full inference on
every layer kind it reasons about, fallbacks that say why, and the approximate drill-down mode."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

import vexplain as vx
from vexplain.adapters.torch_incremental import IncrementalOcclusion, NotIncremental, incremental_engine

from incremental_models import ARCHITECTURES, BranchNet, ResidualNet, architecture, seeded
from models import LinearNet, hook_counts, images, seeded_cnn, snapshot, assert_untouched

ATOL = 1e-4


def test_hand_computed_conv_relu_mean_model():
    # conv 2x2 of ones on [[1,2,3],[4,5,6],[7,8,9]] gives [[12,16],[24,28]] (all positive, so the
    # ReLU passes them), whose mean is the score. Zeroing pixel v lowers each of the n(r, c) conv
    # outputs that read it by v, so Δ = v · n / 4 with n = 1 at corners, 2 on edges, 4 in the middle.
    model = nn.Sequential(nn.Conv2d(1, 1, 2, bias=False), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(1, 1))
    with torch.no_grad():
        model[0].weight.fill_(1.0)
        model[4].weight.fill_(1.0)
        model[4].bias.zero_()
    x = torch.arange(1.0, 10.0).reshape(1, 1, 3, 3)
    exp = vx.explain(model, x, method="occlusion", window=1, stride=1, engine="incremental")
    expected = np.array([[0.25, 1, 0.75], [2, 5, 3], [1.75, 4, 2.25]])
    np.testing.assert_allclose(exp.maps[0], expected, atol=1e-6)
    assert exp.options["engine"] == "incremental" and exp.options["incremental_layers"] >= 3


@pytest.mark.parametrize("name", sorted(ARCHITECTURES))
@pytest.mark.parametrize("window, stride", [((4, 4), (2, 2)), ((5, 3), (3, 1)), ((16, 16), (1, 1))])
def test_incremental_equals_batched_full_inference(name, window, stride):
    model = architecture(name)
    x = images(2, 3, 16, seed=7)
    before = snapshot(model)
    exp = vx.explain(model, x, method="occlusion", window=window, stride=stride, baseline=0.3, engine="incremental")
    full = vx.explain(model, x, method="occlusion", window=window, stride=stride, baseline=0.3, engine="torch")
    assert exp.options["engine"] == "incremental" and "engine_fallback" not in exp.options
    np.testing.assert_allclose(exp.maps, full.maps, rtol=0, atol=ATOL)
    np.testing.assert_allclose(exp.scores, full.scores, rtol=0, atol=1e-5)
    assert_untouched(model, before)
    assert sum(hook_counts(model).values()) == 0


def test_auto_picks_incremental_for_torch_models_and_batched_inference_for_onnx():
    model = seeded_cnn(seed=1)
    x = images(1, 3, 16)
    assert vx.explain(model, x, method="occlusion", window=4).options["engine"] == "incremental"
    from models import onnx_bytes

    assert vx.explain(onnx_bytes(model, (3, 16, 16)), x, method="occlusion", window=4).options["engine"] == "onnx"


def test_auto_prefers_incremental_except_for_small_images_on_a_gpu():
    from vexplain.adapters.torch_incremental import GPU_MIN_PIXELS, incremental_pays

    assert incremental_pays(torch.device("cpu"), (8, 8))
    assert not incremental_pays(torch.device("cuda"), (64, 64)) and GPU_MIN_PIXELS > 64 * 64
    assert incremental_pays(torch.device("cuda"), (224, 224))


def test_auto_without_a_paying_incremental_engine_runs_full_inference_and_says_why(monkeypatch):
    import vexplain.adapters.torch_occlusion as torch_adapter  # the occlusion policy lives there

    monkeypatch.setattr(torch_adapter, "incremental_pays", lambda device, size: False)
    model = seeded(ResidualNet)
    x = images(2, 3, 16, seed=5)
    exp = vx.explain(model, x, method="occlusion", window=4, stride=2)
    assert exp.options["engine"] == "torch" and "batched full inference" in exp.options["engine_reason"]
    np.testing.assert_allclose(exp.maps, vx.explain(model, x, method="occlusion", window=4, stride=2, engine="incremental").maps, atol=ATOL)
    reduced = vx.explain(model, x, method="occlusion", window=4, stride=2, precision="fp16")
    assert reduced.options["engine"] == "torch" and reduced.options["precision"] == "fp16"
    assert vx.explain(model, x, method="occlusion", window=4, stride=2, field_limit=0.5).options["engine"] == "incremental"


class Branchy(nn.Module):
    """Data-dependent control flow: torch.fx cannot trace it."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 2, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.conv(x)
        if y.sum() > 0:
            y = y * 2
        return y.mean(dim=(2, 3))


@pytest.mark.parametrize("model, reason", [(Branchy(), "torch.fx cannot trace"), (LinearNet(np.ones((2, 48))), "first layer")])
def test_models_it_cannot_reason_about_fall_back_and_say_why(model, reason):
    x = images(2, 3, 4, seed=1)
    exp = vx.explain(model.eval(), x, method="occlusion", window=2, stride=1, engine="incremental")
    assert exp.options["engine"] in ("onnx", "torch") and reason in exp.options["engine_fallback"]
    full = vx.explain(model, x, method="occlusion", window=2, stride=1, engine="torch")
    np.testing.assert_allclose(exp.maps, full.maps, atol=ATOL)
    with pytest.raises(NotIncremental, match=reason):
        IncrementalOcclusion(model)


def test_a_model_that_cannot_be_traced_is_not_kept_alive_by_the_engine_cache():
    import gc
    import weakref

    model = Branchy().eval()
    alive = weakref.ref(model)
    vx.explain(model, images(1, 3, 4), method="occlusion", window=2, stride=1, engine="incremental")
    del model
    gc.collect()
    assert alive() is None


def test_engine_sees_weight_edits_and_module_swaps():
    model = seeded_cnn(seed=4)
    x = images(1, 3, 16, seed=2)
    first = vx.explain(model, x, method="occlusion", window=4, stride=2)
    engine = incremental_engine(model)
    with torch.no_grad():
        model.features[0].weight.mul_(-1.5)
    edited = vx.explain(model, x, method="occlusion", window=4, stride=2)
    assert incremental_engine(model) is engine  # traced once, reused
    np.testing.assert_allclose(edited.maps, vx.explain(model, x, method="occlusion", window=4, stride=2, engine="torch").maps, atol=ATOL)
    assert not np.allclose(first.maps, edited.maps, atol=1e-3)
    model.fc = nn.Linear(model.fc.in_features, 7)
    swapped = vx.explain(model, x, method="occlusion", window=4, stride=2)
    assert swapped.scores.shape == (1, 7) and incremental_engine(model) is not engine


def test_train_mode_model_is_explained_in_eval_mode_and_restored():
    model = seeded(ResidualNet).train()
    x = images(2, 3, 16, seed=5)
    exp = vx.explain(model, x, method="occlusion", window=4, stride=2, engine="incremental")
    assert model.training and all(m.training for m in model.modules())
    model.eval()
    np.testing.assert_allclose(exp.maps, vx.explain(model, x, method="occlusion", window=4, stride=2, engine="torch").maps, atol=ATOL)


def test_callable_targets_work_incrementally():
    model = seeded(BranchNet)
    x = images(2, 3, 16, seed=3)
    score = lambda out: out[:, 0] - out[:, 2]  # noqa: E731
    exp = vx.explain(model, x, method="occlusion", targets=score, window=4, stride=4)
    full = vx.explain(model, x, method="occlusion", targets=score, window=4, stride=4, engine="torch")
    assert exp.options["engine"] == "incremental"
    np.testing.assert_allclose(exp.maps, full.maps, atol=ATOL)


@pytest.mark.parametrize("batch_size", [1, 2, 4, 16])
def test_batch_size_does_not_change_incremental_maps(batch_size):
    model = seeded(ResidualNet)
    x = images(3, 3, 16, seed=9)
    reference = vx.explain(model, x, method="occlusion", window=4, stride=2, engine="torch")
    exp = vx.explain(model, x, method="occlusion", window=4, stride=2, batch_size=batch_size, engine="incremental")
    assert exp.options["engine"] == "incremental" and "engine_fallback" not in exp.options and exp.options["batch_size"] == batch_size
    np.testing.assert_allclose(exp.maps, reference.maps, atol=ATOL)


# --- drill-down (approximate) ------------------------------------------------------------------


def test_drilldown_with_every_window_refined_is_exact():
    model = seeded_cnn(seed=2)
    x = images(2, 3, 16, seed=4)
    exact = vx.explain(model, x, method="occlusion", window=4, stride=1)
    full = vx.explain(model, x, method="occlusion", window=4, stride=1, mode="drilldown", coarse_stride=4, top_fraction=1.0)
    np.testing.assert_allclose(full.maps, exact.maps, atol=ATOL)
    assert full.options["approximate"] is True and exact.options["approximate"] is False


def test_partial_drilldown_runs_incrementally_and_refining_brings_it_closer_to_exact():
    model = seeded_cnn(seed=2)
    x = images(2, 3, 16, seed=4)
    exact = vx.explain(model, x, method="occlusion", window=4, stride=1)
    # engine named: auto times the engines (core/engine_choice.py) and may take another exact one
    partial = vx.explain(model, x, method="occlusion", window=4, stride=1, mode="drilldown", coarse_stride=4, top_fraction=0.25, engine="incremental")
    assert partial.options["engine"] == "incremental" and "engine_fallback" not in partial.options
    assert all(count < partial.options["windows"] for count in partial.options["windows_evaluated"])
    coarse_only = vx.explain(model, x, method="occlusion", window=4, stride=1, mode="drilldown", coarse_stride=4, top_fraction=0.01)
    error, coarse_error = np.abs(partial.maps - exact.maps), np.abs(coarse_only.maps - exact.maps)
    assert 0 < error.max() and error.sum() < 0.8 * coarse_error.sum()  # refining a quarter of the windows exactly pays


def test_drilldown_evaluates_fewer_windows_and_refines_where_the_map_is_large():
    # a linear model whose weight is large in one corner: the refined windows must lie there
    weight = np.zeros((1, 1, 16, 16))
    weight[0, 0, :5, :5] = 1.0
    model = LinearNet(weight.reshape(1, -1))
    x = np.ones((1, 1, 16, 16), dtype=np.float32)
    exp = vx.explain(model, x, method="occlusion", window=4, stride=1, mode="drilldown", coarse_stride=4, top_fraction=0.1)
    (evaluated,) = exp.options["windows_evaluated"]
    assert evaluated < exp.options["windows"] == 169
    exact = vx.explain(model, x, method="occlusion", window=4, stride=1)
    np.testing.assert_allclose(exp.maps[0, :4, :4], exact.maps[0, :4, :4], atol=1e-4)  # every window over the corner was refined


def test_drilldown_rejects_a_bad_fraction():
    with pytest.raises(vx.InvalidOption, match="top_fraction"):
        vx.explain(seeded_cnn(), images(1), method="occlusion", mode="drilldown", top_fraction=0.0)


def test_onnx_export_refuses_a_model_whose_trace_would_freeze_a_branch():
    # tracing Branchy bakes in the branch its sample took; running that graph would silently give
    # other inputs the wrong scores, so the export fails (engine="onnx") or falls back (auto)
    x = images(1, 3, 4, seed=1)
    with pytest.raises(vx.ModelLoadError, match="cannot export"):
        vx.explain(Branchy().eval(), x, method="occlusion", window=2, engine="onnx")
    assert vx.explain(Branchy().eval(), x, method="occlusion", window=2, engine="auto").options["engine"] == "torch"


def test_box_sums_equal_adding_each_value_over_its_box():
    from vexplain.core.perturbation import box_sums

    generator = torch.Generator().manual_seed(0)
    tops = torch.randint(0, 9, (40,), generator=generator)
    lefts = torch.randint(0, 6, (40,), generator=generator)
    values = torch.randn(3, 40, generator=generator)
    expected = torch.zeros(3, 12, 10)
    for b, (top, left) in enumerate(zip(tops.tolist(), lefts.tolist())):
        expected[:, top : top + 4, left : left + 5] += values[:, b, None, None]
    torch.testing.assert_close(box_sums(values, tops, lefts, (12, 10), (4, 5)), expected, rtol=0, atol=1e-5)
