"""The Benchmark page in headless Chromium, with two tiny random-weight models: a run to the end fills the table with
numbers for each model next to the reference rows of benchmarks.json, Stop ends a run in the middle, and Copy puts
the result's text on the clipboard."""
from __future__ import annotations

import json

import pytest

import build_site
from browser_wait import bounded
from tiny_gguf import write_tiny_llama

pytestmark = pytest.mark.browser


@pytest.fixture(scope="module")
def site(tmp_path_factory, tiny_models, serve_site):
    out = tmp_path_factory.mktemp("benchmark-site")
    second = write_tiny_llama(out.parent / "tiny-second.gguf", "F32", seed=7)
    build_site.build_site(out, [tiny_models["F16"], second])
    cards = json.loads((out / "models" / "index.json").read_text())
    reference = json.loads((out / "benchmarks.json").read_text())
    return serve_site(out), [c["file"] for c in cards], reference, out


def open_page(page, url):
    errors = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.goto(url + "benchmark.html")
    bounded(page, "() => window.pocketmindBenchmark.ready", timeout_ms=240_000)
    bounded(page, "() => window.pocketmindBenchmark.reference")
    assert not errors, errors
    return errors


def table(page, selector: str) -> list[list[str]]:
    return page.eval_on_selector_all(f"{selector} tbody tr",
                                     "rows => rows.map(r => [...r.cells].map(c => c.textContent.trim()))")


def run_to_end(page, n_prompt: int, n_gen: int):
    page.fill("#n-prompt", str(n_prompt))
    page.fill("#n-gen", str(n_gen))
    page.click("#run")
    page.wait_for_function("() => document.querySelector('#bench-text').textContent === 'done' "
                           "&& !document.querySelector('#run').disabled", timeout=240_000)


def test_a_run_fills_the_table_for_each_model_beside_the_reference(page, site):
    url, files, reference, _ = site
    errors = open_page(page, url)
    assert page.locator("nav strong").text_content() == "Benchmark"
    run_to_end(page, 24, 16)
    results = page.evaluate("window.pocketmindBenchmark.results()")
    assert [r["model"] for r in results] == files
    rows = table(page, "#results")
    assert len(rows) == len(files)
    for result, cells in zip(results, rows):
        assert not result["stopped"] and result["n_prompt"] == 24 and 1 <= result["n_generated"] <= 16
        model, engine, pp, tg, tokens, status = cells
        assert status == "done" and engine.startswith("wasm-mt")
        assert float(pp) > 0 and float(pp) == pytest.approx(result["pp_tps"], abs=0.05)
        if result["n_generated"] > 1:
            assert float(tg) > 0 and float(tg) == pytest.approx(result["tg_tps"], abs=0.05)
        assert tokens == f"24 + {result['n_generated']}"
    assert page.locator("#bench-progress").evaluate("p => p.value") == 1

    # the reference rows are the build's benchmarks.json (docs/benchmarks.json), number for number
    ref_rows = table(page, "#reference")
    assert reference["rows"], "docs/benchmarks.json has no rows"
    assert len(ref_rows) == len(reference["rows"])
    for row, cells in zip(reference["rows"], ref_rows):
        assert cells[0] == row["model"] and cells[1] == row["engine"] and cells[2] == str(row["threads"])
        assert float(cells[3]) == pytest.approx(row["pp_tps"], abs=0.05)
        assert float(cells[4]) == pytest.approx(row["tg_tps"], abs=0.05)
    assert reference["command"] in page.locator("#reference-info").text_content()
    assert not errors, errors


def test_stop_ends_a_run_in_the_middle_and_the_page_runs_again(page, site):
    url, files, _, _ = site
    open_page(page, url)
    page.fill("#n-prompt", "16")
    page.fill("#n-gen", "200")
    # the Stop button is clicked as the first model's first generated token arrives: mid-run, at a known point
    page.evaluate("""() => {
        const client = window.pocketmindBenchmark.client;
        const onProgress = ({ detail }) => {
            if (detail.what === 'bench' && detail.phase === 'generate') {
                client.removeEventListener('progress', onProgress);
                document.querySelector('#stop').click();
            }
        };
        client.addEventListener('progress', onProgress);
        window.stopped = window.pocketmindBenchmark.run(); }""")
    results = bounded(page, "() => window.stopped", timeout_ms=240_000)
    assert len(results) == len(files) and all(r["stopped"] for r in results)
    assert results[0].get("n_generated", 200) < 200  # the first model began, and ended early
    assert [cells[-1] for cells in table(page, "#results")] == ["stopped"] * len(files)
    assert page.locator("#bench-text").text_content() == "stopped"
    assert page.locator("#stop").is_disabled() and not page.locator("#run").is_disabled()
    assert "stopped" in page.evaluate("window.pocketmindBenchmark.text()")

    # the same worker runs a whole test afterwards
    run_to_end(page, 8, 4)
    assert [cells[-1] for cells in table(page, "#results")] == ["done"] * len(files)


def test_copy_puts_the_result_text_on_the_clipboard(page, site):
    url, files, _, _ = site
    page.context.grant_permissions(["clipboard-read", "clipboard-write"], origin=url.rstrip("/"))
    open_page(page, url)
    assert page.locator("#copy").is_disabled()  # nothing to copy before a run
    run_to_end(page, 12, 6)
    text = page.evaluate("window.pocketmindBenchmark.text()")
    assert text == page.locator("#result-text").input_value()
    lines = text.splitlines()
    assert lines[0].startswith("pocketmind benchmark, ") and "wasm-mt" in text
    for file, result in zip(files, page.evaluate("window.pocketmindBenchmark.results()")):
        name = file.split("/")[-1].removesuffix(".gguf")
        assert f"{name}: prompt {result['pp_tps']:.1f} tokens/s" in text
    page.click("#copy")
    page.wait_for_function("() => document.querySelector('#copied').textContent !== ''", timeout=10_000)
    assert page.locator("#copied").text_content() == "Copied."
    assert page.evaluate("navigator.clipboard.readText()") == text


def test_the_page_its_script_and_reference_are_precached_and_the_page_sends_its_csp(page, site):
    url, _, reference, out = site
    sw = (out / "sw.js").read_text()
    precache = json.loads(sw.split("const PRECACHE = ", 1)[1].split(";\n", 1)[0])
    names = {entry[0] for entry in precache}
    assert {"benchmark.html", "benchmark.js", "benchmarks.json"} <= names
    assert json.loads((out / "benchmarks.json").read_text()) == reference
    response = page.goto(url + "benchmark.html")
    assert "frame-ancestors 'self'" in response.headers["content-security-policy"]
    assert 'integrity="sha256-' in (out / "benchmark.html").read_text()
