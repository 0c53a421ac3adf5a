"""vx.evaluate_dataset on the local engine: metric columns equal to per-image vx.evaluate, boxes
scaled to the input, the summary, resume (also after SIGKILL) and typed errors."""
from __future__ import annotations

import csv
import json
import math
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest

import vexplain as vx
from vexplain.core.errors import InvalidInput, InvalidOption, UnknownMethod
from vexplain.core.images import load_image, preprocess
from vexplain.core.metric import MASKS
from vexplain.datasets.metrics import SUMMARY, check_metrics, input_boxes
from vexplain.datasets.sources import Item, resolve_source
from vexplain.datasets.store import MANIFEST
from vexplain.demo.model import demo_adapter, load_metadata

from datasets_support import MODEL, WEIGHTS, sorted_rows, write_scene_manifest, write_scenes

META = load_metadata()
METRICS = ["deletion", "pointing_game"]
METRIC_OPTIONS = {"deletion": {"steps": 8}}


@pytest.fixture(scope="module")
def manifest(tmp_path_factory) -> Path:
    """Six 128 px scenes: twice the model's 64 px input, so boxes must be scaled."""
    return write_scene_manifest(tmp_path_factory.mktemp("boxed"), 6, seed=7, size=128)


def manifest_rows(path: Path) -> dict[str, dict]:
    return {row["path"]: row for row in csv.DictReader(path.read_text().splitlines())}


def test_input_boxes_scale_floor_and_ceil_and_clip():
    items = [Item("a", "a", box=(3, 5, 61, 127)), Item("b", "b", box=(0, 0, 200, 7))]
    # 128x128 -> 64x64: x0, y0 floored (1, 2), x1, y1 ceiled (31, 64); 100x200 (H, W) -> 64x64: x by 0.32, y by 0.64
    assert input_boxes(items, [(128, 128), (100, 200)], (64, 64)).tolist() == [[1, 2, 31, 64], [0, 0, 64, 5]]
    assert input_boxes([items[0], Item("c", "c")], [(128, 128)] * 2, (64, 64)) is None


def test_metric_columns_equal_per_image_vx_evaluate(manifest, tmp_path):
    adapter = demo_adapter()
    run = vx.evaluate_dataset(
        adapter, manifest, methods=["gradcam", "saliency"], metrics=METRICS, metric_options=METRIC_OPTIONS,
        targets="label", out=tmp_path / "out", batch_size=4, shard_size=4,
    )
    assert (run.images, run.rows, run.shards) == (6, 12, 2)
    table = pq.read_table(tmp_path / "out")
    columns = ["deletion.auc", "pointing_game.baseline_hit", "pointing_game.hit"]
    assert table.column_names[-3:] == columns and all(str(table.schema.field(c).type) == "double" for c in columns)
    truth = manifest_rows(manifest)
    rows = sorted_rows(table)
    for row in rows:
        entry = truth[row["image"]]
        x0, y0, x1, y1 = (int(v) for v in entry["box"].split())
        box = np.array([[x0 // 2, y0 // 2, -(-x1 // 2), -(-y1 // 2)]])  # 128 -> 64 px by hand
        inputs = preprocess(load_image(manifest.parent / row["image"]), (64, 64), META["mean"], META["std"])[None]
        label = int(entry["label"])
        assert row["target"] == row["label"] == label
        deletion = vx.evaluate(adapter, inputs, row["method"], metric="deletion", targets=[label], steps=8)
        pointing = vx.evaluate(adapter, inputs, row["method"], metric="pointing_game", targets=[label], masks=box)
        assert row["deletion.auc"] == pytest.approx(float(deletion.values["auc"][0]), abs=1e-6)
        assert row["pointing_game.hit"] == float(pointing.values["hit"][0])
        assert row["pointing_game.baseline_hit"] == float(pointing.values["baseline_hit"][0])
    hits = [r["pointing_game.hit"] for r in rows if r["method"] == "gradcam"]
    assert run.summary["gradcam"]["pointing_game.hit"] == {"mean": pytest.approx(np.mean(hits)), "std": pytest.approx(np.std(hits)), "n": 6}
    assert json.loads((tmp_path / "out" / SUMMARY).read_text()) == json.loads(json.dumps(run.summary))
    assert pq.read_table(tmp_path / "out").num_rows == 12  # _summary.json is not read as data


def test_rerun_resumes_and_changed_metrics_are_refused(manifest, tmp_path):
    out = tmp_path / "out"
    first = vx.evaluate_dataset(MODEL, manifest, methods="gradcam", metrics=METRICS, metric_options=METRIC_OPTIONS, weights=WEIGHTS, out=out, shard_size=4)
    again = vx.evaluate_dataset(MODEL, manifest, methods="gradcam", metrics=METRICS, metric_options=METRIC_OPTIONS, weights=WEIGHTS, out=out, shard_size=4)
    assert (again.skipped, again.rows, again.shards) == (6, 0, 0) and again.summary == first.summary
    with pytest.raises(InvalidOption, match="metrics.*overwrite"):
        vx.evaluate_dataset(MODEL, manifest, methods="gradcam", metrics=["deletion"], metric_options=METRIC_OPTIONS, weights=WEIGHTS, out=out)
    with pytest.raises(InvalidOption, match="metrics"):
        vx.evaluate_dataset(MODEL, manifest, methods="gradcam", metrics=METRICS, metric_options={"deletion": {"steps": 4}}, weights=WEIGHTS, out=out)
    with pytest.raises(InvalidOption, match="metrics"):
        vx.explain_dataset(MODEL, manifest, method="gradcam", weights=WEIGHTS, out=out)
    redone = vx.evaluate_dataset(MODEL, manifest, methods="gradcam", metrics=["deletion"], metric_options=METRIC_OPTIONS, weights=WEIGHTS, out=out, overwrite=True)
    assert redone.rows == 6 and list(redone.summary["gradcam"]) == ["deletion.auc"]


def test_default_metrics_leave_out_ground_truth_without_boxes():
    registered = {m.name: m for m in vx.metrics()}
    boxed, bare = [Item("a", "a", box=(0, 0, 2, 2))], [Item("a", "a")]
    assert check_metrics(None, None, boxed)[0] == tuple(sorted(registered))
    assert check_metrics(None, None, bare)[0] == tuple(n for n in sorted(registered) if MASKS not in registered[n].needs)


def test_bad_arguments_are_typed_errors(manifest, tmp_path):
    folder = tmp_path / "bare"
    write_scenes(folder, 2, by_class=False)
    with pytest.raises(InvalidInput, match="pointing_game.*box"):
        vx.evaluate_dataset(demo_adapter(), folder, metrics=["pointing_game"], out=tmp_path / "o")
    with pytest.raises(UnknownMethod, match="nosuch"):
        vx.evaluate_dataset(demo_adapter(), manifest, metrics=["nosuch"], out=tmp_path / "o")
    with pytest.raises(InvalidOption, match="metric_options names insertion"):
        vx.evaluate_dataset(demo_adapter(), manifest, metrics=["deletion"], metric_options={"insertion": {}}, out=tmp_path / "o")
    with pytest.raises(InvalidOption, match="steps"):
        vx.evaluate_dataset(demo_adapter(), manifest, metrics=["deletion"], metric_options={"deletion": {"steps": 0}}, out=tmp_path / "o")
    with pytest.raises(InvalidOption, match="metric_options belong to none"):
        vx.explain_dataset(demo_adapter(), manifest, out=tmp_path / "o", metric_options={"deletion": {}})
    assert not (tmp_path / "o").exists()


def test_random_weights_accepts_a_factory_without_weights(tmp_path):
    folder = tmp_path / "bare"
    write_scenes(folder, 2, by_class=False)
    with pytest.raises(InvalidOption, match="random_weights=True"):
        vx.explain_dataset(MODEL, folder, out=tmp_path / "o")
    with pytest.raises(InvalidOption, match="not both"):
        vx.explain_dataset(MODEL, folder, weights=WEIGHTS, random_weights=True, out=tmp_path / "o")
    with pytest.raises(InvalidOption, match="model spec"):
        vx.explain_dataset(demo_adapter(), folder, random_weights=True, out=tmp_path / "o")
    run = vx.evaluate_dataset(MODEL, folder, metrics=["deletion"], metric_options=METRIC_OPTIONS, random_weights=True, out=tmp_path / "o")
    assert run.rows == 2 and math.isfinite(run.summary["gradcam"]["deletion.auc"]["mean"])


KILLED_RUN = """
import sys, time
import vexplain as vx
import vexplain.datasets.local_engine as local
original = local.explain_decoded
def slow(*args, **kwargs):
    time.sleep(0.4)
    return original(*args, **kwargs)
local.explain_decoded = slow
vx.evaluate_dataset({model!r}, {source!r}, methods=["gradcam", "saliency"], metrics=["deletion", "pointing_game"], metric_options={{"deletion": {{"steps": 8}}}}, weights={weights!r}, out={out!r}, shard_size=2)
"""


def test_sigkill_mid_run_then_resume_scores_each_row_once(tmp_path):
    manifest = write_scene_manifest(tmp_path / "set", 10, seed=9)
    out = tmp_path / "out"
    script = KILLED_RUN.format(model=MODEL, source=str(manifest), weights=WEIGHTS, out=str(out))
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    child = subprocess.Popen([sys.executable, "-c", script], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 120
    committed: dict = {}
    while time.monotonic() < deadline and child.poll() is None:
        if (out / MANIFEST).is_file():
            committed = json.loads((out / MANIFEST).read_text())["shards"]
            if len(committed) >= 2:
                break
        time.sleep(0.05)
    child.send_signal(signal.SIGKILL)
    child.wait(timeout=30)
    assert 2 <= len(committed) < 5, f"the run was not killed mid-way: {committed}"
    committed = json.loads((out / MANIFEST).read_text())["shards"]
    kept = {name: (out / name).read_bytes() for name in committed}
    resumed = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=300)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    rows = sorted_rows(pq.read_table(out))
    assert len(rows) == 20 and len({(r["image"], r["method"]) for r in rows}) == 20
    assert {name: (out / name).read_bytes() for name in committed} == kept
    fresh = vx.evaluate_dataset(MODEL, manifest, methods=["gradcam", "saliency"], metrics=["deletion", "pointing_game"], metric_options=METRIC_OPTIONS, weights=WEIGHTS, out=tmp_path / "fresh", shard_size=10)
    assert sorted_rows(pq.read_table(tmp_path / "fresh")) == rows
    assert json.loads((out / SUMMARY).read_text()) == json.loads(json.dumps(fresh.summary))
