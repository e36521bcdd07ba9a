"""Session fixtures shared by the notebook and book tests.

Loaded as a pytest plugin (``pytest_plugins = ["book_fixtures"]`` in ``test_notebooks.py`` and
``test_book.py``), so each fixture exists once per test session: the notebooks are executed
once (``executed_notebooks``) and the HTML is built once from those executed copies
(``built_book``), whichever of the two test files runs first.
"""

from __future__ import annotations

import functools
import http.server
import importlib.util
import sys
import threading
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
]


def load_build_module():
    """Import ``book/build.py`` (not a package) as the module ``rhel_book_build``."""
    name = "rhel_book_build"
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, ROOT / "book" / "build.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


build = load_build_module()


@pytest.fixture(scope="session")
def book_build():
    """The ``book/build.py`` module."""
    return build


@pytest.fixture(scope="session")
def executed_notebooks():
    """Execute every notebook once at the smoke profile; ``{file name: NotebookRun}``."""
    runs = build.execute_notebooks(profile="smoke", out_dir=build.EXECUTED)
    return {run.name: run for run in runs}


@pytest.fixture(scope="session")
def built_book(executed_notebooks) -> Path:
    """Build ``_build/html`` from the executed notebooks (no second execution)."""
    failed = {name: run.error for name, run in executed_notebooks.items() if not run.ok}
    if failed:
        pytest.fail(f"cannot build the book, notebooks failed: {failed}")
    index = build.build_html(executed_dir=build.EXECUTED, quiet=True)
    return index.parent


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    extensions_map = {
        **http.server.SimpleHTTPRequestHandler.extensions_map,
        ".js": "text/javascript",
        ".mjs": "text/javascript",
        ".svg": "image/svg+xml",
        ".woff": "font/woff",
        ".woff2": "font/woff2",
    }

    def log_message(self, format, *args):  # noqa: A002 - signature of the base class
        pass


@pytest.fixture(scope="session")
def book_server(built_book):
    """Serve the built site on 127.0.0.1 (free port); yields the base URL."""
    handler = functools.partial(_QuietHandler, directory=str(built_book))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, name="book-server", daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)


@pytest.fixture(scope="session")
def browser():
    """Headless Debian Chromium driven by Playwright (never a downloaded browser)."""
    if not CHROMIUM.exists():
        pytest.fail(
            f"{CHROMIUM} not found: the browser test of the book needs Debian's Chromium. "
            "Install it with `apt-get install -y chromium` (as root; `make test` does this). "
            "Do not run `playwright install`."
        )
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        pytest.fail("the Python package `playwright` is missing: pip install -e '.[book]'")
    with sync_playwright() as pw:
        instance = pw.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            yield instance
        finally:
            instance.close()
