"""Bounded image decoding (defect 6 of the file audit): the pixel count read from the header before
decoding, reduced decoding of large JPEGs and PNGs, and peak memory on a 20000×20000 PNG."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

from vexplain.core.colour_scale import COLOUR_BAR_HEIGHT
from vexplain.core.errors import ImageLoadError

from hardening_files_support import one_error_line, run_cli, small_files


@pytest.fixture(scope="module")
def small(tmp_path_factory) -> dict[str, Path]:
    return small_files(tmp_path_factory.mktemp("small"))


def _png_chunk(kind: bytes, payload: bytes) -> bytes:
    import struct
    import zlib

    return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", zlib.crc32(kind + payload) & 0xFFFFFFFF)


def _ihdr(width: int, height: int, depth: int = 8, colour: int = 2) -> bytes:
    import struct

    return b"\x89PNG\r\n\x1a\n" + _png_chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, depth, colour, 0, 0, 0))


def constant_png(path: Path, side: int) -> Path:
    """A side×side grey RGB PNG with a white top-left quarter, written without ever holding the image:
    the deflate stream of one block of zero 'Up' rows is made once (after a full flush it is the
    same bytes every time) and repeated; adler32 is run over the repeated rows."""
    import zlib

    row = 3 * side
    quarter = side // 4
    first_rows = [b"\x00" + b"\xff" * (3 * quarter) + b"\x80" * (row - 3 * quarter), b"\x00" + b"\x80" * row]
    zeros = b"\x02" + bytes(row)
    block_rows = 64

    def raw(data: bytes) -> bytes:
        compressor = zlib.compressobj(9, zlib.DEFLATED, -15)
        return compressor.compress(data) + compressor.flush(zlib.Z_FULL_FLUSH)

    block = raw(zeros * block_rows)
    pieces, adler = [], 1
    for first, count in ((first_rows[0], quarter), (first_rows[1], side - quarter)):
        pieces.append(raw(first))
        adler = zlib.adler32(first, adler)
        rest = count - 1
        full, left = divmod(rest, block_rows)
        pieces += [block] * full + [raw(zeros * left)]
        chunk_bytes = zeros * block_rows
        for _ in range(full):
            adler = zlib.adler32(chunk_bytes, adler)
        adler = zlib.adler32(zeros * left, adler)
    final = zlib.compressobj(9, zlib.DEFLATED, -15).flush(zlib.Z_FINISH)
    stream = b"\x78\xda" + b"".join(pieces) + final + adler.to_bytes(4, "big")
    with open(path, "wb") as handle:
        handle.write(_ihdr(side, side))
        for start in range(0, len(stream), 1 << 20):
            handle.write(_png_chunk(b"IDAT", stream[start : start + (1 << 20)]))
        handle.write(_png_chunk(b"IEND", b""))
    return path


def filtered_png(pixels: np.ndarray, depth: int = 8) -> bytes:
    """``pixels`` (H, W, samples) encoded with the filter of each row cycling None, Sub, Up, Average, Paeth."""
    import zlib

    colour = {1: 0, 2: 4, 3: 2, 4: 6}[pixels.shape[2]]
    samples = pixels.astype(">u2" if depth == 16 else np.uint8)
    rows = [np.frombuffer(r.tobytes(), np.uint8).astype(np.int64) for r in samples]
    bpp = pixels.shape[2] * depth // 8
    out, previous = [], np.zeros_like(rows[0])
    for index, current in enumerate(rows):
        kind = index % 5
        left = np.concatenate([np.zeros(bpp, np.int64), current[:-bpp]])
        upper_left = np.concatenate([np.zeros(bpp, np.int64), previous[:-bpp]])
        if kind == 0:
            predicted = np.zeros_like(current)
        elif kind == 1:
            predicted = left
        elif kind == 2:
            predicted = previous
        elif kind == 3:
            predicted = (left + previous) // 2
        else:
            p = left + previous - upper_left
            pa, pb, pc = np.abs(p - left), np.abs(p - previous), np.abs(p - upper_left)
            predicted = np.where((pa <= pb) & (pa <= pc), left, np.where(pb <= pc, previous, upper_left))
        out.append(bytes([kind]) + ((current - predicted) % 256).astype(np.uint8).tobytes())
        previous = current
    import struct

    header = b"\x89PNG\r\n\x1a\n" + _png_chunk(b"IHDR", struct.pack(">IIBBBBB", pixels.shape[1], pixels.shape[0], depth, colour, 0, 0, 0))
    return header + _png_chunk(b"IDAT", zlib.compress(b"".join(out))) + _png_chunk(b"IEND", b"")


@pytest.mark.parametrize("samples, depth", [(3, 8), (1, 8), (2, 8), (4, 8), (3, 16), (1, 16)])
def test_strip_decoding_equals_full_decoding_then_shrinking(monkeypatch, samples, depth):
    from vexplain.core import png_strips

    rng = np.random.default_rng(samples * depth)
    height, width = 37, 29
    gradient = np.add.outer(np.arange(height) * 7, np.arange(width) * 3)[:, :, None] + np.arange(samples) * 50
    pixels = (gradient + rng.integers(0, 40, (height, width, samples))) % 256
    if depth == 16:
        pixels = pixels * 257 + rng.integers(0, 256, pixels.shape)
    data = filtered_png(pixels, depth)
    full = cv2.cvtColor(cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)
    monkeypatch.setattr(png_strips, "STRIP_BYTES", 1)  # one strip per `factor` rows: every row boundary is crossed
    for factor in (1, 2, 4, 8):
        np.testing.assert_array_equal(png_strips.decode_png_reduced(data, factor), png_strips.shrink(full, factor))


def test_pixel_limit_is_checked_from_the_header(tmp_path, capsys, small):
    from vexplain.core.images import load_image

    bomb = tmp_path / "bomb.png"  # 40000² ended in an OpenCV assertion reported as "internal error"
    bomb.write_bytes(_ihdr(40000, 40000) + _png_chunk(b"IEND", b""))
    with pytest.raises(ImageLoadError, match="1600.0 megapixels, over the limit of 100.0") as caught:
        load_image(bomb)
    assert "\n" not in str(caught.value)
    code, out, err = run_cli(capsys, "explain", small["model"], bomb, "--method", "cam", "--out", tmp_path / "out")
    assert code == 2 and "--max-pixels" in one_error_line(err)
    with pytest.raises(ImageLoadError, match="over the limit of 0.0"):
        load_image(small["image"], max_pixels=100)
    assert load_image(small["image"], max_pixels=20 * 24).shape == (20, 24, 3)
    code, out, err = run_cli(capsys, "explain", small["model"], small["image"], "--size", 16, 16, "--max-pixels", 100, "--method", "cam", "--out", tmp_path / "out")
    assert code == 2 and "over the limit" in one_error_line(err)


def test_unknown_or_lying_headers_are_refused(tmp_path):
    from vexplain.core.images import load_image

    fake = tmp_path / "fake.png"
    fake.write_bytes(_ihdr(100, 100) + _png_chunk(b"IDAT", b"not zlib") + _png_chunk(b"IEND", b""))
    with pytest.raises(ImageLoadError, match="cannot decode"):
        load_image(fake)
    text = tmp_path / "notes.png"
    text.write_text("hello")
    with pytest.raises(ImageLoadError, match="not a readable image"):
        load_image(text)


def test_large_jpeg_is_decoded_reduced(tmp_path):
    from vexplain.core.images import load_image

    gradient = np.add.outer(np.arange(4000) // 16, np.arange(4200) // 16).astype(np.uint8)
    path = tmp_path / "big.jpg"
    cv2.imwrite(str(path), np.dstack([gradient, 255 - gradient, gradient // 2]))
    reduced = load_image(path, reduce_to=(64, 64))
    assert reduced.shape == (500, 525, 3)
    assert load_image(path, reduce_to=(1001, 1000)).shape == (2000, 2100, 3)  # 1/4 would be under 1001 rows
    assert load_image(path).shape == (4000, 4200, 3)


@pytest.fixture(scope="module")
def huge_png(tmp_path_factory) -> Path:
    return constant_png(tmp_path_factory.mktemp("huge") / "huge.png", 20000)


def test_a_20000_square_png_into_a_64_model_stays_under_500_mb(huge_png, tmp_path):
    assert huge_png.stat().st_size < 3 << 20
    out = tmp_path / "out"
    command = [sys.executable, "-m", "vexplain.cli.main", "explain", "vexplain.demo.model:build", str(huge_png), "--random-weights", "--method", "cam", "--size", "64", "64", "--max-pixels", "400000000", "--out", str(out)]
    wrapper = "import resource, subprocess, sys; code = subprocess.run(sys.argv[1:]).returncode; print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss); sys.exit(code)"
    done = subprocess.run([sys.executable, "-c", wrapper, *command], capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stderr
    peak_mb = int(done.stdout.strip().splitlines()[-1]) / 1024
    assert peak_mb < 500, peak_mb
    # --at original (the default) writes at the resolution the image was decoded at: 1/8 of 20000
    assert np.load(out / "huge.cam.npy").shape == (2500, 2500)
    picture = cv2.imread(str(out / "huge.cam.png"))
    assert picture.shape == (2500 + COLOUR_BAR_HEIGHT, 2500, 3)  # the overlay, then its colour bar


