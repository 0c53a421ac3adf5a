"""The CLI on multi-output and foreign ONNX graphs: ``--output NAME``, and ``vexplain layers``
listing only feature maps usable as ``--layer``, with shapes and the default marked."""
from __future__ import annotations

import re

import numpy as np
import pytest

import vexplain as vx
from models import close, onnx_bytes, seeded_cnn
from outputs_models import ThreeHeads, export, paddle_style
from vexplain.cli.main import main


@pytest.fixture(scope="module")
def graphs(tmp_path_factory):
    import cv2

    folder = tmp_path_factory.mktemp("outputs-cli")
    heads = folder / "heads.onnx"
    heads.write_bytes(export(ThreeHeads(), (3, 16, 16), ["boxes", "scores", "landmarks"]))
    paddle = folder / "paddle.onnx"
    paddle.write_bytes(paddle_style(onnx_bytes(seeded_cnn(seed=0), (3, 16, 16))))
    image = folder / "image.png"
    cv2.imwrite(str(image), (np.random.default_rng(0).random((16, 16, 3)) * 255).astype(np.uint8))
    return {"heads": heads, "paddle": paddle, "image": image, "folder": folder}


def run_cli(capsys, *argv) -> tuple[int, str, str]:
    code = main([str(a) for a in argv])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_several_outputs_without_output_is_a_one_line_error(capsys, graphs):
    code, out, err = run_cli(capsys, "explain", graphs["heads"], graphs["image"], "--method", "occlusion", "--out", graphs["folder"])
    assert code == 2 and "Traceback" not in err
    assert "has 3 outputs (0 'boxes' (batch, 4), 1 'scores' (batch, 3), 2 'landmarks' (batch, 10))" in err
    assert "--output NAME" in err and len(err.strip().splitlines()) == 1


@pytest.mark.parametrize("output", ["scores", "1"])
def test_output_chooses_the_explained_head(capsys, graphs, tmp_path, output):
    code, out, err = run_cli(capsys, "explain", graphs["heads"], graphs["image"], "--method", "cam", "--output", output, "--out", tmp_path)
    assert code == 0, err
    raw = np.load(tmp_path / "image.cam.npy")
    from vexplain.core.images import load_image, preprocess

    x = preprocess(load_image(graphs["image"]), None, (0.0, 0.0, 0.0), (1.0, 1.0, 1.0))[None]
    expected = vx.explain(vx.adapt(ThreeHeads(), output=1), x, method="cam")
    close(raw, expected.maps[0], atol=1e-5)
    assert f"for class {int(expected.targets[0])}" in out


def test_layers_lists_feature_maps_with_shapes_and_the_default(capsys, graphs):
    code, out, err = run_cli(capsys, "layers", graphs["paddle"], "--size", 16, 16)
    assert code == 0, err
    rows = [re.match(r"^([* ]) (\S+) +\((.*)\)$", line) for line in out.splitlines()]
    assert all(rows), out
    listed = {row[2]: (row[1], tuple(int(v) for v in row[3].split(", "))) for row in rows}
    assert listed == {
        "/features/features.0/Conv_output_0": (" ", (1, 8, 16, 16)),
        "/features/features.1/Relu_output_0": (" ", (1, 8, 16, 16)),
        "/features/features.2/Conv_output_0": (" ", (1, 16, 8, 8)),
        "/features/features.3/Relu_output_0": ("*", (1, 16, 8, 8)),
    }


def test_layers_of_a_multi_output_graph_mark_the_chosen_heads_layer(capsys, graphs):
    code, out, _ = run_cli(capsys, "layers", graphs["heads"], "--size", 16, 16, "--output", "scores")
    assert code == 0 and "* /backbone/backbone.3/Relu_output_0" in out
