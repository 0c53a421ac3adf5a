"""Models from a spec, as the CLI and data-set runs name them.

``load_model(spec, weights=None, output=None, random_weights=False, names=("weights", "random_weights"))`` builds an
adapter from ``spec``: a ``.onnx`` file, a TorchScript ``.pt`` archive, or ``pkg.module:factory``
(its ``weights`` a state dict read with ``torch.load(weights_only=True)``; without weights such a
factory is refused unless ``random_weights=True`` says an untrained model is meant), with the
preprocessing metadata of a ``<model>.json`` beside it. ``names`` is how the refusals spell the two settings (the CLI passes
``("--weights", "--random-weights")``); ``check_weights`` is that refusal alone,
``is_factory(spec)`` tells a factory spec from a path, and ``METADATA_KEYS`` lists the metadata
keys read (``class_names``, ``input_size``, ``mean``, ``std``, ``resize``, ``crop``, ``resize_shorter``).
"""
from vexplain.core.model_specs import METADATA_KEYS, check_weights, is_factory, load_model

__all__ = ["METADATA_KEYS", "check_weights", "is_factory", "load_model"]
