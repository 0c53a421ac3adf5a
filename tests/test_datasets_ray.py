"""vx.explain_dataset on Ray Data: one local Ray (2 CPUs, no dashboard) for the module, stopped
at its end; rows identical to the local engine and to vx.explain, and an actor killed mid-run."""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest

import vexplain as vx
from vexplain.core.images import load_image, preprocess
from vexplain.datasets import map_of
from vexplain.demo.model import demo_adapter, load_metadata

from datasets_support import MODEL, WEIGHTS, sorted_rows, write_scene_manifest, write_scenes

ray = pytest.importorskip("ray")
TESTS = str(Path(__file__).resolve().parent)


@pytest.fixture(scope="module")
def local_ray(tmp_path_factory):
    os.environ["RAY_USAGE_STATS_ENABLED"] = "0"
    marker = tmp_path_factory.mktemp("marker") / "died"
    ray.init(
        num_cpus=2,
        include_dashboard=False,
        log_to_driver=False,
        runtime_env={"env_vars": {"PYTHONPATH": TESTS, "VEXPLAIN_TEST_DIE_MARKER": str(marker)}},
    )
    try:
        yield marker
    finally:
        ray.shutdown()


@pytest.fixture(scope="module")
def scenes(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("scenes64")
    write_scenes(folder, 64, seed=11)
    return folder


def test_ray_rows_identical_to_local_and_to_vx_explain(local_ray, scenes, tmp_path):
    ray_run = vx.explain_dataset(MODEL, scenes, method="gradcam", weights=WEIGHTS, out=tmp_path / "ray", engine="ray", shard_size=32, num_actors=2)
    local_run = vx.explain_dataset(MODEL, scenes, method="gradcam", weights=WEIGHTS, out=tmp_path / "local", shard_size=32)
    assert ray_run.rows == local_run.rows == 64
    from_ray = pq.read_table(tmp_path / "ray").sort_by([("image", "ascending")])
    assert from_ray.equals(pq.read_table(tmp_path / "local").sort_by([("image", "ascending")]))
    assert ray.data.read_parquet(str(tmp_path / "ray")).count() == 64
    adapter, meta = demo_adapter(), load_metadata()
    for row in sorted_rows(from_ray):
        inputs = preprocess(load_image(scenes / row["image"]), meta["input_size"], meta["mean"], meta["std"])[None]
        exp = vx.explain(adapter, inputs, method="gradcam")
        assert row["target"] == int(exp.targets[0])
        np.testing.assert_allclose(map_of(row), exp.maps[0], rtol=1e-5, atol=1e-6)


def test_local_ray_has_no_dashboard_and_keeps_token_auth(local_ray):
    """No dashboard (HTTP) listens and token authentication stays on. Not loopback-only: Ray
    2.60's gRPC servers bind every interface ('::'), and the node registers under the host's
    address even with _node_ip_address='127.0.0.1' (found here; see benchmarks/README.md)."""
    import psutil  # Ray's vendored copy, on sys.path once ray is imported

    ours = {p.pid for p in psutil.Process().children(recursive=True)} | {os.getpid()}
    listening = [c for c in psutil.net_connections(kind="inet") if c.status == psutil.CONN_LISTEN and c.pid in ours]
    assert listening and 8265 not in {c.laddr.port for c in listening}
    assert os.environ.get("RAY_AUTH_MODE", "token") != "disabled"


def test_killed_actor_is_retried_without_duplicate_rows(local_ray, scenes, tmp_path):
    marker = local_ray
    paths = sorted(scenes.rglob("*.png"))[:24]
    run = vx.explain_dataset("datasets_support:dying_build", paths, method="gradcam", weights=WEIGHTS, out=tmp_path / "out", engine="ray", shard_size=4, batch_size=4, num_actors=1)
    assert marker.exists(), "no actor was killed"
    rows = pq.read_table(tmp_path / "out").to_pylist()
    assert run.rows == len(rows) == 24 and len({r["image"] for r in rows}) == 24


def test_ray_evaluation_rows_identical_to_local(local_ray, tmp_path):
    manifest = write_scene_manifest(tmp_path / "set", 64, seed=12, size=96)  # boxes scaled 96 -> 64 px
    common = dict(methods="gradcam", metrics=["deletion", "pointing_game"], metric_options={"deletion": {"steps": 8}}, weights=WEIGHTS, targets="label", shard_size=32)
    ray_run = vx.evaluate_dataset(MODEL, manifest, out=tmp_path / "ray", engine="ray", num_actors=2, **common)
    local_run = vx.evaluate_dataset(MODEL, manifest, out=tmp_path / "local", **common)
    assert ray_run.rows == local_run.rows == 64 and ray_run.summary == local_run.summary
    from_ray = pq.read_table(tmp_path / "ray").sort_by([("image", "ascending")])
    assert "pointing_game.hit" in from_ray.column_names
    assert from_ray.equals(pq.read_table(tmp_path / "local").sort_by([("image", "ascending")]))


def test_decode_stage_and_actor_decoding_give_the_same_rows(scenes):
    """Both ways a shard reaches an actor (decoded by a decode task on GPU clusters, decoded by
    the CPU actor itself) give the same table; no Ray cluster needed to call them."""
    import json as json_module
    from dataclasses import asdict

    from vexplain.datasets.plan import make_plan
    from vexplain.datasets.ray_engine import ShardExplainer, _decode_row
    from vexplain.datasets.sources import resolve_source

    items = list(resolve_source(scenes).items[:5])
    plan = make_plan("gradcam", {}, None, None, load_metadata(), batch_size=2)
    row = {"shard": 3, "items": json_module.dumps([asdict(item) for item in items])}
    decoded = _decode_row(row, plan)
    actor = ShardExplainer(MODEL, WEIGHTS, plan)
    staged = actor({key: decoded["inputs"][None] if key == "inputs" else np.asarray([value]) for key, value in decoded.items()})
    itself = actor({key: np.asarray([value]) for key, value in row.items()})
    assert staged.num_rows == 5 and staged.equals(itself)
    assert staged.column("shard").to_pylist() == [3] * 5
