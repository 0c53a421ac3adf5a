"""The plugin host, exercised with fake plugins registered at run time: provenance, duplicates,
validation, adapter plugins, and a registry left exactly as it was after each test."""
from __future__ import annotations

import numpy as np
import pytest
import torch

import vexplain as vx
from vexplain.core.adapter import ALL_CAPABILITIES, FORWARD, GRADIENTS
from vexplain.core.registry import REGISTRY, builtin_plugins

try:
    import test_plugins_support as support
except ImportError:  # tests/ imported as a package
    from tests import test_plugins_support as support


@pytest.fixture(autouse=True)
def registry_untouched():
    """Every test here must leave the registry as it found it."""
    before = support.snapshot()
    yield
    assert support.snapshot() == before


class Doubler(vx.Explainer):
    """map = 2 × channel sum of the input; targets as asked."""

    name = "test_doubler"
    requires = (FORWARD,)
    summary = "twice the channel sum"
    paper = "none"
    options = {"factor": vx.Option(2.0, float, "multiplier")}

    def attribute(self, adapter, inputs, targets, options):
        scores = adapter.forward(inputs)
        return vx.Attribution(maps=inputs.sum(dim=1) * options["factor"], scores=scores, targets=targets.select(scores))


# --- provenance and per-test registration -------------------------------------------------------


def test_builtins_are_ordinary_plugins_and_remember_their_plugin():
    plugins = {info.name: info.plugin for info in vx.methods()}
    assert plugins["saliency"] == "vexplain.plugins.saliency"
    assert plugins["occlusion"] == "vexplain.plugins.occlusion"
    names = [name for name, _ in REGISTRY.manager.list_name_plugin()]
    assert set(builtin_plugins()) <= set(names)
    assert {entry.plugin for entry in REGISTRY.adapters().values()} <= set(builtin_plugins())


def test_builtin_plugins_are_discovered_from_the_packages_not_a_hand_kept_list():
    plugins = builtin_plugins()
    assert {"vexplain.adapters.torch", "vexplain.adapters.onnx", "vexplain.plugins.gradcam"} <= set(plugins)
    # modules without hooks (shared bases, loaders) are imported but never registered as plugins
    assert "vexplain.plugins.cam_base" not in plugins
    assert "vexplain.adapters.torch_loading" not in plugins
    for info in vx.methods():
        if info.plugin.startswith("vexplain."):
            assert info.plugin in plugins


def test_loading_is_idempotent():
    manager = REGISTRY.manager
    explainers = REGISTRY.explainers()
    vx.methods()
    assert REGISTRY.manager is manager and REGISTRY.explainers() is explainers


def test_register_and_unregister_a_plugin_per_test():
    model, x = support.tiny_model(), support.tiny_inputs()
    with support.registered(support.make_plugin(Doubler), "doubler_plugin"):
        info = {m.name: m for m in vx.methods()}["test_doubler"]
        assert info.plugin == "doubler_plugin" and info.requires == (FORWARD,)
        assert info.options == {"factor": 2.0} and set(info.backends) == {"torch", "onnx"}
        exp = vx.explain(model, x, method="test_doubler", targets=1, factor=3.0)
        np.testing.assert_allclose(exp.maps, 3.0 * x.sum(dim=1).numpy(), rtol=1e-6)
        np.testing.assert_array_equal(exp.targets, [1, 1])
        assert exp.options["factor"] == 3.0
    assert "test_doubler" not in {m.name for m in vx.methods()}
    with pytest.raises(vx.UnknownMethod):
        vx.explain(model, x, method="test_doubler")


def test_a_module_plugin_gets_its_module_name():
    import types

    module = types.ModuleType("my_company_methods")

    @vx.hookimpl
    def register_explainers(register):
        register(Doubler)

    module.register_explainers = register_explainers
    name = REGISTRY.register_plugin(module)
    try:
        assert name == "my_company_methods"
        assert REGISTRY.explainer("test_doubler").plugin == "my_company_methods"
    finally:
        REGISTRY.unregister_plugin(name)


# --- duplicates --------------------------------------------------------------------------------


def test_duplicate_method_name_names_both_plugins():
    class FakeSaliency(Doubler):
        name = "saliency"

    with pytest.raises(vx.PluginError) as caught:
        REGISTRY.register_plugin(support.make_plugin(FakeSaliency), name="copycat")
    message = str(caught.value)
    assert "'saliency'" in message and "'vexplain.plugins.saliency'" in message and "'copycat'" in message
    assert "VEXPLAIN_DISABLE_PLUGINS" in message and "\n" not in message
    assert REGISTRY.explainer("saliency").plugin == "vexplain.plugins.saliency"


def test_duplicate_adapter_name_names_both_plugins():
    class TorchAgain(NumpyLinearFactory):
        name = "torch"

    with pytest.raises(vx.PluginError, match=r"adapter 'torch'.*'vexplain.adapters.torch'.*'second_torch'"):
        REGISTRY.register_plugin(support.make_plugin(adapters=(TorchAgain,)), name="second_torch")


def test_same_plugin_name_twice_is_a_plugin_error():
    with support.registered(support.make_plugin(Doubler), "twice"):
        with pytest.raises(vx.PluginError, match="twice"):
            REGISTRY.register_plugin(support.make_plugin(), name="twice")


# --- invalid registrations ---------------------------------------------------------------------


def _explainer(**attributes) -> type:
    return type("Custom", (Doubler,), attributes)


def _not_implemented() -> type:
    class NoAttribute(vx.Explainer):
        name = "no_attribute"

    return NoAttribute


INVALID_EXPLAINERS = {
    "plain class": (type("Plain", (), {"name": "plain"}), "not a vexplain.Explainer subclass"),
    "instance": (Doubler(), "not a vexplain.Explainer subclass"),
    "module with multi-line repr": (torch.nn.Sequential(torch.nn.ReLU(), torch.nn.ReLU()), "Sequential object"),
    "uppercase name": (_explainer(name="MyMethod"), "lowercase identifiers"),
    "space in name": (_explainer(name="my method"), "lowercase identifiers"),
    "empty name": (_explainer(name=""), "lowercase identifiers"),
    "leading digit": (_explainer(name="2x"), "lowercase identifiers"),
    "unknown capability": (_explainer(name="typo", requires=("gradient",)), "unknown capabilities ['gradient']"),
    "requires a string": (_explainer(name="stringy", requires="gradients"), "must be a tuple"),
    "no attribute()": (_not_implemented(), "does not implement attribute()"),
    "options not Option": (_explainer(name="raw_options", options={"k": 3}), "vexplain.Option"),
}


@pytest.mark.parametrize("obj, expected", INVALID_EXPLAINERS.values(), ids=INVALID_EXPLAINERS.keys())
def test_invalid_explainer_is_a_one_line_plugin_error(obj, expected):
    with pytest.raises(vx.PluginError) as caught:
        REGISTRY.register_plugin(support.make_plugin(obj), name="sloppy")
    message = str(caught.value)
    assert expected in message and "'sloppy'" in message
    assert "\n" not in message


class NumpyLinearModel:
    """Not a torch model: scores = weight @ (per-channel mean of the image) + bias, in numpy."""

    def __init__(self, weight: np.ndarray, bias: np.ndarray):
        self.weight, self.bias = weight, bias

    def __call__(self, images: np.ndarray) -> np.ndarray:
        return images.mean(axis=(2, 3)) @ self.weight.T + self.bias


class NumpyLinearAdapter(vx.ModelAdapter):
    backend = "numpy_linear"
    capabilities = frozenset({FORWARD})

    def __init__(self, model: NumpyLinearModel):
        super().__init__()
        self.model = model

    @property
    def input_channels(self) -> int:
        return self.model.weight.shape[1]

    def forward(self, inputs, batch_size=None):
        return torch.from_numpy(self.model(inputs.detach().cpu().numpy()).astype(np.float32))


class NumpyLinearFactory:
    name = "numpy_linear"
    priority = 30
    capabilities = NumpyLinearAdapter.capabilities

    @staticmethod
    def accepts(model) -> bool:
        return isinstance(model, NumpyLinearModel)

    @staticmethod
    def adapt(model, **options) -> NumpyLinearAdapter:
        return NumpyLinearAdapter(model, **options)


def _factory(**attributes) -> type:
    return type("Factory", (NumpyLinearFactory,), attributes)


INVALID_FACTORIES = {
    "missing adapt": (type("Half", (), {"name": "half", "priority": 1, "accepts": staticmethod(bool)}), "without adapt"),
    "bad name": (_factory(name="Numpy Linear"), "lowercase identifiers"),
    "priority not a number": (_factory(priority="high"), "priority must be a number"),
    "accepts not callable": (_factory(accepts=True), "accepts must be callable"),
    "unknown capability": (_factory(capabilities=frozenset({"forward", "jacobian"})), "unknown capabilities ['jacobian']"),
}


@pytest.mark.parametrize("factory, expected", INVALID_FACTORIES.values(), ids=INVALID_FACTORIES.keys())
def test_invalid_adapter_factory_is_a_one_line_plugin_error(factory, expected):
    with pytest.raises(vx.PluginError) as caught:
        REGISTRY.register_plugin(support.make_plugin(adapters=(factory,)), name="sloppy_backend")
    message = str(caught.value)
    assert expected in message and "'sloppy_backend'" in message and "\n" not in message


def test_unknown_hook_is_a_plugin_error():
    class Typo:
        @staticmethod
        @vx.hookimpl
        def register_explainer(register):  # missing "s"
            register(Doubler)

    with pytest.raises(vx.PluginError, match="register_explainer"):
        REGISTRY.register_plugin(Typo(), name="typo")


def test_hook_that_raises_is_a_plugin_error_naming_the_plugin():
    @vx.hookimpl
    def register_explainers(register):
        raise RuntimeError("lost my\nconfig")

    import types

    plugin = types.SimpleNamespace(register_explainers=register_explainers)
    with pytest.raises(vx.PluginError, match=r"plugin 'crashy' failed in register_explainers: RuntimeError: lost my config"):
        REGISTRY.register_plugin(plugin, name="crashy")


# --- an adapter plugin ---------------------------------------------------------------------------


@pytest.fixture
def numpy_linear():
    rng = np.random.default_rng(3)
    model = NumpyLinearModel(rng.normal(size=(4, 3)), rng.normal(size=4))
    with support.registered(support.make_plugin(adapters=(NumpyLinearFactory,)), "numpy_backend"):
        yield model


def test_adapter_plugin_is_used_by_adapt_and_explain(numpy_linear):
    model = numpy_linear
    assert isinstance(vx.adapt(model), NumpyLinearAdapter)
    assert REGISTRY.adapters()["numpy_linear"].plugin == "numpy_backend"
    x = np.random.default_rng(4).normal(size=(2, 3, 4, 6)).astype(np.float32)
    exp = vx.explain(model, x, method="occlusion", window=2, stride=2, targets=[0, 3])
    assert exp.options["backend"] == "numpy_linear"
    np.testing.assert_allclose(exp.scores, model(x), rtol=1e-5)
    # non-overlapping 2x2 windows, baseline 0: the score drops by w_t · (window sum of x) / (H W)
    blocks = x.reshape(2, 3, 2, 2, 3, 2).sum(axis=(3, 5))  # (N, C, h/2, w/2)
    drop = np.einsum("nc,nchw->nhw", model.weight[[0, 3]], blocks) / (4 * 6)
    expected = np.repeat(np.repeat(drop, 2, axis=1), 2, axis=2)
    np.testing.assert_allclose(exp.maps, expected, rtol=1e-4, atol=1e-6)


def test_adapter_plugin_capabilities_gate_methods(numpy_linear):
    backends = {info.name: info.backends for info in vx.methods()}
    assert "numpy_linear" in backends["occlusion"]
    assert "numpy_linear" not in backends["saliency"]
    with pytest.raises(vx.UnsupportedCapability) as caught:
        vx.explain(numpy_linear, np.zeros((1, 3, 4, 4), np.float32), method="saliency")
    assert caught.value.capability == GRADIENTS and "occlusion" in caught.value.working_methods


def test_adapter_priority_decides_between_factories():
    class Wrapped(NumpyLinearAdapter):
        backend = "wrapped_torch"

        def __init__(self, module):
            vx.ModelAdapter.__init__(self)
            self.module = module

        @property
        def input_channels(self):
            return None

        def forward(self, inputs, batch_size=None):
            return self.module(inputs)

    def factory(priority):
        return type(
            "WrappedFactory",
            (),
            {
                "name": "wrapped_torch",
                "priority": priority,
                "capabilities": frozenset({FORWARD}),
                "accepts": staticmethod(lambda model: isinstance(model, torch.nn.Module)),
                "adapt": staticmethod(lambda model, **options: Wrapped(model)),
            },
        )

    module = support.tiny_model()
    with support.registered(support.make_plugin(adapters=(factory(100),)), "wrapper_first"):
        assert isinstance(vx.adapt(module), Wrapped)
    with support.registered(support.make_plugin(adapters=(factory(-1),)), "wrapper_last"):
        assert vx.adapt(module).backend == "torch"


def test_every_capability_is_known_to_the_validator():
    with support.registered(support.make_plugin(_explainer(name="needs_all", requires=ALL_CAPABILITIES)), "greedy"):
        assert {m.name: m.backends for m in vx.methods()}["needs_all"] == ("torch",)
