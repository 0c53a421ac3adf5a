"""Reading images from disk and turning them into model inputs."""
from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np

from .errors import ImageLoadError, InvalidOption
from .image_headers import image_dimensions
from .png_strips import decode_png_reduced, strip_decodable

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
#: images with more pixels are refused before decoding unless max_pixels is raised
DEFAULT_MAX_PIXELS = 100_000_000
#: images with more pixels are decoded at reduced size when the size they are resized to is known
REDUCE_ABOVE = 16_000_000


def load_image(path: str | Path, max_pixels: int = DEFAULT_MAX_PIXELS, reduce_to: Sequence[int] | None = None) -> np.ndarray:
    """An image file as uint8 RGB ``(H, W, 3)``; missing, unreadable, corrupt or oversized files
    raise ``ImageLoadError``.

    The width and height are read from the header first (PNG, JPEG, BMP, GIF, TIFF, WebP, PNM; other
    formats are refused); more than ``max_pixels`` (default 100 megapixels) is refused before
    decoding. ``reduce_to`` = (h, w), the size the image will be resized to: an image over
    ``REDUCE_ABOVE`` pixels (16 megapixels) is then decoded at 1/2, 1/4 or 1/8 of its size (the
    smallest that stays at least ``reduce_to``): JPEG by libjpeg's scaled decoding, non-interlaced
    8/16-bit PNG in strips (``png_strips``), so memory stays far below the full image's. Smaller
    images and other formats are decoded whole.
    """
    import cv2

    if isinstance(max_pixels, bool) or not isinstance(max_pixels, int) or max_pixels < 1:
        raise InvalidOption(f"max_pixels must be a positive int (pixels per image); got {max_pixels!r}")
    path = Path(path)
    if not path.exists():
        raise ImageLoadError(f"image not found: {path}")
    if not path.is_file():
        raise ImageLoadError(f"{path} is not a file; give image files (PNG, JPEG, BMP, TIFF, WebP)")
    try:
        data = np.fromfile(str(path), dtype=np.uint8)
    except OSError as error:
        raise ImageLoadError(f"cannot read image {path}: {error.strerror}") from None
    found = image_dimensions(memoryview(data)) if data.size else None
    if found is None:
        raise ImageLoadError(f"cannot decode {path}: not a readable image (PNG, JPEG, BMP, GIF, TIFF, WebP, PNM), or the file is corrupt")
    width, height, kind = found
    if width <= 0 or height <= 0:
        raise ImageLoadError(f"cannot decode {path}: its header gives a {width}×{height} image")
    if width * height > max_pixels:
        raise ImageLoadError(
            f"{path} is {width}×{height} = {width * height / 1e6:.1f} megapixels, over the limit of {max_pixels / 1e6:.1f} "
            "(max_pixels, a guard against decompression bombs); raise it with max_pixels= or --max-pixels if you trust the file"
        )
    factor = _reduction(width, height, reduce_to)
    try:
        if factor > 1 and kind == "png" and strip_decodable(data[:64].tobytes()):
            return decode_png_reduced(data.tobytes(), factor)
        flags = {1: cv2.IMREAD_COLOR, 2: cv2.IMREAD_REDUCED_COLOR_2, 4: cv2.IMREAD_REDUCED_COLOR_4, 8: cv2.IMREAD_REDUCED_COLOR_8}
        image = cv2.imdecode(data, flags[factor] if kind == "jpeg" else cv2.IMREAD_COLOR)
    except ImageLoadError as error:
        raise ImageLoadError(f"cannot decode {path}: {error}") from None
    except cv2.error as error:
        raise ImageLoadError(f"cannot decode {path}: OpenCV refused it ({_first_line(error)})") from None
    if image is None:
        raise ImageLoadError(f"cannot decode {path}: not a readable image (PNG, JPEG, BMP, TIFF, WebP), or the file is corrupt")
    return cv2.cvtColor(image, cv2.COLOR_BGR2RGB, dst=image)


def _reduction(width: int, height: int, reduce_to: Sequence[int] | None) -> int:
    """The largest of 8, 4, 2 that keeps the image at least ``reduce_to``; 1 below ``REDUCE_ABOVE``."""
    if reduce_to is None or width * height <= REDUCE_ABOVE:
        return 1
    target_h, target_w = (int(s) for s in reduce_to)
    for factor in (8, 4, 2):
        if width // factor >= target_w and height // factor >= target_h:
            return factor
    return 1


def _first_line(error: BaseException) -> str:
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    return lines[-1][:200] if lines else type(error).__name__


#: the largest side an image is resized to: 32768² float32 RGB is already 12 GiB
MAX_SIDE = 32768


def preprocess(
    image: np.ndarray,
    size: Sequence[int] | None = None,
    mean: Sequence[float] = (0.0, 0.0, 0.0),
    std: Sequence[float] = (1.0, 1.0, 1.0),
) -> np.ndarray:
    """uint8 RGB ``(H, W, 3)`` → float32 ``(3, h, w)``: resized to ``size`` = (h, w) bilinearly when
    given (each side at most ``MAX_SIDE``), scaled to [0, 1], then ``(x - mean) / std`` per channel."""
    import cv2

    if size is not None:
        if len(size) != 2 or not all(0 < int(s) <= MAX_SIDE for s in size):
            raise InvalidOption(f"size must be (height, width) of ints in 1..{MAX_SIDE}; got {tuple(size)}")
        image = cv2.resize(image, (int(size[1]), int(size[0])), interpolation=cv2.INTER_LINEAR)
    mean_array = np.asarray(mean, dtype=np.float32).reshape(1, 1, -1)
    std_array = np.asarray(std, dtype=np.float32).reshape(1, 1, -1)
    if mean_array.size != 3 or std_array.size != 3 or np.any(std_array <= 0):
        raise InvalidOption(f"mean and std need 3 values each, std > 0; got mean={list(mean)} std={list(std)}")
    scaled = (image.astype(np.float32) / 255.0 - mean_array) / std_array
    return np.ascontiguousarray(scaled.transpose(2, 0, 1))
