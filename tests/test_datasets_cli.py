"""``vexplain explain MODEL DIR_OR_MANIFEST --out OUT``: the data-set path of the CLI."""
from __future__ import annotations

import os
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from vexplain.cli.main import main

from datasets_support import MODEL, WEIGHTS, write_scene_manifest, write_scenes


@pytest.fixture(scope="module")
def folder(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("cli_scenes")
    write_scenes(path, 6, seed=5)
    return path


def test_folder_with_two_methods_then_resume(folder, tmp_path, capsys):
    out = tmp_path / "out"
    argv = ["explain", MODEL, str(folder), "--weights", WEIGHTS, "--out", str(out), "--methods", "gradcam,saliency", "--shard-size", "4"]
    assert main(argv) == 0
    assert "6 images x 2 method(s)" in capsys.readouterr().out
    table = pq.read_table(out)
    assert table.num_rows == 12 and set(table.column("method").to_pylist()) == {"gradcam", "saliency"}
    assert main(argv) == 0
    assert "0 rows in 0 new shard(s), 6 images already done" in capsys.readouterr().out


def test_manifest_with_label_target_and_class_name(folder, tmp_path, capsys):
    paths = sorted(folder.rglob("*.png"))[:3]
    manifest = tmp_path / "m.csv"
    manifest.write_text("path,label\n" + "".join(f"{p},1\n" for p in paths))
    assert main(["explain", MODEL, str(manifest), "--weights", WEIGHTS, "--out", str(tmp_path / "a"), "--target", "label"]) == 0
    assert pq.read_table(tmp_path / "a").column("target").to_pylist() == [1, 1, 1]
    assert main(["explain", MODEL, str(manifest), "--weights", WEIGHTS, "--out", str(tmp_path / "b"), "--target", "cross"]) == 0
    assert pq.read_table(tmp_path / "b").column("target").to_pylist() == [3, 3, 3]


@pytest.mark.parametrize(
    "extra, message",
    [
        (["--methods", "gradcam,nosuch"], "nosuch"),
        (["--option", "windw=3"], "belong to none"),
        (["--target", "-2"], "target"),
        (["--ray-address", "127.0.0.1:1"], "--engine ray"),
        (["--shard-size", "0"], "shard_size"),
    ],
)
def test_errors_are_one_line_exit_2(folder, tmp_path, capsys, extra, message):
    code = main(["explain", MODEL, str(folder), "--weights", WEIGHTS, "--out", str(tmp_path / "o"), *extra])
    err = capsys.readouterr().err
    assert code == 2 and message in err and len(err.strip().splitlines()) == 1 and "Traceback" not in err


def test_changed_run_needs_overwrite(folder, tmp_path, capsys):
    out = str(tmp_path / "o")
    assert main(["explain", MODEL, str(folder), "--weights", WEIGHTS, "--out", out, "--method", "saliency"]) == 0
    assert main(["explain", MODEL, str(folder), "--weights", WEIGHTS, "--out", out, "--method", "gradcam"]) == 2
    assert "--overwrite" in capsys.readouterr().err
    assert main(["explain", MODEL, str(folder), "--weights", WEIGHTS, "--out", out, "--method", "gradcam", "--overwrite"]) == 0


def test_image_files_with_methods_are_a_data_set(folder, tmp_path, capsys):
    paths = [str(p) for p in sorted(folder.rglob("*.png"))[:2]]
    assert main(["explain", MODEL, *paths, "--weights", WEIGHTS, "--out", str(tmp_path / "o"), "--methods", "saliency"]) == 0
    assert "2 images x 1 method(s): 2 rows in 1 new shard(s), 0 images already done" in capsys.readouterr().out
    root = Path(os.path.commonpath([str(Path(p).parent) for p in paths]))
    assert pq.read_table(tmp_path / "o").column("image").to_pylist() == [Path(p).relative_to(root).as_posix() for p in paths]


@pytest.fixture(scope="module")
def boxed(tmp_path_factory) -> Path:
    return write_scene_manifest(tmp_path_factory.mktemp("cli_boxed"), 4, seed=6)


def test_evaluate_model_data_manifest_then_resume(boxed, tmp_path, capsys):
    out = tmp_path / "out"
    argv = ["evaluate", MODEL, "--weights", WEIGHTS, "--data", str(boxed), "--out", str(out), "--methods", "gradcam,saliency",
            "--metrics", "deletion,pointing_game", "--option", "deletion.steps=8", "--shard-size", "3"]
    assert main(argv) == 0
    printed = capsys.readouterr()
    assert "| method | deletion.auc | pointing_game.baseline_hit | pointing_game.hit |" in printed.out
    assert "4 images x 2 method(s)" in printed.err and "8 rows in 2 new shard(s)" in printed.err
    table = pq.read_table(out)
    labels = [int(line.split(",")[1]) for line in boxed.read_text().splitlines()[1:]]
    assert table.num_rows == 8 and sorted(table.column("target").to_pylist()) == sorted(labels * 2)  # labels explained by default
    assert main(argv) == 0
    assert "0 rows in 0 new shard(s), 4 images already done" in capsys.readouterr().err
    assert main([*argv, "--target", "top", "--out", str(tmp_path / "top")]) == 0


@pytest.mark.parametrize(
    "extra, message",
    [
        (["--metrics", "pointing_game", "--data", "{folder}"], "needs a box for every image"),
        (["--metrics", "nosuch"], "nosuch"),
        (["--ray-address", "127.0.0.1:1"], "--engine ray"),
        (["--truth", "x.json"], "--truth belongs to the in-memory report"),
        (["--target", "cat"], "--target of a data-set evaluation"),
        (["--option", "deletion.steps=0"], "steps"),
        (["--no-weights"], "pass --weights state_dict.pt, or --random-weights"),
        (["--model", MODEL], "MODEL or --model, not both"),
    ],
)
def test_evaluate_data_set_errors_are_one_line_exit_2(boxed, folder, tmp_path, capsys, extra, message):
    weights = [] if "--no-weights" in extra else ["--weights", WEIGHTS]
    extra = [str(folder) if e == "{folder}" else e for e in extra if e != "--no-weights"]
    argv = ["evaluate", MODEL, *weights, "--data", str(boxed), "--out", str(tmp_path / "o"), "--methods", "gradcam", "--metrics", "deletion", *extra]
    code = main(argv)
    err = capsys.readouterr().err
    assert code == 2 and message in err and len(err.strip().splitlines()) == 1 and "Traceback" not in err
