"""The CLI's MODEL argument: an adapter plus the preprocessing metadata that travels with it."""
from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from vexplain import ModelAdapter, adapt
from vexplain.errors import InvalidOption
from vexplain.files import read_metadata_file

METADATA_KEYS = ("class_names", "input_size", "mean", "std")
# what the torch adapter takes as a factory: a dotted module, a colon, a callable's name
_FACTORY = re.compile(r"^[A-Za-z_][\w.]*:[A-Za-z_]\w*$")


def add_random_weights_argument(parser: Any) -> None:
    """``--random-weights``: accept a ``pkg.module:factory`` MODEL without ``--weights`` on purpose."""
    parser.add_argument(
        "--random-weights", action="store_true",
        help="explain a pkg.module:factory MODEL with the weights its factory draws (untrained), on purpose; without it such a MODEL needs --weights",
    )


def is_factory(spec: str) -> bool:
    """True for ``pkg.module:factory`` strings that do not name an existing file."""
    return bool(_FACTORY.match(spec)) and not Path(spec).exists()


def check_weights(spec: str, weights: str | None, random_weights: bool) -> None:
    """A factory without ``--weights`` would explain an untrained model: refused unless
    ``--random-weights`` says so; ``--random-weights`` with weights or with a model file is a contradiction."""
    factory = is_factory(spec)
    if random_weights and not factory:
        raise InvalidOption(f"--random-weights applies to a pkg.module:factory MODEL only; {spec!r} carries its own weights")
    if random_weights and weights is not None:
        raise InvalidOption("give either --weights FILE or --random-weights, not both")
    if factory and weights is None and not random_weights:
        raise InvalidOption(
            f"MODEL {spec!r} is a factory and no --weights were given, so its weights would be untrained: "
            f"pass --weights state_dict.pt, or --random-weights to explain the random weights on purpose"
        )


def load_model(spec: str, weights: str | None = None, output: str | None = None, random_weights: bool = False) -> ModelAdapter:
    """``spec`` (a .onnx or TorchScript path, or ``pkg.module:factory``) adapted, with metadata from
    the model (ONNX metadata_props) or a JSON file beside the model or the weights (same stem);
    ``output``: the explained output's name or index (``--output``). A factory needs ``weights``
    unless ``random_weights`` (``--random-weights``) accepts its untrained weights on purpose."""
    check_weights(spec, weights, random_weights)
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
