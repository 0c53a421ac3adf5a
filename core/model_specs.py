"""Models named by a string: a ``.onnx`` or TorchScript path, or ``pkg.module:factory`` plus a
weights file, adapted with the preprocessing metadata that travels with them (ONNX
``metadata_props``, or a JSON sidecar beside the model or the weights, same stem).

Used by the CLI's MODEL argument and by data-set runs (whose Ray actors build the model from the
spec). A factory without weights would explain an untrained network, so it is refused unless
``random_weights`` says so on purpose.
"""
from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from .adapter import ModelAdapter
from .api import adapt
from .errors import InvalidOption
from .model_metadata import read_metadata_file

METADATA_KEYS = ("class_names", "input_size", "mean", "std", "resize", "crop", "resize_shorter")
#: how the refusals name the two settings: keyword arguments here, flags in the CLI
API_NAMES = ("weights=", "random_weights=True")
# what the torch adapter takes as a factory: a dotted module, a colon, a callable's name
_FACTORY = re.compile(r"^[A-Za-z_][\w.]*:[A-Za-z_]\w*$")


def is_factory(spec: str) -> bool:
    """True for ``pkg.module:factory`` strings that do not name an existing file."""
    return bool(_FACTORY.match(spec)) and not Path(spec).exists()


def check_weights(spec: str, weights: str | None, random_weights: bool, names: tuple[str, str] = API_NAMES) -> None:
    """A factory without ``weights`` would explain an untrained model: refused unless
    ``random_weights``; ``random_weights`` with weights or with a model file is a contradiction.
    ``names``: how the messages spell the two settings (``("--weights", "--random-weights")`` in the CLI)."""
    given, random = names
    factory = is_factory(spec)
    if random_weights and not factory:
        raise InvalidOption(f"{random} applies to a pkg.module:factory MODEL only; {spec!r} carries its own weights")
    if random_weights and weights is not None:
        raise InvalidOption(f"give either {given} FILE or {random}, not both")
    if factory and weights is None and not random_weights:
        raise InvalidOption(
            f"MODEL {spec!r} is a factory and no {given.rstrip('=')} were given, so its weights would be untrained: "
            f"pass {given} state_dict.pt, or {random} to explain the random weights on purpose"
        )


def load_model(
    spec: str, weights: str | None = None, output: str | None = None, random_weights: bool = False, names: tuple[str, str] = API_NAMES
) -> ModelAdapter:
    """``spec`` adapted, with metadata from the model or its sidecar JSON; ``output``: the explained
    output's name or index. A factory needs ``weights`` unless ``random_weights`` (see
    :func:`check_weights`; ``names`` spells the settings in its messages)."""
    check_weights(spec, weights, random_weights, names)
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
