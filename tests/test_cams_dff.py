"""Deep Feature Factorization: the NMF against scikit-learn's (same algorithm and initialisation),
a hand-checkable factorisation, the contract (concept maps, scores, chosen concept), agreement
with pytorch-grad-cam 1.5.7's ``DeepFeatureFactorization`` on single images, and ONNX."""
from __future__ import annotations

import numpy as np
import pytest
import torch

import vexplain as vx
from vexplain.plugins._nmf import nmf
from vexplain.plugins.cam_base import minmax_last2
from vexplain.core.postprocess import upsample

from models import close, images, onnx_bytes, seeded_cnn
from pgc_reference import pytorch_grad_cam


@pytest.mark.parametrize("shape, k", [((12, 9), 3), ((30, 20), 5), ((4, 16), 4)])
def test_nmf_equals_scikit_learn_coordinate_descent(shape, k):
    sklearn = pytest.importorskip("sklearn.decomposition")
    data = np.abs(np.random.default_rng(sum(shape)).standard_normal(shape)) ** 2
    model = sklearn.NMF(n_components=k, init="random", random_state=0, max_iter=200, tol=1e-4)
    w_ref = model.fit_transform(data)
    w, h, iterations = nmf(torch.from_numpy(data[None]), k)
    close(w[0], w_ref, atol=1e-9)
    close(h[0], model.components_, atol=1e-9)
    assert int(iterations[0]) == model.n_iter_


def test_nmf_recovers_an_exact_rank_two_factorisation():
    # V = W H with disjoint supports: NMF reaches (almost) zero error
    w_true = np.array([[1.0, 0.0], [2.0, 0.0], [0.0, 1.0], [0.0, 3.0]])
    h_true = np.array([[1.0, 1.0, 0.0, 0.0, 2.0], [0.0, 1.0, 1.0, 2.0, 0.0]])
    v = w_true @ h_true
    w, h, _ = nmf(torch.from_numpy(v[None]), 2, max_iter=2000, tol=1e-12)
    assert np.abs(w[0].numpy() @ h[0].numpy() - v).max() < 1e-6
    assert (w >= 0).all() and (h >= 0).all()


def test_batches_factorise_each_image_alone():
    data = torch.from_numpy(np.abs(np.random.default_rng(1).standard_normal((3, 10, 12))))
    w, h, it = nmf(data, 3)
    for i in range(3):
        wi, hi, iti = nmf(data[i : i + 1], 3)
        close(w[i], wi[0], atol=0), close(h[i], hi[0], atol=0)
        assert it[i] == iti[0]


def test_contract_concepts_scores_and_chosen_map():
    model, x = seeded_cnn(seed=2), images(3, size=16, seed=3)
    exp = vx.explain(model, x, method="dff", concepts=4, targets=[0, 2, 4])
    assert exp.method == "deep_feature_factorization"
    assert exp.extras["concept_maps"].shape == (3, 4, 16, 16) and exp.extras["concept_layer_maps"].shape == (3, 4, 8, 8)
    assert exp.extras["concept_scores"].shape == (3, 4, 5) and exp.extras["concepts"].shape == (3, 4, 16)
    acts = model.features(torch.from_numpy(x)).detach().numpy().reshape(3, 16, 64)
    fc = model.fc.weight.detach().numpy()
    for i, t in enumerate([0, 2, 4]):
        concepts = exp.extras["concepts"][i]
        close(exp.extras["concept_scores"][i], concepts @ fc.T, atol=1e-4)  # s_j = U (W_j + m), no bias
        best = int(np.argmax(exp.extras["concept_scores"][i][:, t]))
        assert exp.options["concepts_chosen"][i] == best
        close(exp.maps[i], exp.extras["concept_maps"][i, best], atol=0)
        close(exp.layer_maps[i], exp.extras["concept_layer_maps"][i, best], atol=0)
        # the factorisation of the shifted activations A − m: its error is scikit-learn's on the same matrix
        offset = acts[i].min(axis=1, keepdims=True)
        reconstruction = (concepts.T - offset) @ exp.extras["concept_layer_maps"][i].reshape(4, 64)
        error = np.linalg.norm(reconstruction - (acts[i] - offset))
        sklearn = pytest.importorskip("sklearn.decomposition")
        reference = sklearn.NMF(n_components=4, init="random", random_state=0).fit((acts[i] - offset).astype(np.float64))
        assert abs(error - reference.reconstruction_err_) < 1e-4 * reference.reconstruction_err_


@pytest.mark.parametrize("k", [3, 5])
def test_agrees_with_pytorch_grad_cam_per_image(k):
    pytorch_grad_cam()
    from pytorch_grad_cam import DeepFeatureFactorization

    model, x = seeded_cnn(seed=2), images(3, size=16, seed=3)
    exp = vx.explain(model, x, method="dff", concepts=k)
    for i in range(len(x)):
        dff = DeepFeatureFactorization(model=model, target_layer=model.features, computation_on_concepts=model.fc)
        concepts, maps, outputs = dff(torch.from_numpy(x[i : i + 1]), n_components=k)
        close(exp.extras["concepts"][i], concepts.T, atol=1e-4 * max(1.0, float(np.abs(concepts).max())))
        close(exp.extras["concept_scores"][i] + model.fc.bias.detach().numpy(), outputs, atol=1e-4 * max(1.0, float(np.abs(outputs).max())))
        # pytorch-grad-cam min-max scales each concept map at the layer's size, then resizes it
        mine = upsample(minmax_last2(torch.from_numpy(exp.extras["concept_layer_maps"][i])), (16, 16)).numpy()
        close(mine, maps[0], atol=1e-4)


def test_pytorch_grad_cam_shares_concepts_across_its_batch():
    # why vexplain factorises per image: pytorch-grad-cam's result for an image depends on its batch
    pytorch_grad_cam()
    from pytorch_grad_cam import DeepFeatureFactorization

    model, x = seeded_cnn(seed=2), images(3, size=16, seed=3)
    together = DeepFeatureFactorization(model=model, target_layer=model.features)(torch.from_numpy(x), n_components=3)[1][0]
    alone = DeepFeatureFactorization(model=model, target_layer=model.features)(torch.from_numpy(x[:1]), n_components=3)[1][0]
    assert np.abs(together - alone).max() > 0.05
    mine_together = vx.explain(model, x, method="dff", concepts=3).extras["concept_maps"][0]
    mine_alone = vx.explain(model, x[:1], method="dff", concepts=3).extras["concept_maps"][0]
    close(mine_together, mine_alone, atol=1e-6)


def test_runs_on_onnx_like_torch():
    model, x = seeded_cnn(seed=2), images(4, size=16, seed=3)
    torch_exp = vx.explain(model, x, method="dff")
    onnx_exp = vx.explain(vx.adapt(onnx_bytes(model, (3, 16, 16))), x, method="dff")
    assert onnx_exp.options["backend"] == "onnx"
    close(onnx_exp.extras["concepts"], torch_exp.extras["concepts"], atol=1e-3)
    assert onnx_exp.options["concepts_chosen"] == torch_exp.options["concepts_chosen"]


@pytest.mark.parametrize("options, error, match", [
    ({"concepts": 0}, vx.InvalidOption, "concepts"),
    ({"concepts": 17}, vx.InvalidOption, "at most 16"),
    ({"layer": "features,fc"}, vx.InvalidOption, "one layer"),
    ({"layer": "nope"}, vx.UnknownLayer, "nope"),
    ({"tol": -1}, vx.InvalidOption, "tol"),
])
def test_bad_options(options, error, match):
    with pytest.raises(error, match=match):
        vx.explain(seeded_cnn(seed=2), images(1), method="dff", **options)


def test_callable_target_refused():
    with pytest.raises(vx.InvalidTarget, match="class indices"):
        vx.explain(seeded_cnn(seed=2), images(1), method="dff", targets=lambda out: out[:, 0])


def test_token_grid_layer():
    from vit_models import inputs as vit_inputs, plain_vit

    exp = vx.explain(plain_vit(seed=2), vit_inputs(2, seed=4), method="dff", layer="blocks.1", concepts=3)
    assert exp.extras["concept_layer_maps"].shape == (2, 3, 4, 4) and exp.maps.shape == (2, 32, 32)
    assert exp.options["layout"] == "tokens" and exp.options["prefix"] == 1
