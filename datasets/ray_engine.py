"""``engine="ray"``: the same shards on Ray Data (the only module of vexplain that imports ray).

One dataset row per shard (its images, as JSON) flows through:

- **decode** (clusters with GPUs) — Ray tasks read and preprocess a shard's images
  (``num_cpus=DECODE_CPUS``) while the GPUs explain; the decoded shard travels as a numpy tensor
  column. On CPU actors the actor decodes its own shard instead: a separate decode stage there
  only competes for the same CPUs and adds one scheduled task per shard, which cost 5.7× in
  steady-state throughput on 2 cores (benchmarks/README.md);
- **explain** — an actor pool (``map_batches`` with :class:`ShardExplainer`, one shard per call)
  whose actors each build the model once from its spec (a path, or ``pkg.module:factory`` plus
  weights). With GPUs in the cluster there is one actor per GPU (``num_gpus=1``, the PyTorch
  model moved to CUDA); otherwise one actor per CPU, each claiming ``ACTOR_CPUS`` (fractional) so
  Ray Data's own tasks always keep a share of the CPUs (actors claiming whole CPUs deadlock the
  read stage on a small machine).

Writing is not Ray's ``write_parquet``: rows stream back to the driver, which commits each
complete shard through the same :class:`~vexplain.datasets.store.ShardStore` as the local engine
(one committer, atomic files, a manifest). Ray retries a failed task or restarted actor
(``max_restarts=-1`` and ``max_task_retries=-1``, Ray Data's defaults for actor pools); the driver
commits a shard once, when all its rows are there, and ignores rows of a shard it has committed,
so a retry never duplicates a row and a resumed run skips committed shards.
"""
from __future__ import annotations

import json
import os
from dataclasses import asdict
from typing import Any, Callable, Sequence

import numpy as np

from vexplain.core.errors import VexplainError

from .pipeline import Decoded, decode, explain_decoded, to_table
from .plan import Plan
from .sources import Item
from .store import ShardStore

ACTOR_CPUS = 0.75
DECODE_CPUS = 0.25


def run_ray(
    spec: str,
    weights: str | None,
    shards: Sequence[tuple[int, list[Item]]],
    plan: Plan,
    store: ShardStore,
    advance: Callable[[int], None],
    address: str | None = None,
    num_actors: int | None = None,
    random_weights: bool = False,
) -> int:
    """Explain and commit ``shards`` on Ray; returns the rows written. A Ray already initialised in
    this process is used as it is; otherwise ``address=None`` starts a local one (no dashboard,
    no usage statistics; Ray 2.60's gRPC servers still listen on every interface, guarded by its
    token authentication) and an address joins that cluster; a Ray started here is shut down
    before returning."""
    import ray

    if not shards:
        return 0
    started = not ray.is_initialized()
    if started:
        _init(ray, address)
    try:
        return _run(ray, spec, weights, shards, plan, store, advance, num_actors, random_weights)
    except Exception as error:
        cause = _vexplain_cause(error)
        if cause is not None:
            raise cause from None
        raise
    finally:
        if started:
            ray.shutdown()


def _init(ray: Any, address: str | None) -> None:
    if address is not None:
        ray.init(address=address, log_to_driver=False)
        return
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    ray.init(include_dashboard=False, log_to_driver=False, configure_logging=False)


def _run(ray: Any, spec: str, weights: str | None, shards: Sequence[tuple[int, list[Item]]], plan: Plan, store: ShardStore, advance: Callable[[int], None], num_actors: int | None, random_weights: bool = False) -> int:
    from ray.data import ActorPoolStrategy, DataContext

    DataContext.get_current().enable_progress_bars = False
    resources = ray.cluster_resources()
    gpus = int(resources.get("GPU", 0))
    size = num_actors or (gpus or max(1, int(resources.get("CPU", 1))))
    descriptors = [{"shard": index, "items": json.dumps([asdict(item) for item in items])} for index, items in shards]
    expected = {index: len(items) * len(plan.methods) for index, items in shards}
    names = {index: [item.name for item in items] for index, items in shards}
    dataset = ray.data.from_items(descriptors, override_num_blocks=len(descriptors))
    if gpus:  # CPUs decode while the GPUs explain; on CPU actors a decode stage only adds a task per shard
        dataset = dataset.map(_decode_row, fn_kwargs={"plan": plan}, num_cpus=DECODE_CPUS)
    dataset = dataset.map_batches(
        ShardExplainer,
        fn_constructor_kwargs={"spec": spec, "weights": weights, "plan": plan, "cuda": gpus > 0, "random_weights": random_weights},
        batch_size=1,
        batch_format="numpy",
        compute=ActorPoolStrategy(size=min(size, len(shards))),
        num_cpus=ACTOR_CPUS,
        num_gpus=1 if gpus else None,
    )
    pending: dict[int, list[Any]] = {}
    written = 0
    for batch in dataset.iter_batches(batch_size=None, batch_format="pyarrow"):
        for index in sorted(set(batch.column("shard").to_pylist())):
            if index not in expected:
                continue  # committed already: a retried task's second answer
            part = batch.filter(_equals(batch.column("shard"), index)).drop_columns(["shard"])
            pending.setdefault(index, []).append(part)
            if sum(p.num_rows for p in pending[index]) >= expected[index]:
                table = _deduplicated(pending.pop(index))
                store.commit(index, table, names[index])
                written += table.num_rows
                advance(len(names[index]))
                del expected[index]
    if expected:
        raise VexplainError(f"Ray returned no rows for shard(s) {', '.join(map(str, sorted(expected)))}; rerun to finish them (committed shards are kept)")
    return written


def _decode_row(row: dict[str, Any], plan: Plan) -> dict[str, Any]:
    items = [Item(d["name"], d["path"], d["label"], None if d["box"] is None else tuple(d["box"])) for d in json.loads(row["items"])]
    decoded = decode(items, plan)
    # a numpy column: Ray Data keeps it as an Arrow tensor block, handed to the actor without a copy
    return {"shard": row["shard"], "items": row["items"], "inputs": decoded.inputs, "shapes": json.dumps(decoded.shapes)}


class ShardExplainer:
    """The actor: the model built once from its spec, then every method on one decoded shard per
    call, returning the shard's rows (plus a ``shard`` column) as a ``pyarrow.Table``."""

    def __init__(self, spec: str, weights: str | None, plan: Plan, cuda: bool = False, random_weights: bool = False):
        from vexplain.core.model_specs import load_model

        self.adapter = load_model(spec, weights, random_weights=random_weights)
        if cuda and hasattr(getattr(self.adapter, "model", None), "to"):
            self.adapter.model.to("cuda")
        self.plan = plan
        self.pins: dict[str, dict[str, Any]] = {}

    def __call__(self, batch: dict[str, np.ndarray]) -> Any:
        import pyarrow as pa

        tables = []
        if "inputs" not in batch:  # CPU actors decode their shard themselves
            batch = {**batch, "inputs": [None] * len(batch["shard"]), "shapes": [None] * len(batch["shard"])}
        for shard, items_json, data, shapes in zip(batch["shard"], batch["items"], batch["inputs"], batch["shapes"]):
            items = [Item(d["name"], d["path"], d["label"], None if d["box"] is None else tuple(d["box"])) for d in json.loads(str(items_json))]
            if data is None:
                decoded = decode(items, self.plan)
            else:
                decoded = Decoded(items, np.asarray(data, dtype=np.float32), None, [tuple(shape) for shape in json.loads(str(shapes))])
            columns, _ = explain_decoded(self.adapter, decoded, self.plan, self.pins)
            table = to_table(columns)
            tables.append(table.append_column("shard", pa.array([int(shard)] * table.num_rows, type=pa.int64())))
        return pa.concat_tables(tables)


def _equals(column: Any, value: int) -> Any:
    import pyarrow.compute as pc

    return pc.equal(column, value)


def _deduplicated(parts: list[Any]) -> Any:
    """One row per (image, method), in the shard's order (a retried task may have answered twice)."""
    import pyarrow as pa

    table = pa.concat_tables(parts)
    seen: set[tuple[str, str]] = set()
    keep = []
    for position, key in enumerate(zip(table.column("image").to_pylist(), table.column("method").to_pylist())):
        if key not in seen:
            seen.add(key)
            keep.append(position)
    return table.take(pa.array(keep)).select([name for name in table.column_names if name != "shard"])


def _vexplain_cause(error: BaseException) -> VexplainError | None:
    """The vexplain error a Ray task raised, found through Ray's wrappers, else None."""
    seen = set()
    current: BaseException | None = error
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, VexplainError) and type(current).__module__.startswith("vexplain."):
            return current
        cause = getattr(current, "cause", None)
        current = cause if isinstance(cause, BaseException) else (current.__cause__ or current.__context__)
    return None
