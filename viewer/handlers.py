"""What the JSON API computes, free of HTTP: the model's description, the methods that run on it,
the colormaps, and one explanation of an uploaded image as JSON-ready values."""
from __future__ import annotations

import base64
import inspect
import io
import math
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Mapping, Sequence

import numpy as np

from vexplain.core.adapter import ModelAdapter
from vexplain.core.api import explain, methods
from vexplain.core.errors import InvalidOption, InvalidTarget
from vexplain.core.preprocessing import from_metadata, model_view, prepare_images
from vexplain.core.options import parse_option_text

from .uploads import Limits

#: form fields that are not method options
IMAGE_FIELD, METHOD_FIELD, TARGET_FIELD = "image", "method", "target"
COLORMAP_FIELD, ALPHA_FIELD = "overlay_colormap", "overlay_alpha"
RESERVED_FIELDS = (IMAGE_FIELD, METHOD_FIELD, TARGET_FIELD, COLORMAP_FIELD, ALPHA_FIELD)
DEFAULT_COLORMAP, DEFAULT_ALPHA = "jet", 0.5


@dataclass
class ViewerModel:
    """The model the viewer explains, with its preprocessing: ``size`` (h, w) to resize uploads to
    (None: as uploaded), ``mean``/``std`` per channel, ``class_names`` when known. ``lock``
    serialises explanations: methods hook into the one shared model."""

    adapter: ModelAdapter
    name: str
    size: tuple[int, int] | None = None
    mean: tuple[float, float, float] = (0.0, 0.0, 0.0)
    std: tuple[float, float, float] = (1.0, 1.0, 1.0)
    class_names: list[str] | None = None
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    @classmethod
    def from_adapter(cls, adapter: ModelAdapter, name: str, size: Sequence[int] | None = None,
                     mean: Sequence[float] | None = None, std: Sequence[float] | None = None) -> "ViewerModel":
        """Preprocessing from the arguments, else the adapter's metadata, else none (0 mean, 1 std)."""
        meta = adapter.metadata or {}
        size = size or meta.get("input_size")
        return cls(
            adapter=adapter,
            name=name,
            size=None if size is None else (int(size[0]), int(size[1])),
            mean=tuple(float(v) for v in (mean or meta.get("mean") or (0.0, 0.0, 0.0))),
            std=tuple(float(v) for v in (std or meta.get("std") or (1.0, 1.0, 1.0))),
            class_names=list(meta["class_names"]) if meta.get("class_names") else None,
        )


def model_info(model: ViewerModel, limits: Limits) -> dict[str, Any]:
    """``GET /api/model``."""
    return {
        "name": model.name,
        "description": model.adapter.describe(),
        "backend": model.adapter.backend,
        "input_size": list(model.size) if model.size else None,
        "mean": list(model.mean),
        "std": list(model.std),
        "class_names": model.class_names,
        "max_upload_bytes": limits.max_bytes,
        "max_pixels": limits.max_pixels,
    }


def method_list(model: ViewerModel) -> list[dict[str, Any]]:
    """``GET /api/methods``: every registered method, whether it runs on this model (and which
    capability it lacks when not), its options with defaults as JSON and as option text."""
    default = inspect.signature(explain).parameters["method"].default
    listed = []
    for info in methods():
        missing = [c for c in info.requires if not model.adapter.supports(c)]
        listed.append({
            "name": info.name,
            "summary": info.summary,
            "paper": info.paper,
            "plugin": info.plugin,
            "requires": list(info.requires),
            "backends": list(info.backends),
            "works": not missing,
            "missing": missing,
            "default": info.name == default,
            "options": {k: {"default": jsonable(v), "text": repr(v)} for k, v in info.options.items()},
        })
    return listed


def colormaps() -> dict[str, list[str]]:
    """``GET /api/colormaps``: each OpenCV colormap as 256 ``#rrggbb`` entries (index = the
    min-max normalised value × 255), so the page recolours exactly as ``Explanation.overlay``."""
    import cv2

    from vexplain.core.postprocess import colorize

    ramp = (np.arange(256, dtype=np.float32) / 255.0)[None, :]
    names = sorted(n[len("COLORMAP_"):].lower() for n in dir(cv2) if n.startswith("COLORMAP_"))
    return {name: ["#%02x%02x%02x" % tuple(int(c) for c in rgb) for rgb in colorize(ramp, name)[0]] for name in names}


@dataclass
class ExplainRequest:
    """One parsed ``POST /api/explain`` form."""

    image: np.ndarray
    filename: str
    method: str
    target: int | None
    options: dict[str, Any]
    colormap: str = DEFAULT_COLORMAP
    alpha: float = DEFAULT_ALPHA


def parse_fields(fields: Mapping[str, str], class_names: list[str] | None) -> tuple[str, int | None, dict[str, Any], str, float]:
    """(method, target, options, colormap, alpha) from the form's text fields; every field that
    is not reserved is a method option, its value parsed like the CLI's ``--option k=v``."""
    method = (fields.get(METHOD_FIELD) or "").strip()
    if not method:
        raise InvalidOption("the form needs a 'method' field naming a method (GET /api/methods lists them)")
    target = parse_target(fields.get(TARGET_FIELD), class_names)
    options = {k: parse_option_text(v.strip()) for k, v in fields.items() if k not in RESERVED_FIELDS}
    colormap = (fields.get(COLORMAP_FIELD) or DEFAULT_COLORMAP).strip()
    alpha_text = (fields.get(ALPHA_FIELD) or str(DEFAULT_ALPHA)).strip()
    try:
        alpha = float(alpha_text)
    except ValueError:
        raise InvalidOption(f"{ALPHA_FIELD} must be a number in [0, 1]; got {alpha_text!r}") from None
    return method, target, options, colormap, alpha


def parse_target(text: str | None, class_names: list[str] | None) -> int | None:
    """Empty → None (the top class); an int; or a class name from the model's metadata."""
    text = (text or "").strip()
    if not text:
        return None
    try:
        return int(text)
    except ValueError:
        pass
    if class_names and text in class_names:
        return class_names.index(text)
    known = f"; class names: {', '.join(class_names)}" if class_names else ""
    raise InvalidTarget(f"target must be a class index or a class name{known}; got {text!r}")


def run_explain(model: ViewerModel, request: ExplainRequest) -> dict[str, Any]:
    """``POST /api/explain``'s answer for one parsed request (see the package docstring)."""
    started = time.perf_counter()
    spec = from_metadata(model.adapter.metadata, model.size, model.mean, model.std)
    prepared = prepare_images(request.image, model.adapter, size=model.size, mean=model.mean, std=model.std)
    shown = model_view(request.image, spec)  # the photo cropped and resized as the model saw it
    with model.lock:
        exp = explain(model.adapter, prepared, method=request.method, targets=request.target, **request.options)
    # coloured as the page recolours it (viewer.js): a signed map centred at zero, an unsigned one min-max
    overlay = exp.overlay([shown], colormap=request.colormap, alpha=request.alpha)[0]
    raw = exp.maps[0].astype("<f4")
    target = int(exp.targets[0])
    finite = raw[np.isfinite(raw)]
    names = model.class_names
    return {
        "method": exp.method,
        "image": request.filename,
        "shape": list(raw.shape),
        "dtype": "float32",
        "map_npy": base64.b64encode(npy_bytes(raw)).decode("ascii"),
        "min": _number(finite.min()) if finite.size else None,
        "max": _number(finite.max()) if finite.size else None,
        "overlay_png": base64.b64encode(png_bytes(overlay)).decode("ascii"),
        "image_png": base64.b64encode(png_bytes(shown)).decode("ascii"),
        "colormap": request.colormap,
        "alpha": request.alpha,
        "target": target,
        "class_name": names[target] if names and 0 <= target < len(names) else None,
        "score": _number(exp.scores[0, target]) if exp.scores.ndim == 2 and target < exp.scores.shape[1] else None,
        "timings": {**{k: round(float(v), 6) for k, v in exp.timings.items()}, "request": round(time.perf_counter() - started, 6)},
        "options": jsonable({k: v for k, v in exp.options.items()}),
        "warnings": list(exp.warnings),
    }


def npy_bytes(array: np.ndarray) -> bytes:
    """``array`` in NumPy's .npy format (no pickles)."""
    buffer = io.BytesIO()
    np.save(buffer, array, allow_pickle=False)
    return buffer.getvalue()


def png_bytes(rgb: np.ndarray) -> bytes:
    """uint8 RGB ``(H, W, 3)`` encoded as PNG."""
    import cv2

    ok, encoded = cv2.imencode(".png", cv2.cvtColor(np.ascontiguousarray(rgb), cv2.COLOR_RGB2BGR))
    if not ok:
        raise InvalidOption(f"cannot encode a {rgb.shape} image as PNG")
    return encoded.tobytes()


def jsonable(value: Any) -> Any:
    """``value`` as JSON values: tuples → lists, NumPy scalars → numbers, non-finite floats → their
    text (JSON has no NaN), anything else unknown → its ``repr``."""
    if isinstance(value, Mapping):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [jsonable(v) for v in value]
    if isinstance(value, np.generic):
        value = value.item()
    if value is None or isinstance(value, (bool, int, str)):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else repr(value)
    return repr(value)


def _number(value: Any) -> float | None:
    number = float(value)
    return number if math.isfinite(number) else None
