"""Batching never changes results: for every registered method (parametrised from the registry,
so a new method is covered the moment it registers), on every backend it runs on."""
from __future__ import annotations

import numpy as np
import pytest

import vexplain as vx
from vexplain.core.adapter import ATTENTION

from models import images, onnx_bytes, seeded_cnn
from vit_models import plain_vit

#: options that keep a method fast on 3x16x16 inputs; methods not listed run with their defaults
FAST_OPTIONS = {
    "occlusion": {"window": 4, "stride": 4},
    "shapley_sampling": {"cells": 4, "samples": 4},
    "kernel_shap": {"cells": 4, "samples": 64},
    "lime": {"cells": 4, "samples": 64},
    "extremal_perturbation": {"max_iter": 20},
    "guided_ig": {"steps": 20},
}
METHODS = [m.name for m in vx.methods()]
#: methods that need attention modules run on a tiny ViT (32x32 inputs) instead of the CNN
NEEDS_ATTENTION = {m.name for m in vx.methods() if ATTENTION in m.requires}
ONNX_METHODS = [m.name for m in vx.methods() if "onnx" in m.backends]
N = 16
ATOL = 1e-5


@pytest.fixture(scope="module")
def model():
    return seeded_cnn(seed=2)


@pytest.fixture(scope="module")
def x():
    return images(N, size=16, seed=3)


@pytest.fixture(scope="module")
def onnx_model():
    return vx.adapt(onnx_bytes(seeded_cnn(seed=2), (3, 16, 16)))


def subject(model, x, method):
    """The CNN and its images, or a tiny ViT and 32x32 images for a method that needs attention."""
    if method in NEEDS_ATTENTION:
        return plain_vit(seed=2), images(N, size=32, seed=3)
    return model, x


def chunked(model, x, method, size, targets=None, **options):
    parts = []
    for start in range(0, len(x), size):
        part_targets = None if targets is None else targets[start : start + size]
        parts.append(vx.explain(model, x[start : start + size], method=method, targets=part_targets, **options))
    return parts


def assert_same(parts, whole):
    maps = np.concatenate([p.maps for p in parts])
    assert maps.shape == whole.maps.shape
    np.testing.assert_allclose(maps, whole.maps, rtol=0, atol=ATOL)
    np.testing.assert_array_equal(np.concatenate([p.targets for p in parts]), whole.targets)
    np.testing.assert_allclose(np.concatenate([p.scores for p in parts]), whole.scores, rtol=0, atol=ATOL)
    for field in ("attributions", "layer_maps"):
        values = [getattr(p, field) for p in parts]
        if getattr(whole, field) is None:
            assert all(v is None for v in values)
        else:
            np.testing.assert_allclose(np.concatenate(values), getattr(whole, field), rtol=0, atol=ATOL)


def test_registry_lists_the_builtins():
    assert {"saliency", "occlusion", "cam", "gradcam"} <= set(METHODS)
    assert {"cam", "occlusion"} <= set(ONNX_METHODS)


@pytest.mark.parametrize("method", METHODS)
def test_input_batch_size_does_not_change_maps(model, x, method):
    options = FAST_OPTIONS.get(method, {})
    model, x = subject(model, x, method)
    whole = vx.explain(model, x, method=method, **options)
    assert whole.maps.shape == (N, *x.shape[2:])
    assert len(set(whole.targets.tolist())) > 1  # inputs really differ
    for size in (1, 2, 4):
        assert_same(chunked(model, x, method, size, **options), whole)


@pytest.mark.parametrize("method", METHODS)
def test_adapter_batch_size_does_not_change_maps(model, x, method):
    options = FAST_OPTIONS.get(method, {})
    model, x = subject(model, x, method)
    targets = list(np.random.default_rng(0).integers(0, 5, N))  # per-input targets cross adapter batches
    whole = vx.explain(model, x, method=method, targets=targets, **options)
    adapter = vx.adapt(model, batch_size=3)
    small = vx.explain(adapter, x, method=method, targets=targets, **options)
    assert small.targets.tolist() == [int(t) for t in targets]
    assert_same([small], whole)


@pytest.mark.parametrize("method", ONNX_METHODS)
def test_onnx_input_batch_size_does_not_change_maps(onnx_model, x, method):
    options = FAST_OPTIONS.get(method, {})
    whole = vx.explain(onnx_model, x, method=method, **options)
    for size in (1, 4):
        assert_same(chunked(onnx_model, x, method, size, **options), whole)
    assert_same([vx.explain(vx.adapt(onnx_bytes(seeded_cnn(seed=2), (3, 16, 16)), batch_size=3), x, method=method, **options)], whole)


@pytest.mark.parametrize("engine", ["torch", "onnx", "incremental"])
def test_occlusion_batch_size_option_does_not_change_maps(model, x, engine):
    reference = vx.explain(model, x[:3], method="occlusion", window=3, stride=2, engine=engine)
    for batch_size in (1, 7):
        exp = vx.explain(model, x[:3], method="occlusion", window=3, stride=2, batch_size=batch_size, engine=engine)
        assert exp.options["batch_size"] == batch_size and exp.options["engine"] == engine and "engine_fallback" not in exp.options
        np.testing.assert_allclose(exp.maps, reference.maps, rtol=0, atol=ATOL)
