"""Writing output files without following links or reporting failed writes as done.

Every file is written to a temporary file in its destination folder, then renamed over the name
(``os.replace``): a symlink already at the name is replaced by the new file and its target is
never opened; a reader never sees half a file; a failed write (full disk, no permission, an
encoder that refuses the image) is an ``OutputError``, and the temporary file is removed.
The folder itself is the user's choice and may be a link to a folder.
"""
from __future__ import annotations

import io
import os
import secrets
from pathlib import Path

import numpy as np

from .errors import OutputError


def output_folder(path: str | Path, what: str = "output folder") -> Path:
    """``path`` as an existing folder (created with its parents); a file there is an ``OutputError``."""
    folder = Path(path)
    if folder.exists() and not folder.is_dir():
        raise OutputError(f"{what} {folder} is an existing file, not a folder; give a folder path (it is created when missing)")
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise OutputError(f"cannot create {what} {folder}: {error.strerror or error}") from None
    return folder


def write_bytes(path: str | Path, data: bytes) -> Path:
    """``data`` written to ``path`` through a temporary file and a rename (see the module notes)."""
    path = Path(path)
    if path.is_dir() and not path.is_symlink():
        raise OutputError(f"cannot write {path}: a folder of that name is in the way; remove it or choose another output folder")
    temporary = None
    try:
        name = path.parent / f".{path.name}.{secrets.token_hex(6)}.tmp"
        # O_EXCL never opens an existing file or link; mode 0o666 less the umask, as open() would give
        handle = os.open(name, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0), 0o666)
        temporary = name
        with os.fdopen(handle, "wb") as stream:
            stream.write(data)
        os.replace(temporary, path)
        temporary = None
    except OSError as error:
        raise OutputError(f"cannot write {path}: {error.strerror or error}") from None
    finally:
        if temporary is not None:
            try:
                os.unlink(temporary)
            except FileNotFoundError:
                pass
    return path


def write_text(path: str | Path, text: str) -> Path:
    """``text`` as UTF-8, written like ``write_bytes``."""
    return write_bytes(path, text.encode("utf-8"))


def write_png(path: str | Path, rgb: np.ndarray) -> Path:
    """uint8 RGB ``(H, W, 3)`` encoded as PNG (OpenCV) and written like ``write_bytes``."""
    import cv2

    ok, encoded = cv2.imencode(".png", cv2.cvtColor(np.ascontiguousarray(rgb), cv2.COLOR_RGB2BGR))
    if not ok:
        raise OutputError(f"cannot write {path}: OpenCV could not encode a {rgb.shape} {rgb.dtype} image as PNG")
    return write_bytes(path, encoded.tobytes())


def write_npy(path: str | Path, array: np.ndarray) -> Path:
    """``array`` in .npy format (no pickles), written like ``write_bytes``."""
    buffer = io.BytesIO()
    np.save(buffer, np.asarray(array), allow_pickle=False)
    return write_bytes(path, buffer.getvalue())
