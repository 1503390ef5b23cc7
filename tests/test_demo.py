"""The browser demo (python -m htr.demo) driven in headless Chromium with Playwright: upload a line, read a PDF's
page, draw a line.

Needs ``requirements-demo.txt``, Playwright and a Chromium (Debian's ``chromium`` package; CI installs both).
Without a browser, skip it explicitly: ``python -m pytest -m "not browser"``. ``HTR_DEMO_SCREENSHOTS=DIR`` also
saves the screenshots there (docs/ holds the committed ones); a failure saves one beside the test's files.
"""

import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

pytestmark = pytest.mark.browser
ROOT = Path(__file__).resolve().parents[1]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def demo_url():
    pytest.importorskip("gradio", reason="pip install -r requirements-demo.txt (or -m 'not browser')")
    port = free_port()
    server = subprocess.Popen([sys.executable, "-m", "htr.demo", "--port", str(port)], cwd=ROOT,
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)  # fmt: skip
    url = f"http://127.0.0.1:{port}/"
    try:
        deadline = time.monotonic() + 180
        while True:
            try:
                with urllib.request.urlopen(url, timeout=2) as response:
                    if response.status == 200:
                        break
            except OSError:
                pass
            assert server.poll() is None, server.stdout.read()
            assert time.monotonic() < deadline, "the demo did not start in 180 s"
            time.sleep(0.5)
        yield url
    finally:
        server.terminate()
        server.wait(timeout=30)


@pytest.fixture()
def page(demo_url, tmp_path, request):
    from playwright.sync_api import sync_playwright

    browser_path = shutil.which("chromium") or shutil.which("chromium-browser")
    assert browser_path, "no Chromium found (apt-get install chromium), or skip with -m 'not browser'"
    outside = []  # requests that would leave this machine: the demo must work offline

    def route(handle):
        if handle.request.url.startswith(demo_url.rstrip("/")) or handle.request.url.startswith("data:"):
            handle.continue_()
        else:
            outside.append(handle.request.url)
            handle.abort()

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=browser_path, args=["--no-sandbox"])
        tab = browser.new_page(viewport={"width": 1280, "height": 1600})
        tab.route("**/*", route)
        tab.goto(demo_url)
        yield tab
        if getattr(request.node, "rep_call", None) is not None and request.node.rep_call.failed:
            shot = tmp_path / "failure.png"
            tab.screenshot(path=str(shot), full_page=True)
            print(f"screenshot of the failure: {shot}")
        browser.close()
    assert outside == [], f"the page fetched from the internet: {outside}"


def screenshot(tab, name: str) -> None:
    folder = os.environ.get("HTR_DEMO_SCREENSHOTS")
    if folder:
        Path(folder).mkdir(parents=True, exist_ok=True)
        tab.screenshot(path=str(Path(folder) / name), full_page=True)


def test_uploaded_line_is_read_with_boxes_and_downloads(page):
    page.locator("#upload input[type=file]").set_input_files(str(ROOT / "examples" / "line1.png"))
    page.locator("#read-upload").click()
    page.wait_for_function("() => document.querySelector('#text textarea').value.includes('station')", timeout=120_000)
    assert page.locator("#text textarea").input_value() == "Meet me at the station at half past nine."
    assert "1 line read" in page.locator("#summary").inner_text()
    page.locator("#annotated img").wait_for(timeout=30_000)
    names = page.locator("#files").inner_text().replace("\n", "")
    assert ".json" in names and ".page.xml" in names and ".alto.xml" in names
    screenshot(page, "demo_upload.png")


def test_a_chosen_page_of_an_uploaded_pdf_is_read(page, tmp_path):
    from PIL import Image

    pytest.importorskip("pypdfium2", reason="PDF pages need pypdfium2 (requirements-demo.txt)")
    first, second = (Image.open(ROOT / "examples" / name).convert("L") for name in ("line2.png", "line1.png"))
    first.save(tmp_path / "letter.pdf", save_all=True, append_images=[second], resolution=300)
    page.get_by_role("tab", name="Document").click()
    page.locator("#document input[type=file]").set_input_files(str(tmp_path / "letter.pdf"))
    page.locator("#page-number input").fill("2")
    page.locator("#read-document").click()
    page.wait_for_function("() => document.querySelector('#summary').innerText.includes('read')", timeout=120_000)
    assert "Page 2 of 2: 1 line read" in page.locator("#summary").inner_text()
    assert page.locator("#text textarea").input_value() == "Meet me at the station at half past nine."


# Pen strokes of a few letters, as polylines in x-height units (y up from the baseline), and each letter's advance:
# enough to write "it will" with a handful of strokes (a stroke costs the headless canvas about half a second).
PEN_LETTERS = {
    "i": ([[(0, 0), (0, 1)], [(0, 1.45), (0.03, 1.55)]], 0.35),
    "t": ([[(0.15, 1.8), (0.15, 0.1), (0.35, 0)], [(-0.1, 1), (0.45, 1)]], 0.6),
    "w": ([[(0, 1), (0.2, 0), (0.4, 0.8), (0.6, 0), (0.8, 1)]], 1.0),
    "l": ([[(0, 0), (0, 2)]], 0.35),
}


def pen_strokes(text: str, left: float, baseline: float, x_height: float) -> list[list[tuple[float, float]]]:
    """The polylines that write ``text`` (letters of PEN_LETTERS and spaces), slanted a little, in page pixels."""
    strokes, x = [], left
    for char in text:
        if char != " ":
            for line in PEN_LETTERS[char][0]:
                strokes.append([(x + (px + 0.15 * py) * x_height, baseline - py * x_height) for px, py in line])
        x += (PEN_LETTERS[char][1] if char != " " else 0.7) * x_height
    return strokes


def test_a_line_drawn_on_the_canvas_is_read(page):
    page.get_by_role("tab", name="Write").click()
    page.locator("#sketch button[aria-label='Brush']").click()  # what a person clicks first, too
    canvas = page.locator("#sketch canvas").first
    canvas.wait_for(timeout=30_000)
    box = canvas.bounding_box()
    for stroke in pen_strokes("it will", box["x"] + 80, box["y"] + 0.7 * box["height"], 0.25 * box["height"]):
        page.mouse.move(*stroke[0])
        page.mouse.down()
        for point in stroke[1:]:
            page.mouse.move(*point)
        page.mouse.up()
    page.locator("#read-sketch").click()
    page.wait_for_function("() => document.querySelector('#summary').innerText.includes('read')", timeout=120_000)
    assert "1 line read" in page.locator("#summary").inner_text()
    assert page.locator("#text textarea").input_value() == "it will"
    page.locator("#annotated img").wait_for(timeout=30_000)
    screenshot(page, "demo_drawn.png")
