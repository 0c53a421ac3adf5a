"""The register_metrics hook: provenance, duplicates, validation, a third-party metric end to end."""
from __future__ import annotations

import types

import numpy as np
import pytest

import vexplain as vx
from models import images, seeded_cnn
from test_plugins_support import registered, run_clean_python, snapshot
from vexplain.core.registry import REGISTRY, builtin_plugins

BUILTIN = {
    "deletion": "vexplain.plugins.metric_deletion",
    "insertion": "vexplain.plugins.metric_deletion",
    "pointing_game": "vexplain.plugins.metric_pointing_game",
    "randomization": "vexplain.plugins.metric_randomization",
    "road": "vexplain.plugins.metric_road",
}


@pytest.fixture(autouse=True)
def registry_untouched():
    before = snapshot(), {n: e.plugin for n, e in REGISTRY.metrics().items()}
    yield
    assert (snapshot(), {n: e.plugin for n, e in REGISTRY.metrics().items()}) == before


class MapMean(vx.Metric):
    """value = mean of each map times ``scale``."""

    name = "test_map_mean"
    summary = "mean of the map"
    paper = "none"
    headline = "mean"
    options = {"scale": vx.Option(1.0, float, "factor")}

    def evaluate(self, case, options):
        return vx.MetricResult(values={"mean": (case.maps.mean(dim=(1, 2)) * options["scale"]).cpu().numpy()})


def metric_plugin(*classes: type) -> types.SimpleNamespace:
    @vx.hookimpl
    def register_metrics(register):
        for cls in classes:
            register(cls)

    return types.SimpleNamespace(register_metrics=register_metrics)


def test_builtin_metrics_are_ordinary_plugins():
    listed = {m.name: m for m in vx.metrics()}
    assert {name: listed[name].plugin for name in BUILTIN} == BUILTIN
    assert set(BUILTIN.values()) <= set(builtin_plugins())
    assert listed["deletion"].options["steps"] == 100 and listed["deletion"].higher_is_better is False
    assert listed["pointing_game"].needs == ("masks",) and listed["randomization"].needs == ("method",)
    for info in listed.values():
        assert info.summary and info.paper and info.headline


def test_a_third_party_metric_registers_runs_and_unregisters():
    maps = np.arange(2 * 4 * 4, dtype=np.float32).reshape(2, 4, 4)
    with registered(metric_plugin(MapMean), "mean_plugin"):
        assert REGISTRY.metric("test_map_mean").plugin == "mean_plugin"
        ev = vx.evaluate(seeded_cnn(), images(2, size=4), maps, metric="test_map_mean", scale=2.0)
        np.testing.assert_allclose(ev.score, 2.0 * maps.mean(axis=(1, 2)))
        assert ev.options["scale"] == 2.0 and ev.metric == "test_map_mean"
    with pytest.raises(vx.UnknownMetric):
        REGISTRY.metric("test_map_mean")


def test_duplicate_metric_name_names_both_plugins():
    class FakeDeletion(MapMean):
        name = "deletion"

    with pytest.raises(vx.PluginError) as caught:
        REGISTRY.register_plugin(metric_plugin(FakeDeletion), name="copycat_metrics")
    message = str(caught.value)
    assert "metric 'deletion'" in message and "'vexplain.plugins.metric_deletion'" in message and "'copycat_metrics'" in message
    assert "\n" not in message and REGISTRY.metric("deletion").plugin == "vexplain.plugins.metric_deletion"


def _metric(**attributes) -> type:
    return type("Custom", (MapMean,), attributes)


class NoEvaluate(vx.Metric):
    name = "no_evaluate"
    headline = "x"


INVALID = {
    "not a Metric": (type("Plain", (), {"name": "plain"}), "not a vexplain.Metric subclass"),
    "an explainer": (type("E", (vx.Explainer,), {"name": "e"}), "not a vexplain.Metric subclass"),
    "bad name": (_metric(name="My Metric"), "lowercase identifiers"),
    "unknown capability": (_metric(name="typo", requires=("gradient",)), "unknown capabilities ['gradient']"),
    "unknown need": (_metric(name="needy", needs=("labels",)), "needs must be a tuple of masks, method"),
    "no evaluate()": (NoEvaluate, "does not implement evaluate()"),
    "no headline": (_metric(name="headless", headline=""), "headline must name a value"),
    "options not Option": (_metric(name="raw", options={"k": 1}), "vexplain.Option"),
}


@pytest.mark.parametrize("metric, expected", INVALID.values(), ids=INVALID.keys())
def test_invalid_metric_is_a_one_line_plugin_error(metric, expected):
    with pytest.raises(vx.PluginError) as caught:
        REGISTRY.register_plugin(metric_plugin(metric), name="sloppy_metrics")
    message = str(caught.value)
    assert expected in message and "\n" not in message


def test_a_disabled_builtin_metric_module_disappears():
    out = run_clean_python(
        "import vexplain as vx; print(sorted(m.name for m in vx.metrics()))",
        env={"VEXPLAIN_DISABLE_PLUGINS": "vexplain.plugins.metric_road"},
    )
    assert "road" not in out and "deletion" in out


def test_readme_metric_table_matches_the_registry():
    from pathlib import Path

    from vexplain.core.readme_tables import COMMAND, metric_table, table_in

    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text(encoding="utf-8")
    assert table_in(readme, "metrics") == metric_table(), f"run `{COMMAND}`"


def test_readme_evaluate_example_runs():
    import re
    from pathlib import Path

    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text(encoding="utf-8")
    section = readme.split("## Evaluate: which explanation to trust", 1)[1]
    (example,) = re.findall(r"^```python\n(.*?)^```", section.split("\n## ", 1)[0], flags=re.S | re.M)
    namespace: dict = {}
    exec(compile(example, "README.md evaluate example", "exec"), namespace)
    assert namespace["deletion"].curves["deletion"].shape == (4, 101)
    assert namespace["hits"].values["baseline_hit"].shape == (4,)
