// The Evaluate page: rendering only. Every model, ensemble and cascade runs in the worker (tasks.compare.Lineup,
// as `python -m pocketmind eval` runs it); this page draws its progress, its table, a chart and the prices.
import { TaskClient } from "./task-client.js";
import { $, cell, download, fileDrop, formatBytes, modelOf, showError, startPage, taskPicker } from "./task-shared.js";
import { addLocalModels, listHeads } from "./local-models.js";

const config = JSON.parse($("config").textContent);
const client = new TaskClient({ python: config.python });
const SVG = "http://www.w3.org/2000/svg";
let file = null; // a dropped CSV: {name, size, kind, bytes}; null: the shipped task's own CSV
let job = null;
let summary = null; // the last evaluation's done event
let peak = {}; // setup -> the most wasm memory seen while it ran
let helpers = []; // extra TaskClients that answer for some models in parallel
let helperJobs = []; // their answer jobs in flight
const WORKER_OVERHEAD = 300 * 1048576; // Pyodide, the glue and the engine in one worker, before any model

const picker = taskPicker(client, config.tasks, () => {
  render();
  showHeads().catch((e) => showError(e.message));
});

// The kept heads of the loaded task, as checkboxes (unchecked: a head is an extra voter to ask for).
let heads = []; // listHeads() entries of this task
async function showHeads() {
  const { info } = picker.current();
  heads = info ? (await listHeads()).filter((h) => h.task === info.name) : [];
  const box = $("heads");
  box.replaceChildren(box.querySelector("legend"));
  for (const head of heads) {
    const input = document.createElement("input");
    input.type = "checkbox";
    input.value = head.name;
    const label = document.createElement("label");
    label.className = "check";
    label.append(input, ` ${head.name} (reads ${head.model_name || "its model"})`); // text, never HTML
    box.append(label);
  }
  box.hidden = heads.length === 0;
}

// The checked heads, imported into the evaluating worker with their models loaded there: their names.
async function useHeads(models) {
  const chosen = [...document.querySelectorAll("#heads input:checked")].map((i) => heads.find((h) => h.name === i.value));
  for (const head of chosen) {
    const model = models.find((m) => m.sha256 === head.model_sha256);
    if (!model) throw new Error(`The head "${head.name}" reads the features of ${head.model_name || "another model"}: `
                                + "check that model too.");
    await client.load(model);
    await client.call("import_head", head.json, head.name);
  }
  return chosen.map((h) => h.name);
}

function checkedModels() {
  return [...document.querySelectorAll("#models input:checked")].map(modelOf);
}

function render() {
  const { info, shipped } = picker.current();
  const hasData = Boolean(file || (shipped && shipped.data));
  $("run").disabled = Boolean(job) || !info || !info.labels || !hasData || !client.ready || client.loading
    || checkedModels().length === 0;
  $("stop").disabled = !job;
  $("task").disabled = Boolean(job);
  for (const input of document.querySelectorAll("#models input, #heads input")) input.disabled = Boolean(job);
  $("download-json").disabled = Boolean(job) || !summary;
  $("data-name").textContent = file ? `${file.name} (${file.size} bytes)`
    : shipped && shipped.data ? `${shipped.data}, shipped with this task` : "none yet: drop a CSV";
}

fileDrop($("drop"), $("file"), (dropped) => {
  file = dropped;
  showError("");
  render();
});
$("task").addEventListener("change", () => { file = null; render(); });

// One progress bar per setup (and per voter on the dev rows), made as its first event arrives.
function showProgress(event) {
  const key = `${event.phase}:${event.setup}`;
  let row = document.querySelector(`[data-setup="${CSS.escape(key)}"]`);
  if (!row) {
    row = document.createElement("div");
    row.className = "progress";
    row.dataset.setup = key;
    const what = document.createElement("span");
    what.className = "what wide";
    what.textContent = event.phase === "dev" ? `${event.setup} (fitting)` : event.setup;
    row.append(what, document.createElement("progress"), document.createElement("span"));
    $("setup-progress").append(row);
  }
  const bar = row.querySelector("progress");
  bar.max = event.total;
  bar.value = event.done;
  row.lastChild.textContent = `${event.done} of ${event.total}`;
  if (event.phase === "test" && event.wasm_memory_bytes) {
    peak[event.setup] = Math.max(peak[event.setup] || 0, event.wasm_memory_bytes);
  }
}

// How many workers answer side by side: one per model where the device has two cores for each and the memory
// (a quarter of what the browser reports) for each extra worker with its models; "1" on a small device.
function workerCount(models) {
  const asked = $("workers").value;
  if (asked) return Math.max(1, Math.min(models.length, Number(asked)));
  const cores = navigator.hardwareConcurrency || 2;
  const budget = ((navigator.deviceMemory || 4) * 2 ** 30) / 4;
  const extra = models.slice(1).map((m) => WORKER_OVERHEAD + 3 * m.bytes).sort((a, b) => a - b);
  let n = 1;
  for (let used = 0; n < models.length && n < Math.floor(cores / 2) && used + extra[n - 1] <= budget; n++) {
    used += extra[n - 1];
  }
  return n;
}

// Start (once) the extra workers, each with its share of the cores.
async function startHelpers(count) {
  const threads = Math.max(1, Math.floor((navigator.hardwareConcurrency || 2) / (count + 1)));
  while (helpers.length < count) helpers.push(new TaskClient({ python: config.python, maxThreads: threads }));
  await Promise.all(helpers.slice(0, count).map((h) => (h.ready ? null : h.start())));
  return helpers.slice(0, count);
}

async function evaluate() {
  if (job) throw new Error("an evaluation is already running");
  showError("");
  summary = null;
  peak = {};
  $("results").hidden = true;
  $("setup-progress").textContent = "";
  const { shipped } = picker.current();
  const models = checkedModels();
  const onEvent = (event) => event.type === "progress" && showProgress(event);
  const started = performance.now();
  job = { stopped: false, stop: () => { job.stopped = true; helperJobs.forEach((j) => j.stop()); } };
  render();
  try {
    const data = file ? file.bytes : new Uint8Array(await (await fetch(shipped.data)).arrayBuffer());
    const request = { file: "csv", models: models.map((m) => m.name) };
    if ($("shots").value.trim()) request.shots = $("shots").value; // empty: the task's own voters, else 0-shot
    if ($("max-items").value) request.max_items = Number($("max-items").value);
    const count = workerCount(models);
    // the models dealt round-robin: this page's worker takes the first, each helper its share
    const groups = Array.from({ length: count }, (_, i) => models.filter((_, j) => j % count === i));
    for (const model of groups[0]) await client.load(model); // kept loaded: the ensembles ask them all
    const headNames = await useHeads(models); // the evaluating worker's voters only: not the helpers' request
    if (count > 1) {
      request.answers = Object.assign({}, ...await answerInParallel(await startHelpers(count - 1), groups, request, data, onEvent));
    }
    if (job.stopped) {
      summary = { stopped: true, setups: [] };
    } else {
      const evaluation = client.evaluate(headNames.length ? { ...request, heads: headNames } : request, { data, onEvent });
      job.stop = evaluation.stop;
      summary = await evaluation.done;
      summary.workers = count;
      summary.wall_seconds = (performance.now() - started) / 1000;
    }
  } catch (e) {
    showError(e.message);
    throw e;
  } finally {
    job = null;
    helperJobs = [];
    render();
  }
  window.pocketmindEvaluate.lastDone = summary;
  window.pocketmindEvaluate.lastPeak = { ...peak }; // setup -> wasm memory bytes (benchmarks read it)
  if (summary.setups.length) await showResults(summary);
  else showError("Stopped before any setup was scored on the test rows.");
  return summary;
}

// Every worker answers for its models at once (this page's worker too); resolves with their answers.
async function answerInParallel(extra, groups, request, data, onEvent) {
  const workers = [client, ...extra];
  await Promise.all(workers.map(async (worker, i) => {
    for (const model of groups[i]) await worker.load(model);
    if (worker !== client) await worker.loadTask(client.taskJson);
  }));
  helperJobs = workers.map((worker, i) => worker.answers({ ...request, models: groups[i].map((m) => m.name) },
                                                         { data, onEvent }));
  const done = await Promise.all(helperJobs.map((j) => j.done));
  if (done.some((d) => d.stopped || d.cancelled)) job.stopped = true;
  return done.map((d) => d.answers || {});
}

async function showResults(done) {
  $("results").hidden = false;
  const target = $("target").value === "" ? null : Number($("target").value);
  const rec = target === null ? done.recommendation : JSON.parse(await client.call("recommend", JSON.stringify(target)));
  $("recommendation").textContent = (done.stopped ? "Stopped early: partial results. " : "") + rec.text;
  const body = $("table").tBodies[0];
  body.textContent = "";
  for (const s of done.setups) {
    const row = document.createElement("tr");
    if (s.name === rec.setup) row.className = "recommended";
    cell(row, s.n < done.n ? `${s.name} (${s.n} of ${done.n} rows)` : s.name);
    cell(row, s.accuracy.toFixed(3), true);
    cell(row, s.macro_f1.toFixed(3), true);
    cell(row, s.ms_per_item.toFixed(1), true);
    cell(row, Math.round(s.tokens_per_s).toString(), true);
    cell(row, peak[s.name] ? formatBytes(peak[s.name]) : "", true);
    cell(row, (s.model_bytes / 1048576).toFixed(1), true);
    body.append(row);
  }
  $("cascade").textContent = done.notes ? done.notes.cascade : "";
  drawChart(done.setups, rec.setup);
  const hosted = $("hosted").tBodies[0];
  hosted.textContent = "";
  $("hosted-intro").textContent = done.notes ? done.notes.hosted : "";
  for (const m of done.hosted.models) {
    const row = document.createElement("tr");
    cell(row, `${m.name} (${m.provider})`);
    cell(row, `$${m.input_per_million}`, true);
    cell(row, `$${m.output_per_million}`, true);
    cell(row, m.usd_text, true);
    cell(row, m.per_million_items_text, true);
    cell(row, `${m.as_of}: ${m.source}`);
    hosted.append(row);
  }
  const fastest = Math.max(...done.setups.map((s) => s.tokens_per_s));
  const how = done.workers > 1 ? `${done.workers} workers side by side` : "one worker";
  const engine = client.engine ? client.engine.variant : "engine";
  $("here").textContent = `Here: $0 per item, on this device at up to ${Math.round(fastest)} tokens/s (${engine}), `
    + `and nothing leaves it. This evaluation took ${done.wall_seconds.toFixed(1)} s with ${how}.`;
}

// Accuracy (up) against compute per item (right, log scale: parameters × tokens), a dot per setup.
function drawChart(setups, recommended) {
  const W = 640, H = 320, L = 56, R = 16, T = 16, B = 44;
  const xs = setups.map((s) => Math.log10(Math.max(s.cost_per_item, 1)));
  let [x0, x1] = [Math.min(...xs), Math.max(...xs)];
  if (x1 - x0 < 0.2) { x0 -= 0.1; x1 += 0.1; }
  const ys = setups.map((s) => s.accuracy);
  const y0 = Math.max(0, Math.floor((Math.min(...ys) - 0.05) * 10) / 10), y1 = Math.min(1, Math.ceil((Math.max(...ys) + 0.05) * 10) / 10);
  const px = (x) => L + ((x - x0) / (x1 - x0)) * (W - L - R);
  const py = (y) => H - B - ((y - y0) / (y1 - y0 || 1)) * (H - T - B);
  const svg = document.createElementNS(SVG, "svg");
  svg.setAttribute("viewBox", `0 0 ${W} ${H}`);
  svg.setAttribute("role", "img");
  svg.setAttribute("aria-label", "Accuracy against compute per item");
  const add = (tag, attrs, text) => {
    const el = document.createElementNS(SVG, tag);
    for (const [k, v] of Object.entries(attrs)) el.setAttribute(k, String(v));
    if (text !== undefined) el.textContent = text;
    svg.append(el);
    return el;
  };
  for (let y = y0; y <= y1 + 1e-9; y += 0.1) {
    add("line", { x1: L, x2: W - R, y1: py(y), y2: py(y), class: "grid" });
    add("text", { x: L - 6, y: py(y) + 4, "text-anchor": "end" }, y.toFixed(1));
  }
  add("line", { x1: L, x2: W - R, y1: H - B, y2: H - B, class: "axis" });
  add("line", { x1: L, x2: L, y1: T, y2: H - B, class: "axis" });
  for (const x of [x0, (x0 + x1) / 2, x1]) {
    add("text", { x: px(x), y: H - B + 16, "text-anchor": "middle" }, `${giga(10 ** x)} G`);
  }
  add("text", { x: (L + W - R) / 2, y: H - 6, "text-anchor": "middle" }, "compute per item: parameters × tokens (log scale)");
  add("text", { x: 12, y: T + (H - T - B) / 2, transform: `rotate(-90 12 ${T + (H - T - B) / 2})`, "text-anchor": "middle" }, "accuracy");
  // setups at the same point (ensembles that agree on every item) share a dot and a label
  const points = new Map();
  setups.forEach((s, i) => {
    const key = `${px(xs[i]).toFixed(0)},${py(s.accuracy).toFixed(0)}`;
    const point = points.get(key) || { cx: px(xs[i]), cy: py(s.accuracy), names: [] };
    point.names.push(s.name);
    points.set(key, point);
  });
  const placed = []; // label boxes drawn so far: a label that would overlap one moves down a line
  const overlaps = (a) => placed.some((b) => a.x0 < b.x1 && b.x0 < a.x1 && a.y0 < b.y1 && b.y0 < a.y1);
  for (const { cx, cy, names } of points.values()) {
    add("circle", { cx, cy, r: 5, class: names.includes(recommended) ? "recommended" : "" });
    const text = names.join(", ");
    const width = 7 * text.length + 6; // at most about 7 px a character at 11 px, and a gap
    const right = cx > W / 2; // labels stay inside the chart: left of dots on its right half
    const x0 = right ? cx - 8 - width : cx + 8;
    let y = cy - 6;
    while (overlaps({ x0, x1: x0 + width, y0: y - 11, y1: y }) && y < H - B) y += 12;
    placed.push({ x0, x1: x0 + width, y0: y - 11, y1: y });
    add("text", { x: right ? cx - 8 : cx + 8, y, "text-anchor": right ? "end" : "start" }, text);
  }
  $("chart").replaceChildren(svg);
}

// 6994780416 -> "7.0", 1.04e11 -> "104": billions, two significant digits below 100
function giga(value) {
  const g = value / 1e9;
  return g >= 100 ? String(Math.round(g)) : g.toPrecision(2);
}

$("run").addEventListener("click", () => evaluate().catch(() => {}));
$("stop").addEventListener("click", () => job && job.stop());
$("target").addEventListener("change", () => summary && summary.setups.length && showResults(summary).catch((e) => showError(e.message)));
$("download-json").addEventListener("click", () => {
  download(`${summary.task}-evaluation.json`, JSON.stringify({ ...summary, wasm_memory_peak: peak }, null, 2), "application/json");
});
$("models").addEventListener("change", render); // the site's models and those made in this browser alike
client.addEventListener("state", render);

window.pocketmindEvaluate = { client, evaluate, picker, lastDone: null, ready: null };
render();
window.pocketmindEvaluate.ready = startPage(client)
  .then(() => addLocalModels($("models"), { checkbox: true }).catch(() => []))
  .then(() => picker.pick()).then(render);
window.pocketmindEvaluate.ready.catch((e) => showError(e.message));
