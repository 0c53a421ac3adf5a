"""Where a data-set run's images come from: a folder, a list of paths, a CSV/JSON manifest.

Every source becomes a list of ``Item`` in a fixed order (sorted for folders, as given for lists
and manifests), each named by its path relative to the source's root; that name is the ``image``
column of the output and the identity used for resume, so two items with one name are an error.
"""
from __future__ import annotations

import csv
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

from vexplain.core.errors import InvalidInput

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp")
MANIFEST_SUFFIXES = (".csv", ".json", ".jsonl")


@dataclass(frozen=True)
class Item:
    """One image: ``name`` (relative to the source root, '/'-separated), ``path`` (absolute),
    ``label`` (class index or None) and ``box`` ((x0, y0, x1, y1) pixels or None)."""

    name: str
    path: str
    label: int | None = None
    box: tuple[int, int, int, int] | None = None


@dataclass(frozen=True)
class Source:
    """The resolved items and the root their names are relative to."""

    root: str
    items: tuple[Item, ...]


def is_dataset_source(text: str) -> bool:
    """Whether a CLI argument names a folder or a manifest (rather than one image file)."""
    path = Path(text)
    return path.is_dir() or path.suffix.lower() in MANIFEST_SUFFIXES


def resolve_source(source: Any, class_names: Sequence[str] | None = None) -> Source:
    """``source`` as items.

    - a folder: every image file below it, sorted; when every image sits in a first-level
      sub-folder (ImageFolder style), the sub-folder is the label: its index in ``class_names``
      when all sub-folders are class names of the model, else its index in the sorted sub-folders;
    - a ``.csv``/``.json``/``.jsonl`` manifest: rows with ``path`` (relative to the manifest's
      folder, or absolute) and optional ``label`` (int) and ``box`` ("x0 y0 x1 y1" or a list);
    - a list or tuple of image paths: names relative to their common folder.
    """
    if isinstance(source, (str, os.PathLike)):
        path = Path(source)
        if path.is_dir():
            return _folder(path, class_names)
        if path.suffix.lower() in MANIFEST_SUFFIXES:
            if not path.is_file():
                raise InvalidInput(f"manifest not found: {path}")
            return _manifest(path)
        raise InvalidInput(f"source {path} is neither a folder nor a .csv/.json/.jsonl manifest; give a folder of images, a manifest, or a list of paths")
    if isinstance(source, (list, tuple)):
        return _paths(source)
    raise InvalidInput(
        f"cannot read images from a {type(source).__name__}; give a folder, a .csv/.json manifest, a list of paths, or (engine='ray') a Ray Dataset with a 'path' column"
    )


def items_from_records(records: Sequence[dict[str, Any]], base: Path, where: str) -> Source:
    """Manifest-like records (``path`` and optional ``label``/``box``) as a source rooted at ``base``."""
    items = []
    for number, record in enumerate(records, 1):
        if not isinstance(record, dict) or not record.get("path"):
            raise InvalidInput(f"{where}: row {number} has no 'path'; every row needs a 'path' (and may have 'label', 'box')")
        path = Path(str(record["path"]))
        full = path if path.is_absolute() else base / path
        items.append(Item(_name(full, base), str(full.resolve()), _label(record.get("label"), where, number), _box(record.get("box"), where, number)))
    return _checked(Source(str(base.resolve()), tuple(items)), where)


def _folder(folder: Path, class_names: Sequence[str] | None) -> Source:
    files = sorted(p for p in folder.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
    if not files:
        raise InvalidInput(f"no image files ({', '.join(IMAGE_SUFFIXES)}) in folder {folder}")
    parts = [p.relative_to(folder).parts for p in files]
    by_class = all(len(part) == 2 for part in parts)
    labels: dict[str, int] = {}
    if by_class:
        classes = sorted({part[0] for part in parts})
        known = list(class_names or [])
        labels = {c: known.index(c) for c in classes} if known and all(c in known for c in classes) else {c: i for i, c in enumerate(classes)}
    items = tuple(
        Item("/".join(part), str(path.resolve()), labels[part[0]] if by_class else None) for path, part in zip(files, parts)
    )
    return Source(str(folder.resolve()), items)


def _manifest(path: Path) -> Source:
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as error:
        raise InvalidInput(f"cannot read manifest {path}: {error}") from None
    suffix = path.suffix.lower()
    try:
        if suffix == ".csv":
            records: list[Any] = list(csv.DictReader(text.splitlines()))
        elif suffix == ".jsonl":
            records = [json.loads(line) for line in text.splitlines() if line.strip()]
        else:
            records = json.loads(text)
    except (json.JSONDecodeError, csv.Error) as error:
        raise InvalidInput(f"manifest {path} is not valid {suffix[1:].upper()}: {error}") from None
    if not isinstance(records, list) or not records:
        raise InvalidInput(f"manifest {path} must hold a non-empty list of rows with a 'path' column")
    return items_from_records(records, path.parent, f"manifest {path}")


def _paths(paths: Sequence[Any]) -> Source:
    if not paths:
        raise InvalidInput("the list of image paths is empty; give at least one image path")
    full = [Path(str(p)).resolve() for p in paths]
    root = Path(os.path.commonpath([str(p.parent) for p in full]))
    items = tuple(Item(_name(p, root), str(p)) for p in full)
    return _checked(Source(str(root), items), "list of paths")


def _name(path: Path, base: Path) -> str:
    resolved, root = path.resolve(), base.resolve()
    try:
        return resolved.relative_to(root).as_posix()
    except ValueError:
        return resolved.as_posix()


def _checked(source: Source, where: str) -> Source:
    seen: set[str] = set()
    for item in source.items:
        if item.name in seen:
            raise InvalidInput(f"{where} names image {item.name!r} twice; each image may appear once (it identifies the output rows)")
        seen.add(item.name)
    return source


def _label(value: Any, where: str, number: int) -> int | None:
    if value is None or value == "":
        return None
    try:
        label = int(value)
    except (TypeError, ValueError):
        raise InvalidInput(f"{where}: row {number} has label {value!r}; a label is a class index (int)") from None
    if label < 0:
        raise InvalidInput(f"{where}: row {number} has label {label}; a label is a class index >= 0")
    return label


def _box(value: Any, where: str, number: int) -> tuple[int, int, int, int] | None:
    if value is None or value == "":
        return None
    numbers = value.replace(",", " ").split() if isinstance(value, str) else value
    try:
        box = tuple(int(round(float(v))) for v in numbers)
    except (TypeError, ValueError):
        box = ()
    if len(box) != 4:
        raise InvalidInput(f"{where}: row {number} has box {value!r}; a box is 'x0 y0 x1 y1' (4 numbers)")
    return box  # type: ignore[return-value]
