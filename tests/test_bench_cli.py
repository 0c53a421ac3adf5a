"""`vexplain bench` end to end on the demo model: table, JSON, reference columns and ratios."""
from __future__ import annotations

import importlib.machinery
import json
import sys
import types

import pytest
import torch

from vexplain.cli.main import main


def run_cli(capsys, *argv) -> tuple[int, str, str]:
    code = main([str(a) for a in argv])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def table_rows(out: str) -> dict[tuple[str, str], list[str]]:
    rows = [line.strip("|").split("|") for line in out.strip().splitlines() if line.startswith("| ") and not line.startswith("| method")]
    return {(r[0].strip(), r[1].strip()): [c.strip() for c in r] for r in rows}


def test_bench_times_methods_and_captum_in_the_same_run(capsys, tmp_path):
    code, out, err = run_cli(capsys, "bench", "--methods", "saliency,cam", "--batches", "1,3", "--repeats", "2", "--out", tmp_path)
    assert code == 0, err
    header = out.splitlines()[0]
    assert header.startswith("| method | batch | ms/image | images/s | peak MB | captum ms/image")
    rows = table_rows(out)
    assert set(rows) == {("saliency", "1"), ("saliency", "3"), ("cam", "1"), ("cam", "3")}
    ratio = [c.strip() for c in header.strip("|").split("|")].index("captum / vexplain")  # pytorch-grad-cam's columns follow when it is installed
    assert rows["cam", "3"][ratio] == "-" and rows["saliency", "3"][ratio].endswith("×")
    document = json.loads((tmp_path / "bench.json").read_text())
    assert document["references"][0] == "captum" and document["repeats"] == 2
    for row in document["results"]:
        assert len(row["runs"]) == 2 and row["seconds"] == pytest.approx(sorted(row["runs"])[0] / 2 + sorted(row["runs"])[1] / 2)
        assert row["per_image"] == pytest.approx(row["seconds"] / row["batch"])
        assert row["images_per_s"] == pytest.approx(row["batch"] / row["seconds"])
        assert row["peak_mb"] is None or row["peak_mb"] >= 0
    saliency = next(r for r in document["results"] if r["method"] == "saliency" and r["batch"] == 3)
    assert saliency["captum"]["ratio"] == pytest.approx(saliency["captum"]["seconds"] / saliency["seconds"])


@pytest.fixture
def fake_grad_cam(monkeypatch):
    """A stand-in ``pytorch_grad_cam`` (not installed here) that records how it was called."""
    calls = []

    class GradCAM:
        def __init__(self, model, target_layers):
            self.model, self.layers = model, target_layers

        def __call__(self, input_tensor, targets):
            calls.append((self.layers, [t.category for t in targets]))
            return self.model(input_tensor).detach().numpy()

    class ClassifierOutputTarget:
        def __init__(self, category):
            self.category = category

    root = types.ModuleType("pytorch_grad_cam")
    root.__spec__ = importlib.machinery.ModuleSpec("pytorch_grad_cam", None)
    root.GradCAM = GradCAM
    targets = types.ModuleType("pytorch_grad_cam.utils.model_targets")
    targets.ClassifierOutputTarget = ClassifierOutputTarget
    for name, module in (("pytorch_grad_cam", root), ("pytorch_grad_cam.utils", types.ModuleType("u")), ("pytorch_grad_cam.utils.model_targets", targets)):
        monkeypatch.setitem(sys.modules, name, module)
    return calls


def test_grad_cam_column_uses_the_same_layer_and_targets(capsys, tmp_path, fake_grad_cam):
    code, out, err = run_cli(capsys, "bench", "--methods", "gradcam", "--batches", "2", "--repeats", "1", "--out", tmp_path)
    assert code == 0, err
    assert "pytorch-grad-cam ms/image" in out.splitlines()[0]
    document = json.loads((tmp_path / "bench.json").read_text())
    row = document["results"][0]
    assert "ratio" in row["pytorch-grad-cam"] and "ratio" in row["captum"]
    layers, categories = fake_grad_cam[0]
    from vexplain.demo.model import load_demo_model

    assert isinstance(layers[0], torch.nn.Sequential) and len(layers[0]) == len(load_demo_model().features)
    assert len(categories) == 2


@pytest.mark.parametrize("argv, expected", [(["--batches", "0"], "--batches takes"), (["--repeats", "0"], "--repeats must be"), (["--methods", "salency"], "did you mean: saliency")])
def test_bad_input_is_one_line_and_exit_2(capsys, tmp_path, argv, expected):
    code, out, err = run_cli(capsys, "bench", *argv, "--out", tmp_path)
    assert code == 2 and expected in err and len(err.strip().splitlines()) == 1
