"""RISE: mask geometry by hand, the estimator on a linear model, seeds, batching, engines."""
from __future__ import annotations

import numpy as np
import pytest
import torch

import vexplain as vx
from models import LinearNet, close, images, onnx_bytes, seeded_cnn
from vexplain.plugins.rise import MaskSource

#: bilinear 2 -> 6 (align_corners=False): source row (i + 0.5) / 3 - 0.5 = -1/3 (clamped to 0),
#: 0, 1/3, 2/3, 1, 4/3 (clamped to 1)
U6 = np.array([[1, 0], [1, 0], [2 / 3, 1 / 3], [1 / 3, 2 / 3], [0, 1], [0, 1]])



def test_masks_by_hand_cells_2_on_4x4():
    # cells = 2 on 4x4: cell size 2, each 2x2 grid upsampled to 6x6, cropped 4x4 at a shift in {0, 1}^2
    source = MaskSource(40, cells=2, p=0.5, seed=3, size=(4, 4), device=torch.device("cpu"))
    masks = source.chunk(0, 40).numpy()
    grids = source.grids[:, 0].numpy()
    assert set(np.unique(grids)) == {0.0, 1.0}
    assert set(source.dy.tolist()) == {0, 1} and set(source.dx.tolist()) == {0, 1}
    for i in range(40):
        big = U6 @ grids[i] @ U6.T
        dy, dx = int(source.dy[i]), int(source.dx[i])
        close(masks[i], big[dy : dy + 4, dx : dx + 4], atol=1e-6)


def test_masks_depend_only_on_seed_and_index():
    make = lambda seed: MaskSource(50, cells=5, p=0.3, seed=seed, size=(20, 18), device=torch.device("cpu"))
    whole = make(7).chunk(0, 50)
    parts = torch.cat([make(7).chunk(s, min(s + 16, 50)) for s in range(0, 50, 16)])
    assert torch.equal(whole, parts)
    assert whole.shape == (50, 20, 18)
    assert not torch.equal(whole, make(8).chunk(0, 50))
    kept = (make(7).grids == 1).float().mean().item()
    assert 0.2 < kept < 0.4  # keep probability p = 0.3


def rise_by_formula(weight: np.ndarray, bias: np.ndarray, x: np.ndarray, masks: np.ndarray, target: int, p: float, softmax: bool = False) -> np.ndarray:
    """S = sum_i f_t(x * M_i) M_i / (N p) for the linear model y = W flatten(x) + b."""
    masked = (x[None] * masks[:, None]).reshape(len(masks), -1)
    scores = masked @ weight.T + bias
    if softmax:
        scores = np.exp(scores - scores.max(axis=1, keepdims=True))
        scores /= scores.sum(axis=1, keepdims=True)
    return np.einsum("i,ihw->hw", scores[:, target], masks) / (len(masks) * p)


@pytest.mark.parametrize("softmax", [False, True])
def test_rise_estimator_on_a_linear_model(softmax):
    rng = np.random.default_rng(0)
    weight, bias = rng.standard_normal((3, 2 * 6 * 6)), np.array([0.5, -1.0, 0.25])
    x = rng.standard_normal((2, 2, 6, 6)).astype(np.float32)
    masks = MaskSource(300, cells=3, p=0.4, seed=5, size=(6, 6), device=torch.device("cpu")).chunk(0, 300).numpy()
    exp = vx.explain(LinearNet(weight, bias), x, method="rise", targets=[2, 0], masks=300, cells=3, p=0.4, seed=5, softmax=softmax)
    for n, target in enumerate([2, 0]):
        close(exp.maps[n], rise_by_formula(weight, bias, x[n], masks, target, 0.4, softmax), atol=1e-4)
    assert exp.options["masks"] == 300 and exp.options["softmax"] is softmax and exp.options["engine"] == "onnx"


def test_rise_of_a_constant_model_is_its_score_times_mask_mean():
    # zero weights: y = b for every masked input, so S = b * mean_i M_i / p, close to b
    x = np.ones((1, 1, 8, 8), np.float32)
    exp = vx.explain(LinearNet(np.zeros((2, 64)), [2.0, -1.0]), x, method="rise", targets=0, masks=2000, cells=4)
    assert exp.options["p"] == 0.5 and exp.options["cells"] == 4
    masks = MaskSource(2000, cells=4, p=0.5, seed=0, size=(8, 8), device=torch.device("cpu")).chunk(0, 2000).numpy()
    close(exp.maps, 2.0 * masks.mean(axis=0, keepdims=True) / 0.5, atol=1e-5)  # exactly, for these masks
    close(exp.maps, np.full((1, 8, 8), 2.0), atol=0.15)  # and near b, as their mean is near p


def test_rise_defaults_recorded():
    exp = vx.explain(seeded_cnn(seed=0), images(1, size=16), method="rise", masks=64)
    assert {k: exp.options[k] for k in ("cells", "p", "seed", "softmax", "engine")} == {"cells": 7, "p": 0.5, "seed": 0, "softmax": False, "engine": "onnx"}
    assert exp.options["batch_size"] >= 1
    assert vx.methods()[[m.name for m in vx.methods()].index("rise")].options["masks"] == 2000


@pytest.mark.parametrize("engine", ["torch", "onnx"])
def test_rise_batch_size_and_input_batching_do_not_change_maps(engine):
    model, x = seeded_cnn(seed=2), images(16, size=16, seed=3)
    reference = vx.explain(model, x, method="rise", masks=96, seed=4, batch_size=96, engine=engine)
    for batch_size in (1, 2, 4, 16):
        exp = vx.explain(model, x[:4], method="rise", masks=96, seed=4, batch_size=batch_size, engine=engine)
        close(exp.maps, reference.maps[:4], atol=1e-5)
    alone = np.concatenate([vx.explain(model, x[i : i + 1], method="rise", masks=96, seed=4, engine=engine).maps for i in range(16)])
    close(alone, reference.maps, atol=1e-5)
    other_seed = vx.explain(model, x[:1], method="rise", masks=96, seed=5, engine=engine)
    assert np.abs(other_seed.maps - reference.maps[:1]).max() > 1e-3


def test_rise_engines_and_onnx_model_agree():
    model, x = seeded_cnn(seed=0), images(3, size=16, seed=4)
    by_torch = vx.explain(model, x, method="rise", masks=200, engine="torch")
    by_onnx_engine = vx.explain(model, x, method="rise", masks=200, engine="onnx")
    by_onnx_model = vx.explain(onnx_bytes(model, (3, 16, 16)), x, method="rise", masks=200)
    assert by_onnx_model.options["backend"] == "onnx" and by_torch.options["engine"] == "torch"
    assert np.abs(by_torch.maps).max() > 1e-2
    for other in (by_onnx_engine, by_onnx_model):
        close(other.maps, by_torch.maps, atol=1e-4)
        assert other.targets.tolist() == by_torch.targets.tolist()


@pytest.mark.parametrize("options", [{"p": 0.0}, {"p": 1.5}, {"masks": 0}, {"cells": 0}, {"seed": -1}, {"softmax": 1}])
def test_rise_bad_options(options):
    with pytest.raises(vx.InvalidOption) as caught:
        vx.explain(seeded_cnn(seed=0), images(1, size=16), method="rise", **options)
    assert "\n" not in str(caught.value)


def test_rise_refuses_softmax_of_a_callable_target():
    import vexplain as vx
    from models import images, seeded_cnn

    with pytest.raises(vx.InvalidOption, match="softmax"):
        vx.explain(seeded_cnn(), images(1), method="rise", targets=lambda out: out[:, 0], softmax=True, masks=8)
