"""A Hugging Face ViT exported to ONNX runs the gradient-free CAM methods on its token layers: the
grid comes from the patch-embedding Conv's stride in the graph, and the maps equal the torch
adapter's on the same layer within 1e-5. One export per test session (``dynamo=False``)."""
from __future__ import annotations

import numpy as np
import pytest
import torch

import vexplain as vx
from vexplain.core.errors import InvalidOption, UnsupportedCapability

from vit_models import hf_vit, inputs

pytest.importorskip("onnxruntime")

#: the same tensor in both backends: the first block's MLP output (a token layer whose every
#: channel reaches the class token through the second block's attention)
TORCH_LAYER, ONNX_LAYER = "vit.layers.0.mlp.fc2", "/vit/layers.0/mlp/fc2/Add_output_0"


@pytest.fixture(scope="session")
def exported(tmp_path_factory):
    model = hf_vit(seed=2)
    path = tmp_path_factory.mktemp("vit_onnx") / "vit.onnx"
    with torch.no_grad():
        torch.onnx.export(model, (inputs(1),), str(path), dynamo=False, input_names=["pixels"], output_names=["logits"], dynamic_axes={"pixels": {0: "n"}, "logits": {0: "n"}})
    return model, str(path)


def test_graph_patch_stride_and_token_layers(exported):
    model, path = exported
    adapter = vx.adapt(path)
    assert adapter.backend == "onnx" and adapter.patch_stride() == (8, 8)
    assert ONNX_LAYER in adapter.layers()
    assert vx.adapt(model).patch_stride() == (8, 8)


@pytest.mark.parametrize("method", ["scorecam", "ablationcam", "eigencam"])
def test_gradient_free_cams_equal_the_torch_adapter(exported, method):
    model, path = exported
    x = inputs(3, seed=4)
    on_torch = vx.explain(model, x, method=method, layer=TORCH_LAYER)
    on_onnx = vx.explain(path, x, method=method, layer=ONNX_LAYER)
    assert on_onnx.options["grid"] == [4, 4] and on_onnx.options["prefix"] == 1 and on_onnx.options["layout"] == "tokens"
    assert on_onnx.targets.tolist() == on_torch.targets.tolist()
    assert np.abs(on_onnx.layer_maps - on_torch.layer_maps).max() <= 1e-5 * max(1.0, float(np.abs(on_torch.layer_maps).max()))
    assert np.abs(on_onnx.maps - on_torch.maps).max() <= 1e-5 * max(1.0, float(np.abs(on_torch.maps).max()))
    assert float(np.abs(on_onnx.layer_maps).max()) > 0


def test_explicit_grid_and_typed_errors(exported):
    _, path = exported
    x = inputs(1)
    exp = vx.explain(path, x, method="eigencam", layer=ONNX_LAYER, grid=(4, 4), prefix=1)
    assert exp.options["grid"] == [4, 4]
    with pytest.raises(InvalidOption, match="grid"):
        vx.explain(path, x, method="eigencam", layer=ONNX_LAYER, grid=(5, 5))
    with pytest.raises(UnsupportedCapability):
        vx.explain(path, x, method="attention_gradcam")


def test_the_default_layer_is_the_one_the_torch_adapter_picks(exported):
    """No layer=: the normalised input of the last attention (``blocks[-1].norm1``), as on torch."""
    model, path = exported
    x = inputs(3, seed=4)
    on_onnx = vx.explain(path, x, method="scorecam")
    on_torch = vx.explain(model, x, method="scorecam")
    assert on_torch.options["layer"] == "vit.layers.1.layernorm_before"
    assert on_onnx.options["layer"] == "/vit/layers.1/layernorm_before/LayerNormalization_output_0"
    assert on_onnx.options["grid"] == [4, 4] and on_onnx.options["prefix"] == 1
    assert np.abs(on_onnx.maps - on_torch.maps).max() <= 1e-5 * max(1.0, float(np.abs(on_torch.maps).max()))


def test_vexplain_layers_lists_token_tensors_and_marks_the_default(exported, capsys):
    from vexplain.cli.main import main

    _, path = exported
    assert main(["layers", path]) == 0  # no --size: the graph's fixed 32x32 input, not 224x224
    lines = capsys.readouterr().out.splitlines()
    marked = [line for line in lines if line.startswith("*")]
    assert len(marked) == 1 and "/vit/layers.1/layernorm_before/" in marked[0] and "tokens: grid 4x4, prefix 1" in marked[0]
    assert any(ONNX_LAYER in line and "tokens: grid 4x4, prefix 1" in line for line in lines)
    assert vx.adapt(path).metadata["input_size"] == [32, 32]


def test_eigencam_says_when_its_sign_is_undetermined(exported):
    """A LayerNorm with unit gain makes every token's channels sum to 0: nothing orients the
    principal component, and ONNX and torch maps may differ in sign, so the result says so."""
    model, path = exported
    x = inputs(2, seed=4)
    for exp in (vx.explain(model, x, method="eigencam", layer="vit.layers.1.layernorm_before"), vx.explain(path, x, method="eigencam")):
        assert any("sign is undetermined" in w for w in exp.warnings), exp.warnings
    assert vx.explain(model, x, method="eigencam", layer=TORCH_LAYER).warnings == []


def test_an_exported_hybrid_reads_its_grid_from_the_token_count(tmp_path):
    """A ViT-hybrid's embedding Conv has stride 2 on a stride-4 stem: the graph's 17 tokens are
    still a 4x4 grid and a class token (effective stride 8), and the default layer's Score-CAM
    equals the torch adapter's."""
    from vit_models import hybrid_vit

    model, x = hybrid_vit(seed=3), inputs(2, seed=5)
    path = tmp_path / "hybrid.onnx"
    # with gradients on, nn.MultiheadAttention takes its exportable path (its fused fast path has no ONNX op)
    torch.onnx.export(model, (inputs(1),), str(path), dynamo=False, input_names=["pixels"], dynamic_axes={"pixels": {0: "n"}})
    adapter = vx.adapt(str(path))
    assert adapter.patch_stride() == (2, 2)
    on_onnx, on_torch = vx.explain(adapter, x, method="scorecam"), vx.explain(model, x, method="scorecam")
    assert on_torch.options["layer"] == "blocks.1.norm1"
    assert (on_onnx.options["grid"], on_onnx.options["prefix"]) == ([4, 4], 1) == (on_torch.options["grid"], on_torch.options["prefix"])
    assert np.abs(on_onnx.maps - on_torch.maps).max() <= 1e-5 * max(1.0, float(np.abs(on_torch.maps).max()))
