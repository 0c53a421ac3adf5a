"""Inputs on which a method could quietly return something plausible get typed one-line errors."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

import vexplain as vx

from models import images, seeded_cnn


class TwoHeads(nn.Module):
    """Head "a" reads the features; head "b" is a separate branch the "a" score never touches."""

    def __init__(self) -> None:
        super().__init__()
        self.a = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.ReLU())
        self.b = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.ReLU())
        self.fc_a, self.fc_b = nn.Linear(4, 2), nn.Linear(4, 2)

    def forward(self, x: torch.Tensor) -> dict:
        return {"a": self.fc_a(self.a(x).mean(dim=(2, 3))), "b": self.fc_b(self.b(x).mean(dim=(2, 3)))}


@pytest.mark.parametrize("method", ["gradcam", "hirescam", "layercam"])
def test_a_layer_the_score_does_not_depend_on_is_an_error_not_a_zero_map(method):
    with pytest.raises(vx.InvalidTarget, match="does not depend on layer 'b'"):
        vx.explain(TwoHeads().eval(), images(2), method=method, targets=lambda out: out["a"][:, 0], layer="b")


@pytest.mark.parametrize("method", ["saliency", "gradcam"])
def test_a_detached_callable_target_is_an_error(method):
    with pytest.raises(vx.InvalidTarget, match="detached or constant"):
        vx.explain(seeded_cnn(), images(2), method=method, targets=lambda out: out[:, 1].detach())


def test_a_layer_with_one_position_is_refused_by_cam_methods():
    with pytest.raises(vx.InvalidOption, match="more than one position"):
        vx.explain(seeded_cnn(), images(2), method="eigencam", layer="pool")


def test_guided_gradcam_takes_one_layer():
    with pytest.raises(vx.InvalidOption, match="takes one layer"):
        vx.explain(seeded_cnn(), images(1), method="guided_gradcam", layer="features.0,features.2")


def test_non_finite_numbers_are_refused():
    with pytest.raises(vx.InvalidOption, match="finite"):
        vx.explain(seeded_cnn(), images(1), method="integrated_gradients", baseline=float("nan"))
    with pytest.raises(vx.InvalidOption, match="> 0"):
        vx.explain(seeded_cnn(), images(1), method="scorecam", memory_mb=0)


class HeadA(nn.Module):
    """TwoHeads' head "a" as a plain (N, K) output: the reference for a callable picking it."""

    def __init__(self, inner: TwoHeads) -> None:
        super().__init__()
        self.inner = inner

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.inner(x)["a"]


def test_ablationcam_with_a_callable_on_a_dict_output_equals_the_plain_head():
    torch.manual_seed(0)
    model = TwoHeads().eval()
    exp = vx.explain(model, images(2), method="ablationcam", targets=lambda out: out["a"][:, 1], layer="a")
    reference = vx.explain(HeadA(model), images(2), method="ablationcam", targets=1, layer="inner.a")
    assert np.abs(reference.maps).max() > 0
    np.testing.assert_allclose(exp.maps, reference.maps, rtol=1e-5, atol=1e-6)
