"""LoRA adapters on the chat page in headless Chromium: a GGUF adapter picked as a file is kept in the model store
and applied in the worker, the answers are the native glue's with the same adapter, a bad file is a readable
error, and a stored adapter is offered again on the next visit."""
from __future__ import annotations

import json

import pytest

import build_site
from browser_wait import bounded
from pocketmind import Adapter, Model
from pocketmind.chat_service import ChatService
from tiny_gguf import TINY_SHAPES, random_lora, write_tiny_llama, write_tiny_lora

pytestmark = pytest.mark.browser
QUESTION = "the word and the"


@pytest.fixture(scope="module")
def lora_site(tmp_path_factory, serve_site):
    out = tmp_path_factory.mktemp("lora-site")
    base = write_tiny_llama(out.parent / "base.gguf", "F32")
    pairs = random_lora({"blk.0.attn_q.weight": TINY_SHAPES["attn_q"], "blk.1.ffn_up.weight": TINY_SHAPES["ffn_up"]},
                        rank=4, seed=21, size=1.0)
    adapter = write_tiny_lora(out.parent / "style.gguf", pairs, alpha=8.0)
    garbage = out.parent / "garbage.gguf"
    garbage.write_bytes(b"not an adapter" * 64)
    build_site.build_site(out, [base])
    return {"url": serve_site(out), "base": base, "adapter": adapter, "garbage": garbage}


def native_answer(native, files, system, scale) -> list[int]:
    """The greedy answer's tokens from the CPython glue, with the adapter at scale (None: without it)."""
    request = {"messages": [{"role": "system", "content": system}, {"role": "user", "content": QUESTION}],
               "max_tokens": 16, "settings": {"temperature": 0, "top_p": 0.95, "repeat_penalty": 1.0}}
    with Model.from_file(files["base"], native) as model:
        service = ChatService(model, n_ctx=2048)
        if scale is not None:
            service.ctx.set_adapters([(Adapter.from_file(model, files["adapter"]), scale)])
        return service.answer(json.dumps(request))["done"]["tokens"]


def ask(page) -> list[int]:
    page.evaluate("window.pocketmindChat.newChat()")
    return bounded(page, "(q) => window.pocketmindChat.ask(q)", QUESTION)["tokens"]


def test_adapter_file_is_applied_kept_and_offered_again(page, lora_site, native):
    errors = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.goto(lora_site["url"])
    bounded(page, "() => window.pocketmindChat.ready")
    page.click("summary:has-text('Settings')")
    page.fill("#temperature", "0")
    page.fill("#repeat-penalty", "1")
    page.fill("#max-tokens", "16")
    system = page.input_value("#system")
    plain = ask(page)
    assert plain == native_answer(native, lora_site, system, None)

    page.set_input_files("#adapter-file", str(lora_site["adapter"]))
    page.wait_for_function("() => window.pocketmindChat.adapters.length === 1")
    assert page.locator("#adapter-status").text_content() == "style applied at scale 1 (alpha 8)"
    adapted = ask(page)
    assert adapted == native_answer(native, lora_site, system, 1.0) and adapted != plain

    listed = bounded(page, "(s) => window.pocketmindChat.adapter('style.gguf', s)", 0.5)
    assert [a["scale"] for a in listed] == [0.5]
    assert ask(page) == native_answer(native, lora_site, system, 0.5)
    assert bounded(page, "() => window.pocketmindChat.adapter(null)") == []
    assert ask(page) == plain

    # a file that is no adapter: the library's reason, and no adapter applied
    page.set_input_files("#adapter-file", str(lora_site["garbage"]))
    page.wait_for_function("() => !document.querySelector('#error').hidden")
    assert "not a GGUF file" in page.locator("#error").text_content()
    assert page.evaluate("window.pocketmindChat.adapters") == []
    assert page.input_value("#adapter") == ""

    # kept in the model store: offered on the next visit, and applied from there
    stored = page.evaluate("pocketmindModelStore.listModels().then((m) => m.map((x) => x.url))")
    assert any(url.endswith("/adapters/style.gguf") for url in stored)
    page.reload()
    bounded(page, "() => window.pocketmindChat.ready")
    page.wait_for_function("() => [...document.querySelectorAll('#adapter option')].some((o) => o.textContent === 'style.gguf')")
    page.select_option("#adapter", label="style.gguf")
    page.wait_for_function("() => window.pocketmindChat.adapters.length === 1")
    assert not errors, errors
