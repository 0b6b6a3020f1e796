// The Benchmark page: rendering only. The measuring loop is the worker's Python (pocketmind.bench, through
// ChatService.start_bench and chat-worker.js's "benchmark" request); this page runs it for each of the site's
// models in turn, draws its progress, and shows the numbers next to this project's reference table
// (benchmarks.json, which the builder copies from docs/benchmarks.json).
import { ChatClient } from "./chat-client.js";
import { runtimeText } from "./chat-shared.js";
import { $, modelName, showError, startPage } from "./task-shared.js";

const config = JSON.parse($("config").textContent);
const asModel = (card) => ({ url: card.file, bytes: card.bytes, sha256: card.sha256 });
const PHASES = { "warm-up": [0, 0.1], prompt: [0.1, 0.3], generate: [0.3, 1] }; // share of one model's test

// The chat worker's client, plus the streamed, stoppable speed test.
class BenchClient extends ChatClient {
  start(model = asModel(config.models[0])) {
    return super.start(model);
  }

  benchmark(request, onEvent, ticket) {
    return this._enqueueStoppable(ticket, "benchmark", { request }, { onEvent }, () => {
      if (!this.card) throw new Error(this.loading ? "the model is still loading" : "no model is loaded");
    });
  }

  stopBenchmark(ticket) {
    this._stopRequest(ticket);
  }
}

const client = new BenchClient({ python: config.python });
const state = { running: null, ready: false, results: [], text: "", engine: null };
const fmt = (x) => (x > 0 ? x.toFixed(1) : "–");

function render() {
  $("run").disabled = !state.ready || Boolean(state.running);
  $("stop").disabled = !state.running;
  $("copy").disabled = !state.text;
}

function row(file) {
  return document.querySelector(`#results tr[data-model="${CSS.escape(file)}"]`);
}

function cell(file, name, text) {
  row(file).querySelector(`.${name}`).textContent = text; // text, never HTML
}

function showProgress(index, count, event) {
  const [from, to] = PHASES[event.phase] || [0, 1];
  const within = from + (to - from) * (event.total ? event.done / event.total : 1);
  $("bench-progress").value = (index + within) / count;
  $("bench-text").textContent = `model ${index + 1} of ${count}: ${event.phase} ${event.done}/${event.total}`;
}

// The text "Copy the result" gives: what ran, where, and each model's numbers.
function resultText(results, { nPrompt, nGen }) {
  const lines = [`pocketmind benchmark, ${new Date().toISOString()}`, navigator.userAgent,
                 state.engine ? runtimeText(state.engine) : "",
                 `Prompt: ${nPrompt} tokens of a fixed English text; generation: ${nGen} greedy tokens.`];
  for (const r of results) {
    lines.push(r.stopped
      ? `${r.name}: stopped`
      : `${r.name}: prompt ${fmt(r.pp_tps)} tokens/s, generation ${fmt(r.tg_tps)} tokens/s (${r.n_prompt} + ${r.n_generated} tokens)`);
  }
  return lines.filter(Boolean).join("\n");
}

// Run the test for `files` (default: every model of the site) one after the other; resolves with the rows.
// tokens: the prompt's token ids (benchmarks give them; the page uses the first nPrompt tokens of the text).
async function run({ files = config.models.map((m) => m.file), nPrompt = Number($("n-prompt").value),
                     nGen = Number($("n-gen").value), tokens = null } = {}) {
  if (state.running) throw new Error("a benchmark is running already");
  const job = { stopped: false, ticket: null };
  state.running = job;
  state.results = [];
  state.text = "";
  showError("");
  $("copied").textContent = "";
  $("result-text").value = "";
  render();
  const cards = files.map((file) => config.models.find((m) => m.file === file));
  try {
    for (const [index, card] of cards.entries()) {
      if (!card) throw new Error(`no model ${files[index]} on this site`);
      for (const name of ["engine", "pp", "tg", "tokens"]) cell(card.file, name, "");
      cell(card.file, "state", job.stopped ? "stopped" : "loading");
      const result = { model: card.file, name: modelName(card.file), stopped: true };
      if (!job.stopped) {
        if (!client.card || client.model.url !== card.file) await client.load(asModel(card));
      }
      if (!job.stopped) {
        cell(card.file, "state", "running");
        job.ticket = { id: null, cancelled: false };
        const request = { n_prompt: nPrompt, n_gen: nGen, ...(tokens ? { tokens } : {}) };
        const done = await client.benchmark(request, (event) => {
          if (event.type === "progress") showProgress(index, cards.length, event);
        }, job.ticket);
        job.ticket = null;
        Object.assign(result, done.cancelled ? {} : done, { stopped: Boolean(done.cancelled || done.stopped) });
        delete result.id;
        delete result.type;
      }
      state.results.push(result);
      cell(card.file, "engine", state.engine ? `${state.engine.variant}, ${state.engine.threads} thread${state.engine.threads > 1 ? "s" : ""}` : "");
      if (result.stopped) {
        cell(card.file, "state", "stopped");
      } else {
        cell(card.file, "pp", fmt(result.pp_tps));
        cell(card.file, "tg", fmt(result.tg_tps));
        cell(card.file, "tokens", `${result.n_prompt} + ${result.n_generated}`);
        cell(card.file, "state", "done");
      }
    }
    $("bench-progress").value = job.stopped ? $("bench-progress").value : 1;
    $("bench-text").textContent = job.stopped ? "stopped" : "done";
    state.text = resultText(state.results, { nPrompt, nGen });
    $("result-text").value = state.text;
    return state.results;
  } catch (e) {
    showError(e.message);
    throw e;
  } finally {
    state.running = null;
    render();
  }
}

function stop() {
  const job = state.running;
  if (!job) return;
  job.stopped = true;
  if (job.ticket) client.stopBenchmark(job.ticket);
}

async function copy() {
  try {
    await navigator.clipboard.writeText(state.text);
    $("copied").textContent = "Copied.";
  } catch (e) {
    $("result-text").select(); // the person can copy it from the box
    $("copied").textContent = `The browser did not allow copying (${e.message}): the text is selected above.`;
  }
}

// This project's measurements (docs/benchmarks.md): one row per model, engine and thread count.
async function showReference() {
  const response = await fetch("benchmarks.json");
  if (!response.ok) throw new Error(`benchmarks.json: HTTP ${response.status}`);
  const reference = await response.json();
  const body = $("reference").querySelector("tbody");
  body.textContent = "";
  for (const r of reference.rows || []) {
    const tr = document.createElement("tr");
    for (const value of [r.model, r.engine, String(r.threads), fmt(r.pp_tps), fmt(r.tg_tps),
                         r.load_s == null ? "–" : r.load_s.toFixed(2)]) {
      const td = document.createElement("td");
      td.textContent = value;
      tr.append(td);
    }
    body.append(tr);
  }
  $("reference-info").textContent = (reference.rows || []).length
    ? `Measured ${reference.date} on ${reference.machine} (load average ${reference.load_average_before.join(", ")} before the run): ${reference.n_prompt} prompt tokens, ${reference.n_gen} generated, median of ${reference.rounds} rounds. Command: ${reference.command}`
    : "No reference measurements in this build.";
  return reference;
}

client.addEventListener("ready", ({ detail }) => { state.engine = detail; });
$("run").addEventListener("click", () => run().catch(() => {}));
$("stop").addEventListener("click", stop);
$("copy").addEventListener("click", () => copy());
render();

const reference = showReference().catch((e) => {
  $("reference-info").textContent = `The reference table could not be read: ${e.message}`;
  return null;
});

// For tests and benchmarks/wllama_compare.py: the same run the buttons start.
window.pocketmindBenchmark = {
  client,
  reference,
  run,
  stop,
  copy,
  text: () => state.text,
  results: () => state.results,
  ready: startPage(client).then((card) => {
    state.ready = true;
    render();
    return { card, engine: state.engine, seconds: performance.now() / 1000 };
  }),
};
window.pocketmindBenchmark.ready.catch((e) => showError(e.message));
