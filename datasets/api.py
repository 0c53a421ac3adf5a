"""``vx.explain_dataset``: explain every image of a data set into a resumable Parquet dataset."""
from __future__ import annotations

import importlib.util
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping, Sequence

from vexplain.core.api import adapt
from vexplain.core.errors import InvalidInput, InvalidOption, ModelLoadError
from vexplain.core.progress import progress_counter

from .plan import fingerprint, make_plan
from .sources import Item, Source, items_from_records, resolve_source
from .store import ShardStore

ENGINES = ("local", "ray")


@dataclass(frozen=True)
class DatasetRun:
    """What a run did: ``images`` in the source, ``skipped`` (already done by an earlier run),
    ``rows`` and ``shards`` written now, ``seconds`` of wall time, ``out`` the dataset folder."""

    out: Path
    images: int
    skipped: int
    rows: int
    shards: int
    seconds: float

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
    (with ``weights=``, metadata sidecar JSON read as by the CLI); for ``engine="ray"`` only a
    path or ``pkg.module:factory`` spec, which every actor loads once. ``source``: a folder
    (ImageFolder sub-folders give labels), a ``.csv``/``.json``/``.jsonl`` manifest (``path``,
    optional ``label``, ``box``), a list of paths, or a Ray Dataset with a ``path`` column.
    ``targets``: None (top class, default), a class index, or ``"label"``. Preprocessing
    ``size``/``mean``/``std`` default to the model's metadata. Images are explained in batches of
    ``batch_size`` (default 16) and committed in shards of ``shard_size`` images (default 64); a
    rerun with the same model, methods, options, targets and preprocessing skips committed images;
    anything else changed is an ``InvalidOption`` unless ``overwrite=True``. ``overlays=True``
    also writes ``out/_overlays/<image>.<method>.png`` (local engine). ``ray_address``: None starts
    (or reuses) a local Ray; an address joins a cluster; ``num_actors`` defaults to one per GPU,
    else one per CPU. ``options`` go to every method that declares them; ``method_options`` maps
    a method name to options of its own.
    """
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
    adapter = _adapter(model, weights)
    plan = make_plan(method, options, method_options, targets, adapter.metadata, size, mean, std, batch_size, overlays)
    resolved = _source(source, adapter.metadata.get("class_names"))
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

            rows = run_ray(str(model), weights, shards, plan, store, bar.update, ray_address, num_actors)
    return DatasetRun(store.out, len(resolved.items), len(resolved.items) - len(todo), rows, len(shards), time.perf_counter() - started)


def _adapter(model: Any, weights: str | None) -> Any:
    if isinstance(model, (str, Path)):
        from vexplain.cli.model_loading import load_model

        return load_model(str(model), weights)
    if weights is not None:
        raise InvalidOption("weights= goes with a 'pkg.module:factory' model spec, not a model object")
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


__all__ = ["DatasetRun", "Item", "explain_dataset"]
