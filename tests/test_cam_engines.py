"""Score-CAM, Eigen-CAM and Ablation-CAM across engines: PyTorch and ONNX Runtime agree, Ablation-CAM's
partial recompute equals re-running the whole network per ablated channel, hooks never leak, and
the gradient-free methods run on an ONNX file in a process that builds no PyTorch model."""
from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import torch
from torch import nn

import vexplain as vx
from models import assert_untouched, hook_counts, images, onnx_bytes, seeded_cnn, snapshot

ATOL = 1e-4


def full_rerun_scores(model: nn.Module, x: torch.Tensor, layer: str, channels: list[int]) -> torch.Tensor:
    """Scores ``(len(channels), K)`` of the whole network run once per channel, with a forward hook
    zeroing that channel of ``layer``'s output: the plain definition of an ablated score."""
    module = model.get_submodule(layer)
    rows = []
    for channel in channels:

        def zero(module, args, output, channel=channel):
            output = output.clone()
            output[:, channel] = 0
            return output

        handle = module.register_forward_hook(zero)
        try:
            with torch.no_grad():
                rows.append(model(x))
        finally:
            handle.remove()
    return torch.cat(rows)


def ablated_batch(acts: torch.Tensor, channels: list[int]) -> torch.Tensor:
    batch = acts.expand(len(channels), *acts.shape[1:]).clone()
    batch[torch.arange(len(channels)), channels] = 0
    return batch


class CatSkipNet(nn.Module):
    """The tail concatenates a tensor from before the layer: 'prefix once' cannot work."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.stem = nn.Conv2d(3, 4, 3, padding=1)
        self.body = nn.Sequential(nn.Conv2d(4, 6, 3, padding=1), nn.ReLU())
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(10, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        stem = self.stem(x)
        return self.fc(torch.flatten(self.pool(torch.cat([self.body(stem), stem], dim=1)), 1))


class ResidualNet(nn.Module):
    """The tail adds a tensor from before the layer (broadcasts from batch 1)."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(1)
        self.stem = nn.Conv2d(3, 6, 3, padding=1)
        self.body = nn.Sequential(nn.Conv2d(6, 6, 3, padding=1), nn.ReLU())
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(6, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        stem = torch.relu(self.stem(x))
        return self.fc(torch.flatten(self.pool(self.body(stem) + stem), 1))


CASES = {
    "seeded_cnn/features": (lambda: seeded_cnn(seed=1), "features", "prefix once"),
    "seeded_cnn/features.1": (lambda: seeded_cnn(seed=1), "features.1", "prefix once"),
    "cat_skip/body": (CatSkipNet, "body", "repeat input"),
    "residual/body": (ResidualNet, "body", "prefix once"),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_partial_recompute_equals_full_rerun(case):
    build, layer, mode = CASES[case]
    model = build().eval()
    before = snapshot(model)
    x = torch.from_numpy(images(2, size=8, seed=5))
    adapter = vx.adapt(model)
    for n in range(2):
        acts = adapter.activations(x[n : n + 1], layer).activations
        channels = list(range(acts.shape[1]))
        expected = full_rerun_scores(model, x[n : n + 1], layer, channels)
        by_hook = adapter.replaced_scores(x[n : n + 1], layer, ablated_batch(acts, channels))
        torch.testing.assert_close(by_hook, expected, rtol=0, atol=1e-5)
        assert (by_hook - model(x[n : n + 1]).detach()).abs().max() > 1e-4  # ablation changes scores
    assert adapter.replacement_modes[layer] == mode
    assert_untouched(model, before)


@pytest.mark.parametrize("case", ["seeded_cnn/features", "cat_skip/body", "residual/body"])
def test_onnx_graph_split_equals_full_rerun(case):
    build, layer, _ = CASES[case]
    model = build().eval()
    x = torch.from_numpy(images(2, size=8, seed=5))
    torch_exp = vx.explain(model, x, method="ablationcam", layer=layer, targets=[0, 2])
    onnx_adapter = vx.adapt(onnx_bytes(model, (3, 8, 8)))
    onnx_exp = vx.explain(onnx_adapter, x, method="ablationcam", targets=[0, 2], layer=_onnx_layer(onnx_adapter, model, x, layer))
    assert onnx_exp.options["ablation_engine"] == "onnx graph split"
    np.testing.assert_allclose(onnx_exp.maps, torch_exp.maps, rtol=0, atol=ATOL)
    tail = onnx_adapter._tails[(onnx_exp.options["layer"], ("scores",))]
    assert tail.reads_input == (case != "seeded_cnn/features")  # a path around the layer is recomputed from the input


def _onnx_layer(onnx_adapter, model, x, layer: str) -> str:
    """The ONNX tensor holding the output of torch module ``layer``, matched by value."""
    reference = vx.adapt(model).activations(x, layer).activations
    for name in onnx_adapter.layers():
        value = onnx_adapter.activations(x, name).activations
        if value.shape == reference.shape and torch.allclose(value, reference, atol=1e-5):
            return name
    raise AssertionError(f"no ONNX tensor matches {layer}")


@pytest.mark.parametrize("method", ["scorecam", "eigencam", "ablationcam"])
def test_torch_and_onnx_agree(method):
    model, x = seeded_cnn(seed=0), images(4, size=16, seed=4)
    by_torch = vx.explain(model, x, method=method, **({"engine": "torch"} if method == "scorecam" else {}))
    by_onnx = vx.explain(onnx_bytes(model, (3, 16, 16)), x, method=method)
    assert by_onnx.options["backend"] == "onnx" and np.abs(by_torch.maps).max() > 1e-2
    assert by_onnx.targets.tolist() == by_torch.targets.tolist()
    np.testing.assert_allclose(by_onnx.maps, by_torch.maps, rtol=0, atol=ATOL)
    np.testing.assert_allclose(by_onnx.layer_maps, by_torch.layer_maps, rtol=0, atol=ATOL)
    if method == "scorecam":
        by_onnx_engine = vx.explain(model, x, method=method, engine="onnx")
        np.testing.assert_allclose(by_onnx_engine.maps, by_torch.maps, rtol=0, atol=ATOL)


def test_demo_model_torch_and_shipped_onnx_agree():
    from vexplain.demo.model import ASSETS, ONNX_FILE, load_demo_model, preprocess
    from vexplain.demo.scenes import generate_dataset

    x = preprocess(generate_dataset(2, seed=1)[0])
    model = load_demo_model()
    for method in ("scorecam", "eigencam", "ablationcam"):
        by_torch = vx.explain(model, x, method=method)
        by_onnx = vx.explain(str(ASSETS / ONNX_FILE), x, method=method)
        scale = np.abs(by_torch.maps).max()
        np.testing.assert_allclose(by_onnx.maps, by_torch.maps, rtol=0, atol=1e-4 * max(1.0, scale))


@pytest.mark.parametrize("batch_size", [1, 2, 4, 16])
@pytest.mark.parametrize("method", ["scorecam", "ablationcam"])
def test_batch_size_option_does_not_change_maps(method, batch_size):
    model, x = seeded_cnn(seed=2), images(3, size=16, seed=3)
    reference = vx.explain(model, x, method=method, batch_size=64)
    exp = vx.explain(model, x, method=method, batch_size=batch_size)
    np.testing.assert_allclose(exp.maps, reference.maps, rtol=0, atol=1e-5)
    onnx_exp = vx.explain(onnx_bytes(model, (3, 16, 16)), x, method=method, batch_size=batch_size)
    np.testing.assert_allclose(onnx_exp.maps, reference.maps, rtol=0, atol=ATOL)


def test_fixed_batch_onnx_model_ablation():
    model, x = seeded_cnn(seed=0), images(2, size=16, seed=4)
    fixed = vx.adapt(onnx_bytes(model, (3, 16, 16), dynamic_batch=False))
    assert fixed.fixed_batch == 1
    np.testing.assert_allclose(vx.explain(fixed, x, method="ablationcam", batch_size=5).maps, vx.explain(model, x, method="ablationcam").maps, rtol=0, atol=ATOL)


class FailsOnBigBatches(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.shape[0] > 1:
            raise RuntimeError("no batches here")
        return x


def test_hooks_removed_and_model_untouched_when_the_tail_raises():
    model = seeded_cnn(seed=0)
    model.pool = nn.Sequential(FailsOnBigBatches(), nn.AdaptiveAvgPool2d(1))
    before = snapshot(model)
    with pytest.raises(RuntimeError, match="no batches here"):
        vx.explain(model, images(1, size=16), method="ablationcam")
    assert hook_counts(model) == {}
    assert_untouched(model, before)


def test_torchscript_refuses_ablation_fast():
    scripted = torch.jit.script(seeded_cnn(seed=0))
    with pytest.raises(vx.UnsupportedCapability) as caught:
        vx.explain(scripted, images(1, size=16), method="ablationcam")
    assert caught.value.capability == "activations" and "rise" in caught.value.working_methods


def test_onnx_split_rejects_layers_after_the_scores():
    adapter = vx.adapt(onnx_bytes(seeded_cnn(seed=0), (3, 16, 16)))
    with pytest.raises(vx.VexplainError):
        adapter.replaced_scores(torch.zeros(1, 3, 16, 16), adapter.output_name, torch.zeros(2, 5))


# ------------------------------------------------------------------ ONNX file, no PyTorch model

ONNX_ONLY = """
import json, sys
import numpy as np
import torch

built = []
original_init = torch.nn.Module.__init__
def counting_init(self, *args, **kwargs):
    built.append(type(self).__name__)
    original_init(self, *args, **kwargs)
torch.nn.Module.__init__ = counting_init

import vexplain as vx
x = np.load(sys.argv[2])
out = {}
for method, options in json.loads(sys.argv[3]).items():
    exp = vx.explain(sys.argv[1], x, method=method, **options)
    assert exp.options["backend"] == "onnx", exp.options
    out[method] = exp.maps.tolist()
assert built == [], f"PyTorch modules were constructed: {built}"
assert "models" not in sys.modules
print(json.dumps(out))
"""

ONNX_ONLY_METHODS = {
    "cam": {},
    "occlusion": {"window": 4, "stride": 4},
    "scorecam": {},
    "eigencam": {},
    "ablationcam": {},
    "rise": {"masks": 100},
}


def test_gradient_free_methods_run_on_an_onnx_file_without_a_torch_model(tmp_path):
    model, x = seeded_cnn(seed=0), images(2, size=16, seed=4)
    path = tmp_path / "model.onnx"
    path.write_bytes(onnx_bytes(model, (3, 16, 16)))
    np.save(tmp_path / "x.npy", x)
    result = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(ONNX_ONLY), str(path), str(tmp_path / "x.npy"), json.dumps(ONNX_ONLY_METHODS)],
        capture_output=True, text=True, timeout=300, cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    maps = json.loads(result.stdout.strip().splitlines()[-1])
    assert set(maps) == set(ONNX_ONLY_METHODS)
    for method, options in ONNX_ONLY_METHODS.items():
        extra = {"engine": "torch"} if method in ("occlusion", "scorecam", "rise") else {}
        expected = vx.explain(model, x, method=method, **options, **extra).maps
        np.testing.assert_allclose(np.array(maps[method], dtype=np.float32), expected, rtol=0, atol=ATOL, err_msg=method)


def test_methods_list_their_backends():
    backends = {m.name: m.backends for m in vx.methods()}
    for name in ("scorecam", "eigencam", "ablationcam", "rise"):
        assert set(backends[name]) == {"torch", "onnx"}, name
    for name in ("gradcam_plusplus", "hirescam", "xgradcam", "layercam"):
        assert backends[name] == ("torch",), name


@pytest.mark.parametrize("method", ["scorecam", "ablationcam", "rise", "eigencam", "hirescam", "gradcam_plusplus", "layercam", "xgradcam"])
def test_callable_target_equals_the_class_index(method):
    model, x = seeded_cnn(seed=0), images(2, size=16, seed=1)
    options = {"masks": 64} if method == "rise" else {}
    by_callable = vx.explain(model, x, method=method, targets=lambda output: output[:, 1], **options)
    by_index = vx.explain(model, x, method=method, targets=1, **options)
    assert by_callable.scores.shape == (2, 1) and np.abs(by_index.maps).max() > 1e-3
    np.testing.assert_allclose(by_callable.maps, by_index.maps, rtol=0, atol=1e-5)


def test_only_the_network_after_the_layer_runs_per_ablated_channel():
    import onnx

    from vexplain.adapters.onnx_split import tail_model

    model, x = seeded_cnn(seed=0), images(2, size=16, seed=1)
    seen = {"stem": 0, "head": 0}
    counters = [
        model.features[0].register_forward_hook(lambda m, a, o: seen.__setitem__("stem", seen["stem"] + len(o))),
        model.fc.register_forward_hook(lambda m, a, o: seen.__setitem__("head", seen["head"] + len(o))),
    ]
    try:
        exp = vx.explain(model, x, method="ablationcam", batch_size=4, layer="features")
    finally:
        for handle in counters:
            handle.remove()
    assert exp.options["ablated_forwards"] == 2 * 16 and exp.options["batch_size"] == 4
    # the head scores every ablation; the stem sees one image per batch of 4 channels. Both also
    # see the activations pass (1 image each) and the one-time probe of 2 ablations (plain: the
    # input repeated twice; at once: the stem on 1 image, the head on 2 rows)
    assert seen["head"] == 2 * 16 + 2 + 2 + 2
    assert seen["stem"] == 2 * (16 // 4) + 2 + 2 + 1  # a full re-run would be 2 * 16 = 32
    exported = onnx.load_from_string(onnx_bytes(model, (3, 16, 16)))
    layer = vx.adapt(exported).default_cam_layer()
    data, reads_input = tail_model(exported, layer, "scores")
    ops = [node.op_type for node in onnx.load_from_string(data).graph.node]
    assert not reads_input and "Conv" not in ops and "Gemm" in ops


def test_replacing_a_layer_that_does_not_run_is_a_typed_error():
    model = seeded_cnn(seed=0)
    model.unused = nn.Conv2d(3, 3, 1)
    adapter = vx.adapt(model)
    with pytest.raises(vx.ModelLoadError, match="did not run"):
        adapter.replaced_scores(torch.zeros(1, 3, 16, 16), "unused", torch.zeros(2, 3, 16, 16))
    assert hook_counts(model) == {}
