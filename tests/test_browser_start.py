"""The chat page's start-up in headless Chromium: every boot stage reported with the worker's own timestamp, numpy's
extension modules compiled only when Python imports them (the chat never needs numpy.fft or numpy's test modules;
a page that does gets them on demand), and the model download started before the engine is up, arriving whole."""
from __future__ import annotations

import pytest

import build_site
from browser_wait import bounded
from test_browser_chat import chat_worker, native_answer_to, open_chat

pytestmark = pytest.mark.browser

WORKER_STAGES = ["worker", "python", "packages", "glue", "engine", "model"]


@pytest.fixture(scope="module")
def site(tmp_path_factory, tiny_models, serve_site):
    out = tmp_path_factory.mktemp("start-site")
    build_site.build_site(out, [tiny_models["F16"]])
    return serve_site(out)


def test_every_boot_stage_is_reported_on_the_workers_clock(page, site):
    page.goto(site)
    bounded(page, "() => window.pocketmindChat.ready")
    stages = page.evaluate("window.pocketmindChat.stages")
    now = page.evaluate("performance.now()")
    names = [s["stage"] for s in stages]
    assert sorted(names) == sorted(WORKER_STAGES), names
    at = {s["stage"]: s["ms"] for s in stages}
    # the worker's timestamps, placed on the page's clock: after navigation, before now, in the boot's order
    assert all(0 < ms <= now for ms in at.values()), at
    assert at["worker"] == min(at.values())
    assert at["worker"] < at["python"] < at["packages"] < at["glue"]
    assert at["engine"] < at["model"]
    seconds = {s["stage"]: s["seconds"] for s in stages}
    # seconds since the worker started and the absolute times tell the same story
    for name in WORKER_STAGES:
        assert abs((at[name] - at["worker"]) / 1000 - (seconds[name] - seconds["worker"])) < 0.05, name


def test_numpy_extension_modules_compile_only_when_imported(page, site):
    open_chat(page, site)
    page.fill("#max-tokens", "8")
    done = bounded(page, "(q) => window.pocketmindChat.ask(q)", "the word and the")
    assert done["n_generated"] > 0
    worker = chat_worker(page)
    probe = """async (code) => {
        const py = await python;
        const value = py.runPython(code);
        const libs = Object.keys(py._module.LDSO.loadedLibsByName).map((path) => path.split('/').pop());
        return { libs, value };
    }"""
    before = worker.evaluate(probe, "import sys; ','.join(sorted(m for m in sys.modules if m.startswith('numpy.')))")
    modules = before["value"].split(",")
    assert "numpy.random" in modules  # the sampler's generator
    assert not [m for m in modules if m.startswith("numpy.fft")], modules
    assert any(lib.startswith("_multiarray_umath") for lib in before["libs"]), before["libs"]
    # loadPackage would have compiled every extension module in the wheel, these too
    unused = ("_pocketfft", "_rational_tests", "_umath_tests", "_struct_ufunc_tests", "_operand_flag_tests")
    assert not [lib for lib in before["libs"] if lib.startswith(unused)], before["libs"]
    # a page that needs one imports it: compiled there and then
    after = worker.evaluate(probe, "import numpy as np; float(np.fft.fft([3.0, 4.0]).real.sum())")
    assert after["value"] == 6.0
    assert any(lib.startswith("_pocketfft") for lib in after["libs"]), after["libs"]


def test_the_model_download_starts_before_the_engine_and_arrives_whole(page, site, native, tiny_models):
    model_file = tiny_models["F16"].name
    held = []  # the engine's wasm requests, held until the model is downloaded
    page.context.route("**/wasm/pocketmind-*.wasm", lambda route: held.append(route))
    # the model arrives while the engine cannot even be fetched: the download did not wait for it
    with page.context.expect_event("requestfinished", predicate=lambda r: r.url.endswith(model_file),
                                   timeout=120_000):
        page.goto(site)
    assert held, "the engine's wasm was never requested"
    assert page.evaluate("window.pocketmindChat.engine") is None  # no engine yet
    for route in held:
        route.continue_()
    page.context.unroute("**/wasm/pocketmind-*.wasm")
    bounded(page, "() => window.pocketmindChat.ready")
    stages = {s["stage"]: s["ms"] for s in page.evaluate("window.pocketmindChat.stages")}
    assert stages["engine"] < stages["model"]
    # the bytes that waited in JS for the engine's buffer are the model's: the answer is the native glue's
    page.click("summary:has-text('Settings')")
    page.fill("#temperature", "0")
    page.fill("#repeat-penalty", "1")
    page.fill("#max-tokens", "24")
    done = bounded(page, "(q) => window.pocketmindChat.ask(q)", "the word and the")
    expected = native_answer_to(page, native, tiny_models["F16"], "the word and the", 24)
    assert done["tokens"] == expected["done"]["tokens"]


RECORD_WORKER_MESSAGES = """(() => {
    const Original = window.Worker;
    window.workerMessages = [];
    window.Worker = class extends Original {
        constructor(...args) {
            super(...args);
            this.addEventListener("message", ({ data }) =>
                window.workerMessages.push(data.what ? `${data.type}:${data.what}` : data.type));
        }
    };
})();"""


def test_the_model_is_asked_for_before_the_engine_is_up_whether_stored_or_not(page, site, tiny_models):
    """A download's network wait, or a stored model's read (checked by WebCrypto and another thread), overlaps the
    engine's start."""
    page.context.add_init_script(RECORD_WORKER_MESSAGES)
    url = f"models/{tiny_models['F16'].name}"
    page.goto(site)  # the site's only model is the one the page boots with
    bounded(page, "() => window.pocketmindChat.ready")
    first = page.evaluate("window.workerMessages")
    assert first.index("progress:model") < first.index("ready"), first  # not stored: downloaded
    bounded(page, """(url) => new Promise((resolve) => {
        const check = () => pocketmindModelStore.hasModel(url).then((yes) => yes ? resolve() : setTimeout(check, 50));
        check(); })""", url)
    page.reload()
    bounded(page, "() => window.pocketmindChat.ready")
    again = page.evaluate("window.workerMessages")
    assert "progress:model" in again and again.index("progress:model") < again.index("ready"), again
