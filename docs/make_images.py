"""Regenerate the README's pictures from the shipped demo model: `python docs/make_images.py`."""
from __future__ import annotations

import tempfile
from pathlib import Path

import cv2
import numpy as np

import vexplain as vx
from vexplain.cli.main import main as cli
from vexplain.core.gallery import draw_box, grid
from vexplain.demo.model import load_demo_model, preprocess
from vexplain.demo.scenes import generate_dataset

IMAGES = Path(__file__).parent / "images"


def quickstart_figure() -> np.ndarray:
    """Four scenes: the input with its box, then Grad-CAM, occlusion and CAM overlays."""
    model = load_demo_model()
    images, labels, boxes = generate_dataset(4, seed=0)
    inputs = preprocess(images)
    columns = {
        "gradcam": vx.explain(model, inputs, method="gradcam").overlay(images),
        "occlusion": vx.explain(model, inputs, method="occlusion", targets=labels, window=8, stride=4).overlay(images),
        "cam": vx.explain(model, inputs, method="cam").overlay(images),
    }
    tiles = [[draw_box(images[i], boxes[i])] + [columns[name][i] for name in columns] for i in range(len(images))]
    return grid(tiles, ["input + box", *columns], scale=2)


def plot_figure() -> None:
    """``exp.plot(images=...)``: Grad-CAM on three scenes,
    each map with its colour bar, as docs/images/plot.png."""
    model = load_demo_model()
    images, labels, _ = generate_dataset(3, seed=0)
    exp = vx.explain(model, preprocess(images), method="gradcam", targets=labels)
    exp.plot(images=images).savefig(IMAGES / "plot.png", dpi=110)


def photo_figure() -> None:
    """A 600×400 photo (scikit-image's ``coffee``) through the demo model's metadata (shorter side
    to 64, centre crop): Grad-CAM at the photo's resolution, NaN (unblended) outside the crop."""
    from skimage.data import coffee

    from vexplain.demo.model import demo_adapter

    adapter = demo_adapter()
    photo = coffee()
    exp = vx.explain(adapter, vx.prepare_images(photo, adapter), method="gradcam")
    with tempfile.TemporaryDirectory() as folder:
        png = exp.save(folder, "photo", [photo], colour_bar=True, at="original")[0]
        (IMAGES / "photo.png").write_bytes(png.read_bytes())


def main() -> None:
    IMAGES.mkdir(parents=True, exist_ok=True)
    plot_figure()
    photo_figure()
    figure = quickstart_figure()
    cv2.imwrite(str(IMAGES / "quickstart.png"), cv2.cvtColor(figure, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_PNG_COMPRESSION, 9])
    with tempfile.TemporaryDirectory() as folder:
        cli(["demo", "--out", folder])
        demo = cv2.imread(str(Path(folder) / "demo.png"))
        cv2.imwrite(str(IMAGES / "demo.png"), demo, [cv2.IMWRITE_PNG_COMPRESSION, 9])


if __name__ == "__main__":
    main()
