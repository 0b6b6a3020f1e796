"""The built site in headless Chromium: the engine boots in a worker, threads when cross-origin isolated, and
generates exactly what the native build generates."""
from __future__ import annotations

import pytest

import build_site
from test_wasm_parity import native_greedy
from pocketmind import Model

pytestmark = pytest.mark.browser


@pytest.fixture(scope="module")
def site(tmp_path_factory, tiny_models, smollm2, serve_site):
    out = tmp_path_factory.mktemp("site")
    build_site.build_site(out, [tiny_models["F16"], smollm2])
    (out / "models" / "broken.gguf").write_bytes(b"not a model" * 100)
    return serve_site(out) + "engine-check.html"


def boot(page, url):
    errors = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.goto(url)
    info = page.evaluate("window.pocketmindCheck.ready")
    assert not errors, errors
    return info


def test_engine_boots_threaded_and_matches_native(page, site, native, tiny_models):
    info = boot(page, site)
    assert page.evaluate("crossOriginIsolated") is True
    assert info["variant"] == "wasm-mt-relaxed" and info["threads"] >= 1  # Chromium has relaxed SIMD
    assert "wasm-mt" in page.locator("#runtime").text_content()
    with Model.from_file(tiny_models["F16"], native) as model:
        tokens = model.tokenize("the word and the other").tolist()
    greedy = page.evaluate("([t, n]) => window.pocketmindCheck.greedy(t, n)", [tokens, 32])
    assert greedy == native_greedy(native, tiny_models["F16"], tokens, 32, ignore_eog=True)


def test_a_browser_without_relaxed_simd_runs_the_plain_build(page, site, native, tiny_models):
    # as Safari would: wasm-features.js served with a probe whose instruction no engine knows (0xfd 0xff 0x0f in
    # place of the relaxed dot product's 0xfd 0x92 0x02), so WebAssembly.validate refuses it
    features = (build_site.SITE / "wasm-features.js").read_text()
    unknown = features.replace("0xfd, 0x92, 0x02", "0xfd, 0xff, 0x0f")
    assert unknown != features
    page.route("**/wasm-features.js", lambda route: route.fulfill(body=unknown, content_type="text/javascript"))
    info = boot(page, site)
    assert info["variant"] == "wasm-mt" and info["threads"] >= 1
    with Model.from_file(tiny_models["F16"], native) as model:
        tokens = model.tokenize("the word and the other").tolist()
    greedy = page.evaluate("([t, n]) => window.pocketmindCheck.greedy(t, n)", [tokens, 16])
    assert greedy == native_greedy(native, tiny_models["F16"], tokens, 16, ignore_eog=True)


def test_smollm2_answers_in_the_page_as_natively(page, site, native, smollm2):
    boot(page, site)
    page.evaluate("(f) => window.pocketmindCheck.use(f)", f"models/{smollm2.name}")
    assert page.locator("#download").evaluate("e => e.value") == 1
    page.fill("#prompt", "What is the capital of France?")
    page.fill("#max-tokens", "32")
    page.click("#run")
    page.locator("#speed", has_text="tokens/s").wait_for(timeout=120_000)  # no string eval: the CSP forbids it
    answer = page.locator("#output").text_content()
    chat = "<|im_start|>user\nWhat is the capital of France?<|im_end|>\n<|im_start|>assistant\n"
    with Model.from_file(smollm2, native) as model:
        tokens = model.tokenize(chat, add_special=False, parse_special=True).tolist()
        expected = model.detokenize(native_greedy(native, smollm2, tokens, 32, n_ctx=2048)).decode("utf-8")
    assert answer == expected
    assert "Paris" in answer


def test_a_broken_model_shows_an_error_and_the_page_recovers(page, site, tiny_models):
    boot(page, site)
    page.evaluate("""() => {
        const o = document.createElement('option');
        o.value = 'models/broken.gguf'; o.dataset.bytes = '1100'; o.textContent = 'not a model';
        document.querySelector('#model').append(o);
    }""")
    message = page.evaluate("(f) => window.pocketmindCheck.use(f).then(() => 'loaded', e => e.message)",
                            "models/broken.gguf")
    assert "cannot load model" in message
    assert page.locator("#error").is_visible()
    page.evaluate("(f) => window.pocketmindCheck.use(f)", f"models/{tiny_models['F16'].name}")
    assert len(page.evaluate("window.pocketmindCheck.greedy([1, 270], 3)")) == 3


def test_requests_of_different_kinds_in_flight_together_each_get_their_answer(page, site, native, tiny_models):
    boot(page, site)
    with Model.from_file(tiny_models["F16"], native) as model:
        tokens = model.tokenize("the word and the other").tolist()
    # both reply with a "done" message: matched by request id, neither promise is lost or given the other's reply
    greedy, bench = page.evaluate("""([t]) => Promise.all([window.pocketmindCheck.greedy(t, 8),
                                                           window.pocketmindCheck.bench(16, 4)])""", [tokens])
    assert greedy == native_greedy(native, tiny_models["F16"], tokens, 8, ignore_eog=True)
    assert bench["pp_tps"] > 0 and bench["tg_tps"] > 0


def test_a_dead_worker_rejects_every_request_in_flight(page, site):
    boot(page, site)
    result = page.evaluate("""() => {
        const a = window.pocketmindCheck.greedy([1, 270], 400).then(() => 'answered', (e) => e.message);
        const b = window.pocketmindCheck.bench(64, 64).then(() => 'answered', (e) => e.message);
        window.pocketmindCheck.worker.dispatchEvent(new ErrorEvent('error', {message: 'simulated worker failure'}));
        return Promise.all([a, b]);
    }""")
    assert result == ["the engine failed: simulated worker failure"] * 2
