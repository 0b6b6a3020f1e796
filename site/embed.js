// embed.html: a compact chat with one model, made to sit in an iframe on another site (pocketmind-chat.js makes
// one). Python, the engine and the model run in chat-worker.js, as on the chat page, in the visitor's browser.
//
// URL parameters: model (a model file of this site: "models/x.gguf" or "x.gguf"; default the first), temperature,
// top_p, max_tokens, system, and origin: the embedding page's origin (pocketmind-chat.js sets it).
//
// The embedding page may drive the chat with postMessage (window.parent only; from `origin` only, when given):
//   in:  {type: "ask", id, text}    a question (id: a string or number, echoed in the replies)
//        {type: "stop"}             stop the answer being written
//   out: {source: "pocketmind", type: "text", id, text}      each piece of the answer, as it is written
//        {source: "pocketmind", type: "answer", id, text, finish_reason, n_generated}
//        {source: "pocketmind", type: "error", id, message}
//        {source: "pocketmind", type: "status", state: "starting" | "loading" | "ready" | "error", ...}
// Anything else is ignored.
//
// Origins. Replies to an ask go to event.origin, the origin the browser vouches for as the asker's (and only the
// parent may ask), so an answer reaches nobody who did not ask for it, even if the parent navigates away meanwhile.
// Status messages say nothing of the conversation (model name, progress, threads, errors) and go to the `origin`
// parameter, or to "*" without one. Questions the visitor types into this frame, and their answers, never leave
// it: the embedding page sees only "busy" and "ready" statuses, so the iframe stays the privacy boundary it is.
import { progressText, runtimeText } from "./chat-shared.js";

const $ = (id) => document.getElementById(id);
const config = JSON.parse($("config").textContent);
const params = new URLSearchParams(location.search);
const framed = window.parent !== window;
const MAX_QUESTION = 16_000; // characters in one question from the embedding page

function number(name, fallback, min, max) {
  const value = Number(params.get(name) ?? NaN);
  return params.has(name) && Number.isFinite(value) ? Math.min(max, Math.max(min, value)) : fallback;
}

const settings = { temperature: number("temperature", 0.7, 0, 2), top_p: number("top_p", 0.95, 0.05, 1) };
const maxTokens = Math.round(number("max_tokens", 256, 1, 2048));
const system = (params.get("system") ?? "You are a helpful assistant.").slice(0, 4000).trim();

// undefined: none given (any parent may ask; replies go to the asker's origin); null: malformed (no messages in
// or out); else the only origin accepted and told about status
const declaredOrigin = (() => {
  if (!params.has("origin")) return undefined;
  try {
    const origin = new URL(params.get("origin")).origin;
    return origin === "null" ? null : origin;
  } catch (_) {
    return null;
  }
})();

const wanted = params.get("model");
const card = wanted
  ? config.models.find((m) => m.file === wanted || m.file === `models/${wanted}`)
  : config.models[0];

const history = []; // {role, content} of finished turns
let current = null; // the answer being written: {element, resolve, reject, onText}
let modelIsLoaded = false;
let loaded;
const ready = new Promise((resolve, reject) => (loaded = { resolve, reject }));
ready.catch(() => {});
let queue = Promise.resolve(); // one answer at a time, in the order asked

function notify(status) {
  if (!framed || declaredOrigin === null) return;
  window.parent.postMessage({ source: "pocketmind", type: "status", ...status }, declaredOrigin || "*");
}

function showError(message) {
  $("error").textContent = message; // text, never HTML
  $("error").hidden = !message;
}

function setBusy(writing) {
  $("send").disabled = writing || !modelIsLoaded;
  $("stop").disabled = !writing;
}

function addMessage(role, text) {
  const element = document.createElement("div");
  element.className = `message ${role}`;
  element.textContent = text; // model output and questions are always text
  $("messages").append(element);
  element.scrollIntoView({ block: "end" });
  return element;
}

const worker = new Worker("chat-worker.js");
let lastPercent = -1;

worker.onmessage = ({ data }) => {
  if (data.type === "stage") {
    $("status").textContent = `Starting… (${data.stage}, ${data.seconds.toFixed(1)} s)`;
  } else if (data.type === "progress") {
    $("progress").value = data.loaded / data.total;
    $("progress-text").textContent = progressText(data);
    const percent = Math.floor((100 * data.loaded) / data.total);
    if (percent !== lastPercent) {
      lastPercent = percent;
      notify({ state: "loading", loaded: data.loaded, total: data.total });
    }
  } else if (data.type === "ready") {
    let text = runtimeText(data);
    if (!self.crossOriginIsolated && framed) {
      text += " For threads, the embedding page must be cross-origin isolated and give this frame allow=\"cross-origin-isolated\".";
    }
    $("runtime").textContent = text;
    window.pocketmindEmbed.engine = { ...data, isolated: self.crossOriginIsolated };
  } else if (data.type === "loaded") {
    modelIsLoaded = true;
    $("status").textContent = `${card.name}: ready.`;
    $("progress").closest(".progress").hidden = true;
    window.pocketmindEmbed.card = data.card;
    setBusy(false);
    loaded.resolve(data.card);
    const engine = window.pocketmindEmbed.engine || {};
    notify({ state: "ready", model: card.file, name: card.name, variant: engine.variant, threads: engine.threads,
             isolated: self.crossOriginIsolated });
  } else if (data.type === "text") {
    if (!current) return;
    current.element.textContent += data.text;
    current.element.scrollIntoView({ block: "end" });
    current.onText(data.text);
  } else if (data.type === "done") {
    history.push({ role: "assistant", content: data.text });
    window.pocketmindEmbed.lastDone = data;
    setBusy(false);
    current?.resolve(data);
    current = null;
  } else if (data.type === "error") {
    fail(data.message, data.during === "boot" || data.during === "load");
  }
};

worker.onerror = (event) => {
  event.preventDefault();
  fail(`the chat engine failed: ${event.message || "worker error"}`, !modelIsLoaded);
};

function fail(message, fatal) {
  showError(message);
  const error = new Error(message);
  if (current) {
    history.pop(); // the question that got no answer
    current.reject(error);
    current = null;
  }
  if (fatal) {
    modelIsLoaded = false;
    $("status").textContent = "The chat could not start.";
    loaded.reject(error);
    notify({ state: "error", message });
  }
  setBusy(false);
}

// Ask now (the caller waits its turn in `queue`): resolves with the worker's "done" message.
function ask(text, onText = () => {}) {
  showError("");
  history.push({ role: "user", content: text });
  addMessage("user", text);
  const messages = system ? [{ role: "system", content: system }, ...history] : [...history];
  setBusy(true);
  const element = addMessage("assistant", "");
  return new Promise((resolve, reject) => {
    current = { element, resolve, reject, onText };
    worker.postMessage({ type: "ask", request: { messages, max_tokens: maxTokens, settings } });
  });
}

function enqueue(text, onText) {
  const run = queue.then(() => ready).then(() => ask(text, onText));
  queue = run.catch(() => {});
  return run;
}

window.pocketmindEmbed = {
  ready,
  card: null,
  engine: null,
  lastDone: null,
  ask: (text) => enqueue(text),
  stop: () => worker.postMessage({ type: "stop" }),
};

$("ask").addEventListener("submit", (event) => {
  event.preventDefault();
  const text = $("prompt").value.trim();
  if (!text || current) return;
  $("prompt").value = "";
  notify({ state: "busy" });
  enqueue(text).catch(() => {}).finally(() => notify({ state: "ready" }));
});
$("prompt").addEventListener("keydown", (event) => {
  if (event.key === "Enter" && !event.shiftKey) {
    event.preventDefault();
    $("ask").requestSubmit();
  }
});
$("stop").addEventListener("click", () => window.pocketmindEmbed.stop());

// The embedding page's requests: see the top of this file.
window.addEventListener("message", (event) => {
  if (!framed || event.source !== window.parent) return; // the embedding page only, never another frame or window
  if (declaredOrigin === null || (declaredOrigin && event.origin !== declaredOrigin)) return;
  if (event.origin === "null") return; // an opaque origin could only be answered with "*"
  const data = event.data;
  if (!data || typeof data !== "object" || Array.isArray(data)) return;
  const asker = event.origin;
  const reply = (message) => window.parent.postMessage({ source: "pocketmind", ...message }, asker);
  if (data.type === "stop") {
    window.pocketmindEmbed.stop();
  } else if (data.type === "ask") {
    const id = data.id;
    if (!((typeof id === "string" && id.length <= 200) || Number.isFinite(id) || id === undefined)) return;
    const text = data.text;
    if (typeof text !== "string" || !text.trim() || text.length > MAX_QUESTION) {
      reply({ type: "error", id, message: `text must be a non-empty string of at most ${MAX_QUESTION} characters` });
      return;
    }
    enqueue(text.trim(), (piece) => reply({ type: "text", id, text: piece })).then(
      (done) => reply({ type: "answer", id, text: done.text, finish_reason: done.finish_reason,
                        n_generated: done.n_generated }),
      (e) => reply({ type: "error", id, message: String(e && e.message ? e.message : e) }),
    );
  }
});

if (!card) {
  const names = config.models.map((m) => m.file).join(", ");
  worker.terminate();
  fail(`unknown model "${wanted}": this site has ${names}`, true);
} else {
  $("status").textContent = `Starting ${card.name}…`;
  notify({ state: "starting", model: card.file, name: card.name });
  worker.postMessage({ type: "boot", config: { wheels: config.wheels,
                                               model: { url: card.file, bytes: card.bytes, sha256: card.sha256 } } });
}
