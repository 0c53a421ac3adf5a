"""The README stays true: its two commands and its generated method table (its code blocks run in
tests/test_readme_commands.py)."""
from __future__ import annotations

import re
from pathlib import Path

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
    *pip_parts, pytest_part = install_test.split(" && ")
    assert pytest_part.startswith("python -m pytest") and pytest_part in ci
    for pip_part in pip_parts:  # CI says `python -m pip install --quiet ...` where the README says `pip install`
        assert pip_part.startswith("pip install ") and pip_part.removeprefix("pip install") in ci, pip_part


def test_method_table_matches_the_registry():
    assert table_in(README, "methods") == method_table(), f"run `{COMMAND}`"
