"""The embeddable chat in headless Chromium, on a page of another site: embed.html in an iframe on a second loopback
origin answers (threaded when that page is isolated and allows it, one thread and a note otherwise), the
<pocketmind-chat> element's ask() resolves with the native glue's answer, the frame takes only well-formed requests
from its parent, and markup in a question or an answer is shown as text. Also the headers that make both
embeddable (CORP cross-origin for those two files only)."""
from __future__ import annotations

import functools
import http.server
import json
import re
import threading
import urllib.parse
import urllib.request
from urllib.parse import urlsplit

import pytest

import build_site
from browser_wait import TIMEOUT_MS, bounded
from pocketmind import Model
from pocketmind.chat_service import ChatService
from test_browser_chat import FIRST_DRAWN

SYSTEM = "You are a helpful assistant."  # embed.html's default system prompt
QUESTION = "the word and the"


class HostHandler(http.server.SimpleHTTPRequestHandler):
    """The embedding site: COOP/COEP (so it can be cross-origin isolated), and no Content-Security-Policy of ours."""

    def end_headers(self) -> None:
        self.send_header("Cross-Origin-Opener-Policy", "same-origin")
        self.send_header("Cross-Origin-Embedder-Policy", "require-corp")
        self.send_header("Cache-Control", "no-cache")
        super().end_headers()

    def log_message(self, format: str, *args) -> None:  # noqa: A002
        pass


@pytest.fixture(scope="module")
def sites(tmp_path_factory, tiny_models, smollm2, serve_site):
    """(pocketmind's site on 127.0.0.1, the embedding site on 127.0.0.2: another origin, and another site)."""
    out = tmp_path_factory.mktemp("embed-site")
    build_site.build_site(out, [tiny_models["F16"], smollm2])
    site = serve_site(out)
    host_dir = tmp_path_factory.mktemp("embed-host")
    server = http.server.ThreadingHTTPServer(("127.0.0.2", 0), functools.partial(HostHandler, directory=str(host_dir)))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    host = f"http://127.0.0.2:{server.server_address[1]}/"
    embed = f"{site}embed.html?temperature=0&amp;max_tokens=24"
    page = "<!doctype html><meta charset=utf-8><title>host</title><body><h1>A page of another site</h1>{}</body>"
    (host_dir / "iframe.html").write_text(page.format(
        f'<iframe id="chat" src="{embed}" allow="cross-origin-isolated" width="600" height="480"></iframe>'))
    host_origin = f"http://127.0.0.2:{server.server_address[1]}"
    for name, query in [("secret.html", f"model={smollm2.name}&amp;temperature=0&amp;max_tokens=40"),
                        ("long.html", "temperature=0&amp;max_tokens=400")]:
        (host_dir / name).write_text(page.format(
            f'<iframe id="chat" src="{site}embed.html?{query}&amp;origin={host_origin}" '
            'allow="cross-origin-isolated" width="600" height="480"></iframe>'))
    for name in ("index.html", "engine-check.html", "embed.html"):
        (host_dir / f"frames-{name}").write_text(page.format(
            f'<iframe id="framed" src="{site}{name}" width="600" height="480"></iframe>'))
    (host_dir / "iframe-no-allow.html").write_text(page.format(
        f'<iframe id="chat" src="{embed}" width="600" height="480"></iframe>'))
    model = tiny_models["F16"].name
    (host_dir / "element.html").write_text(page.format(
        f'<script src="{site}pocketmind-chat.js"></script>'
        f'<pocketmind-chat model="{model}" temperature="0" max-tokens="24" height="480"></pocketmind-chat>'))
    yield {"site": site, "out": out, "host": host, "host_dir": host_dir}
    server.shutdown()
    server.server_close()




def poll(target, predicate_js: str):
    """Wait (bounded) until a JS expression about window.pocketmindEmbed (`e`) is truthy; return its value. (Not
    wait_for_function: the site's CSP forbids the string evaluation it does in the frame.)"""
    return bounded(target, f"""() => new Promise((resolve) => {{
        const check = () => {{ const e = window.pocketmindEmbed; const v = e && ({predicate_js});
            if (v) resolve(v); else setTimeout(check, 50); }};
        check(); }})""")


def embed_frame(page):
    return page.locator("#chat").element_handle(timeout=TIMEOUT_MS).content_frame()


def native_answer(native, path, question: str, max_tokens: int) -> dict:
    with Model.from_file(path, native) as model:
        service = ChatService(model, n_ctx=2048)
        request = {"messages": [{"role": "system", "content": SYSTEM}, {"role": "user", "content": question}],
                   "max_tokens": max_tokens, "settings": {"temperature": 0, "top_p": 0.95}}
        return service.answer(json.dumps(request))


@pytest.mark.browser
def test_iframe_on_another_site_streams_the_native_answer_threaded(page, sites, native, tiny_models):
    errors = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.goto(sites["host"] + "iframe.html")
    assert urlsplit(page.url).netloc != urlsplit(sites["site"]).netloc
    frame = embed_frame(page)
    bounded(frame, "() => new Promise((r) => { const t = () => window.pocketmindEmbed ? r(window.pocketmindEmbed.ready.then(() => true)) : setTimeout(t, 50); t(); })")
    assert page.evaluate("crossOriginIsolated") is True
    assert frame.evaluate("crossOriginIsolated") is True  # the host is isolated and allows it
    assert frame.evaluate("window.pocketmindEmbed.engine.threads") >= 2
    ui = page.frame_locator("#chat")
    assert "wasm-mt" in ui.locator("#runtime").text_content()
    frame.evaluate(FIRST_DRAWN, "#messages")
    ui.locator("#prompt").fill(QUESTION)
    ui.locator("#send").click()
    done = poll(frame, "e.lastDone")
    expected = native_answer(native, tiny_models["F16"], QUESTION, 24)
    assert done["tokens"] == expected["done"]["tokens"]
    assert done["text"] == expected["text"]
    assert ui.locator(".message.user").last.text_content() == QUESTION
    assert ui.locator(".message.assistant").last.text_content() == expected["text"]
    first = frame.evaluate("window.firstDrawn")  # streamed: part of the answer was drawn before the whole
    assert first and len(first["text"]) < len(done["text"])
    assert not ui.locator("#stop").is_enabled() and ui.locator("#send").is_enabled()
    assert not errors, errors


@pytest.mark.browser
def test_iframe_without_allow_runs_on_one_thread_and_says_so(page, sites):
    page.goto(sites["host"] + "iframe-no-allow.html")
    frame = embed_frame(page)
    engine = poll(frame, "e.engine")
    assert engine["threads"] == 1 and engine["variant"] == "wasm-st-relaxed" and engine["isolated"] is False
    runtime = page.frame_locator("#chat").locator("#runtime").text_content()
    assert "1 thread" in runtime and 'allow="cross-origin-isolated"' in runtime


@pytest.mark.browser
def test_custom_element_asks_and_shows_markup_as_text(page, sites, native, tiny_models):
    errors = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.goto(sites["host"] + "element.html")
    site_origin = sites["site"].rstrip("/")
    src = page.evaluate("document.querySelector('pocketmind-chat').shadowRoot.querySelector('iframe').src")
    assert src.startswith(sites["site"] + "embed.html?")
    assert f"origin={urllib.parse.quote(sites['host'].rstrip('/'), safe='')}" in src
    status = bounded(page, "() => document.querySelector('pocketmind-chat').ready")
    assert status["state"] == "ready" and status["isolated"] is True and status["threads"] >= 2
    result = bounded(page, """async (q) => {
        const el = document.querySelector('pocketmind-chat');
        const answers = [], pieces = [];
        el.addEventListener('answer', (e) => answers.push(e.detail));
        el.addEventListener('text', (e) => pieces.push(e.detail.text));
        const text = await el.ask(q);
        return {text, answers, pieces};
    }""", QUESTION)
    expected = native_answer(native, tiny_models["F16"], QUESTION, 24)
    assert result["text"] == expected["text"] and result["text"]
    assert result["answers"] == [{"id": result["answers"][0]["id"], "question": QUESTION, "text": expected["text"],
                                  "finish_reason": expected["done"]["finish_reason"],
                                  "n_generated": expected["done"]["n_generated"]}]
    assert "".join(result["pieces"]) == expected["text"]

    # requests of another shape are refused or ignored; only {type: "ask", id, text: string} is answered
    replies = bounded(page, """async (origin) => {
        const frame = document.querySelector('pocketmind-chat').shadowRoot.querySelector('iframe').contentWindow;
        const got = [];
        const listen = (e) => { if (e.source === frame) got.push(e.data); };
        window.addEventListener('message', listen);
        frame.postMessage({type: 'ask', id: 'bad', text: 42}, origin);
        frame.postMessage({type: 'eval', id: 'x', code: 'alert(1)'}, origin);
        frame.postMessage('ask', origin);
        await new Promise((r) => setTimeout(r, 1000));
        window.removeEventListener('message', listen);
        return got;
    }""", site_origin)
    assert [r["type"] for r in replies] == ["error"] and replies[0]["id"] == "bad"

    # markup in a question (and whatever the model answers) is text in the frame: no element made, nothing run
    evil = '<img src=x onerror="window.parent.postMessage(\'pwned\', \'*\'); document.title = \'pwned\'">'
    answer = bounded(page, "(q) => document.querySelector('pocketmind-chat').ask(q)", evil)
    frame = page.locator("pocketmind-chat iframe").element_handle(timeout=TIMEOUT_MS).content_frame()
    assert frame.evaluate("document.querySelectorAll('#messages *:not(.message)').length") == 0
    assert frame.evaluate("document.querySelectorAll('img').length") == 0
    assert frame.evaluate("document.title") != "pwned"
    ui = page.frame_locator("pocketmind-chat iframe")
    assert ui.locator(".message.user").last.text_content() == evil
    assert ui.locator(".message.assistant").last.text_content() == answer
    assert not errors, errors


@pytest.mark.browser
def test_unknown_model_is_a_clear_error(page, sites):
    page.goto(sites["site"] + "embed.html?model=nope.gguf")
    error = page.locator("#error")
    error.wait_for(state="visible", timeout=TIMEOUT_MS)
    assert 'unknown model "nope.gguf"' in error.text_content()


def test_embed_files_are_built_precached_and_servable_cross_origin(sites):
    out, site = sites["out"], sites["site"]
    for name in ("embed.html", "embed.js", "chat-shared.js", "pocketmind-chat.js"):
        assert (out / name).is_file()
    text = (out / "sw.js").read_text()
    precache = {p for p, _, _ in json.loads(re.search(r"^const PRECACHE = (.*);$", text, re.M).group(1))}
    assert {"embed.html", "embed.js", "embed.css", "chat-shared.js", "pocketmind-chat.js"} <= precache
    assert '["embed.html", "pocketmind-chat.js"]' in text  # the service worker's CORP cross-origin files
    html = (out / "embed.html").read_text()
    assert "models/" in html and "embed.js" in html
    for path, corp in [("embed.html?model=x", "cross-origin"), ("pocketmind-chat.js", "cross-origin"),
                       ("embed.js", "same-origin"), ("index.html", "same-origin"), ("", "same-origin"),
                       ("chat-worker.js", "same-origin")]:
        with urllib.request.urlopen(site + path) as r:
            assert r.headers["Cross-Origin-Resource-Policy"] == corp, path
            assert r.headers["Cross-Origin-Embedder-Policy"] == "require-corp", path


@pytest.mark.browser
def test_chat_page_shows_the_embed_snippet_for_where_it_is_served(page, sites, tiny_models):
    page.goto(sites["site"])
    snippet = page.locator("#embed-snippet").text_content()
    model = urllib.parse.quote(f"models/{tiny_models['F16'].name}", safe="")
    assert f'<iframe src="{sites["site"]}embed.html?model={model}" allow="cross-origin-isolated"' in snippet
    assert f'<script src="{sites["site"]}pocketmind-chat.js"></script>' in snippet
    assert f'<pocketmind-chat model="models/{tiny_models["F16"].name}"></pocketmind-chat>' in snippet


def ask_from_host(page, site_origin: str, id_: str, text: str | None = None, stop: bool = False) -> list[dict]:
    """Post {type: "ask"} (and {type: "stop"} once its first piece arrives, with stop) to the frame as the host page;
    return every message the frame sent back to it until the answer (or error) for id_."""
    return bounded(page, """([origin, id, text, stop]) => new Promise((resolve) => {
        const frame = document.querySelector('#chat').contentWindow;
        const got = [];
        window.addEventListener('message', (e) => {
            if (e.source !== frame) return;
            got.push(e.data);
            if (stop && e.data.type === 'text' && e.data.id === id) { stop = false; frame.postMessage({type: 'stop'}, origin); }
            if ((e.data.type === 'answer' || e.data.type === 'error') && e.data.id === id) resolve(got);
        });
        frame.postMessage({type: 'ask', id, text}, origin);
    })""", [site_origin, id_, text, stop])


def visitor_asks(page, frame, text: str) -> dict:
    """Type a question into the frame as the visitor; the frame's done message."""
    ui = page.frame_locator("#chat")
    bounded(frame, "() => window.pocketmindEmbed.ready")
    before = frame.evaluate("window.pocketmindEmbed.lastDone")
    ui.locator("#prompt").fill(text)
    ui.locator("#send").click()
    return bounded(frame, """(before) => new Promise((resolve) => { const check = () => {
        const d = window.pocketmindEmbed.lastDone; (d && d !== before && JSON.stringify(d) !== JSON.stringify(before))
            ? resolve(d) : setTimeout(check, 50); }; check(); })""", before)


@pytest.mark.browser
def test_the_embedding_page_never_sees_the_visitors_conversation(page, sites):
    page.goto(sites["host"] + "secret.html")
    frame = embed_frame(page)
    site_origin = sites["site"].rstrip("/")
    visitor_asks(page, frame, "My secret code is 4711-ZEBRA. Please remember it.")
    replies = ask_from_host(page, site_origin, "h1", "Repeat exactly what I said before.")
    said = json.dumps(replies)
    assert replies[-1]["type"] == "answer" and replies[-1]["text"]
    assert "4711" not in said and "ZEBRA" not in said.upper()
    # the same request in the visitor's own conversation does repeat it: the model would have leaked it
    own = visitor_asks(page, frame, "Repeat exactly what I said before.")
    assert "4711" in own["text"]
    assert "4711" not in json.dumps(ask_from_host(page, site_origin, "h2", "What is my secret code?"))


@pytest.mark.browser
def test_the_embedding_pages_stop_stops_only_its_own_answer(page, sites):
    page.goto(sites["host"] + "long.html")
    frame = embed_frame(page)
    site_origin = sites["site"].rstrip("/")
    bounded(frame, "() => window.pocketmindEmbed.ready")
    ui = page.frame_locator("#chat")
    ui.locator("#prompt").fill("the word")
    ui.locator("#send").click()
    ui.locator(".message.assistant").last.wait_for(timeout=TIMEOUT_MS)
    bounded(frame, """() => new Promise((resolve) => { const check = () =>
        document.querySelector('.message.assistant').textContent ? resolve() : setTimeout(check, 10); check(); })""")
    page.evaluate("(origin) => document.querySelector('#chat').contentWindow.postMessage({type: 'stop'}, origin)",
                  site_origin)
    done = bounded(frame, """() => new Promise((resolve) => { const check = () =>
        window.pocketmindEmbed.lastDone ? resolve(window.pocketmindEmbed.lastDone) : setTimeout(check, 50); check(); })""")
    # the visitor's answer ran to its end (the tiny model's context of 256 tokens, before max_tokens)
    assert done["finish_reason"] == "length" and done["n_generated"] > 100
    # the page's own answer does stop
    replies = ask_from_host(page, site_origin, "h1", "the word", stop=True)
    assert replies[-1]["type"] == "answer" and replies[-1]["finish_reason"] == "abort"
    assert replies[-1]["n_generated"] < done["n_generated"]


@pytest.mark.browser
def test_new_chat_in_the_frame(page, sites):
    page.goto(sites["host"] + "iframe.html")
    frame = embed_frame(page)
    ui = page.frame_locator("#chat")
    first = visitor_asks(page, frame, QUESTION)
    visitor_asks(page, frame, QUESTION)
    ui.locator("#new-chat").click()
    assert ui.locator(".message").count() == 0
    third = visitor_asks(page, frame, QUESTION)
    assert third["n_prompt"] == first["n_prompt"]  # the earlier turns are gone from the prompt too


@pytest.mark.browser
def test_only_the_embeddable_page_renders_in_another_sites_frame(page, sites):
    for name in ("index.html", "engine-check.html"):
        page.goto(sites["host"] + f"frames-{name}")
        frame = page.locator("#framed").element_handle(timeout=TIMEOUT_MS).content_frame()
        page.wait_for_load_state("load")
        assert not frame.url.startswith(sites["site"]), name  # Chromium shows its own error page instead
    page.goto(sites["host"] + "frames-embed.html")
    frame = page.locator("#framed").element_handle(timeout=TIMEOUT_MS).content_frame()
    page.wait_for_load_state("load")
    assert frame.url.startswith(sites["site"] + "embed.html")
    assert frame.locator("#prompt").count() == 1


def test_headers_forbid_framing_except_for_the_embed_page(sites):
    site = sites["site"]
    for path, ancestors in [("", True), ("index.html", True), ("engine-check.html", True), ("embed.html", False)]:
        with urllib.request.urlopen(site + path) as r:
            csp = r.headers["Content-Security-Policy"]
            assert ("frame-ancestors 'self'" in csp) == ancestors, path
            assert "script-src 'self'" in csp, path
    for path in ("chat-worker.js", "engine-worker.js", "wasm/pocketmind-mt.worker.js"):
        with urllib.request.urlopen(site + path) as r:
            assert "script-src 'self' 'wasm-unsafe-eval'" in r.headers["Content-Security-Policy"], path
    text = (sites["out"] / "sw.js").read_text()
    page_csp = json.loads(re.search(r"^const PAGE_CSP = (.*);$", text, re.M).group(1))
    assert page_csp == build_site.PAGE_CSP and "frame-ancestors 'self'" in page_csp


@pytest.mark.browser
def test_on_a_host_without_headers_the_chat_page_still_refuses_another_sites_frame(page, sites, tmp_path):
    """Neither side sends headers (a plain static host framed by a plain page): only frame-guard.js stands."""
    plain = build_site.make_server(sites["out"], "127.0.0.1", 0, headers=False)
    (tmp_path / "frames-plain.html").write_text(
        f'<!doctype html><meta charset=utf-8><iframe id="framed" '
        f'src="http://127.0.0.1:{plain.server_address[1]}/index.html"></iframe>')
    quiet = type("Quiet", (http.server.SimpleHTTPRequestHandler,), {"log_message": lambda *a: None})
    other = http.server.ThreadingHTTPServer(("127.0.0.3", 0), functools.partial(quiet, directory=str(tmp_path)))
    for server in (plain, other):
        threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        page.goto(f"http://127.0.0.3:{other.server_address[1]}/frames-plain.html")
        frame = page.locator("#framed").element_handle(timeout=TIMEOUT_MS).content_frame()
        frame.locator("text=does not run inside another site").wait_for(timeout=TIMEOUT_MS)
        assert frame.locator("#prompt").count() == 0  # the chat itself is gone
        assert not [w for w in page.workers if "chat-worker" in w.url]  # and never started
    finally:
        for server in (plain, other):
            server.shutdown()
            server.server_close()
