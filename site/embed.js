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
// The two are separate conversations: the embedding page's questions are answered with its own history only (so
// "repeat what I said" can never reveal what the visitor typed), and its "stop" stops only its own answers.
import { ChatClient } from "./chat-client.js";
import { progressText, runtimeText, showOutcome } from "./chat-shared.js";

const $ = (id) => document.getElementById(id);
const config = JSON.parse($("config").textContent);
const params = new URLSearchParams(location.search);
const framed = window.parent !== window;
const MAX_QUESTION = 16_000; // characters in one question from the embedding page

function number(name, fallback, min, max) {
  const value = Number(params.get(name) ?? NaN);
  return params.has(name) && Number.isFinite(value) ? Math.min(max, Math.max(min, value)) : fallback;
}

// settings given in the URL win over the model's recommended ones (filled in once the model is loaded)
const urlSettings = {};
if (params.has("temperature")) urlSettings.temperature = number("temperature", 0.7, 0, 2);
if (params.has("top_p")) urlSettings.top_p = number("top_p", 0.95, 0.05, 1);
let settings = { ...urlSettings };
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

const client = new ChatClient({ python: config.python });
const visitor = client.conversation(); // what the visitor types here
const host = client.conversation(); // what the embedding page asks
let writing = 0; // answers being written or waiting their turn
let lastPercent = -1;
let ready = null;

function notify(status) {
  if (!framed || declaredOrigin === null) return;
  window.parent.postMessage({ source: "pocketmind", type: "status", ...status }, declaredOrigin || "*");
}

function showError(message) {
  $("error").textContent = message; // text, never HTML
  $("error").hidden = !message;
}

function render() {
  $("send").disabled = !client.card || client.loading;
  $("stop").disabled = writing === 0;
  $("new-chat").disabled = visitor.history.length === 0 && !visitor.busy;
}

function addMessage(role, text, fromPage = false) {
  const element = document.createElement("div");
  element.className = `message ${role}${fromPage ? " from-page" : ""}`;
  if (fromPage) element.title = "Asked by the page this chat is embedded in";
  element.textContent = text; // model output and questions are always text
  $("messages").append(element);
  element.scrollIntoView({ block: "end" });
  return element;
}

client.addEventListener("stage", ({ detail }) => {
  $("status").textContent = `Starting… (${detail.stage}, ${detail.seconds.toFixed(1)} s)`;
});
client.addEventListener("progress", ({ detail }) => {
  $("progress").value = detail.loaded / detail.total;
  $("progress-text").textContent = progressText(detail);
  const percent = Math.floor((100 * detail.loaded) / detail.total);
  if (percent !== lastPercent) {
    lastPercent = percent;
    notify({ state: "loading", loaded: detail.loaded, total: detail.total });
  }
});
client.addEventListener("ready", ({ detail }) => {
  let text = runtimeText(detail);
  if (!self.crossOriginIsolated && framed) {
    text += " For threads, the embedding page must be cross-origin isolated and give this frame allow=\"cross-origin-isolated\".";
  }
  $("runtime").textContent = text;
  window.pocketmindEmbed.engine = { ...detail, isolated: self.crossOriginIsolated };
});
client.addEventListener("loaded", ({ detail }) => {
  $("status").textContent = `${card.name}: ready.`;
  $("progress").closest(".progress").hidden = true;
  window.pocketmindEmbed.card = detail.card;
  settings = { ...(detail.card.sampling_defaults || {}), ...urlSettings };
  const engine = window.pocketmindEmbed.engine || {};
  notify({ state: "ready", model: card.file, name: card.name, variant: engine.variant, threads: engine.threads,
           isolated: self.crossOriginIsolated });
});
client.addEventListener("state", render);
client.addEventListener("restart", ({ detail }) => {
  showError(detail.message);
  $("status").textContent = detail.reloading ? "Restarting the engine…" : "The engine stopped.";
});
client.addEventListener("failed", ({ detail }) => {
  $("status").textContent = "The chat could not start.";
  showError(detail.message);
  notify({ state: "error", message: detail.message });
});

// Ask `text` in one conversation, after its earlier questions (and once the model is loaded): resolves with the
// worker's "done" message. A stop of that conversation also cancels its questions still waiting.
const turns = new Map([[visitor, Promise.resolve()], [host, Promise.resolve()]]);
const stops = new Map([[visitor, 0], [host, 0]]);

function ask(conversation, text, onText = () => {}) {
  const fromPage = conversation === host;
  const stopsBefore = stops.get(conversation);
  showError("");
  addMessage("user", text, fromPage);
  const element = addMessage("assistant", "", fromPage);
  writing += 1;
  render();
  const answer = turns.get(conversation).then(() => ready).then(() => {
    if (stops.get(conversation) !== stopsBefore) return { type: "done", finish_reason: "abort", text: "", n_generated: 0 };
    return conversation.ask(text, {
      system, settings, maxTokens,
      onText: (piece) => {
        element.textContent += piece;
        element.scrollIntoView({ block: "end" });
        onText(piece);
      },
    });
  });
  const run = showOutcome(answer, { element, note: $("context-note"), showError }).then((done) => {
    window.pocketmindEmbed.lastDone = done;
    return done;
  }).finally(() => {
    writing -= 1;
    render();
  });
  turns.set(conversation, run.catch(() => {}));
  return run;
}

function stop(conversation) {
  stops.set(conversation, stops.get(conversation) + 1);
  conversation.stop();
}

function newChat() {
  visitor.reset();
  for (const element of $("messages").querySelectorAll(".message:not(.from-page)")) element.remove();
  $("context-note").textContent = "";
  showError("");
  render();
}

window.pocketmindEmbed = {
  ready: null,
  card: null,
  engine: null,
  lastDone: null,
  client,
  ask: (text) => ask(visitor, text),
  stop: () => { stop(visitor); stop(host); }, // the visitor may stop anything running on their device
  newChat,
};

$("ask").addEventListener("submit", (event) => {
  event.preventDefault();
  const text = $("prompt").value.trim();
  if (!text) return;
  $("prompt").value = "";
  notify({ state: "busy" });
  ask(visitor, text).catch(() => {}).finally(() => notify({ state: "ready" }));
});
$("prompt").addEventListener("keydown", (event) => {
  if (event.key === "Enter" && !event.shiftKey) {
    event.preventDefault();
    $("ask").requestSubmit();
  }
});
$("stop").addEventListener("click", () => window.pocketmindEmbed.stop());
$("new-chat").addEventListener("click", newChat);

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
    stop(host); // the page's own answers, never the visitor's
  } else if (data.type === "ask") {
    const id = data.id;
    if (!((typeof id === "string" && id.length <= 200) || Number.isFinite(id) || id === undefined)) return;
    const text = data.text;
    if (typeof text !== "string" || !text.trim() || text.length > MAX_QUESTION) {
      reply({ type: "error", id, message: `text must be a non-empty string of at most ${MAX_QUESTION} characters` });
      return;
    }
    ask(host, text.trim(), (piece) => reply({ type: "text", id, text: piece })).then(
      (done) => reply({ type: "answer", id, text: done.text, finish_reason: done.finish_reason,
                        n_generated: done.n_generated }),
      (e) => reply({ type: "error", id, message: String(e && e.message ? e.message : e) }),
    );
  }
});

render();
if (!card) {
  const names = config.models.map((m) => m.file).join(", ");
  const message = `unknown model "${wanted}": this site has ${names}`;
  ready = Promise.reject(new Error(message));
  $("status").textContent = "The chat could not start.";
  showError(message);
  notify({ state: "error", message });
} else {
  $("status").textContent = `Starting ${card.name}…`;
  notify({ state: "starting", model: card.file, name: card.name });
  ready = client.start({ url: card.file, bytes: card.bytes, sha256: card.sha256 });
  ready.catch((e) => {
    $("status").textContent = "The chat could not start.";
    showError(e.message);
    notify({ state: "error", message: e.message });
  });
}
window.pocketmindEmbed.ready = ready;
