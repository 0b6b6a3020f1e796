// The chat page: UI only. Python, the engine and the model live in chat-worker.js.
import { describe, showUpdate, startOffline } from "./offline.js";
import { progressText, runtimeText, showEmbedSnippet } from "./chat-shared.js";
import { storagePanel } from "./storage-panel.js";

const $ = (id) => document.getElementById(id);
const config = JSON.parse($("config").textContent);
const storage = storagePanel({ usage: $("storage-usage"), persisted: $("storage-persisted"), list: $("storage-list"),
                               remove: $("delete-models") });
const worker = new Worker("chat-worker.js");
const history = []; // {role, content} of finished turns
const STAGES = { engine: "engine started", python: "Python started", glue: "glue loaded", model: "model downloaded" };
let answer = null; // the assistant message being written: {element, resolve, reject}
let modelLoaded = null; // {resolve, reject} while a model loads
let booted = 0;

function showError(message) {
  $("error").textContent = message; // text, never HTML
  $("error").hidden = !message;
}

function setBusy(writing) {
  $("send").disabled = writing || !window.pocketmindChat.card;
  $("stop").disabled = !writing;
  $("model").disabled = writing;
}

function addMessage(role, text) {
  const element = document.createElement("div");
  element.className = `message ${role}`;
  element.textContent = text;
  $("messages").append(element);
  return element;
}

function selectedModel() {
  const option = $("model").selectedOptions[0];
  return { url: option.value, bytes: Number(option.dataset.bytes), sha256: option.dataset.sha256 || undefined };
}

function waitForModel() {
  return new Promise((resolve, reject) => (modelLoaded = { resolve, reject }));
}

worker.onmessage = ({ data }) => {
  if (data.type === "stage") {
    $("boot-progress").value = ++booted;
    $("boot-text").textContent = `${STAGES[data.stage] || data.stage} (${data.seconds.toFixed(1)} s)`;
  } else if (data.type === "progress") {
    $("model-progress").value = data.loaded / data.total;
    $("model-text").textContent = progressText(data);
  } else if (data.type === "ready") {
    $("runtime").textContent = runtimeText(data);
    window.pocketmindChat.engine = data;
  } else if (data.type === "loaded") {
    const c = data.card;
    window.pocketmindChat.card = c;
    $("card").textContent = `${c.general["general.name"] || c.description}: ${c.architecture}, ${(c.n_params / 1e6).toFixed(0)}M parameters, context ${c.n_ctx} of ${c.n_ctx_train}, ${c.has_chat_template ? "own chat template" : "no chat template (ChatML used)"}`;
    $("storage").textContent = data.fromCache ? "Loaded from this device's storage (works offline)."
      : data.stored ? "Kept on this device for offline use."
      : `Could not keep the model offline: ${data.storeError || "unknown reason"}`;
    window.pocketmindChat.storage = { fromCache: data.fromCache, stored: data.stored, storeError: data.storeError };
    (data.stored ? storage.modelKept() : storage.refresh()).catch(() => {});
    renderOffline();
    history.length = 0;
    $("messages").textContent = "";
    setBusy(false);
    modelLoaded?.resolve(c);
    modelLoaded = null;
  } else if (data.type === "text") {
    answer.element.textContent += data.text;
  } else if (data.type === "done") {
    history.push({ role: "assistant", content: data.text });
    $("speed").textContent = `${data.n_generated} tokens at ${data.generation_tokens_per_s.toFixed(1)} tokens/s; prompt: ${data.n_prompt_decoded} decoded, ${data.n_reused} reused`;
    window.pocketmindChat.lastDone = data;
    setBusy(false);
    answer.resolve(data);
    answer = null;
  } else if (data.type === "error") {
    showError(data.message);
    const error = new Error(data.message);
    if (answer) {
      history.pop(); // the question that got no answer
      answer.reject(error);
      answer = null;
    }
    if (data.during === "boot" || data.during === "load") window.pocketmindChat.card = null; // the old model is gone
    modelLoaded?.reject(error);
    modelLoaded = null;
    setBusy(false);
  }
};

worker.onerror = (event) => {
  event.preventDefault();
  showError(`the chat engine failed: ${event.message || "worker error"}`);
  answer?.reject(new Error(event.message));
  modelLoaded?.reject(new Error(event.message));
};

function ask(text) {
  if (answer) return Promise.reject(new Error("an answer is already being written"));
  showError("");
  history.push({ role: "user", content: text });
  addMessage("user", text);
  const messages = [...history];
  const system = $("system").value.trim();
  if (system) messages.unshift({ role: "system", content: system });
  const request = {
    messages,
    max_tokens: Number($("max-tokens").value),
    settings: { temperature: Number($("temperature").value), top_p: Number($("top-p").value) },
  };
  setBusy(true);
  const element = addMessage("assistant", "");
  return new Promise((resolve, reject) => {
    answer = { element, resolve, reject };
    worker.postMessage({ type: "ask", request });
  });
}

window.pocketmindChat = {
  card: null,
  ready: waitForModel(),
  ask,
  stop: () => worker.postMessage({ type: "stop" }),
  bench: (nPrompt, nGen) => new Promise((resolve, reject) => {
    const listener = ({ data }) => {
      if (data.type !== "bench" && data.type !== "error") return;
      worker.removeEventListener("message", listener);
      if (data.type === "bench") resolve(data);
      else reject(new Error(data.message));
    };
    worker.addEventListener("message", listener);
    worker.postMessage({ type: "bench", n_prompt: nPrompt, n_gen: nGen });
  }),
  use: (url) => {
    $("model").value = url;
    showError("");
    setBusy(true);
    const loaded = waitForModel();
    worker.postMessage({ type: "load", model: selectedModel() });
    return loaded;
  },
};
window.pocketmindChat.ready.catch(() => {});

$("ask").addEventListener("submit", (event) => {
  event.preventDefault();
  const text = $("prompt").value.trim();
  if (!text) return;
  $("prompt").value = "";
  ask(text).catch(() => {});
});
$("prompt").addEventListener("keydown", (event) => {
  if (event.key === "Enter" && !event.shiftKey) {
    event.preventDefault();
    $("ask").requestSubmit();
  }
});
$("stop").addEventListener("click", () => window.pocketmindChat.stop());
$("model").addEventListener("change", () => window.pocketmindChat.use($("model").value).catch(() => {}));
showEmbedSnippet($("embed-snippet"), $("model"));

function renderOffline() {
  const state = offline.state;
  $("offline").textContent = describe(state, window.pocketmindChat.storage || null);
  showUpdate($("update"), state, () => offline.update());
}

// The service worker first: where the host sends no COOP/COEP it reloads the page once (then isolated), and
// booting before that would download the runtime twice.
const offline = startOffline(renderOffline);
window.pocketmindOffline = offline;
renderOffline();
offline.ready.then(({ reloading }) => {
  if (reloading) return;
  offline.booted();
  worker.postMessage({ type: "boot", config: { wheels: config.wheels, model: selectedModel() } });
});
