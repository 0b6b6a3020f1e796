"""The service worker in headless Chromium: an offline reload boots and answers from Cache Storage, a rebuild is
picked up whole (never a mix of two builds), a host without COOP/COEP still gets threads after one reload, and no
request of a whole session leaves the site's origin."""
from __future__ import annotations

import json
import re
import threading
import time
from pathlib import Path
from urllib.parse import urlsplit

import pytest

import build_site
import deps
from browser_wait import TIMEOUT_MS, bounded
from test_browser_chat import chat_worker
from test_build_site import page_config

pytestmark = pytest.mark.browser
MODELS_CACHES = ["pocketmind-model-blocks-v1", "pocketmind-models-v1"]  # model-store.js's
OFFLINE_READY = "() => document.querySelector('#offline').textContent.startsWith('Available offline')"
MODEL_READY = "() => !!(window.pocketmindChat && window.pocketmindChat.card)"


class Site:
    """A built site on its own loopback server, which a test can stop (serve_site's live to the session's end)."""

    def __init__(self, out: Path, headers: bool = True):
        self.out = out
        self.server = build_site.make_server(out, "127.0.0.1", 0, headers=headers)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/"
        self.running = True

    def stop(self) -> None:
        if self.running:
            self.server.shutdown()
            self.server.server_close()
            self.running = False


@pytest.fixture
def make_site(tmp_path, tiny_models):
    sites = []

    def make(headers: bool = True, **build) -> Site:
        out = build_site.build_site(tmp_path / f"site-{len(sites)}", [tiny_models["F16"]], **build)
        sites.append(Site(out, headers))
        return sites[-1]

    yield make
    for site in sites:
        site.stop()




def wait(page, expression: str) -> None:
    """Wait for a condition; it survives the page's own reloads (polled again in each new document)."""
    page.wait_for_function(expression, timeout=TIMEOUT_MS)


def sw_build(out: Path) -> tuple[str, list]:
    """The build id and what the service worker precaches in this Chromium: its list less the plain engine builds,
    which a browser with relaxed SIMD never loads (site/wasm-features.js)."""
    text = (out / "sw.js").read_text()
    build = json.loads(re.search(r"^const BUILD = (.*);$", text, re.M).group(1))
    precache = json.loads(re.search(r"^const PRECACHE = (.*);$", text, re.M).group(1))
    plain = [entry for entry in precache if re.match(r"wasm/pocketmind-(st|mt)\.", entry[0])]
    assert len(plain) == 5  # st.js/.wasm, mt.js/.wasm/.worker.js, each with a relaxed-SIMD twin
    names = {entry[0] for entry in precache}
    assert all(re.sub(r"-(st|mt)\.", r"-\1-relaxed.", path) in names for path, _, _ in plain)
    return build, [entry for entry in precache if entry not in plain]


def ask_greedy(page, question: str) -> dict:
    page.click("summary:has-text('Settings')")
    page.fill("#temperature", "0")
    page.fill("#max-tokens", "12")
    return bounded(page, "(q) => window.pocketmindChat.ask(q)", question)


def test_offline_reload_boots_loads_the_cached_model_and_answers_without_leaving_the_origin(page, make_site):
    site = make_site()
    origin = urlsplit(site.url).netloc
    requests, failed = [], []
    # the context's events include the dedicated and pthread workers' requests and the service worker's own
    page.context.on("request", lambda r: requests.append(r))
    page.context.on("requestfailed", lambda r: failed.append(r.url))
    errors = []
    page.on("pageerror", lambda e: errors.append(str(e)))

    page.goto(site.url)
    wait(page, MODEL_READY)
    wait(page, OFFLINE_READY)
    build, precache = sw_build(site.out)
    state = page.evaluate("window.pocketmindOffline.state")
    assert state["cached"] and state["build"] == build
    assert sorted(bounded(page, "() => caches.keys()")) == [f"pocketmind-app-{build}", *MODELS_CACHES]
    assert page.evaluate("window.pocketmindChat.storage.stored") is True
    online = ask_greedy(page, "the word")

    site.stop()
    page.context.set_offline(True)
    offline_from = len(requests)
    t0 = time.perf_counter()
    page.reload()
    wait(page, MODEL_READY)
    boot_s = time.perf_counter() - t0
    print(f"\noffline reload to a loaded model: {boot_s:.1f} s; precache "
          f"{sum(n for _, _, n in precache) / 1048576:.1f} MB in {len(precache)} files")
    assert page.evaluate("window.pocketmindChat.storage.fromCache") is True
    assert "wasm-mt" in page.locator("#runtime").text_content()
    offline = ask_greedy(page, "the word")
    assert offline["text"] == online["text"] and offline["tokens"]  # the same model, the same greedy answer
    assert page.locator("#offline").text_content().startswith("Available offline")

    hosts = {urlsplit(r.url).netloc for r in requests if not r.url.startswith(("data:", "blob:"))}
    assert hosts == {origin}, hosts
    assert len([r for r in requests if r.service_worker]) >= len(precache)  # its precache fetches were seen too
    # offline, everything came from the service worker (the model from model-store's cache, without a request);
    # only the update check for sw.js may fail
    after = requests[offline_from:]
    assert after and not [r.url for r in after if r.url.split("/")[-1].startswith("tiny-")]
    assert [u for u in failed if not u.endswith("/sw.js")] == []
    assert not errors, errors


def python_stage(page) -> dict:
    return next(s for s in page.evaluate("window.pocketmindChat.stages") if s["stage"] == "python")


def worker_random(page) -> float:
    return chat_worker(page).evaluate("async () => (await python).runPython('import random; random.random()')")


def test_a_returning_visit_restores_pythons_snapshot_reseeded_and_a_damaged_one_falls_back(page, make_site):
    site = make_site()
    config = page_config(site.out / "index.html")
    snapshot = config["python"]["snapshot"]["url"]
    assert deps.sha256_file(site.out / snapshot) == config["python"]["snapshot"]["sha256"]
    build, precache = sw_build(site.out)
    assert snapshot in [name for name, _, _ in precache]
    page.goto(site.url)
    wait(page, MODEL_READY)
    wait(page, OFFLINE_READY)
    assert python_stage(page)["snapshot"] is False  # a first visit does not wait for it
    first = ask_greedy(page, "the word")

    draws = []
    for _ in range(2):
        page.reload()
        wait(page, MODEL_READY)
        assert python_stage(page)["snapshot"] is True
        draws.append(worker_random(page))
    again = ask_greedy(page, "the word")
    assert again["text"] == first["text"] and again["tokens"] == first["tokens"]
    assert draws[0] != draws[1]  # restored with one state, then reseeded: each visit draws its own numbers

    # a damaged copy in the app's cache (one byte changed): a plain start, and the chat still answers
    bounded(page, """async ([cache, url]) => { const c = await caches.open(cache);
        const key = new URL(url, location.href).href;
        const bytes = new Uint8Array(await (await c.match(key)).arrayBuffer());
        bytes[bytes.length >> 1] ^= 1;
        await c.put(key, new Response(bytes)); }""", [f"pocketmind-app-{build}", snapshot])
    warnings = []
    page.on("console", lambda m: warnings.append(m.text) if m.type == "warning" else None)
    page.reload()
    wait(page, MODEL_READY)
    assert python_stage(page)["snapshot"] is False
    assert any("snapshot does not match its sha256" in w for w in warnings), warnings
    assert ask_greedy(page, "the word")["text"] == first["text"]


def test_a_rebuild_is_offered_and_then_runs_whole(page, make_site, tiny_models):
    site = make_site()
    page.goto(site.url)
    wait(page, MODEL_READY)
    wait(page, OFFLINE_READY)
    old_build, _ = sw_build(site.out)
    page.reload()  # a returning visit: the page is now served by the service worker
    wait(page, MODEL_READY)
    assert page.evaluate("!!navigator.serviceWorker.controller")

    rule = "body { outline: 3px solid rgb(1, 2, 3); }"
    build_site.build_site(site.out, [tiny_models["F16"]], extra_css=rule)  # the same folder, one file changed
    new_build, precache = sw_build(site.out)
    assert new_build != old_build
    bounded(page, "() => window.pocketmindOffline.checkForUpdate()")
    page.locator("#update").wait_for(state="visible", timeout=TIMEOUT_MS)
    # the new build waits: this page still runs the old one, files included
    assert page.evaluate("getComputedStyle(document.body).outlineColor") != "rgb(1, 2, 3)"
    assert rule not in bounded(page, "() => fetch('style.css').then((r) => r.text())")
    assert page.evaluate("window.pocketmindOffline.state.build") == old_build

    page.click("#update button")
    wait(page, f"() => window.pocketmindOffline && window.pocketmindOffline.state.build === '{new_build}'")
    wait(page, MODEL_READY)
    assert page.evaluate("getComputedStyle(document.body).outlineColor") == "rgb(1, 2, 3)"
    assert rule in bounded(page, "() => fetch('style.css').then((r) => r.text())")
    assert page.locator("#update").is_hidden()
    assert sorted(bounded(page, "() => caches.keys()")) == [f"pocketmind-app-{new_build}", *MODELS_CACHES]
    # every file the service worker can serve is the new build's, byte for byte
    cached = bounded(page, """async () => {
        const cache = await caches.open((await caches.keys()).find((n) => n.startsWith('pocketmind-app-')));
        const out = {};
        for (const request of await cache.keys()) {
            const body = await (await cache.match(request)).arrayBuffer();
            const digest = new Uint8Array(await crypto.subtle.digest('SHA-256', body));
            out[request.url] = Array.from(digest, (b) => b.toString(16).padStart(2, '0')).join('');
        }
        return out;
    }""")
    assert cached == {site.url + path: sha for path, sha, _ in precache}


def test_a_host_without_isolation_headers_gets_threads_after_one_reload(page, make_site):
    site = make_site(headers=False)
    loads = []
    page.on("load", lambda p: loads.append(p.url))
    page.goto(site.url)
    wait(page, f"() => self.crossOriginIsolated && ({MODEL_READY})()")
    assert len(loads) == 2  # the first visit, then the one reload through the service worker
    assert page.evaluate("window.pocketmindChat.engine.variant") == "wasm-mt-relaxed"
    assert page.evaluate("window.pocketmindChat.engine.threads") >= 2
    assert "threads (cross-origin isolated)" in page.locator("#runtime").text_content()
    assert page.evaluate("sessionStorage.getItem('pocketmind-isolation-reload')") is None
    assert page.evaluate("window.pocketmindOffline.state.isolation") == "yes"
    assert ask_greedy(page, "the word")["tokens"]
    # the engine check page, now controlled, is isolated at once and threaded too
    page.goto(site.url + "engine-check.html")
    info = bounded(page, "() => window.pocketmindCheck.ready")
    assert info["variant"] == "wasm-mt-relaxed" and info["threads"] >= 2 and len(loads) == 3


def test_no_reload_loop_when_isolation_fails(page, make_site):
    site = make_site(headers=False)
    # as if this tab had reloaded once already and was still not isolated: no second reload, one thread, said so
    page.add_init_script("sessionStorage.setItem('pocketmind-isolation-reload', '1')")
    loads = []
    page.on("load", lambda p: loads.append(p.url))
    page.goto(site.url)
    wait(page, MODEL_READY)
    assert page.evaluate("crossOriginIsolated") is False
    assert page.evaluate("window.pocketmindChat.engine.variant") == "wasm-st-relaxed"
    assert "one thread" in page.locator("#offline").text_content()
    assert "not cross-origin isolated" in page.locator("#runtime").text_content()
    assert ask_greedy(page, "the word")["tokens"]
    assert len(loads) == 1
