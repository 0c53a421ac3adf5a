"""Every hook is tested and documented, and the README's example plugin really works."""
from __future__ import annotations

import re
import sys
import tomllib
import types
from pathlib import Path

import numpy as np
import pluggy
import pytest
import torch

import vexplain as vx
from vexplain.core import hookspecs
from vexplain.core.adapter import ALL_CAPABILITIES
from vexplain.core.registry import DISABLE_VARIABLE, ENTRY_POINT_GROUP

try:
    import test_plugins_support as support
except ImportError:  # tests/ imported as a package
    from tests import test_plugins_support as support

TESTS = Path(__file__).resolve().parent
README = TESTS.parent / "README.md"
HEADING = "## Write a plugin"


def hookspec_names() -> list[str]:
    manager = pluggy.PluginManager(hookspecs.PROJECT)
    return sorted(name for name in dir(hookspecs) if manager.parse_hookspec_opts(hookspecs, name) is not None)


def plugin_section() -> str:
    text = README.read_text(encoding="utf-8")
    assert HEADING in text, f"README.md lost its '{HEADING}' heading"
    return text[text.index(HEADING) :]


def code_blocks(language: str) -> list[str]:
    return re.findall(rf"^```{language}\n(.*?)^```", plugin_section(), flags=re.S | re.M)


def test_hookspecs_are_found():
    assert {"register_explainers", "register_adapters", "register_metrics"} <= set(hookspec_names())


@pytest.mark.parametrize("hook", hookspec_names())
def test_every_hook_has_a_test(hook):
    """A new hook spec fails here until some test implements it."""
    others = [p for p in TESTS.glob("*.py") if p.resolve() != Path(__file__).resolve()]
    implemented = [p.name for p in others if re.search(rf"\bdef {hook}\(", p.read_text(encoding="utf-8"))]
    assert implemented, f"no test under tests/ implements the hook '{hook}'"


@pytest.mark.parametrize("hook", hookspec_names())
def test_every_hook_is_documented(hook):
    """A new hook spec fails here until the README's plugin section describes it."""
    assert f"`{hook}(register)`" in plugin_section(), f"README '{HEADING}' does not document the hook '{hook}'"


def test_plugin_section_covers_the_contract():
    section = plugin_section()
    needed = [
        f"`{ENTRY_POINT_GROUP}`",
        DISABLE_VARIABLE,
        "vx.plugin_failures()",
        "vx.PluginError",
        "attribute(adapter, inputs, targets, options) -> vx.Attribution",
        "evaluate(case, options) -> vx.MetricResult",
        *(f"`{attribute}`" for attribute in ("needs", "headline", "higher_is_better")),
        *(f"`{attribute}`" for attribute in ("name", "requires", "summary", "paper", "options")),
        *(f"`{capability}`" for capability in ALL_CAPABILITIES),
    ]
    missing = [item for item in needed if item not in section]
    assert not missing, f"README '{HEADING}' does not mention {missing}"


def test_toml_snippet_declares_the_example_module():
    (snippet,) = code_blocks("toml")
    entry_points = tomllib.loads(snippet)["project"]["entry-points"][ENTRY_POINT_GROUP]
    assert entry_points == {"sobel_edges": "vexplain_sobel"}


@pytest.fixture
def readme_plugin():
    """The README's python block executed as the module its toml snippet names, registered."""
    (source,) = code_blocks("python")
    module = types.ModuleType("vexplain_sobel")
    module.__file__ = str(README)
    sys.modules[module.__name__] = module
    try:
        exec(compile(source, f"{README}:{HEADING}", "exec"), module.__dict__)
        with support.registered(module, "vexplain_sobel"):
            yield module
    finally:
        del sys.modules[module.__name__]


def sobel_magnitude(images: np.ndarray) -> np.ndarray:
    """Independent reference: |Sobel gradient| per channel, edges replicated, by explicit sums."""
    padded = np.pad(images, ((0, 0), (0, 0), (1, 1), (1, 1)), mode="edge").astype(np.float64)
    smooth, diff = np.array([1.0, 2.0, 1.0]), np.array([-1.0, 0.0, 1.0])
    h, w = images.shape[2:]
    gx = np.zeros(images.shape)
    gy = np.zeros(images.shape)
    for i in range(3):
        for j in range(3):
            window = padded[:, :, i : i + h, j : j + w]
            gx += smooth[i] * diff[j] * window
            gy += diff[i] * smooth[j] * window
    return np.sqrt(gx**2 + gy**2)


def test_readme_plugin_on_a_step_edge(readme_plugin):
    info = {m.name: m for m in vx.methods()}["sobel_edges"]
    assert info.plugin == "vexplain_sobel" and info.options == {"reduce": "mean"}
    x = np.zeros((1, 3, 6, 6), np.float32)
    x[..., 3:] = 1.0  # a vertical edge between columns 2 and 3
    model = support.tiny_model()
    exp = vx.explain(model, x, method="sobel_edges")
    expected = np.zeros((1, 6, 6), np.float32)
    expected[..., 2:4] = 4.0  # Sobel x-response 1 + 2 + 1 on both sides of the step
    np.testing.assert_allclose(exp.maps, expected, atol=1e-6)
    scores = model(torch.from_numpy(x)).detach().numpy()
    np.testing.assert_allclose(exp.scores, scores, rtol=1e-5)
    np.testing.assert_array_equal(exp.targets, scores.argmax(axis=1))
    assert exp.options["reduce"] == "mean"


def test_readme_plugin_matches_a_reference(readme_plugin):
    x = support.tiny_inputs(n=3, size=7).numpy()
    reference = sobel_magnitude(x)
    for reduce, combine in (("mean", reference.mean(axis=1)), ("max", reference.max(axis=1))):
        exp = vx.explain(support.tiny_model(), x, method="sobel_edges", targets=[0, 1, 2], reduce=reduce)
        np.testing.assert_allclose(exp.maps, combine, rtol=1e-5, atol=1e-5)
        np.testing.assert_allclose(exp.attributions, reference, rtol=1e-5, atol=1e-5)
        np.testing.assert_array_equal(exp.targets, [0, 1, 2])
    with pytest.raises(vx.InvalidOption, match="must be 'mean' or 'max'"):
        vx.explain(support.tiny_model(), x, method="sobel_edges", reduce="median")
