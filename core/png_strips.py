"""Decoding a large PNG at 1/f of its size in strips, so memory stays bounded by a strip.

OpenCV's ``IMREAD_REDUCED_*`` decodes a PNG at full size and shrinks it afterwards (a 20000²
RGB PNG needs 1.2 GB). Here the zlib stream is inflated a strip of rows at a time; each strip is
wrapped as a small PNG (the previous strip's last row, reconstructed, first with filter None, so
Up/Average/Paeth rows see their true predecessor) and unfiltered by OpenCV's PNG decoder; the
strip is then shrunk by area averaging of f×f blocks. The result is uint8 RGB
``(H // f, W // f, 3)``; the last ``H % f`` rows and ``W % f`` columns are dropped.

Handled: non-interlaced PNGs of colour type grey, RGB, grey+alpha and RGBA at 8 or 16 bits
(alpha is dropped, 16-bit values keep their high byte, as OpenCV's ``IMREAD_COLOR`` does).
``strip_decodable`` says whether a file qualifies; others are decoded whole.
"""
from __future__ import annotations

import struct
import zlib
from typing import Iterator

import numpy as np

from .errors import ImageLoadError
from .image_headers import PNG_SIGNATURE

STRIP_BYTES = 8 << 20  # raw bytes inflated per strip
CHANNELS = {0: 1, 2: 3, 4: 2, 6: 4}  # PNG colour type -> samples per pixel


def _chunks(data: bytes) -> Iterator[tuple[bytes, int, int]]:
    position = len(PNG_SIGNATURE)
    while position + 8 <= len(data):
        length, kind = struct.unpack(">I4s", data[position : position + 8])
        start = position + 8
        if start + length > len(data):
            raise ImageLoadError("truncated PNG chunk")
        yield kind, start, length
        if kind == b"IEND":
            return
        position = start + length + 4


def _header(data: bytes) -> tuple[int, int, int, int, int]:
    width, height, depth, colour, _, _, interlace = struct.unpack(">IIBBBBB", data[16:29])
    return width, height, depth, colour, interlace


def strip_decodable(data: bytes) -> bool:
    """True for a PNG this module decodes (see the module notes)."""
    if data[:8] != PNG_SIGNATURE or data[12:16] != b"IHDR":
        return False
    _, _, depth, colour, interlace = _header(data)
    return interlace == 0 and colour in CHANNELS and depth in (8, 16)


def _chunk(kind: bytes, payload: bytes) -> list[bytes]:
    return [struct.pack(">I", len(payload)), kind, payload, struct.pack(">I", zlib.crc32(payload, zlib.crc32(kind)) & 0xFFFFFFFF)]


def _decode_strip(ihdr: bytes, rows: int, scanlines: bytes):
    """A PNG made of ``rows`` filtered ``scanlines`` decoded unchanged (OpenCV channel order)."""
    import cv2

    header = struct.pack(">I", ihdr_width(ihdr)) + struct.pack(">I", rows) + ihdr[8:]
    png = b"".join([PNG_SIGNATURE, *_chunk(b"IHDR", header), *_chunk(b"IDAT", zlib.compress(scanlines, 0)), *_chunk(b"IEND", b"")])
    image = cv2.imdecode(np.frombuffer(png, np.uint8), cv2.IMREAD_UNCHANGED)
    if image is None:
        raise ImageLoadError("a PNG strip could not be decoded; the file is corrupt")
    return image


def ihdr_width(ihdr: bytes) -> int:
    return struct.unpack(">I", ihdr[:4])[0]


def _raw_row(row: np.ndarray, colour: int, depth: int) -> bytes:
    """One decoded row (OpenCV order) back to PNG sample bytes, filter type None in front."""
    if colour == 2:
        row = row[:, ::-1]
    elif colour == 6:
        row = row[:, [2, 1, 0, 3]]
    elif colour == 4:
        row = row[:, [0, 3]]
    samples = np.ascontiguousarray(row).astype(">u2" if depth == 16 else np.uint8, copy=False)
    return b"\x00" + samples.tobytes()


def _shrunk_rgb8(image: np.ndarray, depth: int, factor: int) -> np.ndarray:
    """A decoded strip (OpenCV order) shrunk, then as RGB: shrinking per channel commutes with
    reordering channels, so only the small result is reordered; 16-bit samples keep their high
    byte before shrinking, as a full ``IMREAD_COLOR`` decode would."""
    if depth == 16:
        image = (image >> 8).astype(np.uint8)
    small = shrink(image, factor)
    if small.ndim == 2:
        return np.repeat(small[:, :, None], 3, axis=2)
    return np.ascontiguousarray(small[:, :, 2::-1])


def shrink(image: np.ndarray, factor: int) -> np.ndarray:
    """Mean of each ``factor``×``factor`` block (OpenCV INTER_AREA at an integer scale), remainders dropped."""
    import cv2

    if factor == 1:
        return image
    height, width = image.shape[0] // factor, image.shape[1] // factor
    cropped = image[: height * factor, : width * factor]
    return cv2.resize(cropped, (width, height), interpolation=cv2.INTER_AREA)


def decode_png_reduced(data: bytes, factor: int) -> np.ndarray:
    """uint8 RGB ``(H // factor, W // factor, 3)`` of the PNG ``data``, decoded in strips."""
    width, height, depth, colour, _ = _header(data)
    if height // factor == 0 or width // factor == 0:
        raise ImageLoadError(f"a {width}×{height} PNG is too small to shrink by {factor}")
    ihdr = data[16:29]
    row_bytes = 1 + width * CHANNELS[colour] * depth // 8
    rows_per_strip = max(factor, STRIP_BYTES // row_bytes // factor * factor)
    inflater = zlib.decompressobj()
    pending = bytearray()
    previous: bytes | None = None
    done, parts = 0, []
    kept = height // factor * factor
    limit = rows_per_strip * row_bytes

    def flush(rows: int) -> None:
        nonlocal previous, done
        with memoryview(pending) as view:
            scanlines = b"".join([previous or b"", view[: rows * row_bytes]])
        del pending[: rows * row_bytes]
        lead = 0 if previous is None else 1
        strip = _decode_strip(ihdr, rows + lead, scanlines)[lead:]
        del scanlines
        previous = _raw_row(strip[-1], colour, depth)
        usable = min(rows, max(0, kept - done))
        if usable > 0:
            parts.append(_shrunk_rgb8(strip[:usable], depth, factor))
        done += rows

    try:
        for kind, start, length in _chunks(data):
            if kind != b"IDAT":
                continue
            feed = memoryview(data)[start : start + length]
            while feed and done < height:
                pending += inflater.decompress(feed, limit)  # bounded: a tiny chunk may inflate to gigabytes
                feed = inflater.unconsumed_tail
                while len(pending) >= limit and done + rows_per_strip <= height:
                    flush(rows_per_strip)
            if done >= height or inflater.eof:
                break
    except zlib.error as error:
        raise ImageLoadError(f"the PNG's compressed data is corrupt ({error})") from None
    remaining = height - done
    if remaining > 0:
        if len(pending) < remaining * row_bytes:
            raise ImageLoadError(f"the PNG ends after {done + len(pending) // row_bytes} of its {height} rows; the file is truncated")
        flush(remaining)
    return np.concatenate(parts) if len(parts) > 1 else parts[0]
