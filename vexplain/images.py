"""Images from disk to model inputs.

``load_image(path, max_pixels=DEFAULT_MAX_PIXELS)`` reads a file as uint8 RGB ``(H, W, 3)``
(refusing, before decoding, images with more than ``max_pixels`` pixels: ``ImageLoadError``);
``preprocess(image, size, mean, std)`` turns one uint8 RGB ``(H, W, 3)`` image into a float32
``(3, h, w)`` input for ``vx.explain`` (resized to ``size``, scaled to [0, 1], normalised). ``IMAGENET_MEAN`` /
``IMAGENET_STD`` are the usual torchvision normalisation.
"""
from vexplain.core.images import DEFAULT_MAX_PIXELS, IMAGENET_MEAN, IMAGENET_STD, load_image, preprocess

__all__ = ["DEFAULT_MAX_PIXELS", "IMAGENET_MEAN", "IMAGENET_STD", "load_image", "preprocess"]
