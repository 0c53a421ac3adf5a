"""Reading untrusted ONNX files: external tensor data is resolved by vexplain, never by ONNX Runtime.

An ONNX tensor may keep its bytes in another file (``data_location = EXTERNAL``, key ``location``).
ONNX Runtime resolves that location against the model's folder when it opens a path, and against the
current working directory when it is handed bytes. vexplain hands it bytes, so it first validates
every external location and copies the data into the proto itself. Rules:

- a location is a relative path inside the model's folder: no absolute path, no drive, no ``..``,
  and after resolving symlinks the file still lies inside the folder and is a regular file;
- ``offset`` and ``length`` are non-negative and lie within the file;
- bytes or a ``ModelProto`` have no folder: external references are refused unless ``base_dir``
  names the folder the data lives in.

Every tensor is visited: graph initializers, sparse initializers, Constant-node and other tensor
attributes, subgraphs (If/Loop/Scan bodies) and local functions. Anything else is a ``ModelLoadError``.
"""
from __future__ import annotations

import os
import stat
from pathlib import Path, PurePosixPath, PureWindowsPath
from typing import Any, Iterator

from vexplain.core.errors import ModelLoadError

EXTERNAL_HINT = "keep external data files beside the model (relative names, no '..', no links leaving the folder), or save the model with its data inside"


def iter_tensors(model: Any) -> Iterator[Any]:
    """Every ``TensorProto`` of ``model``: initializers, sparse initializers' values and indices,
    tensor attributes, and the same inside subgraphs and local functions."""
    yield from _graph_tensors(model.graph)
    for function in model.functions:
        yield from _nodes_tensors(function.node)


def _graph_tensors(graph: Any) -> Iterator[Any]:
    yield from graph.initializer
    for sparse in graph.sparse_initializer:
        yield sparse.values
        yield sparse.indices
    yield from _nodes_tensors(graph.node)


def _nodes_tensors(nodes: Any) -> Iterator[Any]:
    for node in nodes:
        for attribute in node.attribute:
            if attribute.HasField("t"):
                yield attribute.t
            yield from attribute.tensors
            if attribute.HasField("sparse_tensor"):
                yield attribute.sparse_tensor.values
                yield attribute.sparse_tensor.indices
            for sparse in attribute.sparse_tensors:
                yield sparse.values
                yield sparse.indices
            if attribute.HasField("g"):
                yield from _graph_tensors(attribute.g)
            for graph in attribute.graphs:
                yield from _graph_tensors(graph)


def is_external(tensor: Any) -> bool:
    """True when ``tensor`` refers to data outside the proto (either field marks it)."""
    from onnx import TensorProto

    return tensor.data_location == TensorProto.EXTERNAL or len(tensor.external_data) > 0


def external_tensors(model: Any) -> list[Any]:
    return [tensor for tensor in iter_tensors(model) if is_external(tensor)]


def resolve_location(folder: Path, location: str, tensor_name: str, label: str) -> Path:
    """``location`` as a regular file inside ``folder`` (symlinks resolved), or ``ModelLoadError``."""
    where = f"{label}: tensor {tensor_name!r} points to external data {location!r}"
    if not location or "\x00" in location:
        raise ModelLoadError(f"{where}, which is not a file name; {EXTERNAL_HINT}")
    posix, windows = PurePosixPath(location), PureWindowsPath(location)
    if posix.is_absolute() or windows.is_absolute() or windows.drive or location.startswith(("/", "\\")):
        raise ModelLoadError(f"{where}, an absolute path; vexplain only reads external data inside the model's folder; {EXTERNAL_HINT}")
    if ".." in posix.parts or ".." in windows.parts:
        raise ModelLoadError(f"{where}, which leaves the model's folder ('..'); {EXTERNAL_HINT}")
    root = folder.resolve()
    target = (root / location).resolve()
    if not target.is_relative_to(root):
        raise ModelLoadError(f"{where}, a link to {target} outside the model's folder {root}; {EXTERNAL_HINT}")
    try:
        mode = os.stat(target).st_mode
    except OSError:
        raise ModelLoadError(f"{where}, which does not exist in {root}; {EXTERNAL_HINT}") from None
    if not stat.S_ISREG(mode):
        raise ModelLoadError(f"{where}, which is not a regular file; {EXTERNAL_HINT}")
    return target


def _entries(tensor: Any, label: str) -> tuple[str, int, int | None]:
    fields = {entry.key: entry.value for entry in tensor.external_data}
    unknown = sorted(set(fields) - {"location", "offset", "length", "checksum", "basepath"})
    if unknown:
        raise ModelLoadError(f"{label}: tensor {tensor.name!r} has unknown external-data keys {unknown}; allowed: location, offset, length, checksum")
    try:
        offset = int(fields.get("offset", 0) or 0)
        length = int(fields["length"]) if fields.get("length") not in (None, "") else None
    except ValueError:
        raise ModelLoadError(f"{label}: tensor {tensor.name!r} has a non-integer external-data offset or length") from None
    if offset < 0 or (length is not None and length < 0):
        raise ModelLoadError(f"{label}: tensor {tensor.name!r} has a negative external-data offset or length")
    return fields.get("location", ""), offset, length


def inline_external_data(model: Any, folder: Path | None, label: str) -> Any:
    """``model`` with every external tensor's bytes read from ``folder`` into ``raw_data``.

    All locations are validated before any byte is read; with no external tensors the model is
    returned untouched. ``folder`` None (bytes, ModelProto) refuses external references.
    """
    from onnx import TensorProto

    tensors = external_tensors(model)
    if not tensors:
        return model
    if folder is None:
        raise ModelLoadError(
            f"{label} refers to external data files ({tensors[0].name!r} -> {_entries(tensors[0], label)[0]!r}) but has no folder to read them from; "
            "pass the .onnx path, or base_dir= the folder holding its data"
        )
    plans = []
    for tensor in tensors:
        location, offset, length = _entries(tensor, label)
        plans.append((tensor, resolve_location(folder, location, tensor.name, label), offset, length))
    for tensor, target, offset, length in plans:
        tensor.raw_data = _read_range(target, offset, length, tensor.name, label)
        tensor.data_location = TensorProto.DEFAULT
        del tensor.external_data[:]
    return model


def _read_range(path: Path, offset: int, length: int | None, tensor_name: str, label: str) -> bytes:
    flags = os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0)
    try:
        fd = os.open(path, flags)
    except OSError as error:
        raise ModelLoadError(f"{label}: cannot open external data of tensor {tensor_name!r}: {error.strerror}") from None
    with os.fdopen(fd, "rb") as handle:
        size = os.fstat(handle.fileno()).st_size
        end = size if length is None else offset + length
        if offset > size or end > size:
            raise ModelLoadError(f"{label}: tensor {tensor_name!r} reads bytes {offset}..{end} of {path.name}, which has {size}; the external data file is truncated or the model is corrupt")
        handle.seek(offset)
        return handle.read(end - offset)


def load_onnx_file(path: str | Path, label: str | None = None) -> Any:
    """The ``ModelProto`` of the ONNX file at ``path``, external data inlined from its own folder only."""
    import onnx

    path = Path(path)
    label = label or path.name
    try:
        data = path.read_bytes()
    except OSError as error:
        raise ModelLoadError(f"cannot read ONNX model {path}: {error.strerror}") from None
    return inline_external_data(parse_onnx(data, label), path.parent, label)


def parse_onnx(data: bytes, label: str) -> Any:
    """``data`` parsed as a ``ModelProto`` without touching any external file."""
    import onnx

    try:
        return onnx.load_from_string(data)
    except Exception:  # protobuf raises DecodeError and friends for non-ONNX bytes
        raise ModelLoadError(f"{label} is not a valid ONNX model (protobuf parse failed); give a .onnx file exported by torch.onnx.export or another converter") from None
