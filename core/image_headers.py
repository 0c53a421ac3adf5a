"""Image width and height read from the file header, before anything is decoded.

Formats: PNG (IHDR), JPEG (SOF0..SOF15), BMP, GIF, WebP (VP8, VP8L, VP8X), TIFF (first IFD) and
PNM (P1..P6). ``image_dimensions`` returns None for anything else or a header it cannot read.
"""
from __future__ import annotations

import re
import struct

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def image_dimensions(data: bytes) -> tuple[int, int, str] | None:
    """(width, height, format) from ``data``'s header, or None."""
    try:
        for reader in (_png, _jpeg, _bmp, _gif, _webp, _tiff, _pnm):
            found = reader(data)
            if found is not None:
                return found
    except (struct.error, IndexError, ValueError):
        return None
    return None


def _png(data: bytes):
    if data[:8] == PNG_SIGNATURE and data[12:16] == b"IHDR":
        width, height = struct.unpack(">II", data[16:24])
        return width, height, "png"
    return None


def _jpeg(data: bytes):
    if data[:2] != b"\xff\xd8":
        return None
    position = 2
    while position + 4 <= len(data):
        if data[position] != 0xFF:
            return None
        marker = data[position + 1]
        if marker == 0xFF:  # fill byte
            position += 1
            continue
        if marker in (0x01, *range(0xD0, 0xD8)):  # markers without a length
            position += 2
            continue
        (length,) = struct.unpack(">H", data[position + 2 : position + 4])
        if 0xC0 <= marker <= 0xCF and marker not in (0xC4, 0xC8, 0xCC):
            height, width = struct.unpack(">HH", data[position + 5 : position + 9])
            return width, height, "jpeg"
        if marker in (0xD9, 0xDA) or length < 2:  # end of image or start of scan before any SOF
            return None
        position += 2 + length
    return None


def _bmp(data: bytes):
    if data[:2] != b"BM":
        return None
    (header,) = struct.unpack("<I", data[14:18])
    if header == 12:
        width, height = struct.unpack("<HH", data[18:22])
    else:
        width, height = struct.unpack("<ii", data[18:26])
    return abs(width), abs(height), "bmp"


def _gif(data: bytes):
    if data[:6] in (b"GIF87a", b"GIF89a"):
        width, height = struct.unpack("<HH", data[6:10])
        return width, height, "gif"
    return None


def _webp(data: bytes):
    if data[:4] != b"RIFF" or data[8:12] != b"WEBP":
        return None
    kind = data[12:16]
    if kind == b"VP8 ":
        width, height = struct.unpack("<HH", data[26:30])
        return width & 0x3FFF, height & 0x3FFF, "webp"
    if kind == b"VP8L":
        bits = int.from_bytes(data[21:25], "little")
        return (bits & 0x3FFF) + 1, ((bits >> 14) & 0x3FFF) + 1, "webp"
    if kind == b"VP8X":
        return int.from_bytes(data[24:27], "little") + 1, int.from_bytes(data[27:30], "little") + 1, "webp"
    return None


def _tiff(data: bytes):
    order = {b"II*\x00": "<", b"MM\x00*": ">"}.get(data[:4])
    if order is None:
        return None
    (offset,) = struct.unpack(order + "I", data[4:8])
    (count,) = struct.unpack(order + "H", data[offset : offset + 2])
    found = {}
    for i in range(count):
        entry = data[offset + 2 + 12 * i : offset + 14 + 12 * i]
        tag, kind = struct.unpack(order + "HH", entry[:4])
        if tag in (256, 257):
            found[tag] = struct.unpack(order + ("H" if kind == 3 else "I"), entry[8 : 10 if kind == 3 else 12])[0]
    if 256 in found and 257 in found:
        return found[256], found[257], "tiff"
    return None


_PNM = re.compile(rb"\AP[1-6](?:\s+|#[^\n]*\n)*(\d+)(?:\s+|#[^\n]*\n)+(\d+)")


def _pnm(data: bytes):
    match = _PNM.match(data[:1024])
    if match:
        return int(match.group(1)), int(match.group(2)), "pnm"
    return None
