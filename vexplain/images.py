"""Images from disk to model inputs.

``load_image(path, max_pixels=DEFAULT_MAX_PIXELS)`` reads a file as uint8 RGB ``(H, W, 3)``
(refusing, before decoding, images with more than ``max_pixels`` pixels: ``ImageLoadError``);
``preprocess(image, size, mean, std)`` turns one uint8 RGB ``(H, W, 3)`` image into a float32
``(3, h, w)`` input for ``vx.explain`` (resized to ``size``, scaled to [0, 1], normalised). ``IMAGENET_MEAN`` /
``IMAGENET_STD`` are the usual torchvision normalisation.

Photos of any shape: ``prepare_images(photos, model)`` (also ``vx.prepare_images``) resizes and
crops or letterboxes them as the model's metadata says (``from_metadata(metadata, size, mean, std,
resize, crop)`` is that preprocessing spelled out, defaults: shorter side to the input size, then
a centre crop) and records each photo's crop so maps map back (``exp.map_at_original``);
``model_view(photo, spec)`` is the photo as the model saw it (uint8 RGB, for overlays).
"""
from vexplain.core.images import DEFAULT_MAX_PIXELS, IMAGENET_MEAN, IMAGENET_STD, load_image, preprocess
from vexplain.core.preprocessing import PreparedImages, Preprocessing, from_metadata, model_view, prepare_images

__all__ = [
    "DEFAULT_MAX_PIXELS", "IMAGENET_MEAN", "IMAGENET_STD", "PreparedImages", "Preprocessing",
    "from_metadata", "load_image", "model_view", "prepare_images", "preprocess",
]
