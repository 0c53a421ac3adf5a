"""benchmarks/evaluation_table.py: the README's evaluation table from the registry and `vexplain evaluate`."""
from __future__ import annotations

import importlib.util
import types
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def generator() -> types.ModuleType:
    spec = importlib.util.spec_from_file_location("evaluation_table", ROOT / "benchmarks" / "evaluation_table.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_methods_come_from_the_registry_so_a_new_plugin_is_picked_up(generator):
    import torch

    import vexplain as vx
    from vexplain.core.registry import REGISTRY

    class Constant(vx.Explainer):
        name = "test_table_constant"
        requires = ("forward",)
        summary = "a constant map"
        paper = "none"
        options = {}

        def attribute(self, adapter, inputs, targets, options):
            scores = adapter.forward(inputs)
            return vx.Attribution(maps=torch.ones(inputs.shape[0], *inputs.shape[2:]), scores=scores, targets=targets.select(scores))

    plugin = types.ModuleType("test_table_plugin")

    @vx.hookimpl
    def register_explainers(register):
        register(Constant)

    plugin.register_explainers = register_explainers
    name = REGISTRY.register_plugin(plugin, "test_table_plugin")
    try:
        methods, metrics = generator.registered()
    finally:
        REGISTRY.unregister_plugin(name)
    assert "test_table_constant" in methods and "attention_rollout" not in methods  # the CNN has no attention
    assert methods[:] == sorted(methods) and [m for m in methods if m != "test_table_constant"] == [m.name for m in vx.methods() if m.name in methods]
    assert metrics == [m.name for m in vx.metrics()]
    command = generator.evaluate_command(methods, metrics, 4, 20, 1, Path("out"))
    assert command[1:3] == ["evaluate", "--images"] and command[command.index("--methods") + 1] == ",".join(methods)
    assert "deletion.steps=20" in command and "insertion.steps=20" in command and "randomization.layers=1" in command


def test_the_table_has_a_row_per_method_and_says_what_did_not_run(generator):
    results = {
        "baseline": "random_baseline",
        "metrics": {"deletion": {"headline": "auc", "higher_is_better": False}, "pointing_game": {"headline": "hit", "higher_is_better": True}},
        "methods": {
            "saliency": {"seconds": 0.5, "results": {"deletion": {"mean": {"auc": 0.25}}}, "failures": {"pointing_game": "InvalidInput: x"}},
            "cam": {"seconds": 0.125, "results": {"deletion": {"mean": {"auc": 0.2}}, "pointing_game": {"mean": {"hit": 1.0}}}},
            "random_baseline": {"seconds": 0.01, "results": {"deletion": {"mean": {"auc": 0.5}}}, "not_applicable": {"pointing_game": "no"}},
            "lime": {"skipped": "InvalidOption: y"},
        },
    }
    assert generator.table(results).splitlines() == [
        "| method | deletion auc ↓ | pointing_game hit ↑ | explain s |",
        "|---|---|---|---|",
        "| `cam` | 0.200 | 1.000 | 0.12 |",
        "| `lime` | skipped | skipped | – |",
        "| `saliency` | 0.250 | failed | 0.50 |",
        "| `random_baseline` | 0.500 | n/a | 0.01 |",
    ]


def test_rewrite_replaces_only_what_lies_between_the_markers(generator, tmp_path):
    readme = tmp_path / "README.md"
    readme.write_text(f"before\n{generator.START}\nold\n{generator.END}\nafter\n")
    generator.rewrite(readme, "| new |")
    assert readme.read_text() == f"before\n{generator.START}\n| new |\n{generator.END}\nafter\n"
    assert generator.START in (ROOT / "README.md").read_text()
