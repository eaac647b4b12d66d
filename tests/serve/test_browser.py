"""The page of python -m lenet5.serve in headless Chromium (Debian's chromium package, driven by
Playwright): digits drawn stroke by stroke with the mouse, an uploaded picture, nothing fetched
from outside. `pytest tests/serve/test_browser.py -s` prints the time from each stroke's last
move to the updated bars; LENET5_SERVE_SCREENSHOTS=docs/images also saves the screenshots there
(docs/serve.md shows them)."""

import base64
import importlib.util
import os
import shutil
import statistics
from pathlib import Path

import httpx
import numpy as np
import pytest
from conftest import need
from serving import DRAWINGS, drawn_png, trained_run, url  # noqa: F401 - fixtures

CHROMIUM = shutil.which("chromium")
need(CHROMIUM, "no chromium: apt-get install chromium (.ci/run does)")
need(importlib.util.find_spec("playwright"), "pip install playwright (requirements/pytorch.txt)")
from playwright import sync_api as playwright  # noqa: E402


@pytest.fixture(scope="module")
def browser():
    with playwright.sync_playwright() as p:
        # --no-sandbox: Chromium's sandbox refuses to run as root, as the tests and CI do
        chromium = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        yield chromium
        chromium.close()


@pytest.fixture
def page(browser, url):  # noqa: F811
    """The page, loaded; any request that leaves the server is refused, and counted in page.outside."""
    context = browser.new_context(viewport={"width": 1200, "height": 900}, has_touch=True)
    outside = []

    def only_the_server(route):
        if route.request.url.startswith(url) or route.request.url.startswith("data:"):
            route.continue_()
        else:
            outside.append(route.request.url)
            route.abort()

    context.route("**/*", only_the_server)
    tab = context.new_page()
    problems = []
    tab.on("pageerror", lambda error: problems.append(str(error)))
    tab.goto(url)
    tab.wait_for_function("window.lenet5 && window.lenet5.classes.length === 10")
    yield tab
    context.close()
    assert outside == [] and problems == []


def draw(page, strokes):
    """Draw strokes with mouse events on the canvas (its 280 pixels are 280 CSS pixels), each one
    once the bars show the answer to the one before, as a user watching them would."""
    box = page.locator("#pad").bounding_box()
    for points in strokes:
        before = page.evaluate("window.lenet5.latencies.length")
        page.mouse.move(box["x"] + points[0][0], box["y"] + points[0][1])
        page.mouse.down()
        for x, y in points[1:]:
            page.mouse.move(box["x"] + x, box["y"] + y, steps=6)
        page.mouse.up()
        page.wait_for_function("n => window.lenet5.latencies.length > n", arg=before)


def shown(page):
    return page.locator("#top").get_attribute("data-class")


def map_sums(page, layer):
    """The sum of each feature map's pixels on the page, for one layer."""
    return page.evaluate(
        """name => [...document.querySelectorAll(`.layer[data-layer="${name}"] canvas.map`)].map((c) => {
            const d = c.getContext("2d").getImageData(0, 0, c.width, c.height).data;
            return d.reduce((sum, v, i) => sum + (i % 4 === 3 ? 0 : v), 0);
        })""",
        layer,
    )


RED = """name => [...document.querySelectorAll(`.layer[data-layer="${name}"] canvas.map`)].flatMap((c) =>
    [...c.getContext("2d").getImageData(0, 0, c.width, c.height).data].filter((_, i) => i % 4 === 0))"""


def screenshot(page, name, tmp_path, **kwargs):
    folder = Path(os.environ.get("LENET5_SERVE_SCREENSHOTS") or tmp_path)
    folder.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=folder / name, **kwargs)


def test_a_digit_drawn_with_the_mouse_is_read_and_every_layer_shown(page, url, tmp_path):  # noqa: F811
    draw(page, DRAWINGS["7"])
    assert shown(page) == "7" and page.inner_text("#top").startswith("7 (")
    bars = page.locator("#bars li")
    assert bars.count() == 10 and page.locator("#bars li.best").get_attribute("data-class") == "7"
    assert page.locator("#steps figure").count() == 5
    for layer, count in (("c1", 6), ("s2", 6), ("c3", 16), ("s4", 16)):
        sums = map_sums(page, layer)
        assert len(sums) == count and any(sums), layer
    assert all(map_sums(page, "c1"))  # each of C1's six filters responds to a stroke somewhere
    # C1's maps as the page draws them are the API's values for the canvas: brightness v / max |v|.
    canvas = base64.b64decode(page.evaluate("pad.toDataURL('image/png')").split(",")[1])
    answer = httpx.post(url + "api/predict", content=canvas, timeout=60).json()
    c1 = np.array(next(layer["values"] for layer in answer["layers"] if layer["name"] == "c1"))
    drawn = np.array(page.evaluate(RED, "c1")).reshape(c1.shape)
    np.testing.assert_allclose(drawn, 255 * np.clip(c1, 0, None) / np.abs(c1).max(), atol=1.01)
    for layer in ("c5", "f6", "output"):
        assert page.locator(f'.layer[data-layer="{layer}"] canvas.units').count() == 1
    screenshot(page, "serve-page.png", tmp_path, full_page=True)
    screenshot(page, "serve-draw.png", tmp_path, clip={"x": 0, "y": 0, "width": 1200, "height": 520})
    page.click("#clear")
    assert shown(page) is None and page.locator("#steps figure").count() == 0


def test_every_stroke_updates_the_bars(page):
    """Four digits twice, cleared in between: each stroke's answer reaches the bars."""
    strokes = 0
    for _ in range(2):
        for digit in ("1", "0", "4", "7"):
            page.click("#clear")
            draw(page, DRAWINGS[digit])
            strokes += len(DRAWINGS[digit])
            assert shown(page) == digit
    latencies = page.evaluate("window.lenet5.latencies")
    assert len(latencies) == strokes
    print(
        f"\nfrom a stroke's last move to the updated bars: median {statistics.median(latencies):.0f} ms over "
        f"{strokes} strokes (min {min(latencies):.0f}, max {max(latencies):.0f})"
    )


def test_an_uploaded_picture_is_read_in_place_of_a_drawing(page, tmp_path):
    picture = tmp_path / "four.png"
    picture.write_bytes(drawn_png(DRAWINGS["4"]))
    page.set_input_files("#file", str(picture))
    page.wait_for_function("document.querySelector('#top').dataset.class === '4'")
    assert page.locator('.layer[data-layer="c3"] canvas.map').count() == 16
    (tmp_path / "notes.png").write_text("not a picture")
    page.set_input_files("#file", str(tmp_path / "notes.png"))
    page.wait_for_function("document.querySelector('#status').classList.contains('error')")
    assert "not an image" in page.inner_text("#status")


def test_a_digit_drawn_with_a_finger_is_read(page):
    """Touch events, as a phone sends them (through the DevTools protocol: Playwright has no touch move)."""
    box = page.locator("#pad").bounding_box()
    touch = page.context.new_cdp_session(page)

    def send(kind, *points):
        points = [{"x": box["x"] + x, "y": box["y"] + y} for x, y in points]
        touch.send("Input.dispatchTouchEvent", {"type": kind, "touchPoints": points})

    ((start, end),) = DRAWINGS["1"]
    send("touchStart", start)
    for t in np.linspace(0, 1, 20):
        send("touchMove", tuple(np.add(start, t * np.subtract(end, start))))
    send("touchEnd")
    page.wait_for_function("window.lenet5.latencies.length >= 1")
    assert shown(page) == "1"
