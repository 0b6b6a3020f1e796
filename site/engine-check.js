// The page side of the engine check: UI only; the model runs in engine-worker.js.
import { describe, showUpdate, startOffline } from "./offline.js";

const $ = (id) => document.getElementById(id);
const worker = new Worker("engine-worker.js");
const waiting = new Map(); // message type -> resolver, for the one request in flight of each kind

function request(message, replyType) {
  return new Promise((resolve, reject) => {
    waiting.set(replyType, { resolve, reject });
    worker.postMessage(message);
  });
}

// A worker that dies (or fails to start) must not leave the page waiting forever.
worker.onerror = (event) => {
  event.preventDefault();
  const error = new Error(`the engine failed: ${event.message || "worker error"}`);
  for (const { reject } of waiting.values()) reject(error);
  waiting.clear();
  showError(error.message);
};

function showError(message) {
  $("error").textContent = message;
  $("error").hidden = false;
}

worker.onmessage = ({ data }) => {
  if (data.type === "progress") {
    $("download").value = data.loaded / data.total;
    $("download-text").textContent = `${(data.loaded / 1048576).toFixed(1)} of ${(data.total / 1048576).toFixed(1)} MB (${Math.round((100 * data.loaded) / data.total)} %)`;
  } else if (data.type === "text") {
    $("output").textContent += data.text; // text, never HTML
  } else if (data.type === "error") {
    for (const { reject } of waiting.values()) reject(new Error(data.message));
    waiting.clear();
    showError(data.message);
  } else if (waiting.has(data.type)) {
    const { resolve } = waiting.get(data.type);
    waiting.delete(data.type);
    resolve(data);
  }
};

async function loadSelected() {
  const option = $("model").selectedOptions[0];
  $("run").disabled = true;
  $("error").hidden = true;
  const model = { url: option.value, bytes: Number(option.dataset.bytes), sha256: option.dataset.sha256 || undefined };
  await request({ type: "load", model }, "loaded");
  $("run").disabled = false;
}

async function run() {
  $("output").textContent = "";
  $("speed").textContent = "";
  $("error").hidden = true;
  $("run").disabled = true;
  const chat = $("model").selectedOptions[0].dataset.chat === "yes";
  try {
    const done = await request({ type: "generate", prompt: $("prompt").value, n: Number($("max-tokens").value), chat }, "done");
    $("speed").textContent = `${done.tokens.length} tokens in ${done.seconds.toFixed(2)} s (${(done.tokens.length / done.seconds).toFixed(1)} tokens/s)`;
  } finally {
    $("run").disabled = false;
  }
}

function renderOffline() {
  $("offline").textContent = describe(offline.state);
  showUpdate($("update"), offline.state, () => offline.update());
}

// The service worker may reload the page once to make it cross-origin isolated: the engine starts after that.
const offline = startOffline(renderOffline);
window.pocketmindOffline = offline;
renderOffline();

// For tests and the benchmark page: greedy token ids from token ids.
window.pocketmindCheck = {
  ready: (async () => {
    const { reloading } = await offline.ready;
    if (reloading) await new Promise(() => {}); // this page is going away
    offline.booted();
    const info = await request({ type: "init" }, "ready");
    $("runtime").textContent = `Engine ${info.variant} (${info.threads} thread${info.threads > 1 ? "s" : ""}; ${self.crossOriginIsolated ? "cross-origin isolated" : "not cross-origin isolated: single thread"}).`;
    await loadSelected();
    return info;
  })().catch((e) => { showError(e.message); throw e; }),
  greedy: (tokens, n) => request({ type: "greedy", tokens, n }, "done").then((d) => d.tokens),
  bench: (nPrompt, nGen) => request({ type: "bench", n_prompt: nPrompt, n_gen: nGen }, "done"),
  use: async (file) => {
    $("model").value = file;
    await loadSelected();
  },
};

$("run").addEventListener("click", () => run().catch(() => {}));
$("model").addEventListener("change", () => loadSelected().catch(() => {}));
