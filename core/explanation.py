"""What every method returns: raw maps plus everything needed to reproduce and show them."""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from .errors import InvalidOption
from .output_files import output_folder, write_npy, write_png
from .colour_scale import choose, colour, heatmap, value_range, with_colour_bar
from .postprocess import as_rgb_uint8, normalize


@dataclass
class Explanation:
    """The result of ``vx.explain``.

    Attributes:
        maps: float32 ``(N, H, W)`` at input resolution, raw (no normalisation, no ReLU unless the
            method's definition has one).
        targets: int64 ``(N,)``, the classes explained.
        scores: float32 ``(N, K)``, the model's output on the unperturbed inputs.
        method: the method's registered name.
        options: every option actually used, defaults and derived values filled in.
        timings: seconds spent, by phase (``total`` always present).
        attributions: float32 ``(N, C, H, W)`` for methods with per-channel values, else None.
        layer_maps: float32 ``(N, h, w)`` at the layer's resolution for layer methods (with several
            layers, ``(N, L, H, W)``: each layer's raw map upsampled to the input), else None.
        warnings: one line per condition that makes the result doubtful (non-finite scores,
            saturated outputs, an all-zero or constant map, ...); empty when nothing was noticed.
        extras: named float32 arrays a method defines beyond the map, documented by the method
            (e.g. ``deep_feature_factorization``'s ``concept_maps``); empty for most methods.
    """

    maps: np.ndarray
    targets: np.ndarray
    scores: np.ndarray
    method: str
    options: dict[str, Any] = field(default_factory=dict)
    timings: dict[str, float] = field(default_factory=dict)
    attributions: np.ndarray | None = None
    layer_maps: np.ndarray | None = None
    warnings: list[str] = field(default_factory=list)
    extras: dict[str, np.ndarray] = field(default_factory=dict)

    def __len__(self) -> int:
        return int(self.maps.shape[0])

    def __repr__(self) -> str:
        """One line: method, maps' shape, targets, total time (``core/notebook.py``)."""
        from .notebook import summary

        return summary(self)

    def _repr_html_(self) -> str:
        """Notebooks: the maps as a small grid of coloured images with targets and scores."""
        from .notebook import html_grid

        return html_grid(self)

    def plot(self, images: Any = None, colormap: str | None = None, alpha: float = 0.5, limit: int = 8, signed: bool | None = None) -> Any:
        """A matplotlib Figure (the ``plot`` extra), one axis per input with a colour bar of the raw
        values, over ``images`` (RGB, one per map) when given; the first ``limit`` inputs. Colours as
        in ``heatmaps``: ``signed=None`` decides per map, a signed map is centred at zero in
        ``rdbu``, an unsigned one min-max in ``jet``; ``colormap`` (``rdbu`` or a matplotlib name) overrides."""
        from .notebook import plot

        return plot(self, images, colormap, alpha, limit, signed)

    def normalized(self, mode: str = "minmax") -> np.ndarray:
        """Maps scaled per image: ``minmax`` to [0, 1], ``max`` by max |m| keeping signs, ``none`` as is."""
        return normalize(self.maps, mode)

    def heatmaps(self, colormap: str | None = None, signed: bool | None = None) -> np.ndarray:
        """The maps coloured, uint8 ``(N, H, W, 3)`` RGB, each map on its own scale.

        ``signed=None`` decides per map from its values (any negative value: signed); a signed
        map is scaled by max|m| with zero at the colormap's centre, an unsigned one min-max.
        ``colormap=None``: ``rdbu`` (diverging) for signed maps, ``jet`` for unsigned ones; any
        OpenCV colormap name is accepted too (``core/colour_scale.py``).
        """
        return np.stack([heatmap(m, colormap, signed) for m in self.maps])

    def map_at_original(self, index: int) -> np.ndarray:
        """Map ``index`` at its photo's own resolution, float32 ``(H, W)``: mapped back through the
        resize and crop or letterbox recorded in ``options["preprocess"]`` (inputs made by
        ``vx.prepare_images``), bilinear, **NaN** where the model never saw the photo (outside a
        centre crop); see ``core/preprocessing.py``."""
        from .preprocessing import map_to_original

        return map_to_original(self.maps[index], self._record(index))

    def _record(self, index: int) -> dict[str, Any]:
        records = self.options.get("preprocess")
        if not records:
            raise InvalidOption(
                "this explanation has no preprocessing record, so its maps cannot be placed on the original photos: "
                "make the inputs with vx.prepare_images(photos, model), or use at='model'"
            )
        if not 0 <= index < len(records) or index >= len(self):
            raise InvalidOption(f"map index {index} is out of range for {len(self)} maps")
        return records[index]

    def _maps_at(self, at: str) -> list[np.ndarray]:
        if at == "model":
            return list(self.maps)
        if at == "original":
            return [self.map_at_original(i) for i in range(len(self))]
        raise InvalidOption(f"at must be 'model' (the maps' own size) or 'original' (each photo's size); got {at!r}")

    def overlay(
        self,
        images: np.ndarray | Sequence[np.ndarray],
        colormap: str | None = None,
        alpha: float = 0.5,
        signed: bool | None = None,
        at: str = "model",
    ) -> np.ndarray | list[np.ndarray]:
        """Heat maps (``heatmaps(colormap, signed)``) blended over ``images`` (RGB, uint8 or float in
        [0, 1], one per map).

        ``at="model"`` (default): uint8 ``(N, H, W, 3)`` at the maps' size, ``alpha * heatmap +
        (1 - alpha) * image``; images of another size are resized to the maps' size.
        ``at="original"``: ``images`` are the original photos and each map is placed on its photo
        at the photo's resolution (``map_at_original``); a list of uint8 ``(H_i, W_i, 3)`` (photos
        may differ in size), the photo shown unblended where the map is NaN (outside the crop).
        """
        import cv2

        if not 0.0 <= float(alpha) <= 1.0:
            raise InvalidOption(f"alpha must be in [0, 1]; got {alpha!r}")
        images = [images] if isinstance(images, np.ndarray) and images.ndim == 3 else list(images)
        if len(images) != len(self):
            raise InvalidOption(f"overlay got {len(images)} images for {len(self)} maps; give one image per map")
        blended = []
        for image, raw in zip(images, self._maps_at(at)):
            rgb = as_rgb_uint8(image)
            height, width = raw.shape
            if rgb.shape[:2] != (height, width):
                if at == "original":
                    raise InvalidOption(f"at='original' needs the original photo: got a {rgb.shape[1]}×{rgb.shape[0]} image for a {width}×{height} photo")
                rgb = cv2.resize(rgb, (width, height), interpolation=cv2.INTER_LINEAR)
            known = np.isfinite(raw)
            everywhere = bool(known.all())
            heat = heatmap(raw, colormap, signed) if at == "model" else _heat_on(raw, self.maps[len(blended)], colormap, signed)
            mixed = np.empty_like(rgb)
            for top in range(0, height, 256):  # in strips: float copies of a large photo stay small
                rows = slice(top, top + 256)
                part = alpha * heat[rows].astype(np.float32) + (1 - alpha) * rgb[rows].astype(np.float32)
                mixed[rows] = np.clip(np.round(part), 0, 255).astype(np.uint8)
            if not everywhere:
                mixed[~known] = rgb[~known]
            blended.append(mixed)
        return np.stack(blended) if at == "model" else blended

    def save(
        self,
        folder: str | Path,
        stem: str | Sequence[str],
        images: np.ndarray | Sequence[np.ndarray] | None = None,
        colormap: str | None = None,
        alpha: float = 0.5,
        signed: bool | None = None,
        colour_bar: bool = False,
        at: str = "model",
    ) -> list[Path]:
        """Write ``<stem>.<method>.png`` (overlay, or the heat map without images) and
        ``<stem>.<method>.npy`` (the raw ``(H, W)`` map) per input; returns the paths written.

        ``colormap``/``signed`` as in ``heatmaps``. ``colour_bar=True`` adds a strip of
        ``core.colour_scale.COLOUR_BAR_HEIGHT`` rows below each PNG: the colormap labelled with
        the values its ends stand for.

        ``at="original"``: both at each photo's own resolution (``map_at_original``: the ``.npy`` is
        NaN outside the part the model saw); ``images`` are then the original photos.

        ``stem`` is one name per input, or one name that gets ``_<i>`` appended when N > 1.
        Files are written through a temporary file and a rename (``core.output_files``): a symlink
        at an output name is replaced, never followed; a failed write raises ``OutputError``.
        """
        folder = output_folder(folder)
        stems = [stem] if isinstance(stem, str) else list(stem)
        if len(stems) == 1 and len(self) > 1:
            stems = [f"{stems[0]}_{i}" for i in range(len(self))]
        if len(stems) != len(self):
            raise InvalidOption(f"save got {len(stems)} stems for {len(self)} maps; give one stem per map")
        raws = self._maps_at(at)
        if images is not None:
            pictures = self.overlay(images, colormap, alpha, signed, at)
        else:
            pictures = [heatmap(m, colormap, signed) if at == "model" else _heat_on(m, s, colormap, signed) for m, s in zip(raws, self.maps)]
        written = []
        for name, picture, raw, scale_from in zip(stems, pictures, raws, self.maps):
            if colour_bar:  # the model-space map's range: the same colours at either resolution
                picture = with_colour_bar(picture, scale_from, colormap, signed)
            png = folder / f"{name}.{self.method}.png"
            npy = folder / f"{name}.{self.method}.npy"
            write_png(png, picture)
            write_npy(npy, raw.astype(np.float32))
            written += [png, npy]
        return written


def _heat_on(raw: np.ndarray, scale_from: np.ndarray, colormap: str | None, signed: bool | None) -> np.ndarray:
    """``raw`` (a map at a photo's resolution, NaN outside the crop) coloured on the scale that
    ``heatmap(scale_from)`` uses for its model-space map, so both resolutions share colours and one
    colour bar; interpolated values lie within that map's range. NaN takes the scale's low end."""
    chosen_map, chosen_signed = choose(scale_from, colormap, signed)
    low, high = value_range(scale_from, chosen_signed)
    unit = np.nan_to_num(raw.astype(np.float32), nan=low)
    if chosen_signed:
        unit = 0.5 + 0.5 * unit / np.float32(high) if high > 0 else np.full_like(unit, 0.5)
    else:
        unit = (unit - np.float32(low)) / np.float32(high - low) if high > low else np.zeros_like(unit)
    np.clip(unit, 0.0, 1.0, out=unit)
    heat = np.empty((*unit.shape, 3), dtype=np.uint8)
    for top in range(0, unit.shape[0], 256):  # in strips: rdbu interpolates in float64
        heat[top:top + 256] = colour(unit[top:top + 256], chosen_map)
    return heat
