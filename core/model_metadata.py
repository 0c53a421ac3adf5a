"""Preprocessing metadata that travels with a model (a JSON sidecar file, ONNX ``vexplain.*``
metadata_props, the demo's asset): read with caps and checked against one typed schema.

Schema (every key optional; other keys are kept as they are):

- ``class_names``: list of 1 to 100000 strings, each at most 200 characters;
- ``input_size``: ``[height, width]``, ints in 1..65536;
- ``mean``: 3 finite numbers; ``std``: 3 finite numbers > 0;
- ``channels``: an int in 1..4096;
- ``resize``: ``"shorter"``, ``"longer"`` or ``"exact"``; ``crop``: ``"center"``, ``"letterbox"`` or
  ``"none"``; ``resize_shorter``: an int in 1..65536 (how a photo becomes the input, defaults
  shorter + center: see ``core/preprocessing.py``).

A file is at most ``MAX_METADATA_BYTES`` (1 MiB) of UTF-8 JSON, nested at most ``MAX_DEPTH`` (32)
levels; anything else is a ``ModelLoadError`` naming the file, the key and the expected type.
"""
from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any, Callable

from .errors import ModelLoadError

MAX_METADATA_BYTES = 1 << 20
MAX_DEPTH = 32
MAX_CLASSES = 100_000
MAX_NAME_LENGTH = 200
MAX_SIDE = 65536


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: Any) -> bool:
    return (isinstance(value, (int, float)) and not isinstance(value, bool)) and math.isfinite(value)


def _class_names(value: Any) -> bool:
    return (
        isinstance(value, list) and 0 < len(value) <= MAX_CLASSES
        and all(isinstance(v, str) and len(v) <= MAX_NAME_LENGTH for v in value)
    )


def _input_size(value: Any) -> bool:
    return isinstance(value, list) and len(value) == 2 and all(_is_int(v) and 0 < v <= MAX_SIDE for v in value)


def _triple(positive: bool) -> Callable[[Any], bool]:
    def check(value: Any) -> bool:
        return isinstance(value, list) and len(value) == 3 and all(_is_number(v) and (v > 0 or not positive) for v in value)

    return check


#: key -> (check, what a valid value is)
SCHEMA: dict[str, tuple[Callable[[Any], bool], str]] = {
    "class_names": (_class_names, f"a list of 1 to {MAX_CLASSES} strings of at most {MAX_NAME_LENGTH} characters"),
    "input_size": (_input_size, f"[height, width], two ints in 1..{MAX_SIDE}"),
    "mean": (_triple(False), "a list of 3 finite numbers"),
    "std": (_triple(True), "a list of 3 finite numbers > 0"),
    "channels": (lambda v: _is_int(v) and 0 < v <= 4096, "an int in 1..4096"),
    "resize": (lambda v: v in ("shorter", "longer", "exact"), "one of 'shorter', 'longer', 'exact'"),
    "crop": (lambda v: v in ("center", "letterbox", "none"), "one of 'center', 'letterbox', 'none'"),
    "resize_shorter": (lambda v: _is_int(v) and 0 < v <= MAX_SIDE, f"an int in 1..{MAX_SIDE}"),
}


def _shown(value: Any) -> str:
    text = json.dumps(value) if not isinstance(value, str) else repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def check_metadata(data: Any, source: str) -> dict[str, Any]:
    """``data`` as a metadata dict, every schema key type- and range-checked."""
    if not isinstance(data, dict):
        raise ModelLoadError(f"model metadata {source} must be a JSON object with keys {', '.join(SCHEMA)}; got {type(data).__name__}")
    if json_depth(data) > MAX_DEPTH:
        raise ModelLoadError(f"model metadata {source} is nested more than {MAX_DEPTH} levels deep; give a flat JSON object with keys {', '.join(SCHEMA)}")
    for key, (check, expected) in SCHEMA.items():
        if key in data and not check(data[key]):
            raise ModelLoadError(f"model metadata {source}: {key!r} must be {expected}; got {_shown(data[key])}")
    return dict(data)


def parse_metadata_text(text: str | bytes, source: str) -> Any:
    """JSON text decoded with the size cap; binary or malformed text is a ``ModelLoadError``."""
    return parse_json(text, f"model metadata {source}", MAX_METADATA_BYTES, ModelLoadError)


def parse_json(text: str | bytes, what: str, max_bytes: int, error: type[Exception] = ModelLoadError) -> Any:
    """``text`` (at most ``max_bytes``, UTF-8) decoded as JSON; anything else raises ``error`` naming ``what``."""
    if len(text) > max_bytes:
        raise error(f"{what} is over {max_bytes} bytes; the limit is {max_bytes}")
    if isinstance(text, (bytes, bytearray)):
        try:
            text = bytes(text).decode("utf-8")
        except UnicodeDecodeError:
            raise error(f"{what} is not UTF-8 text; give a JSON file") from None
    try:
        return json.loads(text)
    except json.JSONDecodeError as failure:
        raise error(f"{what} is not valid JSON ({failure.msg} at line {failure.lineno} column {failure.colno})") from None
    except RecursionError:
        raise error(f"{what} is nested too deeply to read; give a flat JSON object") from None


def read_json_file(path: Path, what: str, max_bytes: int, error: type[Exception] = ModelLoadError) -> Any:
    """The JSON file at ``path``, read at most ``max_bytes`` + 1 bytes (see ``parse_json``)."""
    try:
        with Path(path).open("rb") as handle:
            data = handle.read(max_bytes + 1)
    except OSError as failure:
        raise error(f"cannot read {what}: {failure.strerror}") from None
    return parse_json(data, what, max_bytes, error)


def read_metadata_file(path: str | Path) -> dict[str, Any]:
    """A JSON metadata file: at most ``MAX_METADATA_BYTES``, UTF-8, schema-checked."""
    return check_metadata(read_json_file(Path(path), f"model metadata {path}", MAX_METADATA_BYTES), str(path))


def json_depth(value: Any) -> int:
    """Nesting depth of lists and dicts (a scalar is 0), without recursion."""
    deepest, stack = 0, [(value, 0)]
    while stack:
        item, level = stack.pop()
        if isinstance(item, (list, dict)):
            level += 1
            deepest = max(deepest, level)
            if deepest > MAX_DEPTH:
                return deepest
            stack.extend((child, level) for child in (item.values() if isinstance(item, dict) else item))
    return deepest
