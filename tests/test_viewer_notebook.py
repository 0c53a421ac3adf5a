"""Notebook helpers: a one-line repr, the HTML grid of maps, ``exp.plot()`` and ``vx.compare``
(matplotlib, the ``plot`` extra), with exact values from a known explanation."""
from __future__ import annotations

import base64
import re
import sys

import cv2
import numpy as np
import pytest

import vexplain as vx
from vexplain.core.colour_scale import RDBU_CENTRE
from vexplain.core.extras import MissingExtra

pytest.importorskip("matplotlib", reason="the plot extra")


def known(n: int = 3) -> vx.Explanation:
    maps = np.stack([np.arange(16, dtype=np.float32).reshape(4, 4) * (i + 1) - 5 for i in range(n)])
    scores = np.tile(np.array([[0.1, 0.7, 0.2]], np.float32), (n, 1))
    return vx.Explanation(
        maps=maps, targets=np.array([1] * n), scores=scores, method="saliency",
        options={"abs": True, "huge": np.zeros((100, 100))}, timings={"total": 0.25}, warnings=["one"],
    )


def test_repr_is_one_short_line():
    text = repr(known())
    assert text == "Explanation(method='saliency', maps=(3, 4, 4) float32, targets=[1, 1, 1], total=0.250s, warnings=1)"
    many = known(20)
    assert "… (20 in all)" in repr(many) and len(repr(many)) < 200


def test_repr_html_shows_each_map_coloured_with_its_score():
    exp = known()
    page = exp._repr_html_()
    sources = re.findall(r'src="data:image/png;base64,([^"]+)"', page)
    assert len(sources) == 3
    for source, expected in zip(sources, exp.heatmaps("jet")):
        decoded = cv2.imdecode(np.frombuffer(base64.b64decode(source), np.uint8), cv2.IMREAD_COLOR)
        assert np.array_equal(cv2.cvtColor(decoded, cv2.COLOR_BGR2RGB), expected)
    assert page.count("score 0.7") == 3 and "-5 … 10" in page and "-5 … 40" in page
    assert "more not shown" in known(10)._repr_html_()


def test_plot_has_one_axis_and_colour_bar_per_map_over_the_images():
    exp = known()
    images = np.zeros((3, 8, 8, 3), np.uint8)  # another size: resized to the maps'
    figure = exp.plot(images=images, colormap="viridis", alpha=0.4, signed=False)
    axes = figure.axes
    assert len(axes) == 6  # three maps, three colour bars
    maps = [a for a in axes if a.get_title()]
    assert [a.get_title() for a in maps] == ["saliency: class 1, score 0.7"] * 3
    for axis, raw in zip(maps, exp.maps):
        background, overlay = axis.get_images()
        assert background.get_array().shape == (4, 4, 3)
        assert np.array_equal(overlay.get_array(), raw) and overlay.get_alpha() == 0.4
        assert overlay.get_clim() == (float(raw.min()), float(raw.max()))
    bars = [a for a in axes if not a.get_title()]
    assert [tuple(b.get_ylim()) for b in bars] == [(float(r.min()), float(r.max())) for r in exp.maps]
    figure.savefig(__import__("io").BytesIO(), format="png")


def test_plot_centres_signed_maps_at_zero_in_rdbu_and_scales_unsigned_ones_min_max():
    signed = known(2)  # values -5 … 10 and -5 … 25
    figure = signed.plot()
    maps = [a for a in figure.axes if a.get_title()]
    for axis, raw in zip(maps, signed.maps):
        (overlay,) = axis.get_images()
        peak = float(np.abs(raw).max())
        assert overlay.get_clim() == (-peak, peak)
        assert overlay.get_cmap().name == "rdbu"
        centre = np.round(np.asarray(overlay.get_cmap()(0.5)[:3]) * 255)
        assert tuple(int(c) for c in centre) == pytest.approx(RDBU_CENTRE, abs=1)
    unsigned = vx.Explanation(maps=np.abs(signed.maps) + 1, targets=signed.targets, scores=signed.scores, method="gradcam")
    for axis, raw in zip([a for a in unsigned.plot().axes if a.get_title()], unsigned.maps):
        (overlay,) = axis.get_images()
        assert overlay.get_clim() == (float(raw.min()), float(raw.max())) and overlay.get_cmap().name == "jet"
    compared = [a for a in unsigned.plot(colormap="rdbu", signed=True).axes if a.get_title()]
    assert compared[0].get_images()[0].get_clim() == (-float(unsigned.maps[0].max()), float(unsigned.maps[0].max()))


def test_plot_refuses_bad_arguments():
    with pytest.raises(vx.InvalidOption, match="unknown colormap"):
        known().plot(colormap="nope")
    with pytest.raises(vx.InvalidOption, match="2 images for 3 maps"):
        known().plot(images=np.zeros((2, 4, 4, 3), np.uint8))


def test_plot_without_matplotlib_names_the_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    with pytest.raises(MissingExtra, match=r"pip install 'vexplain\[plot\]'"):
        known().plot()


def test_compare_draws_inputs_by_methods():
    from vexplain.demo.model import demo_adapter, preprocess
    from vexplain.demo.scenes import generate_dataset

    images, labels, _ = generate_dataset(2, seed=5)
    adapter = demo_adapter()
    figure = vx.compare(adapter, preprocess(images), methods=["cam", "occlusion"], targets=labels, images=images,
                        options={"occlusion": {"window": 8, "stride": 8}})
    titled = [a for a in figure.axes if a.get_title()]
    assert [a.get_title() for a in titled] == ["input", f"cam (class {labels[0]})", f"occlusion (class {labels[0]})",
                                             "input", f"cam (class {labels[1]})", f"occlusion (class {labels[1]})"]
    cam = vx.explain(adapter, preprocess(images), method="cam", targets=labels)
    assert np.array_equal(titled[1].get_images()[1].get_array(), cam.maps[0])
    assert np.array_equal(figure.explanations["occlusion"].options["window"], (8, 8))
    assert len(figure.axes) == 6 + 4  # four maps with colour bars
    with pytest.raises(vx.InvalidOption, match="not among methods"):
        vx.compare(adapter, preprocess(images), methods=["cam"], options={"gradcam": {}})


def test_compare_figure_renders(tmp_path):
    """The figure in docs/images/compare.png (rewritten with VEXPLAIN_UPDATE_SCREENSHOTS=1)."""
    import os
    import shutil
    from pathlib import Path

    from vexplain.demo.model import demo_adapter, preprocess
    from vexplain.demo.scenes import generate_dataset

    images, labels, _ = generate_dataset(3, seed=15)
    figure = vx.compare(demo_adapter(), preprocess(images), methods=["gradcam", "integrated_gradients", "occlusion"],
                        targets=labels, images=images, options={"occlusion": {"window": 8, "stride": 2}})
    path = tmp_path / "compare.png"
    figure.savefig(path, dpi=80)
    drawn = cv2.imread(str(path))
    assert drawn is not None and (cv2.cvtColor(drawn, cv2.COLOR_BGR2HSV)[..., 1] > 120).mean() > 0.05
    if os.environ.get("VEXPLAIN_UPDATE_SCREENSHOTS") == "1":
        shutil.copyfile(path, Path(__file__).resolve().parent.parent / "docs" / "images" / "compare.png")
