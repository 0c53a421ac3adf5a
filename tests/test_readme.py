"""The README stays true: its two commands, its generated method table, its Python quick start."""
from __future__ import annotations

import re
from pathlib import Path

import pytest

from vexplain.core.readme_tables import COMMAND, method_table, table_in

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text()


def code_blocks(language: str) -> list[str]:
    return re.findall(rf"```{language}\n(.*?)```", README, flags=re.S)


def test_readme_opens_with_the_two_commands_and_ci_runs_the_second():
    first_block = README.split("```bash\n", 1)[1].split("```", 1)[0].strip().splitlines()
    assert len(first_block) == 2
    install_demo, install_test = first_block
    assert install_demo.endswith("vexplain demo")
    assert "[test]" in install_test and "pytest" in install_test
    ci = (ROOT / ".ci" / "run").read_text()
    pip_part, pytest_part = install_test.split(" && ")
    assert pip_part.replace("pip install", "") in ci and pytest_part in ci


def test_method_table_matches_the_registry():
    assert table_in(README, "methods") == method_table(), f"run `{COMMAND}`"


def test_python_quick_start_runs(tmp_path, monkeypatch):
    from vexplain.demo.model import ASSETS

    if not (ASSETS / "demo_cnn.pt").is_file():
        pytest.fail("the shipped demo weights are missing; run python -m vexplain.demo.train")
    quick_start = code_blocks("python")[0]
    monkeypatch.chdir(tmp_path)
    (tmp_path / "demo" / "assets").mkdir(parents=True)
    (tmp_path / "demo" / "assets" / "demo_cnn.onnx").symlink_to(ASSETS / "demo_cnn.onnx")
    namespace: dict = {}
    exec(compile(quick_start, "README.md quick start", "exec"), namespace)
    assert namespace["exp"].maps.shape == (4, 64, 64)
    assert (tmp_path / "out" / "scene_0.gradcam.png").is_file()
    occ = namespace["occ"].options  # auto times the exact engines (core/engine_choice.py): any of them, and why
    assert occ["engine"] in ("incremental", "onnx", "torch") and occ["engine_reason"]
    assert namespace["onnx_exp"].maps.shape == (4, 64, 64)
