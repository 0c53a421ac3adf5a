"""report.html rendered by a real headless browser (Debian's chromium): every image decodes, the
screenshot is not blank, nothing is fetched from the network. Skipped only when no browser is installed."""
from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import cv2
import numpy as np
import pytest

from vexplain.cli.main import main
from vexplain.cli.report_html import SCRIPT, png_data_uri

BROWSERS = ("/usr/bin/chromium", "chromium", "chromium-browser", "google-chrome")
BROWSER = next((found for name in BROWSERS if (found := shutil.which(name))), None)
pytestmark = pytest.mark.skipif(BROWSER is None, reason="no chromium installed (apt-get install chromium)")


def chromium(tmp_path: Path, *arguments: str) -> subprocess.CompletedProcess:
    profile = tmp_path / "profile"
    profile.mkdir(exist_ok=True)
    command = [
        BROWSER, "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
        "--disable-component-update", "--disable-sync", "--no-first-run", f"--user-data-dir={profile}", *arguments,
    ]
    return subprocess.run(command, capture_output=True, text=True, timeout=120)


def loaded_state(tmp_path: Path, page: Path) -> tuple[str | None, str | None]:
    """(data-images-loaded, data-images-total) of <html> after the load event, from the DOM."""
    result = chromium(tmp_path, "--virtual-time-budget=10000", "--dump-dom", page.as_uri())
    loaded = re.search(r'data-images-loaded="([^"]*)"', result.stdout)
    total = re.search(r'data-images-total="([^"]*)"', result.stdout)
    return (loaded and loaded.group(1)), (total and total.group(1))


@pytest.fixture(scope="module")
def report(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("report")
    code = main([
        "evaluate", "--images", "3", "--methods", "cam,gradcam", "--metrics", "deletion,pointing_game",
        "--option", "deletion.steps=10", "--out", str(out),
    ])
    assert code == 0
    return out / "report.html"


def test_every_image_of_the_report_loads(report, tmp_path):
    html = report.read_text(encoding="utf-8")
    count = html.count("<img ")
    assert count == 3 * (1 + 3)  # per image: the input, cam, gradcam, the random baseline
    assert loaded_state(tmp_path, report) == ("all", str(count))


def test_the_checker_catches_a_broken_image(tmp_path):
    page = tmp_path / "broken.html"
    good = png_data_uri(np.full((4, 4, 3), 128, np.uint8))
    page.write_text(
        f"<!DOCTYPE html><html><head><script>{SCRIPT}</script></head><body>"
        f'<img src="{good}"><img src="data:image/png;base64,bm90IGEgcG5n"></body></html>'
    )
    assert loaded_state(tmp_path, page) == ("missing 1", "2")


def test_screenshot_is_not_blank(report, tmp_path):
    shot = tmp_path / "shot.png"
    result = chromium(tmp_path, f"--screenshot={shot}", "--window-size=1200,1600", "--hide-scrollbars", report.as_uri())
    assert shot.is_file(), result.stderr[-2000:]
    picture = cv2.imread(str(shot))
    assert picture is not None and picture.shape[:2] == (1600, 1200)
    not_white = (picture < 235).any(axis=2).mean()
    saturated = (cv2.cvtColor(picture, cv2.COLOR_BGR2HSV)[..., 1] > 120).mean()
    assert not_white > 0.02, f"only {not_white:.1%} of the page is drawn"
    assert saturated > 0.001, "no coloured pixels: the plots and overlays did not render"


def test_report_is_self_contained(report):
    html = report.read_text(encoding="utf-8")
    external = re.findall(r'(?:src|href)\s*=\s*"(?!data:|#)[^"]*"|url\((?!data:)[^)]*\)|@import', html)
    assert external == []
    assert "<svg" in html and "data:image/png;base64," in html
