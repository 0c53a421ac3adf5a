"""vx.explain_dataset on the local engine: sources, rows equal to vx.explain, resume, errors."""
from __future__ import annotations

import json
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
from vexplain.core.errors import ImageLoadError, InvalidInput, InvalidOption, InvalidTarget, ModelLoadError
from vexplain.core.images import load_image, preprocess
from vexplain.datasets import map_of
from vexplain.datasets.sources import resolve_source
from vexplain.datasets.store import MANIFEST, ShardStore
from vexplain.demo.model import build, demo_adapter, load_metadata

from datasets_support import MODEL, WEIGHTS, sorted_rows, write_scenes

META = load_metadata()


@pytest.fixture(scope="module")
def scenes(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("scenes")
    write_scenes(folder, 12, seed=3)
    return folder


def per_image(adapter, path: Path, method: str, target=None) -> vx.Explanation:
    inputs = preprocess(load_image(path), META["input_size"], META["mean"], META["std"])[None]
    return vx.explain(adapter, inputs, method=method, targets=target)


def test_rows_equal_vx_explain_per_image(scenes, tmp_path):
    adapter = demo_adapter()
    run = vx.explain_dataset(adapter, scenes, method=["gradcam", "saliency"], out=tmp_path / "out", batch_size=5, shard_size=4)
    assert (run.images, run.skipped, run.rows, run.shards) == (12, 0, 24, 3)
    rows = sorted_rows(pq.read_table(tmp_path / "out"))
    assert len(rows) == 24 and len({(r["image"], r["method"]) for r in rows}) == 24
    classes = sorted(p.name for p in scenes.iterdir())
    for row in rows:
        folder, _ = row["image"].split("/")
        assert row["label"] == META["class_names"].index(folder) and folder in classes
        exp = per_image(adapter, scenes / row["image"], row["method"])
        assert row["target"] == int(exp.targets[0])
        assert row["score"] == pytest.approx(float(exp.scores[0, exp.targets[0]]), abs=1e-5)
        assert row["map_shape"] == [64, 64]
        np.testing.assert_allclose(map_of(row), exp.maps[0], rtol=1e-5, atol=1e-6)
        assert json.loads(row["options"])["backend"] == "torch"


def test_batch_size_does_not_change_rows(scenes, tmp_path):
    one = vx.explain_dataset(MODEL, scenes, method="gradcam", weights=WEIGHTS, out=tmp_path / "a", batch_size=1, shard_size=5)
    many = vx.explain_dataset(MODEL, scenes, method="gradcam", weights=WEIGHTS, out=tmp_path / "b", batch_size=12, shard_size=12)
    assert one.rows == many.rows == 12
    for a, b in zip(sorted_rows(pq.read_table(tmp_path / "a")), sorted_rows(pq.read_table(tmp_path / "b"))):
        assert (a["image"], a["target"]) == (b["image"], b["target"])
        np.testing.assert_allclose(map_of(a), map_of(b), rtol=1e-5, atol=1e-6)


def test_target_label_and_manifest_sources(scenes, tmp_path):
    paths = sorted(scenes.rglob("*.png"))[:4]
    manifest = tmp_path / "set.csv"
    manifest.write_text("path,label,box\n" + "".join(f"{p},{i % 4},1 2 30 40\n" for i, p in enumerate(paths)))
    source = resolve_source(manifest)
    assert [item.label for item in source.items] == [0, 1, 2, 3] and source.items[0].box == (1, 2, 30, 40)
    run = vx.explain_dataset(demo_adapter(), manifest, method="gradcam", targets="label", out=tmp_path / "out")
    rows = pq.read_table(tmp_path / "out").to_pylist()
    assert run.rows == 4 and [r["target"] for r in rows] == [0, 1, 2, 3] == [r["label"] for r in rows]
    listed = scenes.parent / "set.json"
    listed.write_text(json.dumps([{"path": p.relative_to(scenes.parent).as_posix(), "label": 2} for p in paths]))
    assert [(i.name, i.label) for i in resolve_source(listed).items] == [(p.relative_to(scenes.parent).as_posix(), 2) for p in paths]
    assert [i.name for i in resolve_source(paths).items] == [p.relative_to(scenes).as_posix() for p in paths]
    with pytest.raises(InvalidInput, match="twice"):
        resolve_source([paths[0], paths[0]])
    with pytest.raises(InvalidInput, match="'path'"):
        (tmp_path / "bad.csv").write_text("file\nx.png\n")
        resolve_source(tmp_path / "bad.csv")
    with pytest.raises(InvalidInput, match="no image files"):
        (tmp_path / "empty").mkdir()
        resolve_source(tmp_path / "empty")
    with pytest.raises(InvalidInput, match="box"):
        (tmp_path / "box.csv").write_text(f"path,box\n{paths[0]},1 2 3\n")
        resolve_source(tmp_path / "box.csv")


def test_rerun_skips_done_and_changes_are_refused(scenes, tmp_path):
    out = tmp_path / "out"
    vx.explain_dataset(MODEL, scenes, method="gradcam", weights=WEIGHTS, out=out, shard_size=5)
    before = {p.name: p.read_bytes() for p in out.glob("part-*.parquet")}
    again = vx.explain_dataset(MODEL, scenes, method="gradcam", weights=WEIGHTS, out=out, shard_size=5)
    assert (again.skipped, again.rows, again.shards) == (12, 0, 0)
    assert {p.name: p.read_bytes() for p in out.glob("part-*.parquet")} == before
    with pytest.raises(InvalidOption, match="methods.*overwrite"):
        vx.explain_dataset(MODEL, scenes, method="saliency", weights=WEIGHTS, out=out)
    with pytest.raises(InvalidOption, match="options"):
        vx.explain_dataset(MODEL, scenes, method="gradcam", weights=WEIGHTS, out=out, layer="features.0")
    with pytest.raises(InvalidOption, match="model"):
        vx.explain_dataset(build(), scenes, method="gradcam", out=out, size=(64, 64), mean=META["mean"], std=META["std"])
    redone = vx.explain_dataset(MODEL, scenes, method="saliency", weights=WEIGHTS, out=out, overwrite=True)
    assert redone.rows == 12 and set(pq.read_table(out).column("method").to_pylist()) == {"saliency"}


def test_uncommitted_files_are_removed_on_open(scenes, tmp_path):
    out = tmp_path / "out"
    vx.explain_dataset(MODEL, scenes, method="gradcam", weights=WEIGHTS, out=out, shard_size=6)
    spec = json.loads((out / MANIFEST).read_text())["spec"]
    (out / "part-00007.parquet").write_bytes((out / "part-00000.parquet").read_bytes())  # killed before its manifest entry
    (out / ".part-00008.parquet.tmp").write_bytes(b"half")
    store = ShardStore(out, spec)
    assert sorted(p.name for p in out.iterdir()) == [MANIFEST, "part-00000.parquet", "part-00001.parquet"]
    assert len(store.done) == 12 and store.next_index() == 2
    with pytest.raises(InvalidInput, match="already"):
        store.commit(2, pq.read_table(out / "part-00000.parquet"), [sorted(store.done)[0]])


def test_bad_arguments_are_typed_errors(scenes, tmp_path):
    with pytest.raises(ModelLoadError, match="spec"):
        vx.explain_dataset(demo_adapter(), scenes, engine="ray", out=tmp_path / "o")
    with pytest.raises(InvalidOption, match="engine"):
        vx.explain_dataset(MODEL, scenes, weights=WEIGHTS, engine="spark", out=tmp_path / "o")
    with pytest.raises(InvalidOption, match="belong to none"):
        vx.explain_dataset(MODEL, scenes, weights=WEIGHTS, windw=8, out=tmp_path / "o")
    with pytest.raises(InvalidTarget, match="label"):
        vx.explain_dataset(demo_adapter(), sorted(scenes.rglob("*.png"))[:2], targets="label", out=tmp_path / "o")
    odd = tmp_path / "odd"
    write_scenes(odd, 2, by_class=False)
    import cv2

    cv2.imwrite(str(odd / "big.png"), np.zeros((80, 70, 3), np.uint8))
    adapter = vx.adapt(demo_adapter().model)
    with pytest.raises(InvalidInput, match="size"):
        vx.explain_dataset(adapter, odd, out=tmp_path / "o2")
    (odd / "broken.png").write_bytes(b"not a png")
    with pytest.raises(ImageLoadError, match="broken.png"):
        vx.explain_dataset(adapter, odd, size=(64, 64), out=tmp_path / "o3")


KILLED_RUN = """
import sys, time
import vexplain as vx
from vexplain.datasets import pipeline
original = pipeline.explain_decoded
def slow(*args, **kwargs):
    time.sleep(0.4)
    return original(*args, **kwargs)
pipeline.explain_decoded = slow
import vexplain.datasets.local_engine as local
local.explain_decoded = slow
vx.explain_dataset({model!r}, {source!r}, method=["gradcam", "saliency"], weights={weights!r}, out={out!r}, shard_size=2)
print("ray imported:", "ray" in sys.modules)
"""


def test_sigkill_mid_run_then_resume_writes_each_row_once(scenes, tmp_path):
    out = tmp_path / "out"
    script = KILLED_RUN.format(model=MODEL, source=str(scenes), weights=WEIGHTS, out=str(out))
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    child = subprocess.Popen([sys.executable, "-c", script], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
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
    assert 2 <= len(committed) < 6, f"the run was not killed mid-way: {committed}"
    committed = json.loads((out / MANIFEST).read_text())["shards"]
    kept = {name: (out / name).read_bytes() for name in committed}
    resumed = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=300)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert "ray imported: False" in resumed.stdout
    rows = pq.read_table(out).to_pylist()
    assert len(rows) == 24 and len({(r["image"], r["method"]) for r in rows}) == 24
    assert {name: (out / name).read_bytes() for name in committed} == kept
    fresh = vx.explain_dataset(MODEL, scenes, method=["gradcam", "saliency"], weights=WEIGHTS, out=tmp_path / "fresh", shard_size=12)
    for a, b in zip(sorted_rows(pq.read_table(out)), sorted_rows(pq.read_table(tmp_path / "fresh"))):
        assert (a["image"], a["method"], a["target"]) == (b["image"], b["method"], b["target"])
        np.testing.assert_allclose(map_of(a), map_of(b), rtol=1e-5, atol=1e-6)


def test_overlays_beside_the_dataset(scenes, tmp_path):
    out = tmp_path / "out"
    vx.explain_dataset(demo_adapter(), sorted(scenes.rglob("*.png"))[:3], method="gradcam", overlays=True, out=out)
    pngs = sorted(p.relative_to(out).as_posix() for p in out.rglob("*.png"))
    assert len(pngs) == 3 and all(p.startswith("_overlays/") and p.endswith(".gradcam.png") for p in pngs)
    assert load_image(out / pngs[0]).shape == (64, 64, 3)
    assert pq.read_table(out).num_rows == 3


def test_auto_engine_is_chosen_once_per_run_and_probe_times_stay_out_of_rows(scenes, tmp_path, monkeypatch):
    """engine="auto" probes (thresholds lowered so it does on this tiny model), then every later
    batch runs the first batch's engine; rows record the engine but no timing, so they are the
    same whichever run wrote them, and equal vx.explain on that engine."""
    from vexplain.core import engine_choice

    monkeypatch.setattr(engine_choice, "MIN_PROBE_INPUTS", 1)
    monkeypatch.setattr(engine_choice, "MIN_RUN_SECONDS", 0.0)
    engine_choice.clear_cache()
    calls = []
    real = engine_choice.run_probes

    def counted(*args, **kwargs):
        calls.append(1)
        return real(*args, **kwargs)

    monkeypatch.setattr(engine_choice, "run_probes", counted)
    adapter = demo_adapter()
    options = {"window": 16, "stride": 8}
    run = vx.explain_dataset(adapter, scenes, method="occlusion", out=tmp_path / "out", batch_size=2, shard_size=4, **options)
    assert run.rows == 12
    rows = sorted_rows(pq.read_table(tmp_path / "out"))
    recorded = [json.loads(row["options"]) for row in rows]
    assert all("engine_probes" not in r and "engine_reason" not in r for r in recorded)
    engines = {r["engine"] for r in recorded}
    assert len(engines) == 1 and engines <= {"incremental", "onnx", "torch"}
    assert len(calls) == 1, f"probed {len(calls)} times in one run"
    engine = engines.pop()
    for row in rows[:3]:
        inputs = preprocess(load_image(scenes / row["image"]), META["input_size"], META["mean"], META["std"])[None]
        exp = vx.explain(adapter, inputs, method="occlusion", targets=row["target"], engine=engine, **options)
        np.testing.assert_allclose(map_of(row), exp.maps[0], rtol=1e-5, atol=1e-6)
    engine_choice.clear_cache()
