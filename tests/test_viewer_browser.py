"""The viewer driven in headless Chromium (Debian's chromium and chromium-driver, through Selenium):
load the page, upload a generated scene, run two methods, see both overlays decode, recolour them
in the page exactly as ``Explanation.overlay`` would, and check that no request left 127.0.0.1.
Skipped only when no browser or driver is installed. ``VEXPLAIN_UPDATE_SCREENSHOTS=1`` also writes
the screenshot to docs/images/viewer.png."""
from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from urllib.parse import urlsplit

import cv2
import numpy as np
import pytest

from viewer_helpers import decode_png, demo_model, png_of, scene

import vexplain as vx
from vexplain.core.images import preprocess
from vexplain.viewer.app import create_app
from vexplain.viewer.server import start_in_thread

webdriver = pytest.importorskip("selenium.webdriver", reason="the browser test needs selenium (test extra)")
BROWSER = next((found for name in ("chromium", "chromium-browser", "google-chrome") if (found := shutil.which(name))), None)
DRIVER = shutil.which("chromedriver")
pytestmark = pytest.mark.skipif(BROWSER is None or DRIVER is None, reason="no chromium/chromedriver installed (apt-get install chromium chromium-driver)")
SCREENSHOT = Path(__file__).resolve().parent.parent / "docs" / "images" / "viewer.png"
METHODS = ("gradcam", "occlusion")
WAIT_S = 120


@pytest.fixture(scope="module")
def model():
    return demo_model()


@pytest.fixture(scope="module")
def server(model):
    running = start_in_thread(create_app(model), "127.0.0.1", 0)
    try:
        yield running
    finally:
        running.stop()


@pytest.fixture(scope="module")
def browser(tmp_path_factory):
    from selenium.webdriver.chrome.options import Options
    from selenium.webdriver.chrome.service import Service

    options = Options()
    options.binary_location = BROWSER
    for argument in (
        "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--disable-background-networking",
        "--disable-component-update", "--disable-sync", "--no-first-run", "--disable-default-apps", "--hide-scrollbars",
        "--window-size=1280,1040", f"--user-data-dir={tmp_path_factory.mktemp('profile')}",
    ):
        options.add_argument(argument)
    options.set_capability("goog:loggingPrefs", {"performance": "ALL", "browser": "ALL"})
    driver = webdriver.Chrome(service=Service(executable_path=DRIVER), options=options)
    driver.set_script_timeout(WAIT_S)
    try:
        yield driver
    finally:
        driver.quit()


def wait_for(driver, script: str, timeout: float = WAIT_S):
    from selenium.webdriver.support.ui import WebDriverWait

    return WebDriverWait(driver, timeout, poll_frequency=0.1).until(lambda d: d.execute_script(script))


def overlays(driver, method: str) -> list[str]:
    """The src of ``method``'s overlay in each image's row, in upload order."""
    return driver.execute_script(f"return [...document.querySelectorAll('.cell[data-method={method}] img.overlay')].map(i => i.src)")


def set_display(driver, opacity: str, colormap: str) -> None:
    driver.execute_script(
        "const o = document.getElementById('opacity'); o.value = arguments[0]; o.dispatchEvent(new Event('input'));"
        "const c = document.getElementById('colormap'); c.value = arguments[1]; c.dispatchEvent(new Event('change'))",
        opacity, colormap,
    )


def test_upload_two_methods_recolour_and_stay_local(server, browser, model, tmp_path):
    images = {f"scene{seed}.png": scene(seed=seed)[0] for seed in (11, 15)}
    for name, image in images.items():
        (tmp_path / name).write_bytes(png_of(image))

    browser.get(server.url)
    wait_for(browser, "return document.documentElement.dataset.ready === 'true'", 60)
    names = browser.execute_script("return [...document.querySelectorAll('#method-list input[type=checkbox]')].map(b => b.value)")
    assert names == [m.name for m in vx.methods()]  # the page lists the registry
    upload = browser.find_element("id", "file-input")
    browser.execute_script("arguments[0].style.display = 'block'", upload)  # hidden behind its label
    upload.send_keys("\n".join(str(tmp_path / name) for name in images))
    browser.execute_script("arguments[0].style.display = ''", upload)
    for method in METHODS:
        box = browser.find_element("css selector", f"#method-list input[data-method='{method}']")
        if not box.is_selected():
            browser.execute_script("arguments[0].click()", box)
    browser.find_element("id", "run").click()
    count = len(images) * len(METHODS)
    wait_for(browser, f"return document.documentElement.dataset.finished === '{count}'")

    cells = browser.execute_script(
        "return [...document.querySelectorAll('#results .cell:not(.input-cell)')].map(c => "
        "({method: c.dataset.method, state: c.className, width: c.querySelector('img.overlay').naturalWidth, "
        "meta: c.querySelector('.meta').textContent, error: (c.querySelector('.error') || {}).textContent}))"
    )
    assert [c["method"] for c in cells] == list(METHODS) * len(images)
    for cell in cells:
        assert cell["state"] == "cell done" and cell["error"] is None, cell
        assert cell["width"] == 64 and "score" in cell["meta"], cell
    exps = {}
    for method in METHODS:
        batch = np.stack([preprocess(image, model.size, model.mean, model.std) for image in images.values()])
        exps[method] = vx.explain(model.adapter, batch, method=method)
    from vexplain.core.colour_scale import is_signed

    assert all(is_signed(m) for m in exps["occlusion"].maps) and not any(is_signed(m) for m in exps["gradcam"].maps)  # both paths run
    ranges = browser.execute_script("return [...document.querySelectorAll('.cell[data-method=occlusion] .range')].map(r => r.textContent)")
    assert all(text.startswith("−") and "0 at the centre" in text for text in ranges), ranges
    for method, exp in exps.items():
        shown = [decode_png(src) for src in overlays(browser, method)]
        # the default "auto": signed maps on rdbu centred at zero, unsigned ones min-max on jet, as the CLI
        assert np.array_equal(np.stack(shown), exp.overlay(list(images.values()), alpha=0.5))

    # the page recolours from the raw maps: the same pixels as Explanation.overlay
    set_display(browser, "0.35", "viridis")
    for method, exp in exps.items():
        shown = [decode_png(src) for src in overlays(browser, method)]
        assert np.array_equal(np.stack(shown), exp.overlay(list(images.values()), colormap="viridis", alpha=0.35))
    downloads = browser.execute_script("return [...document.querySelectorAll('.downloads a')].map(a => [a.download, a.href.slice(0, 5)])")
    stems = [name[:-4] for name in images]
    assert downloads == [[f"{s}.{m}.{kind}", prefix] for s in stems for m in METHODS for kind, prefix in (("npy", "blob:"), ("png", "data:"))]

    set_display(browser, "0.5", "jet")
    shot = tmp_path / "viewer.png"
    browser.save_screenshot(str(shot))
    drawn = cv2.imread(str(shot))
    assert drawn is not None and (cv2.cvtColor(drawn, cv2.COLOR_BGR2HSV)[..., 1] > 120).mean() > 0.01
    if os.environ.get("VEXPLAIN_UPDATE_SCREENSHOTS") == "1":
        shutil.copyfile(shot, SCREENSHOT)

    sent = [json.loads(entry["message"])["message"] for entry in browser.get_log("performance")]
    requests = [(m["params"]["request"]["url"], m["params"].get("documentURL", "")) for m in sent if m["method"] == "Network.requestWillBeSent"]
    page = [url for url, document in requests if document.startswith(server.url)]
    assert sum(url == server.url + "api/explain" for url in page) == count
    assert [url for url in page if not url.startswith((server.url, "data:", "blob:"))] == []
    # nor did anything else in the browser reach the network (chrome:// pages are the browser's own)
    internal = ("data", "blob", "chrome", "chrome-untrusted", "devtools")
    assert [url for url, _ in requests if urlsplit(url).scheme not in internal and not url.startswith(server.url)] == []
    errors = [entry for entry in browser.get_log("browser") if entry["level"] == "SEVERE"]
    assert errors == []


def test_a_failing_method_shows_its_one_line_error(server, browser, tmp_path):
    picture = tmp_path / "scene.png"
    picture.write_bytes(png_of(scene(seed=12)[0]))
    browser.get(server.url)
    wait_for(browser, "return document.documentElement.dataset.ready === 'true'", 60)
    upload = browser.find_element("id", "file-input")
    browser.execute_script("arguments[0].style.display = 'block'", upload)
    upload.send_keys(str(picture))
    window = browser.find_element("css selector", "#method-list input[aria-label='occlusion window']")
    browser.execute_script("arguments[0].value = 'huge'", window)
    box = browser.find_element("css selector", "#method-list input[data-method='occlusion']")
    browser.execute_script("arguments[0].click()", box)
    browser.find_element("id", "run").click()
    wait_for(browser, "return document.documentElement.dataset.finished === '2'")
    error = browser.execute_script("return document.querySelector('.cell[data-method=\"occlusion\"] .error').textContent")
    assert error.startswith("option 'window' of method 'occlusion' must be 'patch', an int >= 1")
    assert browser.execute_script("return document.querySelector('.cell[data-method=\"gradcam\"]').className") == "cell done"
