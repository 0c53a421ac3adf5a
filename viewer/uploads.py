"""Upload limits: the request body is counted while it arrives and refused past the byte limit,
before any of it is parsed or decoded; the image goes through ``core/images.py``'s loader."""
from __future__ import annotations

import re
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Awaitable, Callable

import numpy as np

from vexplain.core.errors import ImageLoadError, VexplainError
from vexplain.core.image_headers import image_dimensions
from vexplain.core.images import load_image

MIB = 1 << 20
#: room for the form's other fields (method, options) and the multipart boundaries
FORM_OVERHEAD = 256 * 1024


class UploadTooLarge(VexplainError):
    """A request body or uploaded image over the viewer's limits (HTTP 413)."""


@dataclass(frozen=True)
class Limits:
    """What one upload may be: ``max_bytes`` of file (default 16 MiB) and ``max_pixels`` of image
    (default 25 megapixels, e.g. 5000 x 5000)."""

    max_bytes: int = 16 * MIB
    max_pixels: int = 25_000_000

    @property
    def max_body(self) -> int:
        """The largest request body accepted: one file plus the form's other fields."""
        return self.max_bytes + FORM_OVERHEAD


class BodyLimit:
    """ASGI middleware: a POST whose ``Content-Length`` exceeds ``limits.max_body`` is answered 413
    at once; a body without one (chunked) raises ``UploadTooLarge`` as soon as it grows past it."""

    def __init__(self, app: Callable[..., Awaitable[None]], limits: Limits) -> None:
        self.app = app
        self.limits = limits

    async def __call__(self, scope: dict[str, Any], receive: Callable[[], Awaitable[dict]], send: Callable[[dict], Awaitable[None]]) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limit = self.limits.max_body
        declared = dict(scope.get("headers") or []).get(b"content-length")
        if declared is not None and (not declared.isdigit() or int(declared) > limit):
            await _reject(send, too_large_message(int(declared) if declared.isdigit() else None, self.limits))
            return
        received = 0

        async def counted() -> dict:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    raise UploadTooLarge(too_large_message(None, self.limits))
            return message

        await self.app(scope, counted, send)


def too_large_message(size: int | None, limits: Limits) -> str:
    got = f" (got {size / MIB:.1f} MiB)" if size is not None else ""
    return f"upload too large{got}: images up to {limits.max_bytes / MIB:g} MiB are accepted; send a smaller file or start the viewer with a larger --max-upload-mb"


async def _reject(send: Callable[[dict], Awaitable[None]], message: str) -> None:
    import json

    body = json.dumps({"error": message}).encode()
    await send({"type": "http.response.start", "status": 413, "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]})
    await send({"type": "http.response.body", "body": body})


def safe_name(filename: str | None) -> str:
    """An uploaded file's base name for messages and download names: no folders, only
    letters, digits, ``._-``, at most 80 characters; ``image`` when nothing is left."""
    base = re.split(r"[\\/]", filename or "")[-1]
    cleaned = re.sub(r"[^A-Za-z0-9._-]", "_", base)[:80].strip("._")
    return cleaned or "image"


def decode_upload(data: bytes, filename: str | None, limits: Limits) -> np.ndarray:
    """The uploaded bytes as uint8 RGB ``(H, W, 3)``, through ``core.images.load_image``.

    The file is written to a private temporary folder (its name never comes from the client) and
    read by the public loader, so the loader's own header checks apply to uploads too; messages
    name the upload, never the temporary path.
    """
    name = safe_name(filename)
    if len(data) > limits.max_bytes:
        raise UploadTooLarge(too_large_message(len(data), limits))
    if not data:
        raise ImageLoadError(f"the uploaded file {name!r} is empty; pick a PNG, JPEG, BMP, TIFF or WebP image")
    header = image_dimensions(data)
    if header is not None and header[0] * header[1] > limits.max_pixels:
        raise UploadTooLarge(
            f"image {name!r} has {header[0]}x{header[1]} = {header[0] * header[1] / 1e6:.1f} megapixels; the viewer accepts up to "
            f"{limits.max_pixels / 1e6:g} (start it with a larger --max-pixels)"
        )
    with tempfile.TemporaryDirectory(prefix="vexplain-viewer-") as folder:
        path = Path(folder) / "upload"
        path.write_bytes(data)
        try:
            # refused above from the header, before any decoding; the check below bounds what
            # reaches the model for formats whose header the reader does not know
            image = load_image(path, max_pixels=limits.max_pixels)
        except VexplainError as error:
            raise ImageLoadError(str(error).replace(str(path), f"the uploaded file {name!r}")) from None
    height, width = image.shape[:2]
    if height * width > limits.max_pixels:
        raise UploadTooLarge(
            f"image {name!r} has {width}x{height} = {height * width / 1e6:.1f} megapixels; the viewer accepts up to "
            f"{limits.max_pixels / 1e6:g} (start it with a larger --max-pixels)"
        )
    return image
