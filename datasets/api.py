"""``vx.explain_dataset`` and ``vx.evaluate_dataset``: explain (and score) every image of a data set
into a resumable Parquet dataset."""
from __future__ import annotations

import importlib.util
import os
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Mapping, Sequence

from vexplain.core.api import adapt
from vexplain.core.errors import InvalidInput, InvalidOption, ModelLoadError
from vexplain.core.model_specs import load_model
from vexplain.core.progress import progress_counter

from .metrics import check_metrics, summarize
from .plan import fingerprint, make_plan
from .sources import Item, Source, items_from_records, resolve_source
from .store import ShardStore

ENGINES = ("local", "ray")


@dataclass(frozen=True)
class DatasetRun:
    """What a run did: ``images`` in the source, ``skipped`` (already done by an earlier run),
    ``rows`` and ``shards`` written now, ``seconds`` of wall time, ``out`` the dataset folder;
    ``summary`` (runs with metrics): {method: {"<metric>.<value>": {"mean", "std", "n"}}} over
    every committed row (``datasets.metrics.summarize``), else None."""

    out: Path
    images: int
    skipped: int
    rows: int
    shards: int
    seconds: float
    summary: dict[str, dict[str, dict[str, float]]] | None = None

    @property
    def images_per_second(self) -> float:
        """Images explained now per second of wall time (0 when nothing was left to do)."""
        done = self.images - self.skipped
        return done / self.seconds if done and self.seconds > 0 else 0.0


def explain_dataset(
    model: Any,
    source: Any,
    method: str | Sequence[str] = "gradcam",
    out: str | os.PathLike = "vexplain-dataset",
    engine: str = "local",
    targets: int | str | None = None,
    *,
    weights: str | None = None,
    random_weights: bool = False,
    size: Sequence[int] | None = None,
    mean: Sequence[float] | None = None,
    std: Sequence[float] | None = None,
    batch_size: int = 16,
    shard_size: int = 64,
    overwrite: bool = False,
    overlays: bool = False,
    method_options: Mapping[str, Mapping[str, Any]] | None = None,
    ray_address: str | None = None,
    num_actors: int | None = None,
    **options: Any,
) -> DatasetRun:
    """Explain every image of ``source`` with every method in ``method`` and write one Parquet row
    per image × method into ``out`` (schema in ``vexplain.datasets.pipeline``).

    ``model``: for ``engine="local"`` anything ``vx.adapt`` takes, or a path / ``pkg.module:factory``
    (with ``weights=``, metadata sidecar JSON read as by the CLI; a factory without weights is
    refused unless ``random_weights=True`` accepts its untrained weights on purpose); for
    ``engine="ray"`` only a path or ``pkg.module:factory`` spec, which every actor loads once.
    ``source``: a folder (ImageFolder sub-folders give labels), a ``.csv``/``.json``/``.jsonl``
    manifest (``path``, optional ``label``, ``box``), a list of paths, or a Ray Dataset with a
    ``path`` column. ``targets``: None (top class, default), a class index, or ``"label"``.
    Preprocessing ``size``/``mean``/``std`` default to the model's metadata. Images are explained
    in batches of ``batch_size`` (default 16) and committed in shards of ``shard_size`` images
    (default 64); a rerun with the same model, methods, options, targets and preprocessing skips
    committed images; anything else changed is an ``InvalidOption`` unless ``overwrite=True``.
    ``overlays=True`` also writes ``out/_overlays/<image>.<method>.png`` (local engine).
    ``ray_address``: None starts (or reuses) a local Ray; an address joins a cluster;
    ``num_actors`` defaults to one per GPU, else one per CPU. ``options`` go to every method that
    declares them; ``method_options`` maps a method name to options of its own.
    """
    return _run(
        model, source, method, out, engine, targets, weights, random_weights, size, mean, std, batch_size, shard_size,
        overwrite, overlays, method_options, ray_address, num_actors, options, metrics=(), metric_options=None,
    )


def evaluate_dataset(
    model: Any,
    source: Any,
    methods: str | Sequence[str] = "gradcam",
    metrics: str | Sequence[str] | None = None,
    out: str | os.PathLike = "vexplain-evaluation",
    engine: str = "local",
    targets: int | str | None = None,
    *,
    weights: str | None = None,
    random_weights: bool = False,
    size: Sequence[int] | None = None,
    mean: Sequence[float] | None = None,
    std: Sequence[float] | None = None,
    batch_size: int = 16,
    shard_size: int = 64,
    overwrite: bool = False,
    method_options: Mapping[str, Mapping[str, Any]] | None = None,
    metric_options: Mapping[str, Mapping[str, Any]] | None = None,
    ray_address: str | None = None,
    num_actors: int | None = None,
    **options: Any,
) -> DatasetRun:
    """``explain_dataset`` plus ``vx.evaluate``: every method's maps of each batch scored by every
    metric, the values written as float64 columns ``"<metric>.<value>"`` of the same rows (one per
    image × method), resumable the same way (metrics and their options are part of the run's
    spec). ``metrics``: names (default None: every registered metric, less those that need ground
    truth when an image has no ``box``); ``metric_options`` maps a metric to its options.
    Ground truth for ``pointing_game`` is the manifest's ``box`` in original-image pixels (scaled
    to the input size); labels come from class sub-folders or the manifest's ``label`` (explained
    with ``targets="label"``). The returned run's ``summary`` is {method: {column: {"mean", "std",
    "n"}}} over every committed row, also written to ``out/_summary.json``. Everything else as in
    :func:`explain_dataset` (overlays are not written by an evaluation run).

    A separate function rather than ``vx.evaluate`` accepting a source: ``vx.evaluate`` scores one
    in-memory batch with one metric and returns an ``Evaluation``; a data-set run streams many
    methods × metrics into a folder and returns a ``DatasetRun``, like ``explain_dataset``.
    """
    return _run(
        model, source, methods, out, engine, targets, weights, random_weights, size, mean, std, batch_size, shard_size,
        overwrite, False, method_options, ray_address, num_actors, options, metrics=metrics, metric_options=metric_options,
    )


def _run(
    model: Any, source: Any, method: Any, out: Any, engine: str, targets: Any, weights: str | None, random_weights: bool,
    size: Any, mean: Any, std: Any, batch_size: int, shard_size: int, overwrite: bool, overlays: bool,
    method_options: Any, ray_address: str | None, num_actors: int | None, options: Mapping[str, Any],
    metrics: Any, metric_options: Any,
) -> DatasetRun:
    started = time.perf_counter()
    if engine not in ENGINES:
        raise InvalidOption(f"engine must be one of {', '.join(ENGINES)}; got {engine!r}")
    if not isinstance(shard_size, int) or isinstance(shard_size, bool) or shard_size < 1:
        raise InvalidOption(f"shard_size must be a positive int; got {shard_size!r}")
    if engine == "ray" and not isinstance(model, (str, Path)):
        raise ModelLoadError(
            f"engine='ray' builds the model in every actor from a spec; give a model path or 'pkg.module:factory' (with weights=), not a {type(model).__name__}"
        )
    if engine == "ray" and overlays:
        raise InvalidOption("overlays=True is written by the local engine only; run engine='local' or read the maps from the Parquet rows")
    if engine == "ray" and importlib.util.find_spec("ray") is None:
        raise InvalidOption("engine='ray' needs Ray Data: pip install 'vexplain[ray]' (or run engine='local')")
    adapter = _adapter(model, weights, random_weights)
    resolved = _source(source, adapter.metadata.get("class_names"))
    plan = make_plan(method, options, method_options, targets, adapter.metadata, size, mean, std, batch_size, overlays)
    if metrics != ():
        names, per_metric = check_metrics(metrics, metric_options, resolved.items)
        plan = replace(plan, metrics=names, metric_options=per_metric)
    store = ShardStore(out, plan.spec(fingerprint(model, weights)), overwrite)
    done = store.done
    todo = [item for item in resolved.items if item.name not in done]
    first = store.next_index()
    shards = [(first + k, todo[start:start + shard_size]) for k, start in enumerate(range(0, len(todo), shard_size))]
    with progress_counter(len(todo), description="images", unit="img") as bar:
        if engine == "local":
            from .local_engine import run_local

            rows = run_local(adapter, shards, plan, store, bar.update)
        else:
            from .ray_engine import run_ray

            rows = run_ray(str(model), weights, shards, plan, store, bar.update, ray_address, num_actors, random_weights)
    summary = summarize(store.out) if plan.metrics and store.shards else None
    return DatasetRun(store.out, len(resolved.items), len(resolved.items) - len(todo), rows, len(shards), time.perf_counter() - started, summary)


def _adapter(model: Any, weights: str | None, random_weights: bool) -> Any:
    if isinstance(model, (str, Path)):
        return load_model(str(model), weights, random_weights=random_weights)
    if weights is not None or random_weights:
        raise InvalidOption("weights= and random_weights= go with a 'pkg.module:factory' model spec, not a model object")
    return adapt(model)


def _source(source: Any, class_names: Any) -> Source:
    if type(source).__module__.startswith("ray.data"):
        if "path" not in source.columns():
            raise InvalidInput(f"a Ray Dataset source needs a 'path' column (and may have 'label', 'box'); it has {', '.join(source.columns())}")
        records = source.take_all()
        paths = [str(Path(str(r["path"])).resolve()) for r in records]
        base = Path(os.path.commonpath([str(Path(p).parent) for p in paths])) if paths else Path.cwd()
        return items_from_records([{**r, "path": p} for r, p in zip(records, paths)], base, "Ray Dataset")
    return resolve_source(source, class_names)


__all__ = ["DatasetRun", "Item", "evaluate_dataset", "explain_dataset"]
