"""What the browser benchmarks share: a freshly built site served on loopback, headless Debian Chromium's flags,
and a bounded wait on a page's promise."""
from __future__ import annotations

import contextlib
import sys
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
for sub in ("", "wasm"):
    if str(REPO / sub) not in sys.path:
        sys.path.insert(0, str(REPO / sub))

import build_site  # noqa: E402

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run", "--disable-quic"]
# (threads, COOP/COEP headers): a page without the headers is not cross-origin isolated and runs the single-thread
# build; with them it runs the multi-thread build on 2 threads
THREAD_MODES = ((1, False), (2, True))


@contextlib.contextmanager
def served_site(models: list[Path]) -> Iterator[str]:
    """Build the site with `models` into a temporary folder and serve it (COOP/COEP): yields its base URL."""
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "site"
        build_site.build_site(out, models)
        with serve(out) as url:
            yield url


@contextlib.contextmanager
def serve(folder: Path, headers: bool = True) -> Iterator[str]:
    """Serve a built site on a free loopback port (with COOP/COEP unless headers is False): yields its base URL."""
    server = build_site.make_server(folder, headers=headers)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/"
    finally:
        server.shutdown()
        server.server_close()


def bounded(page, expression: str, arg=None, ms: int = 300_000):
    """Await a JS function's promise in the page, failing after `ms` instead of hanging."""
    return page.evaluate(f"""async (arg) => Promise.race([({expression})(arg),
        new Promise((_, reject) => setTimeout(() => reject(new Error('timed out')), {ms}))])""", arg)


@contextlib.contextmanager
def bare_page(playwright):
    """A fresh headless Chromium with one page and no service worker (its sw.js answers 404), so a site served
    without COOP/COEP stays single-threaded instead of reloading itself isolated: yields (page, page errors)."""
    browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
    try:
        context = browser.new_context()
        context.route("**/sw.js", lambda route: route.fulfill(status=404, body="no service worker here"))
        page = context.new_page()
        errors = []
        page.on("pageerror", lambda e: errors.append(str(e)))
        yield page, errors
    finally:
        browser.close()
