"""The built book works offline in a real browser.

The HTML is built once per session from the notebooks executed by ``test_notebooks.py``'s
fixture (``tests/book_fixtures.py``), served on 127.0.0.1 and opened in Debian's Chromium
through Playwright. For every page of ``_toc.yml`` (and the search page): HTTP 200, no failed
request, no request to another host, no console error, typeset mathematics, loaded images,
rendered widget snapshots and responsive ``to_jshtml`` animations. A full-page screenshot of
each page is saved under ``_build/screenshots/``.
"""

from __future__ import annotations

import sys
from pathlib import Path
from urllib.parse import urlsplit

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
pytest.register_assert_rewrite("book_fixtures")
pytest_plugins = ["book_fixtures"]
# One xdist worker runs every book test, so the notebooks are executed and built only once.
pytestmark = pytest.mark.xdist_group("book")

from book_fixtures import ROOT, build  # noqa: E402

SCREENSHOTS = ROOT / "_build" / "screenshots"
TOC_PAGES = [f"{name}.html" for name in build.toc_docnames()]
SEARCH_WORD = "neuromorphic"  # appears in book/intro.md
PAGES = [*TOC_PAGES, f"search.html?q={SEARCH_WORD}"]
TIMEOUT_MS = 30_000

JS_MATH_READY = """(n) => document.querySelectorAll('mjx-container').length >= n"""
JS_IMAGES_SETTLED = """() => Array.from(document.images).every((img) => img.complete)"""
JS_BROKEN_IMAGES = """() => Array.from(document.images)
    .filter((img) => !(img.complete && img.naturalWidth > 0))
    .map((img) => (img.id || '') + ' ' + (img.getAttribute('src') || '<no src>').slice(0, 80))"""


class PageLog:
    """Everything a page did on the network and the console."""

    def __init__(self, page, base_url: str):
        self.base = urlsplit(base_url)
        self.external: list[str] = []
        self.failed: list[str] = []
        self.console_errors: list[str] = []
        page.on("request", self._on_request)
        page.on("requestfailed", self._on_failed)
        page.on("response", self._on_response)
        page.on("console", self._on_console)
        page.on("pageerror", lambda exc: self.console_errors.append(f"uncaught: {exc}"))

    def _on_request(self, request):
        url = urlsplit(request.url)
        if url.scheme in ("data", "blob", "about", "javascript"):
            return
        if url.hostname != "127.0.0.1":
            self.external.append(request.url)

    def _on_failed(self, request):
        self.failed.append(f"{request.url} ({request.failure})")

    def _on_response(self, response):
        if response.status >= 400:
            self.failed.append(f"{response.url} (HTTP {response.status})")

    def _on_console(self, message):
        if message.type == "error":
            location = message.location or {}
            where = f" at {location.get('url', '?')}:{location.get('lineNumber', '?')}"
            self.console_errors.append(message.text + where)

    def problems(self) -> list[str]:
        out = [f"request to an outside host: {u}" for u in self.external]
        out += [f"failed request: {u}" for u in self.failed]
        out += [f"console error: {m}" for m in self.console_errors]
        return out


def open_page(browser, base_url: str, path: str):
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    page = context.new_page()
    page.set_default_timeout(TIMEOUT_MS)
    log = PageLog(page, base_url)
    response = page.goto(f"{base_url}/{path}", wait_until="load")
    page.wait_for_load_state("networkidle")
    return context, page, log, response


def screenshot_path(path: str) -> Path:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    name = path.split("?")[0].removesuffix(".html").replace("/", "__")
    return SCREENSHOTS / f"{name}.png"


def check_math(page) -> list[str]:
    n_math = page.locator("span.math, div.math").count()
    if n_math == 0:
        return []
    try:
        page.wait_for_function(JS_MATH_READY, arg=n_math, timeout=TIMEOUT_MS)
    except Exception:
        n_done = page.locator("mjx-container").count()
        return [f"MathJax typeset {n_done} of {n_math} math elements"]
    n_errors = page.locator("mjx-merror").count()
    return [f"{n_errors} MathJax errors (mjx-merror)"] if n_errors else []


def check_widgets(page) -> list[str]:
    n_views = page.locator('script[type="application/vnd.jupyter.widget-view+json"]').count()
    if n_views == 0:
        return []
    try:
        page.wait_for_function(
            "(n) => document.querySelectorAll('.jupyter-widgets').length >= n", arg=n_views
        )
    except Exception:
        return [f"{n_views} saved widget views but the widget manager rendered none"]
    return []


def check_images(page) -> list[str]:
    page.evaluate("() => window.scrollTo(0, document.body.scrollHeight)")
    try:
        page.wait_for_function(JS_IMAGES_SETTLED)
    except Exception:
        pass  # reported below
    page.evaluate("() => window.scrollTo(0, 0)")
    return [f"image not loaded: {b}" for b in page.evaluate(JS_BROKEN_IMAGES)]


def frame_state(animation):
    """(slider value, fingerprint of the displayed frame) of one to_jshtml animation."""
    value = animation.locator("input.anim-slider").input_value()
    src = animation.locator("img").first.evaluate(
        "(img) => img.src.length + ':' + img.src.slice(-48)"
    )
    return int(value), src


def check_scrubbers(page) -> list[str]:
    problems = []
    animations = page.locator("div.animation")
    for i in range(animations.count()):
        anim = animations.nth(i)
        anim.scroll_into_view_if_needed()
        anim.locator("input.anim-slider").wait_for()
        page.wait_for_function(
            "(el) => el.querySelector('img').src.startsWith('data:')",
            arg=anim.element_handle(),
        )
        value0, frame0 = frame_state(anim)
        anim.locator('button[title="Next frame"]').click()
        page.wait_for_timeout(100)
        value1, frame1 = frame_state(anim)
        if value1 == value0 or frame1 == frame0:
            problems.append(f"animation {i}: 'Next frame' did not change the frame ({value0})")
        anim.locator('button[title="Play"]').click()
        page.wait_for_timeout(700)
        anim.locator('button[title="Pause"]').click()
        value2, frame2 = frame_state(anim)
        if value2 <= value1 or frame2 == frame1:
            problems.append(f"animation {i}: 'Play' did not advance the frames ({value1})")
    return problems


@pytest.mark.parametrize("path", PAGES)
def test_page_renders_offline(path, browser, book_server):
    context, page, log, response = open_page(browser, book_server, path)
    try:
        assert response is not None and response.status == 200, f"{path}: HTTP error"
        if path.startswith("search.html"):
            page.locator("#search-results ul.search li").first.wait_for()
        problems = check_math(page) + check_widgets(page) + check_images(page)
        page.screenshot(path=str(screenshot_path(path)), full_page=True)
        problems += check_scrubbers(page)
        page.wait_for_load_state("networkidle")
        problems += log.problems()
    finally:
        context.close()
    assert not problems, f"{path}:\n  " + "\n  ".join(problems)


def test_search_finds_a_word_of_the_introduction(browser, book_server):
    context, page, log, response = open_page(browser, book_server, f"search.html?q={SEARCH_WORD}")
    try:
        assert response.status == 200
        results = page.locator("#search-results ul.search li")
        results.first.wait_for()
        hrefs = page.eval_on_selector_all(
            "#search-results ul.search li a", "(links) => links.map((a) => a.href)"
        )
        problems = log.problems()
    finally:
        context.close()
    assert any("book/intro.html" in h for h in hrefs), f"search results: {hrefs}"
    assert not problems, problems


def test_index_redirects_to_the_introduction(browser, book_server):
    context, page, log, response = open_page(browser, book_server, "index.html")
    try:
        page.wait_for_url("**/book/intro.html")
        title = page.title()
        problems = log.problems()
    finally:
        context.close()
    assert "Recurrent Hamiltonian Echo Learning" in title
    assert not problems, problems


def test_site_references_no_outside_resources(built_book):
    assert build.find_external_resources(built_book) == []


def test_notebook_pages_show_executed_outputs(built_book):
    for name in build.toc_docnames():
        if build.toc_source(name).suffix != ".ipynb":
            continue
        html = (built_book / f"{name}.html").read_text(encoding="utf-8")
        assert "cell_output" in html, f"{name}: no outputs rendered (not the executed copy?)"
        assert "tag_injected-parameters" in html, f"{name}: the injected parameters are missing"


def test_book_check_page_exercises_every_feature(browser, book_server):
    """The check notebook must contain what the generic page test is meant to verify."""
    context, page, log, response = open_page(browser, book_server, "notebooks/00_book_check.html")
    try:
        assert page.locator("div.math").count() >= 1, "no display math"
        assert page.locator("span.math").count() >= 1, "no inline math"
        assert page.locator("div.animation").count() >= 1, "no to_jshtml animation"
        assert page.locator("img[src*='_images/']").count() >= 1, "no static figure"
        page.locator(".jupyter-widgets .widget-slider").first.wait_for()
        widget_img = page.locator(".jupyter-widgets img").first
        widget_img.wait_for()
        assert widget_img.evaluate("(img) => img.naturalWidth") > 0, "widget figure missing"
    finally:
        context.close()
