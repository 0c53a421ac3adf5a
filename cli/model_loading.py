"""The CLI's MODEL argument: an adapter plus the preprocessing metadata that travels with it."""
from __future__ import annotations

from pathlib import Path
from typing import Any

from vexplain.core.adapter import ModelAdapter
from vexplain.core.api import adapt
from vexplain.core.model_metadata import read_metadata_file

METADATA_KEYS = ("class_names", "input_size", "mean", "std")


def load_model(spec: str, weights: str | None = None, output: str | None = None) -> ModelAdapter:
    """``spec`` (a .onnx or TorchScript path, or ``pkg.module:factory``) adapted, with metadata from
    the model (ONNX metadata_props) or a JSON file beside the model or the weights (same stem);
    ``output``: the explained output's name or index (``--output``)."""
    options = {key: value for key, value in (("weights", weights), ("output", output)) if value is not None}
    adapter = adapt(spec, **options)
    for candidate in (weights, spec):
        if candidate and Path(candidate).is_file():
            sidecar = Path(candidate).with_suffix(".json")
            if sidecar.is_file():
                adapter.metadata = {**_read_sidecar(sidecar), **adapter.metadata}
                break
    return adapter


def _read_sidecar(path: Path) -> dict[str, Any]:
    """The sidecar's metadata keys, read with the caps and type checks of ``core.model_metadata``."""
    data = read_metadata_file(path)
    return {key: data[key] for key in METADATA_KEYS if key in data}
