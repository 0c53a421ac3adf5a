"""Untrusted files and outputs: ONNX external data, sidecar JSON, ground truth, TorchScript, output paths.

Each numbered defect of the file audit has a test here that failed before the fix:
1. ONNX external data resolved against the cwd (a hostile model reads any file as scores) —
   image decoding (defect 6) is in test_hardening_images.py;
7. sidecar/metadata JSON of the wrong types; 8. CLI output writes.
"""
from __future__ import annotations

import json
import os
from pathlib import Path

import cv2
import numpy as np
import onnx
import pytest
import torch
from onnx import TensorProto, helper

import vexplain as vx
from vexplain.core.errors import InvalidInput, ModelLoadError

from hardening_files_support import one_error_line, run_cli, small_files

SECRET = b"TOP-SECRET-KEY!!"  # 16 bytes = 4 float32 scores
pytestmark = pytest.mark.filterwarnings("ignore:`torch.jit.*` is deprecated:DeprecationWarning")


# ---------------------------------------------------------------- 1. ONNX external data


def leaky_model(location: str, *, where: str = "initializer") -> onnx.ModelProto:
    """scores (N, 4) = mean over pixels of x (N, 4, 2, 2) + W, with W's 16 bytes in ``location``."""
    weight = TensorProto(name="W", data_type=TensorProto.FLOAT, dims=[4])
    weight.data_location = TensorProto.EXTERNAL
    for key, value in (("location", location), ("offset", "0"), ("length", "16")):
        entry = weight.external_data.add()
        entry.key, entry.value = key, value
    nodes = [
        helper.make_node("GlobalAveragePool", ["input"], ["pooled"]),
        helper.make_node("Flatten", ["pooled"], ["flat"]),
        helper.make_node("Add", ["flat", "W"], ["scores"]),
    ]
    initializers = [weight]
    if where == "constant":
        nodes.insert(0, helper.make_node("Constant", [], ["W"], value=weight))
        initializers = []
    elif where == "subgraph":
        body = helper.make_graph([helper.make_node("Constant", [], ["W_then"], value=weight)], "then", [], [helper.make_tensor_value_info("W_then", TensorProto.FLOAT, [4])])
        cond = helper.make_tensor("cond", TensorProto.BOOL, [], [True])
        nodes.insert(0, helper.make_node("If", ["cond"], ["W"], then_branch=body, else_branch=body))
        initializers = [cond]
    elif where == "sparse":
        indices = helper.make_tensor("W_idx", TensorProto.INT64, [4], [0, 1, 2, 3])
        initializers = []
        graph_sparse = [helper.make_sparse_tensor(weight, indices, [4])]
    graph = helper.make_graph(
        nodes, "leak", [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["N", 4, 2, 2])],
        [helper.make_tensor_value_info("scores", TensorProto.FLOAT, ["N", 4])], initializer=initializers,
    )
    if where == "sparse":
        graph.sparse_initializer.extend(graph_sparse)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)


@pytest.fixture()
def hostile(tmp_path, monkeypatch):
    """A model folder with no secret in it, and a cwd (the user's 'home') holding the secret."""
    models, home = tmp_path / "models", tmp_path / "home"
    models.mkdir()
    (home / ".ssh").mkdir(parents=True)
    (home / ".ssh" / "id_rsa").write_bytes(SECRET)
    monkeypatch.chdir(home)
    return models, home


def refused(call) -> str:
    with pytest.raises(ModelLoadError) as caught:
        call()
    message = str(caught.value)
    assert "\n" not in message
    return message


def test_relative_location_is_not_read_from_the_cwd(hostile, capsys):
    models, home = hostile
    path = models / "leak.onnx"
    onnx.save(leaky_model(".ssh/id_rsa"), str(path))
    message = refused(lambda: vx.adapt(str(path)))
    assert "does not exist" in message and "'W'" in message
    code, out, err = run_cli(capsys, "explain", path, home / "none.png", "--method", "occlusion")
    assert code == 2 and SECRET.decode() not in out
    assert "external data" in one_error_line(err)


@pytest.mark.parametrize("kind", ["absolute", "dotdot", "symlink", "symlinked_dir"])
def test_locations_leaving_the_model_folder_are_refused(hostile, capsys, kind):
    models, home = hostile
    secret = home / ".ssh" / "id_rsa"
    location = {"absolute": str(secret), "dotdot": "../home/.ssh/id_rsa", "symlink": "weights.bin", "symlinked_dir": "data/id_rsa"}[kind]
    if kind == "symlink":
        (models / "weights.bin").symlink_to(secret)
    if kind == "symlinked_dir":
        (models / "data").symlink_to(home / ".ssh", target_is_directory=True)
    path = models / "leak.onnx"
    onnx.save(leaky_model(location), str(path))
    message = refused(lambda: vx.adapt(str(path)))
    assert {"absolute": "absolute path", "dotdot": "'..'", "symlink": "outside the model's folder", "symlinked_dir": "outside the model's folder"}[kind] in message
    image = home / "x.png"
    cv2.imwrite(str(image), np.zeros((2, 2, 3), np.uint8))
    code, out, err = run_cli(capsys, "explain", path, image, "--method", "occlusion", "--out", home / "out")
    assert code == 2 and out == ""
    one_error_line(err)


@pytest.mark.parametrize("where", ["constant", "subgraph", "sparse"])
def test_every_kind_of_tensor_is_checked(hostile, where):
    models, _ = hostile
    path = models / "leak.onnx"
    onnx.save(leaky_model(".ssh/id_rsa", where=where), str(path))
    assert "does not exist" in refused(lambda: vx.adapt(str(path)))
    (models / "ok.bin").write_bytes(np.arange(4, dtype=np.float32).tobytes())
    onnx.save(leaky_model("../models/ok.bin", where=where), str(path))
    assert "'..'" in refused(lambda: vx.adapt(str(path)))


def test_bytes_and_protos_with_external_data_need_a_folder(hostile):
    models, home = hostile
    model = leaky_model(".ssh/id_rsa")
    assert "no folder" in refused(lambda: vx.adapt(model.SerializeToString()))
    assert "no folder" in refused(lambda: vx.adapt(model))
    (models / "w.bin").write_bytes(np.arange(4, dtype=np.float32).tobytes())
    proto = leaky_model("w.bin")
    adapter = vx.adapt(proto, base_dir=models)
    x = torch.zeros(1, 4, 2, 2)
    np.testing.assert_array_equal(adapter.forward(x).numpy(), [[0.0, 1.0, 2.0, 3.0]])
    assert proto.graph.initializer[0].data_location == TensorProto.EXTERNAL  # the caller's proto is untouched
    assert "does not exist" in refused(lambda: vx.adapt(leaky_model(".ssh/id_rsa"), base_dir=models))


def test_a_session_from_a_path_is_reread_under_the_same_rules(hostile):
    import onnxruntime as ort

    models, home = hostile
    (models / "id_rsa").write_bytes(b"x" * 16)  # so ORT itself can open the file it resolves
    path = models / "leak.onnx"
    onnx.save(leaky_model("id_rsa"), str(path))
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    assert vx.adapt(session).capabilities  # inside the folder: fine
    (models / "id_rsa").unlink()  # swapped for a link after ORT read it: vexplain's own re-read is refused
    (models / "id_rsa").symlink_to(home / ".ssh" / "id_rsa")
    assert "outside the model's folder" in refused(lambda: vx.adapt(session))


def test_truncated_or_out_of_range_external_data_is_refused(tmp_path):
    (tmp_path / "w.bin").write_bytes(b"1234")
    path = tmp_path / "m.onnx"
    onnx.save(leaky_model("w.bin"), str(path))
    assert "truncated" in refused(lambda: vx.adapt(str(path)))


def test_legitimate_external_data_loads_from_any_cwd(tmp_path, monkeypatch):
    from models import images, onnx_bytes, seeded_cnn

    model = seeded_cnn(seed=3).eval()
    x = images(2, size=16, seed=1)
    folder = tmp_path / "exported"
    folder.mkdir()
    inline = tmp_path / "inline.onnx"
    inline.write_bytes(onnx_bytes(model, (3, 16, 16)))
    proto = onnx.load(str(inline))
    external = folder / "model.onnx"
    onnx.save(proto, str(external), save_as_external_data=True, all_tensors_to_one_file=True, location="model.data", size_threshold=0)
    proto = onnx.load(str(inline))  # onnx.save moved the first copy's tensors out
    assert (folder / "model.data").stat().st_size > 0
    assert any(t.data_location == TensorProto.EXTERNAL for t in onnx.load(str(external), load_external_data=False).graph.initializer)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    expected = vx.explain(vx.adapt(proto), x, method="occlusion", window=4, stride=4)
    for method in ("occlusion", "cam"):
        loaded = vx.explain(vx.adapt(str(external)), x, method=method, window=4, stride=4) if method == "occlusion" else vx.explain(vx.adapt(str(external)), x, method=method)
        reference = expected if method == "occlusion" else vx.explain(vx.adapt(proto), x, method=method)
        np.testing.assert_array_equal(loaded.maps, reference.maps)
        np.testing.assert_array_equal(loaded.scores, reference.scores)


# ---------------------------------------------------------------- 7. sidecar and metadata JSON


@pytest.fixture(scope="module")
def small(tmp_path_factory) -> dict[str, Path]:
    """A tiny 3-class-of-5 ONNX CNN (16×16 input) and one image."""
    return small_files(tmp_path_factory.mktemp("small"))


def sidecar_model(tmp_path: Path, small: dict[str, Path], content: bytes) -> Path:
    model = tmp_path / "net.onnx"
    model.write_bytes(small["model"].read_bytes())
    (tmp_path / "net.json").write_bytes(content)
    return model


BAD_SIDECARS = {
    "binary": (b"\x89PNG\r\n\x1a\n\x00\xff\xfe" * 10, "not UTF-8"),
    "deep": (b"[" * 100_000 + b"]" * 100_000, "nested"),
    "deep_small": (json.dumps({"mean": [1, 2, 3], "extra": json.loads("[" * 40 + "]" * 40)}).encode(), "nested more than"),
    "mean_text": (b'{"mean": "abc"}', "'mean' must be a list of 3 finite numbers"),
    "std_zero": (b'{"std": [1, 0, 1]}', "'std' must be a list of 3 finite numbers > 0"),
    "classes_int": (b'{"class_names": 5}', "'class_names' must be a list of"),
    "classes_text": (b'{"class_names": "catdog"}', "'class_names' must be a list of"),
    "size_text": (b'{"input_size": "ab"}', "'input_size' must be [height, width]"),
    "size_bool": (b'{"input_size": [true, 16]}', "'input_size' must be [height, width]"),
    "size_huge": (b'{"input_size": [100000000, 16]}', "'input_size' must be [height, width]"),
    "not_object": (b"[1, 2]", "must be a JSON object"),
    "huge": (b'{"x": "' + b"a" * (2 << 20) + b'"}', "the limit is"),
    "malformed": (b'{"mean": [1, 2,', "not valid JSON"),
}


@pytest.mark.parametrize("case", sorted(BAD_SIDECARS))
def test_bad_sidecars_are_one_line_errors(tmp_path, small, capsys, case):
    content, expected = BAD_SIDECARS[case]
    model = sidecar_model(tmp_path, small, content)
    code, out, err = run_cli(capsys, "explain", model, small["image"], "--method", "cam", "--out", tmp_path / "out")
    line = one_error_line(err)
    assert code == 2 and expected in line and "net.json" in line, line


def test_a_good_sidecar_is_used(tmp_path, small, capsys):
    model = sidecar_model(tmp_path, small, json.dumps({"class_names": list("abcde"), "input_size": [16, 16], "mean": [0.5] * 3, "std": [0.25] * 3}).encode())
    code, out, err = run_cli(capsys, "explain", model, small["image"], "--method", "cam", "--target", "c", "--at", "model", "--out", tmp_path / "out")
    assert code == 0, err
    assert "for class 2 'c'" in out
    assert np.load(tmp_path / "out" / "img.cam.npy").shape == (16, 16)


@pytest.mark.parametrize("value, expected", [('"catdog"', "'class_names' must be"), ("not json", "not valid JSON"), ('{"a": 1}', "'mean' must be")])
def test_onnx_metadata_props_are_checked(tmp_path, small, value, expected):
    proto = onnx.load(str(small["model"]))
    key = "class_names" if "catdog" in value else "mean"
    entry = proto.metadata_props.add()
    entry.key, entry.value = f"vexplain.{key}", value
    with pytest.raises(ModelLoadError) as caught:
        vx.adapt(proto.SerializeToString())
    assert expected in str(caught.value) and "\n" not in str(caught.value)


# ---------------------------------------------------------------- 8. output files


def test_out_naming_an_existing_file_is_one_line(tmp_path, small, capsys):
    taken = tmp_path / "results"
    taken.write_text("keep me")
    for argv in (("explain", small["model"], small["image"], "--method", "cam"), ("demo", "--scenes", "1")):
        code, out, err = run_cli(capsys, *argv, "--out", taken)
        assert code == 2 and "is an existing file" in one_error_line(err)
    assert taken.read_text() == "keep me"


def test_a_failed_image_write_is_an_error(tmp_path, small, capsys):
    out = tmp_path / "out"
    (out / "img.cam.png").mkdir(parents=True)  # cv2.imwrite returned False here and exit was 0
    code, stdout, err = run_cli(capsys, "explain", small["model"], small["image"], "--method", "cam", "--size", 16, 16, "--out", out)
    assert code == 2 and "img.cam.png" in one_error_line(err) and stdout == ""


def test_an_encoder_failure_is_an_error(tmp_path, monkeypatch):
    exp = vx.explain(vx.adapt(small_model_bytes()), np.zeros((1, 3, 16, 16), np.float32), method="cam")
    monkeypatch.setattr(cv2, "imencode", lambda *a, **k: (False, None))
    with pytest.raises(vx.OutputError, match="could not encode"):
        exp.save(tmp_path, "x")
    assert list(tmp_path.iterdir()) == []


def small_model_bytes() -> bytes:
    from models import onnx_bytes, seeded_cnn

    return onnx_bytes(seeded_cnn(seed=2), (3, 16, 16))


@pytest.mark.parametrize("target", ["png", "npy"])
def test_symlinks_at_output_names_are_replaced_not_followed(tmp_path, small, capsys, target):
    out = tmp_path / "out"
    out.mkdir()
    victim = tmp_path / "victim.txt"
    victim.write_text("precious")
    link = out / f"img.cam.{target}"
    link.symlink_to(victim)
    code, stdout, err = run_cli(capsys, "explain", small["model"], small["image"], "--method", "cam", "--size", 16, 16, "--at", "model", "--out", out)
    assert code == 0, err
    assert victim.read_text() == "precious"
    assert not link.is_symlink() and link.is_file()
    if target == "npy":
        assert np.load(link).shape == (16, 16)
    assert sorted(p.name for p in out.iterdir()) == ["img.cam.npy", "img.cam.png"]  # no temporary left


def test_written_files_keep_the_umask_mode(tmp_path):
    exp = vx.explain(vx.adapt(small_model_bytes()), np.zeros((1, 3, 16, 16), np.float32), method="cam")
    previous = os.umask(0o022)
    try:
        png, npy = exp.save(tmp_path, "x")
    finally:
        os.umask(previous)
    assert (png.stat().st_mode & 0o777) == 0o644 and (npy.stat().st_mode & 0o777) == 0o644
    assert cv2.imread(str(png)).shape == (16, 16, 3)


# ---------------------------------------------------------------- ground-truth files of evaluate


BAD_TRUTHS = {
    "binary": (b"\xff\xfe\x00\x01" * 8, "not UTF-8"),
    "deep": (b'{"img.png": {"box": [[[[[1]]]]]}}', "nested too deeply"),
    "very_deep": (b"[" * 100_000 + b"]" * 100_000, "nested too deeply"),
    "box_text": (b'{"img.png": {"box": ["a", 0, 4, 4]}}', "a box in"),
    "box_reversed": (b'{"img.png": {"box": [8, 0, 4, 4]}}', "x0 < x1"),
    "box_nan": (b'{"img.png": {"box": [0, 0, NaN, 4]}}', "finite numbers"),
    "mask_number": (b'{"img.png": {"mask": 5}}', "a mask in"),
    "label_bool": (b'{"img.png": {"box": [0, 0, 4, 4], "label": true}}', "a label in"),
    "label_negative": (b'{"img.png": {"box": [0, 0, 4, 4], "label": -1}}', "a label in"),
    "not_object": (b"[1]", "must be a JSON object"),
}


@pytest.mark.parametrize("case", sorted(BAD_TRUTHS))
def test_bad_ground_truth_files_are_one_line_errors(tmp_path, small, case):
    from vexplain.cli.evaluate_data import folder_set

    content, expected = BAD_TRUTHS[case]
    data = tmp_path / "data"
    data.mkdir()
    (data / "img.png").write_bytes(small["image"].read_bytes())
    (data / "boxes.json").write_bytes(content)
    with pytest.raises(InvalidInput) as caught:
        folder_set(str(data), None, vx.adapt(str(small["model"])), None, (16, 16), (0, 0, 0), (1, 1, 1))
    assert expected in str(caught.value) and "\n" not in str(caught.value)


def test_a_good_ground_truth_file_loads(tmp_path, small):
    from vexplain.cli.evaluate_data import folder_set

    data = tmp_path / "data"
    data.mkdir()
    (data / "img.png").write_bytes(small["image"].read_bytes())
    (data / "boxes.json").write_text(json.dumps({"img.png": {"box": [0, 0, 12, 10], "label": 3}}))
    found = folder_set(str(data), None, vx.adapt(str(small["model"])), None, (10, 12), (0, 0, 0), (1, 1, 1))
    assert found.labels.tolist() == [3] and found.boxes.tolist() == [[0, 0, 6, 5]]
    assert found.masks.sum() == 30


# ---------------------------------------------------------------- TorchScript archives


class _ReadsFile(torch.nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.shape[0] > 100:  # the call sits in a nested block, and in a submodule below
            return x.mean((2, 3))
        return x.mean((2, 3))[:, :1] + torch.from_file("id_rsa", size=4, dtype=torch.float32)


class _Wraps(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.inner = _ReadsFile()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.inner(x)


def test_torchscript_calling_file_operators_is_refused(hostile, capsys):
    models, home = hostile
    (home / "id_rsa").write_bytes(SECRET)
    path = models / "evil.pt"
    torch.jit.script(_Wraps()).save(str(path))
    assert "aten::from_file" in refused(lambda: vx.adapt(str(path)))
    image = home / "x.png"
    cv2.imwrite(str(image), np.zeros((4, 4, 3), np.uint8))
    code, out, err = run_cli(capsys, "explain", path, image, "--method", "occlusion", "--out", home / "out")
    assert code == 2 and SECRET.decode() not in out and "aten::from_file" in one_error_line(err)


def test_ordinary_torchscript_still_loads(tmp_path):
    from models import images, seeded_cnn

    model = seeded_cnn(seed=4).eval()
    path = tmp_path / "ok.pt"
    torch.jit.trace(model, torch.zeros(1, 3, 16, 16)).save(str(path))
    x = images(1, size=16, seed=2)
    np.testing.assert_allclose(vx.explain(vx.adapt(str(path)), x, method="saliency").maps, vx.explain(model, x, method="saliency").maps, atol=1e-5)
