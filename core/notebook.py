"""Explanations in notebooks: a short ``repr``, an HTML grid of heat maps, matplotlib figures with
colour bars (the ``plot`` extra), and ``compare``: inputs × methods in one figure."""
from __future__ import annotations

import base64
import html
from typing import TYPE_CHECKING, Any, Sequence

import numpy as np

from .errors import InvalidOption

if TYPE_CHECKING:
    from matplotlib.figure import Figure

    from .explanation import Explanation

#: at most this many inputs are drawn by ``_repr_html_`` and ``plot`` unless asked otherwise
MAX_SHOWN = 8


def summary(exp: "Explanation") -> str:
    """One line: method, maps' shape, targets (the first 8), total time, warning count."""
    targets = [int(t) for t in np.asarray(exp.targets).reshape(-1)]
    shown = ", ".join(map(str, targets[:8])) + (f", … ({len(targets)} in all)" if len(targets) > 8 else "")
    total = exp.timings.get("total")
    parts = [
        f"method={exp.method!r}",
        f"maps={tuple(exp.maps.shape)} {exp.maps.dtype}",
        f"targets=[{shown}]",
    ]
    if total is not None:
        parts.append(f"total={total:.3f}s")
    if exp.attributions is not None:
        parts.append(f"attributions={tuple(exp.attributions.shape)}")
    if exp.layer_maps is not None:
        parts.append(f"layer_maps={tuple(exp.layer_maps.shape)}")
    if exp.warnings:
        parts.append(f"warnings={len(exp.warnings)}")
    return f"Explanation({', '.join(parts)})"


def _png_uri(rgb: np.ndarray) -> str:
    import cv2

    ok, encoded = cv2.imencode(".png", cv2.cvtColor(np.ascontiguousarray(rgb), cv2.COLOR_RGB2BGR))
    if not ok:
        raise InvalidOption(f"cannot encode a {rgb.shape} image as PNG")
    return "data:image/png;base64," + base64.b64encode(encoded.tobytes()).decode("ascii")


def html_grid(exp: "Explanation", limit: int = MAX_SHOWN) -> str:
    """Up to ``limit`` min-max coloured maps (jet) side by side as inline PNGs, each captioned with
    its target, score and raw value range, under the one-line ``summary``."""
    heat = exp.heatmaps("jet")[:limit]
    cells = []
    for i, picture in enumerate(heat):
        target = int(exp.targets[i])
        score = f" · score {float(exp.scores[i, target]):.3g}" if exp.scores.ndim == 2 and target < exp.scores.shape[1] else ""
        low, high = float(exp.maps[i].min()), float(exp.maps[i].max())
        cells.append(
            '<figure style="margin:4px;display:inline-block;text-align:center">'
            f'<img src="{_png_uri(picture)}" width="128" height="128" style="image-rendering:pixelated" alt="map {i}">'
            f'<figcaption style="font-size:11px">#{i} class {target}{score}<br>{low:.3g} … {high:.3g}</figcaption></figure>'
        )
    more = f"<div style='font-size:11px'>{len(exp) - limit} more not shown</div>" if len(exp) > limit else ""
    return f"<div><code>{html.escape(summary(exp))}</code><div>{''.join(cells)}</div>{more}</div>"


def _matplotlib() -> Any:
    from .extras import require_extra

    require_extra("matplotlib", "plot", "plotting explanations")
    from matplotlib.figure import Figure

    return Figure


def _backgrounds(images: Any, count: int, size: tuple[int, int]) -> list[np.ndarray | None]:
    import cv2

    from .postprocess import as_rgb_uint8

    if images is None:
        return [None] * count
    images = [images] if isinstance(images, np.ndarray) and images.ndim == 3 else list(images)
    if len(images) != count:
        raise InvalidOption(f"got {len(images)} images for {count} maps; give one image per map")
    shown = []
    for image in images:
        rgb = as_rgb_uint8(image)
        shown.append(rgb if rgb.shape[:2] == size else cv2.resize(rgb, (size[1], size[0]), interpolation=cv2.INTER_LINEAR))
    return shown


def draw_map(
    figure: "Figure", axis: Any, raw: np.ndarray, image: np.ndarray | None, colormap: str | None, alpha: float, title: str, signed: bool | None = None
) -> Any:
    """``raw`` on ``axis`` over ``image`` (when given, at opacity ``alpha``), with a colour bar of
    the raw values, coloured as ``Explanation.heatmaps`` colours (``core.colour_scale``): a signed
    map (``signed=None``: any negative value) on a scale centred at zero, -max|m| … +max|m|, in
    ``rdbu`` unless ``colormap`` says otherwise; an unsigned one min … max in ``jet`` by default.
    ``colormap``: ``rdbu`` or any matplotlib colormap name. Returns the colour bar."""
    from matplotlib import colormaps
    from matplotlib.cm import ScalarMappable
    from matplotlib.colors import ListedColormap, Normalize

    from .colour_scale import choose, colour, value_range

    if colormap is not None and (not isinstance(colormap, str) or (colormap.lower() != "rdbu" and colormap not in colormaps)):
        raise InvalidOption(f"unknown colormap {colormap!r}; e.g. rdbu, jet, viridis, magma, coolwarm")
    if not 0.0 <= float(alpha) <= 1.0:
        raise InvalidOption(f"alpha must be in [0, 1]; got {alpha!r}")
    chosen, chosen_signed = choose(raw, colormap, signed)
    cmap = ListedColormap(colour(np.linspace(0.0, 1.0, 256), "rdbu") / 255.0, name="rdbu") if chosen.lower() == "rdbu" else colormaps[chosen]
    low, high = value_range(raw, chosen_signed)
    norm = Normalize(vmin=low, vmax=high if high > low else low + 1e-12)
    if image is not None:
        axis.imshow(image)
    axis.imshow(raw, cmap=cmap, norm=norm, alpha=float(alpha) if image is not None else 1.0, interpolation="nearest")
    axis.set_title(title, fontsize=9)
    axis.set_xticks([])
    axis.set_yticks([])
    return figure.colorbar(ScalarMappable(norm=norm, cmap=cmap), ax=axis, fraction=0.046, pad=0.04)


def plot(
    exp: "Explanation", images: Any = None, colormap: str | None = None, alpha: float = 0.5, limit: int = MAX_SHOWN, signed: bool | None = None
) -> "Figure":
    """A matplotlib ``Figure``, one axis per input (the first ``limit``), each raw map with its own
    colour bar (raw values, no normalisation), over ``images`` when given (RGB, one per map);
    ``colormap``/``signed`` as in ``draw_map`` (signed maps centred at zero in ``rdbu``)."""
    figure_class = _matplotlib()
    count = min(len(exp), limit)
    backgrounds = _backgrounds(images, len(exp), tuple(exp.maps.shape[1:]))
    figure = figure_class(figsize=(3.2 * count, 3.0), layout="constrained")
    axes = figure.subplots(1, count, squeeze=False)[0]
    for i, axis in enumerate(axes):
        target = int(exp.targets[i])
        score = f", score {float(exp.scores[i, target]):.3g}" if exp.scores.ndim == 2 and target < exp.scores.shape[1] else ""
        draw_map(figure, axis, exp.maps[i], backgrounds[i], colormap, alpha, f"{exp.method}: class {target}{score}", signed)
    return figure


def compare(
    model: Any,
    inputs: Any,
    methods: Sequence[str],
    targets: Any = None,
    images: Any = None,
    options: dict[str, dict[str, Any]] | None = None,
    colormap: str | None = None,
    alpha: float = 0.5,
    signed: bool | None = None,
) -> "Figure":
    """A grid Figure: one row per input, a column per method (``images``, RGB, as the first column
    and under each map when given), each map with its colour bar. ``options`` maps a method name to
    its options; ``colormap``/``signed`` as in ``draw_map`` (per map: a signed method's maps centred
at zero in ``rdbu``). The explanations are on ``figure.explanations`` (method → ``Explanation``)."""
    from .api import explain

    figure_class = _matplotlib()
    if isinstance(methods, str) or not methods:
        raise InvalidOption(f"methods must be a non-empty list of method names; got {methods!r}")
    options = options or {}
    unknown = sorted(set(options) - set(methods))
    if unknown:
        raise InvalidOption(f"options given for {', '.join(unknown)}, which are not among methods {list(methods)}")
    explanations = {name: explain(model, inputs, method=name, targets=targets, **options.get(name, {})) for name in methods}
    first = explanations[methods[0]]
    rows = len(first)
    backgrounds = _backgrounds(images, rows, tuple(first.maps.shape[1:]))
    columns = len(methods) + (images is not None)
    figure = figure_class(figsize=(3.0 * columns, 2.8 * rows), layout="constrained")
    axes = figure.subplots(rows, columns, squeeze=False)
    for r in range(rows):
        offset = 0
        if images is not None:
            axes[r, 0].imshow(backgrounds[r])
            axes[r, 0].set_title("input", fontsize=9)
            axes[r, 0].set_xticks([])
            axes[r, 0].set_yticks([])
            offset = 1
        for c, name in enumerate(methods):
            exp = explanations[name]
            target = int(exp.targets[r])
            draw_map(figure, axes[r, c + offset], exp.maps[r], backgrounds[r], colormap, alpha, f"{name} (class {target})", signed)
    figure.explanations = explanations
    return figure
