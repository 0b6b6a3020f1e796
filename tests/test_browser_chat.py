"""The chat page in headless Chromium: Pyodide and the engine in one worker, streamed answers identical to the
CPython glue's, a stop button that stops, prefix reuse, and readable errors."""
from __future__ import annotations

import json

import pytest

import build_site
from browser_wait import TIMEOUT_MS, bounded
from pocketmind import Model
from pocketmind.chat_service import ChatService
from tiny_gguf import write_parrot_llama

pytestmark = pytest.mark.browser
MARKUP = "<img src=x onerror=window.pwned=1>"


@pytest.fixture(scope="module")
def site(tmp_path_factory, tiny_models, smollm2, serve_site):
    out = tmp_path_factory.mktemp("chat-site")
    parrot = write_parrot_llama(out.parent / "parrot.gguf", MARKUP)  # answers MARKUP, whatever it is asked
    build_site.build_site(out, [tiny_models["F16"], smollm2, parrot])
    (out / "models" / "broken.gguf").write_bytes(tiny_models["F16"].read_bytes()[:5000])
    return serve_site(out)




def open_chat(page, site, model_file=None):
    errors = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.goto(site)
    bounded(page, "() => window.pocketmindChat.ready")
    if model_file:
        bounded(page, "(f) => window.pocketmindChat.use(f)", f"models/{model_file}")
    page.click("summary:has-text('Settings')")
    page.fill("#temperature", "0")  # greedy: comparable with the native glue
    assert not errors, errors
    return page


def native_answer(native, path, messages, max_tokens) -> dict:
    with Model.from_file(path, native) as model:
        service = ChatService(model, n_ctx=2048)
        request = {"messages": messages, "max_tokens": max_tokens, "settings": {"temperature": 0, "top_p": 0.95}}
        return service.answer(json.dumps(request))


def test_page_boots_threaded_and_streams_the_native_answer(page, site, native, tiny_models):
    open_chat(page, site, tiny_models["F16"].name)
    assert page.evaluate("crossOriginIsolated") is True
    assert "wasm-mt" in page.locator("#runtime").text_content()
    assert page.evaluate("window.pocketmindChat.engine.threads") >= 2
    page.fill("#max-tokens", "40")
    page.evaluate("""() => { window.chunks = 0; const el = document.querySelector('#messages');
        new MutationObserver(() => window.chunks++).observe(el, {subtree: true, characterData: true, childList: true}); }""")
    done = bounded(page, "(q) => window.pocketmindChat.ask(q)", "the word and the")
    assert page.evaluate("window.chunks") > 5  # streamed, not written at once
    system = page.input_value("#system")
    expected = native_answer(native, tiny_models["F16"], [{"role": "system", "content": system},
                                                         {"role": "user", "content": "the word and the"}], 40)
    assert done["tokens"] == expected["done"]["tokens"]
    assert done["text"] == expected["text"]
    shown = page.locator(".message.assistant").last.text_content()
    assert shown == expected["text"]
    assert "tokens/s" in page.locator("#speed").text_content()


def test_smollm2_conversation_and_prefix_reuse(page, site, native, smollm2):
    open_chat(page, site, smollm2.name)
    page.fill("#max-tokens", "48")
    first = bounded(page, "(q) => window.pocketmindChat.ask(q)", "What is the capital of France?")
    system = page.input_value("#system")
    messages = [{"role": "system", "content": system}, {"role": "user", "content": "What is the capital of France?"}]
    expected = native_answer(native, smollm2, messages, 48)
    assert first["text"] == expected["text"]
    assert "Paris" in first["text"]
    second = bounded(page, "(q) => window.pocketmindChat.ask(q)", "And of Italy?")
    assert second["n_reused"] > first["n_prompt"] // 2  # the first turn stays in the KV cache
    assert second["n_prompt_decoded"] == second["n_prompt"] - second["n_reused"] < second["n_prompt"]
    assert second["text"]


def test_stop_ends_the_answer_within_a_token(page, site, smollm2):
    open_chat(page, site, smollm2.name)
    page.fill("#max-tokens", "400")
    result = bounded(page, """async (q) => {
        let tokens = 0, atStop = null;
        const el = document.querySelector('#messages');
        const answer = window.pocketmindChat.ask(q);
        await new Promise((resolve) => {
            const watch = new MutationObserver(() => {
                tokens++;
                if (tokens >= 8 && atStop === null) { atStop = tokens; window.pocketmindChat.stop(); watch.disconnect(); resolve(); }
            });
            watch.observe(el, {subtree: true, characterData: true, childList: true});
        });
        const done = await answer;
        return {atStop, done};
    }""", "Write a long story about a dragon who learns to cook.")
    done = result["done"]
    assert done["finish_reason"] == "abort"
    assert done["n_generated"] <= result["atStop"] + 2  # the token in flight when stop arrived, at most
    assert not page.locator("#stop").is_enabled() and page.locator("#send").is_enabled()


def add_option(page, file: str, size: int, sha256: str = "") -> None:
    page.evaluate("""([file, size, sha]) => { const o = document.createElement('option'); o.value = file;
        o.dataset.bytes = String(size); if (sha) o.dataset.sha256 = sha; o.textContent = file;
        document.querySelector('#model').append(o); }""", [file, size, sha256])


def test_models_are_verified_and_kept_for_the_next_visit(page, site, tiny_models):
    open_chat(page, site, tiny_models["F16"].name)
    assert page.evaluate("window.pocketmindChat.storage.stored") is True
    requests = []
    page.on("request", lambda r: requests.append(r.url))
    page.reload()
    bounded(page, "() => window.pocketmindChat.ready")
    bounded(page, "(f) => window.pocketmindChat.use(f)", f"models/{tiny_models['F16'].name}")
    assert page.evaluate("window.pocketmindChat.storage.fromCache") is True
    assert "this device" in page.locator("#storage").text_content()
    assert not [u for u in requests if u.endswith(tiny_models["F16"].name)]  # no download the second time
    # a model whose bytes do not match the site's record is refused
    add_option(page, f"models/{tiny_models['F16'].name}?copy", len(tiny_models["F16"].read_bytes()), "0" * 64)
    message = bounded(page, "(f) => window.pocketmindChat.use(f).then(() => 'loaded', (e) => e.message)",
                      f"models/{tiny_models['F16'].name}?copy")
    assert "hash does not match" in message
    assert page.locator("#error").is_visible()


def test_storage_use_is_shown_and_stored_models_can_be_deleted(page, site, tiny_models):
    open_chat(page, site, tiny_models["F16"].name)
    page.click("#storage-panel summary")
    page.locator("#storage-list", has_text=tiny_models["F16"].name).wait_for(timeout=TIMEOUT_MS)
    assert "Storage used:" in page.locator("#storage-usage").text_content()
    page.click("#delete-models")
    page.locator("#storage-list", has_text="No models stored").wait_for(timeout=TIMEOUT_MS)
    assert bounded(page, "() => self.pocketmindModelStore.listModels()") == []
    assert page.locator("#delete-models").is_disabled()


def test_markup_in_answers_and_questions_is_shown_as_text(page, site):
    open_chat(page, site, "parrot.gguf")
    page.fill("#max-tokens", "2")
    done = bounded(page, "(q) => window.pocketmindChat.ask(q)", '<img src=y onerror="window.pwnedToo=1">')
    assert done["text"] == MARKUP * 2
    assert page.locator("#messages img").count() == 0
    assert page.locator(".message.assistant").last.text_content() == MARKUP * 2
    assert page.locator(".message.user").last.text_content() == '<img src=y onerror="window.pwnedToo=1">'
    page.wait_for_timeout(300)  # an <img src=x> would have failed to load by now
    assert page.evaluate("() => [window.pwned, window.pwnedToo]") == [None, None]


def test_a_broken_model_is_a_readable_error_and_a_good_one_still_loads(page, site, tiny_models):
    open_chat(page, site)
    add_option(page, "models/broken.gguf", 5000)
    message = bounded(page, "(f) => window.pocketmindChat.use(f).then(() => 'loaded', (e) => e.message)",
                      "models/broken.gguf")
    assert "cannot load model" in message
    assert page.locator("#error").is_visible() and "cannot load model" in page.locator("#error").text_content()
    bounded(page, "(f) => window.pocketmindChat.use(f)", f"models/{tiny_models['F16'].name}")
    done = bounded(page, "(q) => window.pocketmindChat.ask(q)", "the word")
    assert done["finish_reason"] in ("length", "eog", "stop")
