"""``engine="auto"`` by measurement (core/engine_choice.py): the choice logic under stubbed
timings (never timed assertions), the cache (hit, key changes, disk round trip, corrupt file),
what ``exp.options`` records, and maps identical whatever engine auto chose."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch

import vexplain as vx
from vexplain.core import engine_choice
from vexplain.core.engine_choice import ENGINES
from vexplain.core.registry import REGISTRY
from models import images, onnx_bytes, seeded_cnn


@pytest.fixture(autouse=True)
def fresh(monkeypatch):
    """No cache from other tests, no disk cache unless a test sets one, and probing on any work
    size (the tiny-work gates are tested on their own)."""
    engine_choice.clear_cache()
    monkeypatch.delenv(engine_choice.CACHE_VARIABLE, raising=False)
    monkeypatch.setattr(engine_choice, "MIN_PROBE_INPUTS", 1)
    monkeypatch.setattr(engine_choice, "MIN_RUN_SECONDS", 0.0)
    yield
    engine_choice.clear_cache()


class Timings:
    """A stub for ``engine_choice.measure``: seconds per input from ``table[engine]`` (a number,
    or ``{batch: seconds}``); runs the candidate once so a broken candidate still fails; counts calls."""

    def __init__(self, table):
        self.table, self.calls = table, []

    def __call__(self, engine, batch, run, device):
        run(batch)
        self.calls.append((engine, batch))
        value = self.table[engine]
        return value[batch] if isinstance(value, dict) else value


def stub(monkeypatch, table) -> Timings:
    timings = Timings(table)
    monkeypatch.setattr(engine_choice, "measure", timings)
    return timings


def occlusion(model, x, **options):
    return vx.explain(model, x, method="occlusion", window=4, stride=2, **options)


def test_auto_takes_the_fastest_engine_where_the_rule_took_a_slower_one(monkeypatch):
    # issue 12: a 48x48 PReLU face classifier, window 8, stride 2: the rule picked incremental,
    # 1.5x slower than ONNX Runtime there; with timings saying so, auto now takes ONNX Runtime
    timings = stub(monkeypatch, {"incremental": 1.5e-3, "onnx": 1.0e-3, "torch": 4e-3})
    model, x = seeded_cnn(), images(2, size=16)
    exp = occlusion(model, x)
    assert exp.options["engine"] == "onnx" and exp.options["engine_reason"].startswith("probe: ")
    assert set(exp.options["engine_probes"]) == {"incremental", "onnx", "torch"}
    assert exp.options["engine_probes"]["onnx"][exp.options["batch_size"]] == 1.0e-3
    assert {engine for engine, _ in timings.calls} == {"incremental", "onnx", "torch"}
    direct = occlusion(model, x, engine="onnx", batch_size=exp.options["batch_size"])
    np.testing.assert_array_equal(exp.maps, direct.maps)


def test_the_batch_size_is_the_fastest_per_input_within_the_memory_budget(monkeypatch):
    # issue 12: an ONNX classifier ran 1.6x slower at the default batch than at 32
    stub(monkeypatch, {"onnx": {256: 1.6e-3, 64: 1.3e-3, 32: 1.0e-3, 8: 1.2e-3, 1: 3e-3}})
    model = vx.adapt(onnx_bytes(seeded_cnn(), (3, 16, 16)))
    x = images(1, size=16)
    exp = vx.explain(model, x, method="rise", masks=300, cells=4)
    assert exp.options["engine"] == "onnx" and exp.options["batch_size"] == 32
    assert sorted(exp.options["engine_probes"]["onnx"]) == [1, 8, 32, 64, 256]  # 256: the memory-derived size
    direct = vx.explain(model, x, method="rise", masks=300, cells=4, engine="onnx", batch_size=32)
    np.testing.assert_array_equal(exp.maps, direct.maps)


def test_a_given_batch_size_is_kept_and_only_engines_are_compared(monkeypatch):
    timings = stub(monkeypatch, {"incremental": 2e-3, "onnx": 3e-3, "torch": 1e-3})
    exp = occlusion(seeded_cnn(), images(1, size=16), batch_size=5)
    assert exp.options["engine"] == "torch" and exp.options["batch_size"] == 5
    assert {batch for _, batch in timings.calls} == {5}


def test_probe_budget_leaves_smaller_batches_untimed_and_says_so(monkeypatch):
    monkeypatch.setattr(engine_choice, "PROBE_SECONDS", 0.0)
    monkeypatch.setattr(engine_choice, "PROBE_FRACTION", 0.0)
    timings = stub(monkeypatch, {"incremental": 2e-3, "onnx": 1e-3, "torch": 3e-3})
    exp = occlusion(seeded_cnn(), images(1, size=16))
    # every engine timed at PROBE_START only; the winner runs the rule's batch (49 windows), not the untested 8
    assert {batch for _, batch in timings.calls} == {engine_choice.PROBE_START} and exp.options["batch_size"] == 49
    assert "not timed" in exp.options["engine_reason"] and "onnx timed at batch 8 only, run at batch 49" in exp.options["engine_reason"]


@pytest.mark.parametrize("winner", ["incremental", "onnx", "torch"])
@pytest.mark.parametrize("batch_size", [1, 2, 4, 16])
def test_maps_are_those_of_the_chosen_engine_run_directly(monkeypatch, winner, batch_size):
    stub(monkeypatch, {engine: (1e-3 if engine == winner else 2e-3) for engine in ("incremental", "onnx", "torch")})
    model, x = seeded_cnn(), images(3, size=16, seed=2)
    exp = occlusion(model, x, batch_size=batch_size)
    assert exp.options["engine"] == winner
    np.testing.assert_array_equal(exp.maps, occlusion(model, x, engine=winner, batch_size=batch_size).maps)
    np.testing.assert_allclose(exp.maps, occlusion(model, x, engine="torch", batch_size=16).maps, atol=1e-5)


@pytest.mark.parametrize("winner", ["onnx", "torch"])
def test_masked_score_methods_run_the_chosen_engine(monkeypatch, winner):
    stub(monkeypatch, {"onnx": 1e-3 if winner == "onnx" else 2e-3, "torch": 1e-3 if winner == "torch" else 2e-3})
    model, x = seeded_cnn(), images(2, size=16, seed=3)
    for method, options in [("rise", {"masks": 64, "cells": 4}), ("scorecam", {})]:
        exp = vx.explain(model, x, method=method, **options)
        assert exp.options["engine"] == winner and "engine_probes" in exp.options, method
        direct = vx.explain(model, x, method=method, engine=winner, batch_size=exp.options["batch_size"], **options)
        np.testing.assert_array_equal(exp.maps, direct.maps)


def test_second_call_hits_the_cache_and_key_changes_probe_again(monkeypatch):
    timings = stub(monkeypatch, {"incremental": 2e-3, "onnx": 1e-3, "torch": 3e-3})
    x = images(2, size=16)
    occlusion(seeded_cnn(seed=0), x)
    probed = len(timings.calls)
    again = occlusion(seeded_cnn(seed=7), images(5, size=16))  # other weights and batch, same architecture and image shape
    assert len(timings.calls) == probed and again.options["engine_reason"].startswith("cached probe: ")
    assert again.options["engine"] == "onnx" and again.options["engine_probes"]["onnx"]
    changed = [
        lambda: vx.explain(seeded_cnn(), x, method="occlusion", window=4, stride=4),  # other windows
        lambda: occlusion(seeded_cnn(), images(1, size=20)),  # other image shape
        lambda: occlusion(seeded_cnn(width=4), x),  # other architecture
        lambda: vx.explain(seeded_cnn(), x, method="rise", masks=64, cells=4),  # other method
    ]
    for call in changed:
        before = len(timings.calls)
        assert call().options["engine_reason"].startswith("probe: ")
        assert len(timings.calls) > before


def test_the_disk_cache_round_trips(monkeypatch, tmp_path):
    path = tmp_path / "engines.json"
    monkeypatch.setenv(engine_choice.CACHE_VARIABLE, str(path))
    stub(monkeypatch, {"incremental": 2e-3, "onnx": 1e-3, "torch": 3e-3})
    occlusion(seeded_cnn(), images(1, size=16))
    data = json.loads(path.read_text())
    assert data["vexplain_engine_cache"] == 1 and [entry["engine"] for entry in data["entries"].values()] == ["onnx"]
    engine_choice.clear_cache()  # a new process: only the file knows
    never = stub(monkeypatch, {})
    exp = occlusion(seeded_cnn(), images(1, size=16))
    assert never.calls == [] and exp.options["engine"] == "onnx" and exp.options["engine_reason"].startswith("cached probe: ")
    assert list(tmp_path.iterdir()) == [path]  # written through a temporary file and a rename, nothing left beside it


@pytest.mark.parametrize("content", [b"not json {", b'{"vexplain_engine_cache": 1, "entries": {"k": {"engine": 3}}}', b"\x80\x81", b"[]"])
def test_a_corrupt_cache_file_is_ignored_with_a_notice_and_rewritten(monkeypatch, tmp_path, content):
    path = tmp_path / "engines.json"
    path.write_bytes(content)
    monkeypatch.setenv(engine_choice.CACHE_VARIABLE, str(path))
    stub(monkeypatch, {"incremental": 2e-3, "onnx": 3e-3, "torch": 1e-3})
    exp = occlusion(seeded_cnn(), images(1, size=16))
    assert exp.options["engine"] == "torch"
    assert any("engine cache" in line and "ignored" in line for line in exp.warnings)
    assert [entry["engine"] for entry in json.loads(path.read_text())["entries"].values()] == ["torch"]


def test_tiny_work_takes_the_rule_without_timing(monkeypatch):
    monkeypatch.setattr(engine_choice, "MIN_PROBE_INPUTS", 10_000)
    never = stub(monkeypatch, {})
    exp = occlusion(seeded_cnn(), images(1, size=16))
    assert never.calls == [] and exp.options["engine"] == "incremental"
    assert exp.options["engine_reason"].startswith("rule (incremental)") and "not timed" in exp.options["engine_reason"]
    assert exp.options["engine_probes"] == {}


def test_a_run_too_short_to_pay_for_probes_takes_the_rule(monkeypatch):
    monkeypatch.setattr(engine_choice, "MIN_RUN_SECONDS", 10.0)
    timings = stub(monkeypatch, {"incremental": 1e-3, "onnx": 1e-4, "torch": 1e-4})
    exp = occlusion(seeded_cnn(), images(1, size=16))
    assert [engine for engine, _ in timings.calls] == ["incremental"]  # the rule's own engine, once
    assert exp.options["engine"] == "incremental" and "not worth probing" in exp.options["engine_reason"]


def test_approximate_settings_and_forced_engines_are_never_probed(monkeypatch):
    never = stub(monkeypatch, {})
    model, x = seeded_cnn(), images(1, size=16)
    limited = occlusion(model, x, field_limit=0.5)
    assert limited.options["engine"] == "incremental" and "approximate" in limited.options["engine_reason"]
    forced = occlusion(model, x, engine="torch")
    assert forced.options["engine"] == "torch" and "engine_probes" not in forced.options
    assert vx.explain(model, x, method="rise", masks=64, cells=4, engine="torch").options["engine"] == "torch"
    assert never.calls == []


def test_a_callable_target_keeps_the_rule_and_its_reason(monkeypatch):
    never = stub(monkeypatch, {})
    exp = vx.explain(seeded_cnn(), images(1, size=16), method="rise", masks=64, cells=4, targets=lambda out: out[:, 1])
    assert never.calls == [] and exp.options["engine"] == "torch" and "callable targets run in torch" in exp.options["engine_reason"]


def test_an_engine_that_cannot_run_the_model_is_left_out_and_named(monkeypatch):

    class Branchy(torch.nn.Module):  # a data-dependent branch: the ONNX export refuses it
        def __init__(self):
            super().__init__()
            self.conv = torch.nn.Conv2d(3, 4, 3, padding=1)
            self.head = torch.nn.Linear(4, 3)

        def forward(self, x):
            y = self.conv(x)
            y = y if y.sum() > 0 else -y
            return self.head(y.mean((2, 3)))

    stub(monkeypatch, {"incremental": 2e-3, "onnx": 1e-4, "torch": 1e-3})
    exp = occlusion(Branchy().eval(), images(1, size=8))
    assert exp.options["engine"] in ("incremental", "torch") and "onnx" not in exp.options["engine_probes"]
    assert "onnx not possible" in exp.options["engine_reason"] or "engine_fallback" in exp.options


def test_adapters_declare_their_engines_and_every_engine_option_takes_exactly_those_names():
    torch_adapter = vx.adapt(seeded_cnn())
    onnx_adapter = vx.adapt(onnx_bytes(seeded_cnn(), (3, 16, 16)))
    assert torch_adapter.engines("occlusion") == ENGINES["occlusion"] and torch_adapter.engines("forward") == ENGINES["forward"]
    assert onnx_adapter.engines("occlusion") == onnx_adapter.engines("forward") == ("auto", "onnx")
    with pytest.raises(vx.UnsupportedCapability, match="engine 'incremental'.*'auto' or 'onnx'"):
        vx.explain(onnx_adapter, images(1, size=16), method="occlusion", window=4, engine="incremental")
    names = set(ENGINES["forward"]) | set(ENGINES["occlusion"])
    declared = {name: entry for name, entry in REGISTRY.explainers().items() if "engine" in entry.obj.options}
    declared.update({name: entry for name, entry in REGISTRY.metrics().items() if "engine" in entry.obj.options})
    assert len(declared) >= 10
    for name, entry in declared.items():
        coerce = entry.obj.options["engine"].coerce
        accepted = {engine for engine in names if _accepts(coerce, engine)}
        assert accepted in (set(ENGINES["forward"]), set(ENGINES["occlusion"])), name
        assert not _accepts(coerce, "fastest")


def _accepts(coerce, value) -> bool:
    try:
        coerce(value)
    except ValueError:
        return False
    return True


def test_cached_choice_hands_the_choice_to_other_callers(monkeypatch):
    stub(monkeypatch, {"incremental": 2e-3, "onnx": 1e-3, "torch": 3e-3})
    adapter = vx.adapt(seeded_cnn())
    exp = vx.explain(adapter, images(1, size=16), method="occlusion", window=4, stride=2)
    settings = {"window": [4, 4], "stride": [2, 2], "batch_size": None, "default_batch": 256}
    pinned = engine_choice.cached_choice(adapter, "occlusion", "occlusion", (3, 16, 16), settings)
    assert pinned is not None and pinned["engine"] == exp.options["engine"] == "onnx" and pinned["batch_size"] == exp.options["batch_size"]
    assert engine_choice.cached_choice(adapter, "occlusion", "occlusion", (3, 20, 20), settings) is None


def test_measure_times_at_least_a_sample_per_call():
    calls = []
    seconds = engine_choice.measure("torch", 4, lambda batch: calls.append(batch), torch.device("cpu"))
    assert calls and set(calls) == {4} and seconds >= 0


def test_an_engine_timed_only_on_small_batches_is_judged_by_its_prediction_at_the_rule_batch(monkeypatch):
    # incremental: 100 ms per call + 1 ms per window; ONNX Runtime: 3 ms per window at any batch.
    # The budget stops incremental after batches 8 and 1, where it looks 4-30x slower; the line
    # through them predicts 1.4 ms per window at the rule's batch of 256, which wins
    now = [0.0]
    monkeypatch.setattr(engine_choice, "time", type("Clock", (), {"perf_counter": staticmethod(lambda: now[0])}))

    def measure(engine, batch, run, device):
        seconds = 0.1 + 0.001 * batch if engine == "incremental" else 0.003 * batch
        now[0] += seconds
        return seconds / batch

    monkeypatch.setattr(engine_choice, "measure", measure)
    candidates = [engine_choice.Candidate(engine, lambda size: None) for engine in ("incremental", "onnx")]
    choice, why = engine_choice.run_probes(candidates, [256, 64, 32, 8, 1], 1000, torch.device("cpu"))
    assert sorted(choice.probes["incremental"]) == [1, 8] and sorted(choice.probes["onnx"]) == [1, 8, 32]
    assert (choice.engine, choice.batch_size) == ("incremental", 256)
    assert any("predicted" in line for line in why) and any("not timed" in line for line in why)


def test_pinned_options_rerun_the_recorded_choice_exactly(monkeypatch):
    stub(monkeypatch, {"incremental": 2e-3, "onnx": 1e-3, "torch": 3e-3})
    model, x = seeded_cnn(), images(2, size=16)
    first = occlusion(model, x)
    options = engine_choice.pinned({"window": 4, "stride": 2}, first.options)
    assert options == {"window": 4, "stride": 2, "engine": "onnx", "batch_size": first.options["batch_size"]}
    engine_choice.clear_cache()  # another worker process, no cache: the pinned options need none
    never = stub(monkeypatch, {})
    again = vx.explain(model, x, method="occlusion", **options)
    assert never.calls == [] and again.options["engine"] == "onnx"
    np.testing.assert_array_equal(again.maps, first.maps)
    assert engine_choice.pinned({"engine": "torch"}, first.options) == {"engine": "torch"}
    assert engine_choice.pinned({"batch_size": 3}, first.options) == {"batch_size": 3, "engine": "onnx"}
