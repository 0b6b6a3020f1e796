"""The site builder: what dist/ holds, the model cards, the server's headers, and its command line."""
from __future__ import annotations

import json
import subprocess
import sys
import urllib.request
import zipfile
from pathlib import Path

import pytest

import build_site
import deps
from pocketmind import Model

REPO = Path(__file__).resolve().parents[1]



def page_config(page: Path) -> dict:
    """The config a built page carries for its scripts (build_site's <script id="config">)."""
    return json.loads(page.read_text().split('<script id="config" type="application/json">')[1].split("</script>")[0])


@pytest.fixture(scope="module")
def site(tmp_path_factory, tiny_models):
    out = tmp_path_factory.mktemp("dist")
    build_site.build_site(out, [tiny_models["F16"]])
    return out


def test_site_holds_engine_runtime_glue_and_pages(site):
    for name in ["index.html", "engine-check.html", "chat.js", "chat-worker.js", "model-store.js", "engine-boot.js",
                 "wasm/pocketmind-st.js", "wasm/pocketmind-st.wasm", "wasm/pocketmind-mt.js",
                 "wasm/pocketmind-mt.wasm", "wasm/pocketmind-mt.worker.js", "wasm/pocketmind_api.js",
                 "pyodide/pyodide.js", "pyodide/pyodide.asm.wasm", "pyodide/python_stdlib.zip",
                 "pyodide/pyodide-lock.json", "pyodide/runtime.json"]:
        assert (site / name).is_file(), name
    config = page_config(site / "index.html")
    wheels = [w.split("/")[-1].split("-")[0] for w in config["python"]["wheels"]]
    assert wheels == ["numpy", "markupsafe", "jinja2", "pocketmind"]
    for wheel in config["python"]["wheels"]:
        assert (site / wheel).is_file()
    with zipfile.ZipFile(site / config["python"]["wheels"][-1]) as zf:
        names = zf.namelist()
    for module in ("engine", "pyodide_backend", "chat_service", "generate", "sampling", "chat_template",
                   "task_service", "tasks/compare", "tasks/hosted_prices.json"):
        assert f"pocketmind/{module}" + ("" if module.endswith(".json") else ".py") in names


def test_example_tasks_and_their_data_ship_with_the_task_pages(site):
    for name in ("tasks.html", "evaluate.html", "task-worker.js", "task-client.js", "tasks.js", "evaluate.js"):
        assert (site / name).is_file(), name
    config = page_config(site / "tasks.html")
    by_name = {t["name"]: t for t in config["tasks"]}
    assert set(by_name) == {"review_sentiment", "support_tickets", "ticket_fields"}
    assert by_name["support_tickets"]["labels"] == ["billing", "shipping", "technical", "account", "returns"]
    assert by_name["ticket_fields"]["labels"] == [] and by_name["ticket_fields"]["data"] is None
    for name in ("review_sentiment", "support_tickets"):
        entry = by_name[name]
        assert (site / entry["file"]).read_bytes() == (REPO / "data" / "tasks" / f"{name}.json").read_bytes()
        assert (site / entry["data"]).read_bytes() == (REPO / "data" / f"{name}.csv").read_bytes()
    menu = (site / "evaluate.html").read_text().split('<select id="task">')[1].split("</select>")[0]
    assert "support_tickets" in menu and "ticket_fields" not in menu  # label tasks only
    precached = (site / "sw.js").read_text()
    assert '"tasks/support_tickets.csv"' in precached and '"evaluate.html"' in precached  # offline too


def test_model_cards(site, native, tiny_models):
    cards = json.loads((site / "models" / "index.json").read_text())
    assert len(cards) == 1
    card = cards[0]
    data = tiny_models["F16"].read_bytes()
    assert card["file"] == f"models/{tiny_models['F16'].name}" and (site / card["file"]).read_bytes() == data
    assert card["bytes"] == len(data) and len(card["sha256"]) == 64
    assert card["architecture"] == "llama" and card["quantization"] == "F16" and card["context_length"] == 256
    assert card["has_chat_template"] is True
    with Model.from_file(tiny_models["F16"], native) as model:
        assert card["n_params"] == model.n_params
    assert f'data-sha256="{card["sha256"]}"' in (site / "index.html").read_text()


def test_model_names_are_escaped_in_pages(tmp_path, tiny_models):
    sys.path.insert(0, str(REPO / "tests"))
    from tiny_gguf import write_tiny_llama

    path = write_tiny_llama(tmp_path / "evil.gguf", "Q8_0")
    import gguf

    # rename the model to markup: the page must show it as text
    reader = gguf.GGUFReader(str(path))
    name = reader.fields["general.name"]
    raw = bytes(name.parts[-1])
    evil = b"<img src=x onerror=alert(1)>"[: len(raw)].ljust(len(raw), b"x")
    path.write_bytes(path.read_bytes().replace(raw, evil, 1))
    out = build_site.build_site(tmp_path / "dist", [path])
    html = (out / "index.html").read_text()
    assert "<img src=x" not in html and "&lt;img src=x" in html


def test_server_sends_isolation_headers_and_mime_types(site):
    import threading

    server = build_site.make_server(site)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    base = f"http://127.0.0.1:{server.server_address[1]}/"
    try:
        with urllib.request.urlopen(base) as r:
            assert r.headers["Cross-Origin-Opener-Policy"] == "same-origin"
            assert r.headers["Cross-Origin-Embedder-Policy"] == "require-corp"
            assert r.headers["Content-Type"].startswith("text/html")
        with urllib.request.urlopen(base + "wasm/pocketmind-st.wasm") as r:
            assert r.headers["Content-Type"] == "application/wasm"
    finally:
        server.shutdown()
        server.server_close()


def test_command_line(tmp_path):
    run = lambda *args: subprocess.run([sys.executable, str(REPO / "build_site.py"), *args],  # noqa: E731
                                       capture_output=True, text=True, timeout=600)
    help_text = run("--help")
    assert help_text.returncode == 0 and "build" in help_text.stdout and "serve" in help_text.stdout
    missing = run("build", "--out", str(tmp_path / "d"), "--no-default-model", "--model", str(tmp_path / "nope.gguf"))
    assert missing.returncode != 0 and "model file not found" in missing.stderr
    none = run("build", "--out", str(tmp_path / "d"), "--no-default-model")
    assert none.returncode != 0 and "no models" in none.stderr


def test_command_line_gemma_adds_gemma3_and_its_card(tmp_path, gemma3):
    out = tmp_path / "d"
    done = subprocess.run([sys.executable, str(REPO / "build_site.py"), "build", "--out", str(out),
                           "--no-default-model", "--gemma"], capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr
    cards = json.loads((out / "models" / "index.json").read_text())
    assert [card["file"] for card in cards] == [f"models/{gemma3.name}"]
    card = cards[0]
    assert (out / card["file"]).stat().st_size == gemma3.stat().st_size == card["bytes"]
    assert card["sha256"] == deps.GEMMA3_SHA256
    assert card["architecture"] == "gemma3" and card["quantization"] == "Q4_K_M" and card["license"] == "gemma"
    assert card["has_chat_template"] is False and 250e6 < card["n_params"] < 300e6
    assert f'data-sha256="{card["sha256"]}"' in (out / "index.html").read_text()
