// The chat page: rendering only. The worker, the model and the conversation are chat-client.js's.
import "./frame-guard.js"; // first: nothing else runs in another site's frame
import { describe, showUpdate, startOffline } from "./offline.js";
import { ChatClient } from "./chat-client.js";
import { progressText, runtimeText, showEmbedSnippet, showOutcome } from "./chat-shared.js";
import { storagePanel } from "./storage-panel.js";
import { addLocalModels } from "./local-models.js";

const $ = (id) => document.getElementById(id);
const config = JSON.parse($("config").textContent);
const storage = storagePanel({ usage: $("storage-usage"), persisted: $("storage-persisted"), list: $("storage-list"),
                               remove: $("delete-models") });
const client = new ChatClient({ python: config.python });
const chat = client.conversation();
const STAGES = { worker: "worker started", engine: "engine started", python: "Python started",
                 packages: "packages unpacked", glue: "glue loaded", model: "model downloaded" };
$("boot-progress").max = Object.keys(STAGES).length;
// the Settings inputs and the sampling setting each one holds
const SETTINGS = { temperature: "temperature", "top-p": "top_p", "repeat-penalty": "repeat_penalty" };
let writing = null; // the assistant message element being written
let adapting = false; // an adapter is being applied
let booted = 0;

function showError(message) {
  $("error").textContent = message; // text, never HTML
  $("error").hidden = !message;
}

function render() {
  const usable = Boolean(client.card) && !client.loading;
  $("send").disabled = Boolean(writing) || !usable;
  $("stop").disabled = !writing;
  $("model").disabled = Boolean(writing) || client.loading; // one load at a time, never under an answer
  for (const id of ["adapter", "adapter-scale", "adapter-file"]) $(id).disabled = Boolean(writing) || !usable || adapting;
  $("new-chat").disabled = chat.history.length === 0 && !writing;
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

// The model's recommended sampling settings (from its GGUF, else ours) become the Settings' values, except
// those the person has changed: their choice stays when they switch models.
function applyDefaults(defaults = {}) {
  for (const [input, key] of Object.entries(SETTINGS)) {
    if (defaults[key] != null && !$(input).dataset.changed) $(input).value = String(defaults[key]);
  }
}
for (const input of Object.keys(SETTINGS)) {
  $(input).addEventListener("input", () => { $(input).dataset.changed = "yes"; });
}

client.addEventListener("stage", ({ detail }) => {
  // on the page's clock (ms since navigation), from the worker's own timestamp
  window.pocketmindChat.stages.push({ stage: detail.stage, seconds: detail.seconds,
                                      ms: detail.at - performance.timeOrigin,
                                      ...("snapshot" in detail ? { snapshot: detail.snapshot } : {}) });
  $("boot-progress").value = ++booted;
  $("boot-text").textContent = `${STAGES[detail.stage] || detail.stage} (${detail.seconds.toFixed(1)} s)`;
});
client.addEventListener("progress", ({ detail }) => {
  if (detail.what !== "model") return;
  $("model-progress").value = detail.loaded / detail.total;
  $("model-text").textContent = progressText(detail);
});
client.addEventListener("ready", ({ detail }) => {
  $("runtime").textContent = runtimeText(detail);
  window.pocketmindChat.engine = detail;
});
client.addEventListener("loaded", ({ detail }) => {
  const c = detail.card;
  $("card").textContent = `${c.general["general.name"] || c.description}: ${c.architecture}, ${(c.n_params / 1e6).toFixed(0)}M parameters, context ${c.n_ctx} of ${c.n_ctx_train}, ${c.has_chat_template ? "own chat template" : "no chat template (ChatML used)"}`;
  $("storage").textContent = detail.fromCache ? "Loaded from this device's storage (works offline)."
    : detail.stored ? "Kept on this device for offline use."
    : `Could not keep the model offline: ${detail.storeError || "unknown reason"}`;
  window.pocketmindChat.card = c;
  window.pocketmindChat.storage = { fromCache: detail.fromCache, stored: detail.stored, storeError: detail.storeError };
  (detail.stored ? storage.modelKept() : storage.refresh()).catch(() => {});
  applyDefaults(c.sampling_defaults);
  renderOffline();
});
client.addEventListener("state", () => {
  if (!client.card) window.pocketmindChat.card = null;
  render();
});
// a newly loaded model, or a fresh worker, starts without an adapter
client.addEventListener("loaded", () => showAdapters([]));
client.addEventListener("restart", () => showAdapters([]));

// ---- LoRA adapters: kept in the model store under adapters/<file name>, applied one at a time ----

const ADAPTERS = "adapters/";
const adapterUrl = (name) => new URL(ADAPTERS + encodeURIComponent(name), location.href).href;

function showAdapters(list) {
  window.pocketmindChat.adapters = list;
  if (list.length === 0) $("adapter").value = "";
  $("adapter-status").textContent = list.map((a) => `${a.name} applied at scale ${a.scale}` +
    (a.alpha != null ? ` (alpha ${a.alpha})` : "")).join("; ");
  return list;
}

// The adapters in the model store become the menu's entries (after "None").
async function listAdapters() {
  const prefix = new URL(ADAPTERS, location.href).href;
  const stored = (await pocketmindModelStore.listModels()).filter((m) => m.url.startsWith(prefix));
  const chosen = $("adapter").value;
  $("adapter").replaceChildren($("adapter").options[0]);
  for (const m of stored) {
    const option = document.createElement("option");
    option.value = m.url;
    option.dataset.bytes = String(m.size);
    option.dataset.sha256 = m.sha256 || "";
    option.textContent = decodeURIComponent(m.url.slice(prefix.length)); // text, never HTML
    $("adapter").append(option);
  }
  $("adapter").value = stored.some((m) => m.url === chosen) ? chosen : "";
  return stored;
}

// Apply the adapter chosen in the menu (none: remove it) at the scale given.
function applyAdapter() {
  const option = $("adapter").selectedOptions[0];
  const adapter = option && option.value
    ? { url: option.value, bytes: Number(option.dataset.bytes), sha256: option.dataset.sha256 || undefined } : null;
  showError("");
  adapting = true;
  render();
  return client.setAdapter(adapter, Number($("adapter-scale").value)).then(showAdapters, (e) => {
    showError(e.message);
    $("adapter").value = "";
    showAdapters([]);
    throw e;
  }).finally(() => {
    adapting = false;
    render();
  });
}

// A file the person picked: kept in the model store, then applied.
async function addAdapterFile(file) {
  const stored = await pocketmindModelStore.storeModel(adapterUrl(file.name), new Uint8Array(await file.arrayBuffer()));
  await listAdapters();
  storage.refresh().catch(() => {});
  $("adapter").value = stored.url;
  return applyAdapter();
}
client.addEventListener("restart", ({ detail }) => {
  showError(detail.message);
  $("runtime").textContent = detail.reloading ? "Restarting the engine…" : "The engine stopped.";
  booted = 0;
});
client.addEventListener("failed", ({ detail }) => showError(detail.message));

function ask(text) {
  if (writing) return Promise.reject(new Error("an answer is already being written"));
  showError("");
  $("context-note").textContent = "";
  addMessage("user", text);
  const element = (writing = addMessage("assistant", ""));
  render();
  const settings = Object.fromEntries(Object.entries(SETTINGS).map(([input, key]) => [key, Number($(input).value)]));
  const answer = chat.ask(text, {
    system: $("system").value.trim(),
    settings,
    maxTokens: Number($("max-tokens").value),
    onText: (piece) => { element.textContent += piece; },
    onPrompt: ({ decoded, total }) => { $("speed").textContent = `Reading the prompt: ${decoded} of ${total} tokens…`; },
  });
  return showOutcome(answer, { element, note: $("context-note"), showError }).then((done) => {
    $("speed").textContent = `${done.n_generated} tokens at ${done.generation_tokens_per_s.toFixed(1)} tokens/s; prompt: ${done.n_prompt_decoded} decoded, ${done.n_reused} reused`;
    window.pocketmindChat.lastDone = done;
    return done;
  }).finally(() => {
    writing = null;
    render();
  });
}

function newChat() {
  chat.reset();
  $("messages").textContent = "";
  $("context-note").textContent = "";
  $("speed").textContent = "";
  showError("");
  render();
}

function use(url) {
  $("model").value = url;
  showError("");
  newChat(); // another model: another conversation
  return client.load(selectedModel()).catch((e) => {
    if (e.modelKept && client.model) $("model").value = client.model.url; // the menu shows the model still loaded
    showError(e.message);
    throw e;
  });
}

window.pocketmindChat = {
  client,
  chat,
  card: null,
  engine: null,
  ready: null,
  stages: [], // {stage, seconds (since the worker started), ms (since navigation)} of each worker's boot
  ask,
  stop: () => chat.stop(),
  newChat,
  bench: (nPrompt, nGen) => client.bench(nPrompt, nGen),
  use,
  adapters: [],
  // apply a stored adapter by file name (null: none) at a scale
  adapter: (name, scale = 1) => {
    $("adapter").value = name ? adapterUrl(name) : "";
    $("adapter-scale").value = String(scale);
    return applyAdapter();
  },
};

$("ask").addEventListener("submit", (event) => {
  event.preventDefault();
  const text = $("prompt").value.trim();
  if (!text || writing) return;
  $("prompt").value = "";
  ask(text).catch(() => {});
});
$("prompt").addEventListener("keydown", (event) => {
  if (event.key === "Enter" && !event.shiftKey) {
    event.preventDefault();
    $("ask").requestSubmit();
  }
});
$("stop").addEventListener("click", () => chat.stop());
$("new-chat").addEventListener("click", newChat);
$("model").addEventListener("change", () => use($("model").value).catch(() => {}));
$("adapter").addEventListener("change", () => applyAdapter().catch(() => {}));
$("adapter-scale").addEventListener("change", () => { if ($("adapter").value) applyAdapter().catch(() => {}); });
$("adapter-file").addEventListener("change", () => {
  const file = $("adapter-file").files[0];
  $("adapter-file").value = "";
  if (file) addAdapterFile(file).catch((e) => showError(e.message));
});
listAdapters().catch(() => {});
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
render();
addLocalModels($("model")).catch(() => []); // models fine-tuned on the Tasks page
window.pocketmindChat.ready = offline.ready.then(({ reloading }) => {
  if (reloading) return new Promise(() => {}); // this page is going away
  offline.booted();
  return client.start(selectedModel());
});
window.pocketmindChat.ready.catch((e) => showError(e.message));
