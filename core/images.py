"""Reading images from disk and turning them into model inputs."""
from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np

from .errors import ImageLoadError, InvalidOption

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def load_image(path: str | Path) -> np.ndarray:
    """An image file as uint8 RGB ``(H, W, 3)``; missing, unreadable or corrupt files raise ``ImageLoadError``."""
    import cv2

    path = Path(path)
    if not path.exists():
        raise ImageLoadError(f"image not found: {path}")
    if not path.is_file():
        raise ImageLoadError(f"{path} is not a file; give image files (PNG, JPEG, BMP, TIFF, WebP)")
    try:
        data = np.fromfile(str(path), dtype=np.uint8)
    except OSError as error:
        raise ImageLoadError(f"cannot read image {path}: {error.strerror}") from None
    image = cv2.imdecode(data, cv2.IMREAD_COLOR) if data.size else None
    if image is None:
        raise ImageLoadError(f"cannot decode {path}: not a readable image (PNG, JPEG, BMP, TIFF, WebP), or the file is corrupt")
    return cv2.cvtColor(image, cv2.COLOR_BGR2RGB)


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
