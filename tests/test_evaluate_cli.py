"""`vexplain evaluate` end to end on the demo model and on a folder of images; one-line errors."""
from __future__ import annotations

import contextlib
import csv
import io
import json

import cv2
import numpy as np
import pytest
import torch

import vexplain as vx
from test_plugins_support import make_plugin, registered
from vexplain.cli.evaluate_run import RANDOM_BASELINE
from vexplain.core.registry import methods_supported_by
from vexplain.cli.main import main
from vexplain.demo.model import ASSETS, load_demo_model, preprocess
from vexplain.demo.scenes import generate_dataset

METRICS = "deletion,insertion,pointing_game,road,randomization"
SHORT = ["--option", "deletion.steps=20", "--option", "insertion.steps=20", "--option", "road.fractions=(0.3,0.7)", "--option", "randomization.layers=2"]


def run_cli(capsys, *argv) -> tuple[int, str, str]:
    code = main([str(a) for a in argv])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


@pytest.fixture(scope="module")
def demo_run(tmp_path_factory):
    """The folder of one ``vexplain evaluate`` run on the demo set; its printed table is ``stdout.txt`` there."""
    out = tmp_path_factory.mktemp("evaluate")
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        code = main(["evaluate", "--images", "3", "--methods", "cam,saliency", "--metrics", METRICS, *SHORT, "--out", str(out)])
    assert code == 0
    (out / "stdout.txt").write_text(printed.getvalue())
    return out


def test_writes_table_csv_json_and_report(demo_run):
    out = (demo_run / "stdout.txt").read_text()
    lines = out.strip().splitlines()
    assert lines[0] == "| method | deletion auc ↓ | insertion auc ↑ | pointing_game hit ↑ | road gap ↑ | randomization spearman_abs ↓ | explain s |"
    assert [line.split("|")[1].strip() for line in lines[2:]] == ["cam", "saliency", RANDOM_BASELINE, "(pointing_game baseline_hit)"]
    assert (demo_run / "report.html").stat().st_size > 10_000
    report = (demo_run / "report.html").read_text()
    assert "target probability (0 to 1)" in report and "fraction of pixels changed (0 to 1)" in report and ">value<" not in report
    with (demo_run / "results.csv").open() as handle:
        rows = list(csv.DictReader(handle))
    document = json.loads((demo_run / "results.json").read_text())
    for row in rows:
        per_image = document["methods"][row["method"]]["results"][row["metric"]]["per_image"][row["value"]]
        assert float(row["score"]) == per_image[document["images"].index(row["image"])]
    values = {(r["method"], r["metric"], r["value"]) for r in rows}
    assert ("cam", "randomization", "ssim") in values and ("saliency", "road", "gap") in values
    assert (RANDOM_BASELINE, "randomization", "spearman_abs") not in values  # needs a method
    assert "randomization" in document["methods"][RANDOM_BASELINE]["not_applicable"]
    assert "| random_baseline | " in out and out.count(" failed ") == 0
    assert len(rows) == 3 * (2 * (1 + 1 + 2 + 3 + 3) + (1 + 1 + 2 + 3))
    assert document["methods"]["cam"]["results"]["deletion"]["options"]["steps"] == 20


def test_numbers_equal_the_python_api(demo_run):
    document = json.loads((demo_run / "results.json").read_text())
    images, labels, boxes = generate_dataset(3, seed=2026)
    inputs = preprocess(images)
    model = load_demo_model()
    exp = vx.explain(model, inputs, method="cam", targets=labels)
    deletion = vx.evaluate(model, inputs, exp, metric="deletion", steps=20)
    pointing = vx.evaluate(model, inputs, exp, metric="pointing_game", masks=boxes)
    results = document["methods"]["cam"]["results"]
    np.testing.assert_allclose(results["deletion"]["per_image"]["auc"], deletion.score, atol=1e-9)
    np.testing.assert_array_equal(results["pointing_game"]["per_image"]["hit"], pointing.score)
    assert document["methods"]["cam"]["targets"] == labels.tolist()


def test_default_methods_come_from_the_registry():
    class Constant(vx.Explainer):
        name = "test_constant_map"

        def attribute(self, adapter, inputs, targets, options):
            scores = adapter.forward(inputs)
            return vx.Attribution(maps=torch.ones(inputs.shape[0], *inputs.shape[2:]), scores=scores, targets=targets.select(scores))

    adapter = vx.adapt(load_demo_model())
    assert methods_supported_by(adapter) == sorted(m.name for m in vx.methods() if set(m.requires) <= adapter.capabilities)
    with registered(make_plugin(Constant), "constant_plugin"):
        assert "test_constant_map" in methods_supported_by(adapter)
    onnx = vx.adapt(ASSETS / "demo_cnn.onnx")
    assert "saliency" not in methods_supported_by(onnx) and "cam" in methods_supported_by(onnx)


def test_a_failing_method_is_reported_and_the_run_goes_on(capsys, tmp_path):
    class Broken(vx.Explainer):
        name = "test_broken_method"

        def attribute(self, adapter, inputs, targets, options):
            raise RuntimeError("not finished\nyet")

    with registered(make_plugin(Broken), "broken_plugin"):
        code, out, err = run_cli(capsys, "evaluate", "--images", "2", "--methods", "test_broken_method,cam", "--metrics", "pointing_game", "--out", tmp_path)
    assert code == 0
    assert "| test_broken_method | skipped | - |" in out and "| cam | " in out
    assert "skipped test_broken_method: RuntimeError: not finished yet" in err
    assert json.loads((tmp_path / "results.json").read_text())["methods"]["test_broken_method"] == {"skipped": "RuntimeError: not finished yet"}


def test_a_folder_of_images_with_boxes(capsys, tmp_path):
    images, labels, boxes = generate_dataset(3, seed=5, size=128)  # twice the model's input size
    data = tmp_path / "data"
    data.mkdir()
    truth = {}
    for i in range(3):
        cv2.imwrite(str(data / f"img{i}.png"), cv2.cvtColor(images[i], cv2.COLOR_RGB2BGR))
        truth[f"img{i}.png"] = {"box": boxes[i].tolist(), "label": ["circle", "square", "triangle", "cross"][labels[i]]}
    mask = np.zeros((128, 128), np.uint8)
    mask[:4, :4] = 255
    cv2.imwrite(str(data / "img2_mask.png"), mask)
    truth["img2.png"]["mask"] = "img2_mask.png"
    (data / "boxes.json").write_text(json.dumps(truth))
    code, out, err = run_cli(capsys, "evaluate", "--model", ASSETS / "demo_cnn.onnx", "--data", data, "--methods", "cam", "--metrics", "pointing_game,deletion", "--option", "deletion.steps=8", "--out", tmp_path / "out")
    assert code == 0, err
    document = json.loads((tmp_path / "out" / "results.json").read_text())
    assert document["images"] == ["img0.png", "img1.png", "img2.png"]  # the mask file is not an image to explain
    assert document["methods"]["cam"]["targets"] == labels.tolist()
    from vexplain.cli.evaluate_data import folder_set

    loaded = folder_set(str(data), None, vx.adapt(ASSETS / "demo_cnn.onnx"), None, (64, 64), (0, 0, 0), (1, 1, 1))
    np.testing.assert_array_equal(loaded.boxes, np.stack([np.floor(boxes[:, :2] / 2), np.ceil(boxes[:, 2:] / 2)], 1).reshape(3, 4))
    assert loaded.masks[2, 0, 0] and loaded.masks[2, 1, 1] and not loaded.masks[0, 0, 0]


BAD = {
    "unknown method": (["--methods", "gradcm"], "did you mean: gradcam"),
    "unknown metric": (["--metrics", "deleton"], "did you mean: deletion"),
    "zero images": (["--images", "0"], "--images must be at least 1"),
    "option without a name": (["--option", "steps=3"], "NAME.KEY=VALUE"),
    "option of an unselected name": (["--metrics", "deletion", "--option", "road.noise=0"], "neither a selected method nor a selected metric"),
    "bad metric option": (["--methods", "cam", "--metrics", "deletion", "--option", "deletion.substrate=noise"], "must be one of"),
    "data without model": (["--data", "."], "--data needs --model"),
}


@pytest.mark.parametrize("case", sorted(BAD))
def test_bad_input_is_one_line_and_exit_2(capsys, tmp_path, case):
    argv, expected = BAD[case]
    code, out, err = run_cli(capsys, "evaluate", "--images", "1", *argv, "--out", tmp_path)
    assert code == 2, (out, err)
    assert expected in err and len(err.strip().splitlines()) == 1


def test_missing_ground_truth_entry_is_an_error(capsys, tmp_path):
    cv2.imwrite(str(tmp_path / "a.png"), np.zeros((8, 8, 3), np.uint8))
    (tmp_path / "boxes.json").write_text("{}")
    code, _, err = run_cli(capsys, "evaluate", "--model", ASSETS / "demo_cnn.onnx", "--data", tmp_path, "--out", tmp_path / "o")
    assert code == 2 and "has no entry for a.png" in err


@pytest.mark.parametrize("command", ["evaluate", "bench"])
def test_help(capsys, command):
    with pytest.raises(SystemExit) as exit_info:
        main([command, "--help"])
    assert exit_info.value.code == 0
    assert f"usage: vexplain {command}" in capsys.readouterr().out


def test_a_failing_metric_is_marked_failed_and_the_others_still_run(capsys, tmp_path):
    class Crashing(vx.Metric):
        name = "test_crashing_metric"
        headline = "x"

        def evaluate(self, case, options):
            raise ValueError("cannot\nscore")

    import types

    @vx.hookimpl
    def register_metrics(register):
        register(Crashing)

    with registered(types.SimpleNamespace(register_metrics=register_metrics), "crashing_metrics"):
        code, out, err = run_cli(capsys, "evaluate", "--images", "2", "--methods", "cam", "--metrics", "test_crashing_metric,pointing_game", "--out", tmp_path)
    assert code == 0
    assert "| cam | failed | 1.000 |" in out
    assert "failed: cam × test_crashing_metric: ValueError: cannot score" in err
    document = json.loads((tmp_path / "results.json").read_text())
    assert document["methods"]["cam"]["failures"] == {"test_crashing_metric": "ValueError: cannot score"}
    assert document["methods"][RANDOM_BASELINE]["not_applicable"] == {}
