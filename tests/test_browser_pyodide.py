"""The assembled Pyodide runtime in headless Chromium: it boots in a classic Web Worker, loads numpy and micropip from
its own lock, installs our jinja2 and pure markupsafe wheels, runs Python with them, and never leaves the origin."""
from __future__ import annotations

import json
from urllib.parse import urlsplit

import pytest

import pyodide_dist

pytestmark = pytest.mark.browser

TIMEOUT_MS = 120_000  # whole run, raced against in the page so nothing can hang

WORKER_JS = """
importScripts('pyodide/pyodide.js');
self.onmessage = async (event) => {
  const t = {};
  // each stage is reported as it ends, so a timeout can say where it stopped
  const mark = (name, since) => {
    t[name] = Math.round(performance.now() - since);
    self.postMessage({ stage: name, ms: t[name] });
    return performance.now();
  };
  let t0 = performance.now();
  try {
    const base = new URL('pyodide/', self.location.href).href;
    const pyodide = await loadPyodide({ indexURL: base });
    t0 = mark('boot_ms', t0);
    await pyodide.loadPackage('numpy', { messageCallback: () => {} });
    t0 = mark('numpy_ms', t0);
    await pyodide.loadPackage('micropip', { messageCallback: () => {} });
    t0 = mark('micropip_ms', t0);
    const micropip = pyodide.pyimport('micropip');
    // markupsafe first: jinja2's requirement is then already met and micropip looks nowhere else
    await micropip.install(base + event.data.markupsafe);
    await micropip.install(base + event.data.jinja2);
    t0 = mark('install_ms', t0);
    const result = await pyodide.runPythonAsync(event.data.code);
    mark('run_ms', t0);
    self.postMessage({ ok: true, result, timings: t });
  } catch (err) {
    self.postMessage({ ok: false, error: String((err && err.stack) || err), timings: t });
  }
};
"""

PAGE_HTML = """<!doctype html>
<meta charset="utf-8"><title>pyodide worker check</title>
<script>
window.runPython = (job, timeoutMs) => {
  const worker = new Worker('worker.js');
  const stages = ['started'];
  const done = new Promise((resolve, reject) => {
    worker.onmessage = (e) => e.data.stage ? stages.push(e.data.stage) : resolve(e.data);
    worker.onerror = (e) => reject(new Error('worker error: ' + (e.message || e.type)));
  });
  const timeout = new Promise((_, reject) =>
    setTimeout(() => reject(new Error('timed out after ' + timeoutMs + ' ms; done: ' + stages.join(', '))), timeoutMs));
  worker.postMessage(job);
  return Promise.race([done, timeout]).finally(() => worker.terminate());
};
</script>
"""

PYTHON = """
import importlib.metadata, json, sys
import numpy as np
import jinja2, markupsafe

a = np.arange(12, dtype=np.float64).reshape(3, 4)
template = jinja2.Environment(autoescape=True).from_string(
    "{% for row in rows %}<td>{{ row }}</td>{% endfor %}|{{ total }}")
json.dumps({
    "python": sys.version.split()[0],
    "platform": sys.platform,
    "numpy": np.__version__,
    "jinja2": importlib.metadata.version("jinja2"),
    "markupsafe": importlib.metadata.version("markupsafe"),
    "escape_impl": markupsafe._escape_inner.__module__,
    "gram": (a @ a.T).tolist(),
    "solve": np.linalg.solve(np.array([[3.0, 1.0], [1.0, 2.0]]), np.array([9.0, 8.0])).tolist(),
    "html": template.render(rows=["<b>", "x&y"], total=float(a.sum())),
})
"""


@pytest.fixture(scope="module")
def site(tmp_path_factory, serve_site):
    folder = tmp_path_factory.mktemp("pyodide-site")
    manifest = pyodide_dist.assemble(folder / "pyodide")
    (folder / "worker.js").write_text(WORKER_JS)
    # not index.html: the site server sends that name the chat page's CSP header, which forbids inline scripts
    (folder / "harness.html").write_text(PAGE_HTML)
    return serve_site(folder) + "harness.html", manifest


def test_pyodide_runs_numpy_and_jinja2_in_a_worker_offline(page, site):
    url, manifest = site
    origin = "{0.scheme}://{0.netloc}".format(urlsplit(url))
    requests: list[str] = []
    page.on("request", lambda r: requests.append(r.url))
    page.context.on("request", lambda r: requests.append(r.url))
    # anything headed elsewhere is recorded above and then refused, so the test never waits on the network
    page.context.route(lambda u: not u.startswith(origin + "/"), lambda route: route.abort())
    errors: list[str] = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.goto(url, timeout=30_000)
    job = {"code": PYTHON, "jinja2": pyodide_dist.JINJA2_WHEEL.filename,
           "markupsafe": pyodide_dist.MARKUPSAFE_WHEEL_NAME}
    reply = page.evaluate("([job, ms]) => window.runPython(job, ms)", [job, TIMEOUT_MS])
    print(f"\npyodide in a worker: {reply.get('timings')}")
    assert reply["ok"], reply.get("error")
    assert not errors, errors
    result = json.loads(reply["result"])
    assert result["python"] == "3.12.7" and result["platform"] == "emscripten"
    assert result["numpy"] == "2.0.2" and result["jinja2"] == "3.1.6" and result["markupsafe"] == "3.0.3"
    assert result["escape_impl"] == "markupsafe._native"  # the pure fallback: no C speedups in the browser
    assert result["gram"] == [[14.0, 38.0, 62.0], [38.0, 126.0, 214.0], [62.0, 214.0, 366.0]]
    assert result["solve"] == pytest.approx([2.0, 3.0])
    assert result["html"] == "<td>&lt;b&gt;</td><td>x&amp;y</td>|66.0"
    # the worker's fetches are seen too: every runtime file we load came from the loopback origin
    for name in ("pyodide.asm.wasm", "python_stdlib.zip", "pyodide-lock.json",
                 "numpy-2.0.2-cp312-cp312-pyodide_2024_0_wasm32.whl", "micropip-0.9.0-py3-none-any.whl",
                 pyodide_dist.JINJA2_WHEEL.filename, pyodide_dist.MARKUPSAFE_WHEEL_NAME):
        assert origin + "/pyodide/" + name in requests, (name, sorted(set(requests)))
    outside = sorted({u for u in requests if not u.startswith(origin + "/")})
    assert not outside, outside
