// The page side of the engine check: UI only; the model runs in engine-worker.js.
import "./frame-guard.js"; // first: nothing else runs in another site's frame
import { describe, showUpdate, startOffline } from "./offline.js";
import { progressText } from "./chat-shared.js";

const $ = (id) => document.getElementById(id);
const worker = new Worker("engine-worker.js");
const waiting = new Map(); // request id -> {resolve, reject, replyType}: every request in flight, of any kind
let ids = 0;

// Send a request; it settles with the reply of type `replyType` (or the error) that names its id.
function request(message, replyType) {
  const id = ++ids;
  return new Promise((resolve, reject) => {
    waiting.set(id, { resolve, reject, replyType });
    worker.postMessage({ ...message, id });
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
  const pending = waiting.get(data.id);
  if (data.type === "progress") {
    $("download").value = data.loaded / data.total;
    $("download-text").textContent = progressText(data);
  } else if (data.type === "text") {
    $("output").textContent += data.text; // text, never HTML
  } else if (data.type === "error") {
    showError(data.message);
    if (pending) {
      waiting.delete(data.id);
      pending.reject(new Error(data.message));
    }
  } else if (pending && data.type === pending.replyType) {
    waiting.delete(data.id);
    pending.resolve(data);
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
  worker,
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
