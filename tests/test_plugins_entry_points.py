"""Third-party plugins found through real entry points (a fake installed distribution on
sys.path): lazy loading, provenance, broken plugins, duplicates with built-ins, and
VEXPLAIN_DISABLE_PLUGINS. Each test restores sys.path, the environment and the registry."""
from __future__ import annotations

import json
import warnings

import numpy as np
import pytest

import vexplain as vx
from vexplain.core.registry import DISABLE_VARIABLE, REGISTRY

try:
    import test_plugins_support as support
except ImportError:  # tests/ imported as a package
    from tests import test_plugins_support as support


@pytest.fixture
def fake_dist(tmp_path):
    """A distribution ``fake_vexplain_plugin`` with entry point ``fake = fake_vexplain_plugin``."""
    return support.write_distribution(
        tmp_path / "site",
        "fake_vexplain_plugin",
        {"fake_vexplain_plugin": support.FAKE_PLUGIN},
        {"fake": "fake_vexplain_plugin"},
    )


@pytest.fixture(autouse=True)
def registry_restored():
    before = support.snapshot()
    yield
    assert support.snapshot() == before


def test_entry_point_plugin_is_listed_and_runs(monkeypatch, fake_dist):
    model, x = support.tiny_model(), support.tiny_inputs()
    with support.installed(monkeypatch, fake_dist, ("fake_vexplain_plugin",)):
        info = {m.name: m for m in vx.methods()}["fake_mean"]
        assert info.plugin == "fake"
        assert info.summary == "channel mean of the input, times scale" and info.options == {"scale": 1.0}
        exp = vx.explain(model, x, method="fake_mean", scale=2.0)
        np.testing.assert_allclose(exp.maps, 2.0 * x.mean(dim=1).numpy(), rtol=1e-6)
        np.testing.assert_allclose(exp.scores, model(x).detach().numpy(), rtol=1e-5)
        assert vx.plugin_failures() == []
        # entry points come first, built-ins after
        names = [name for name, _ in REGISTRY.manager.list_name_plugin()]
        assert names.index("fake") < names.index("vexplain.plugins.saliency")
    assert "fake_mean" not in {m.name for m in vx.methods()}


def test_import_is_lazy_and_entry_point_plugin_loads_once_in_a_clean_interpreter(fake_dist):
    out = support.run_clean_python(
        """
        import json, sys
        import torch
        import vexplain as vx
        from vexplain.core.registry import REGISTRY, builtin_module_names

        lazy = {
            "loaded": REGISTRY.loaded,
            "imported": sorted(m for m in (*builtin_module_names(), "fake_vexplain_plugin") if m in sys.modules),
        }
        model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(12, 2))
        x = torch.arange(24, dtype=torch.float32).reshape(2, 3, 2, 2)
        methods = {m.name: m.plugin for m in vx.methods()}
        manager = REGISTRY.manager
        exp = vx.explain(model, x, method="fake_mean")
        vx.methods()
        plugin = sys.modules["fake_vexplain_plugin"]
        print(json.dumps({
            "lazy": lazy,
            "plugin": methods.get("fake_mean"),
            "saliency": methods.get("saliency"),
            "maps": exp.maps.tolist(),
            "same_manager": REGISTRY.manager is manager,
            "hook_calls": len(plugin.CALLS),
            "failures": vx.plugin_failures(),
        }))
        """,
        pythonpath=fake_dist,
    )
    result = json.loads(out)
    expected_maps = np.arange(24, dtype=np.float32).reshape(2, 3, 2, 2).mean(axis=1)
    np.testing.assert_allclose(result.pop("maps"), expected_maps)
    assert result == {
        "lazy": {"loaded": False, "imported": []},  # importing vexplain loads no plugin
        "plugin": "fake",
        "saliency": "vexplain.plugins.saliency",
        "same_manager": True,
        "hook_calls": 1,  # loaded once, tables cached
        "failures": [],
    }


BROKEN = '''
    raise ImportError("needs libfoo, which is not installed")
'''

UNKNOWN_HOOK = '''
    import vexplain as vx


    @vx.hookimpl
    def register_unicorns(register):  # a hook vexplain does not have
        pass
'''


@pytest.fixture
def broken_dist(tmp_path):
    return support.write_distribution(
        tmp_path / "site",
        "broken_vexplain_plugins",
        {"broken_vexplain_plugin": BROKEN, "future_vexplain_plugin": UNKNOWN_HOOK},
        {"broken": "broken_vexplain_plugin", "future": "future_vexplain_plugin"},
    )


def test_broken_plugin_warns_and_is_reported(monkeypatch, broken_dist):
    model, x = support.tiny_model(), support.tiny_inputs()
    with support.installed(monkeypatch, broken_dist, ("broken_vexplain_plugin", "future_vexplain_plugin")):
        with pytest.warns(UserWarning) as caught:
            names = {m.name for m in vx.methods()}
        messages = [str(w.message) for w in caught]
        assert any("'broken' failed to load: ImportError: needs libfoo" in m for m in messages)
        assert any("'future' failed to load" in m and "register_unicorns" in m for m in messages)
        assert {"saliency", "occlusion", "cam", "gradcam"} <= names
        failures = dict(vx.plugin_failures())
        assert set(failures) == {"broken", "future"}
        assert failures["broken"] == "ImportError: needs libfoo, which is not installed"
        assert "register_unicorns" in failures["future"] and "\n" not in failures["future"]
        assert not REGISTRY.manager.has_plugin("future")
        exp = vx.explain(model, x, method="saliency")
        assert exp.maps.shape == (2, 8, 8)
    assert vx.plugin_failures() == []


def test_disabling_a_broken_plugin_silences_it(monkeypatch, broken_dist):
    env = {DISABLE_VARIABLE: "broken,future"}
    with support.installed(monkeypatch, broken_dist, ("broken_vexplain_plugin",), env=env):
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            assert vx.plugin_failures() == []
            vx.methods()


def test_entry_point_duplicating_a_builtin_names_both(monkeypatch, tmp_path):
    source = support.FAKE_PLUGIN.replace('name = "fake_mean"', 'name = "occlusion"')
    root = support.write_distribution(
        tmp_path / "site", "fake_vexplain_plugin", {"fake_vexplain_plugin": source}, {"fake": "fake_vexplain_plugin"}
    )
    with support.installed(monkeypatch, root, ("fake_vexplain_plugin",)):
        with pytest.raises(vx.PluginError) as caught:
            vx.methods()
        message = str(caught.value)
        assert "'occlusion'" in message and "'fake'" in message and "'vexplain.plugins.occlusion'" in message
    with support.installed(monkeypatch, root, ("fake_vexplain_plugin",), env={DISABLE_VARIABLE: "vexplain.plugins.occlusion"}):
        assert REGISTRY.explainer("occlusion").plugin == "fake"


def test_disable_variable_hides_builtin_and_entry_point_plugins(monkeypatch, fake_dist):
    model, x = support.tiny_model(), support.tiny_inputs()
    env = {DISABLE_VARIABLE: " fake , vexplain.plugins.occlusion,"}
    with support.installed(monkeypatch, fake_dist, ("fake_vexplain_plugin",), env=env):
        names = {m.name for m in vx.methods()}
        assert "fake_mean" not in names and "occlusion" not in names
        assert {"saliency", "cam", "gradcam"} <= names
        with pytest.raises(vx.UnknownMethod):
            vx.explain(model, x, method="occlusion")
        with pytest.raises(vx.PluginError, match=DISABLE_VARIABLE):
            REGISTRY.register_plugin(support.make_plugin(), name="fake")
    restored = {m.name for m in vx.methods()}
    assert "occlusion" in restored and "fake_mean" not in restored
