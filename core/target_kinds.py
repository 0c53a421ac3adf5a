"""Built-in target kinds for dense outputs: ``Region`` (segmentation) and ``Similarity`` (embeddings).

Both take the model's raw output in any structure; ``output=`` picks a tuple element or dict key
when the output holds more than one tensor (see ``pick_output``). ``Box`` (detection) is in
``core/boxes.py``.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch

from .errors import InvalidTarget
from .targets import Target


def pick_output(output: Any, key: str | int | None, who: str) -> Any:
    """The part of a raw model output a target scores.

    ``key`` None: a tensor is used as it is; a dict, tuple or list holding exactly one tensor gives
    that tensor; more than one is an ``InvalidTarget`` listing them (never the first silently).
    ``key`` a name or an index: that entry of the dict / tuple / list (an object's attribute).
    """
    if key is None:
        if isinstance(output, torch.Tensor):
            return output
        entries = _entries(output)
        tensors = [(k, v) for k, v in entries if isinstance(v, torch.Tensor)]
        if len(tensors) == 1:
            return tensors[0][1]
        listing = ", ".join(f"{k!r} {tuple(v.shape)}" for k, v in tensors) or type(output).__name__
        raise InvalidTarget(f"{who}: the model returned several outputs ({listing}); choose one with output=NAME_OR_INDEX")
    if isinstance(output, torch.Tensor):
        raise InvalidTarget(f"{who}: output={key!r} was given but the model returned one tensor {tuple(output.shape)}; drop output=")
    entries = dict(_entries(output))
    if key not in entries:
        raise InvalidTarget(f"{who}: the model's output has no entry {key!r}; it has {', '.join(repr(k) for k in entries) or 'none'}")
    return entries[key]


def _entries(output: Any) -> list[tuple[Any, Any]]:
    if isinstance(output, dict) or hasattr(output, "items") and callable(output.items):
        return list(output.items())
    if isinstance(output, (list, tuple)):
        return list(enumerate(output))
    return [(k, v) for k, v in vars(output).items() if not k.startswith("_")] if hasattr(output, "__dict__") else []


def _labels(label: Any, count: int | None, who: str) -> torch.Tensor:
    """int64 ``(T,)`` class labels, -1 for None (any / the top class)."""
    if label is None:
        return torch.full((count or 1,), -1, dtype=torch.int64)
    array = np.asarray(label.detach().cpu() if isinstance(label, torch.Tensor) else label)
    if array.ndim == 0 and np.issubdtype(array.dtype, np.integer):
        return torch.full((count or 1,), int(array), dtype=torch.int64)
    if array.ndim == 1 and np.issubdtype(array.dtype, np.integer) and count is not None and len(array) == count:
        return torch.from_numpy(array.astype(np.int64))
    raise InvalidTarget(f"{who}: label must be an int{f' or {count} ints (one per input)' if count else ''}; got {label!r}")


def _check_labels(labels: torch.Tensor, classes: int, who: str) -> None:
    bad = (labels >= classes) | (labels < -1)
    if bool(bad.any()):
        raise InvalidTarget(f"{who}: label {int(labels[bad][0])} is out of range for an output with {classes} classes (valid: 0..{classes - 1})")


class Region(Target):
    """Segmentation: the class ``label``'s logit summed over a pixel mask.

    score_n = Σ_{h, w} y[n, label, h, w] · M[h, w] for the output ``y`` ``(N, K, H, W)`` and the
    boolean mask ``M`` ``(H, W)`` (nonzero = inside; it must have the output's H × W), as
    pytorch-grad-cam's ``SemanticSegmentationTarget`` defines it for 0/1 masks. ``mask`` ``(N, H,
    W)`` with ``label`` an int or N ints gives one region per input. ``label`` None (one shared
    mask only) explains each input for its class with the highest summed logit on the unperturbed
    output. ``output``: which output to score when the model returns several (default: the only
    one). Text form (CLI ``region=``): ``mask.png[:label]``, nonzero pixels inside, resized to the
    model input by nearest neighbour.
    """

    name = "region"
    summary = "segmentation: the class logit summed over a pixel mask"

    def __init__(self, label: Any, mask: Any, output: str | int | None = None):
        array = np.asarray(mask.detach().cpu() if isinstance(mask, torch.Tensor) else mask)
        if array.ndim not in (2, 3) or not (array.dtype == bool or np.issubdtype(array.dtype, np.number)) or array.size == 0:
            raise InvalidTarget(f"Region: mask must be (H, W) or (N, H, W) booleans or numbers (nonzero = inside); got shape {array.shape} of {array.dtype}")
        self.count = array.shape[0] if array.ndim == 3 else None
        self.masks = torch.from_numpy(np.ascontiguousarray(array != 0)).reshape(-1, *array.shape[-2:])
        if not bool(self.masks.flatten(1).any(1).all()):
            raise InvalidTarget("Region: a mask has no pixel inside; give a mask with nonzero pixels")
        if label is None and self.count is not None:
            raise InvalidTarget("Region: one region per input needs a label (an int, or one int per input)")
        self.labels = _labels(label, self.count, "Region")
        self.output = output
        self.top = label is None

    @property
    def width(self) -> int | None:
        return None if self.top else super().width  # None: one column per class of the output

    def columns(self, inputs: int) -> torch.Tensor | None:
        return None if self.top else super().columns(inputs)

    def score(self, output: Any) -> torch.Tensor:
        y = pick_output(output, self.output, "Region")
        if not isinstance(y, torch.Tensor) or y.dim() != 4:
            shape = tuple(y.shape) if isinstance(y, torch.Tensor) else type(y).__name__
            raise InvalidTarget(f"Region scores a segmentation output (N, K, H, W); got {shape}")
        if tuple(y.shape[2:]) != tuple(self.masks.shape[1:]):
            raise InvalidTarget(f"Region: the mask is {tuple(self.masks.shape[1:])} but the output's pixels are {tuple(y.shape[2:])}; give a mask of the output's H x W")
        masks = self.masks.to(device=y.device, dtype=y.dtype)
        if self.top:
            return torch.einsum("nkhw,hw->nk", y, masks[0])
        _check_labels(self.labels, y.shape[1], "Region")
        chosen = y[:, self.labels.to(y.device)]  # (rows, T, H, W)
        return torch.einsum("nthw,thw->nt", chosen, masks)

    def describe(self) -> str:
        pixels = int(self.masks.sum())
        label = "top class" if self.top else (int(self.labels[0]) if self.count is None else self.labels.tolist())
        each = f"{self.count} masks" if self.count else f"mask of {pixels} px"
        return f"region {each} label {label}"

    @classmethod
    def from_text(cls, text: str, class_names: Sequence[str] | None = None, input_size: tuple[int, int] | None = None) -> "Region":
        """``mask.png[:label]``: the image's nonzero pixels are inside; resized to ``input_size``
        (H, W) by nearest neighbour when given; ``label`` an int or a class name."""
        path, label = _split_label(text, class_names, "region=")
        from .images import load_image

        image = load_image(path)
        mask = image.max(axis=2) if image.ndim == 3 else image
        if input_size is not None and tuple(mask.shape) != tuple(input_size):
            import cv2

            mask = cv2.resize((mask != 0).astype(np.uint8), (int(input_size[1]), int(input_size[0])), interpolation=cv2.INTER_NEAREST)
        return cls(label, mask != 0)

    @classmethod
    def stack(cls, targets: Sequence["Target"]) -> "Region | None":
        if any(t.top or t.output != targets[0].output or t.masks.shape != targets[0].masks.shape for t in targets):
            return None
        stacked = cls(torch.cat([t.labels for t in targets]), torch.cat([t.masks for t in targets]), targets[0].output)
        return stacked


class Similarity(Target):
    """Embedding similarity: cos(e_n, v) = e_n · v / max(‖e_n‖ ‖v‖, 1e-8) of the output embedding
    ``e`` ``(N, D)`` and the vector ``embedding`` ``(D,)`` (retrieval, CLIP-style models);
    ``embedding`` ``(N, D)`` gives one vector per input. ``output``: which output to score when the
    model returns several. Text form (CLI ``similarity=``): a ``.npy`` file of shape (D,).
    """

    name = "similarity"
    summary = "cosine similarity of the output embedding to a vector"

    def __init__(self, embedding: Any, output: str | int | None = None):
        array = np.asarray(embedding.detach().cpu() if isinstance(embedding, torch.Tensor) else embedding, dtype=np.float64)
        if array.ndim not in (1, 2) or array.shape[-1] == 0 or not np.isfinite(array).all():
            raise InvalidTarget(f"Similarity: embedding must be finite numbers of shape (D,) or (N, D); got shape {array.shape}")
        if not (np.linalg.norm(array.reshape(-1, array.shape[-1]), axis=1) > 0).all():
            raise InvalidTarget("Similarity: the embedding has zero length; cosine similarity needs a nonzero vector")
        self.count = array.shape[0] if array.ndim == 2 else None
        self.vectors = torch.from_numpy(array.reshape(-1, array.shape[-1]))
        self.output = output

    def score(self, output: Any) -> torch.Tensor:
        e = pick_output(output, self.output, "Similarity")
        if not isinstance(e, torch.Tensor) or e.dim() != 2 or e.shape[1] != self.vectors.shape[1]:
            shape = tuple(e.shape) if isinstance(e, torch.Tensor) else type(e).__name__
            raise InvalidTarget(f"Similarity scores an embedding output (N, {self.vectors.shape[1]}); got {shape}")
        v = self.vectors.to(device=e.device, dtype=e.dtype)
        norms = e.norm(dim=1)[:, None] * v.norm(dim=1)[None, :]
        return (e @ v.T) / norms.clamp_min(1e-8)

    def describe(self) -> str:
        each = f"{self.count} vectors" if self.count else "a vector"
        return f"similarity to {each} of {self.vectors.shape[1]} dims"

    @classmethod
    def from_text(cls, text: str, class_names: Sequence[str] | None = None, input_size: tuple[int, int] | None = None) -> "Similarity":
        """``vector.npy``: a float array of shape (D,), read without unpickling."""
        try:
            array = np.load(Path(text), allow_pickle=False)
        except (OSError, ValueError) as error:
            raise InvalidTarget(f"similarity= takes a .npy file of shape (D,); cannot read {text!r}: {' '.join(str(error).split())}") from None
        return cls(array)

    @classmethod
    def stack(cls, targets: Sequence["Target"]) -> "Similarity | None":
        if any(t.output != targets[0].output or t.vectors.shape != targets[0].vectors.shape for t in targets):
            return None
        return cls(torch.cat([t.vectors for t in targets]), targets[0].output)


def _split_label(text: str, class_names: Sequence[str] | None, form: str) -> tuple[str, int | None]:
    """``"value[:label]"`` → (value, label as int or None); a label may be a class name."""
    value, sep, label = text.rpartition(":") if ":" in text else (text, "", "")
    if not sep:
        return text, None
    if label.strip().lstrip("-").isdigit():
        return value, int(label)
    if class_names and label in class_names:
        return value, list(class_names).index(label)
    known = f"; class names: {', '.join(class_names)}" if class_names else ""
    raise InvalidTarget(f"{form} label must be a class index or a class name{known}; got {label!r}")
