"""Every ```bash block of README.md after the first (the install commands) runs verbatim in a
fresh folder and succeeds. A block that starts a server or needs the network says so on the line
above its fence: ``<!-- readme-test: skip (why) -->``; it is skipped, the reason is required."""
from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text()
BLOCK = re.compile(r"(?:<!-- readme-test: (?P<mark>[^>]*?) -->\n)?```bash\n(?P<body>.*?)```", re.S)
SKIP = re.compile(r"^skip \((?P<why>[^)]+)\)$")


def bash_blocks() -> list[tuple[str | None, str]]:
    """(mark, body) of each ```bash block, in order."""
    return [(m.group("mark"), m.group("body")) for m in BLOCK.finditer(README)]


BLOCKS = bash_blocks()[1:]


def test_the_readme_has_command_blocks_and_every_mark_is_understood():
    assert len(BLOCKS) >= 2
    for mark, body in BLOCKS:
        assert mark is None or SKIP.match(mark), f"unknown readme-test mark {mark!r} above:\n{body}"
    assert any(mark is None and "vexplain explain" in body for mark, body in BLOCKS)  # the quick start runs


@pytest.mark.parametrize("index", range(len(BLOCKS)))
def test_a_readme_command_block_runs_verbatim_in_a_fresh_folder(index, tmp_path):
    mark, body = BLOCKS[index]
    if mark is not None:
        pytest.skip(SKIP.match(mark).group("why"))
    environment = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"}
    done = subprocess.run(["bash", "-e", "-o", "pipefail", "-c", body], cwd=tmp_path, env=environment, capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, f"README block {index + 2} failed:\n{body}\nstdout:\n{done.stdout[-2000:]}\nstderr:\n{done.stderr[-2000:]}"
    if "vexplain explain" in body:
        assert list((tmp_path / "out").glob("*.png")) and list((tmp_path / "out").glob("*.npy"))
