// The Search page: rendering only. Extraction, chunking, embedding, ranking, the answer's prompt and its citations
// are the worker's Python (search_service.py); this page draws them and keeps the index's bytes in the browser.
import { SearchClient } from "./search-client.js";
import { loadIndex, saveIndex } from "./search-store.js";
import { $, fileDrop, modelName, showError, startPage } from "./task-shared.js";

const config = JSON.parse($("config").textContent);
const client = new SearchClient({ python: config.python });
const embedderCard = config.embedders[0];
const chatCard = config.models[0]; // the site's default chat model
const asModel = (card) => ({ url: card.file, bytes: card.bytes, sha256: card.sha256, name: modelName(card.file) });
const state = { adding: null, job: null, answering: null, info: null, lastAdd: null, lastSearch: null,
                lastAnswer: null, stored: null, restored: null, pasted: 0 };

function render() {
  const busy = Boolean(state.job) || client.loading || !client.ready || !state.info;
  $("add-text").disabled = busy;
  $("clear").disabled = busy || !state.info.n_chunks;
  $("stop").disabled = !state.job;
  $("search").disabled = busy || !state.info.n_chunks;
  $("answer").disabled = busy || !state.lastSearch;
  $("stop-answer").disabled = !state.answering;
}

const seconds = (s) => (s < 90 ? `${Math.round(s)} s` : `${Math.round(s / 60)} min`);

function showInfo(info) {
  state.info = info;
  $("index-info").textContent = info.n_chunks
    ? `${info.n_chunks} passages from ${info.sources.length} document${info.sources.length === 1 ? "" : "s"}: ${info.sources.join(", ")}.`
    : "No documents yet.";
  render();
}

async function refreshInfo() {
  showInfo(JSON.parse(await client.call("info_json")));
}

function fileLine(event) {
  const li = document.createElement("li");
  li.className = event.ok ? "ok" : "bad";
  li.textContent = event.ok ? `${event.name}: ${event.n_chunks} passage${event.n_chunks === 1 ? "" : "s"}` : event.message;
  $("files").append(li);
}

function onProgress(event) {
  $("embed-progress").value = event.total ? event.done / event.total : 1;
  const eta = event.eta == null ? "" : `, about ${seconds(event.eta)} left`;
  $("embed-text").textContent = `${event.done} of ${event.total} passages${event.done < event.total ? eta : ""}`;
}

// Keep the index in the browser: a new record, made current only once written (search-store.js).
async function keep() {
  const bytes = await client.exportIndex();
  const info = state.info;
  try {
    await saveIndex(bytes, { sha256: info.model_sha256, n_chunks: info.n_chunks, sources: info.sources });
    state.stored = { ok: true, n_chunks: info.n_chunks };
    $("stored").textContent = `Kept in this browser (${(bytes.length / 1048576).toFixed(2)} MB): a reload or an offline visit searches without embedding again.`;
  } catch (e) {
    state.stored = { ok: false, message: e.message };
    $("stored").textContent = e.message;
  }
  return state.stored;
}

// Add files (File objects, read by the worker one at a time and only when their size is within the limit) and
// texts ([{name, text}]); resolves with the done event once the index is kept.
function add(files, texts = []) {
  if (state.job) return Promise.reject(new Error("documents are being added already"));
  showError("");
  $("files").textContent = "";
  $("embed-progress").value = 0;
  $("embed-text").textContent = "";
  const job = client.add({ files: files.map((f) => f.name), texts }, {
    data: files.length ? files : null,
    onEvent: (event) => {
      if (event.type === "file") fileLine(event);
      else if (event.type === "progress" && event.what === "embedding") onProgress(event);
    },
  });
  state.job = job;
  render();
  return job.done.then(async (done) => {
    state.lastAdd = done;
    $("embed-text").textContent = `${done.stopped ? "Stopped: " : ""}${done.added} of ${done.total} passages embedded in ${seconds(done.seconds)}${done.skipped.length ? `; ${done.skipped.length} file${done.skipped.length === 1 ? "" : "s"} skipped` : ""}.`;
    await refreshInfo();
    await keep();
    return done;
  }, (e) => {
    showError(e.message);
    throw e;
  }).finally(() => {
    state.job = null;
    render();
  });
}

function hitItem(hit, label) {
  const li = document.createElement("li");
  const head = document.createElement("div");
  head.className = "hit-head";
  head.textContent = `${label}${hit.score != null ? `${hit.score.toFixed(4)} · ` : ""}${hit.source}, characters ${hit.start}–${hit.end}${hit.trimmed ? " (trimmed to fit)" : ""}`;
  const text = document.createElement("div");
  text.className = "hit-text";
  text.textContent = hit.text; // text, never HTML
  li.append(head, text);
  return li;
}

async function search(query = $("query").value, top = Number($("top").value || 5)) {
  showError("");
  try {
    const found = JSON.parse(await client.call("search", JSON.stringify({ query, top })));
    state.lastSearch = found;
    $("hits").textContent = "";
    for (const hit of found.hits) $("hits").append(hitItem(hit, ""));
    $("search-info").textContent = found.truncated_from
      ? `The query has ${found.truncated_from} tokens; the model read the first ${found.n_tokens}.` : "";
    render();
    return found;
  } catch (e) {
    showError(e.message);
    throw e;
  }
}

// Answer the last search's query from its passages with the chat model (loaded on first use).
async function answer() {
  if (!state.lastSearch) throw new Error("search first");
  showError("");
  $("answer-text").textContent = "";
  $("passages").textContent = "";
  $("answer-info").textContent = `Loading ${chatCard.name}…`;
  try {
    await client.load(asModel(chatCard), "chat");
  } catch (e) {
    showError(e.message);
    $("answer-info").textContent = "";
    throw e;
  }
  $("answer-info").textContent = "";
  const job = client.answer({ question: state.lastSearch.query, top: state.lastSearch.hits.length }, {
    onEvent: (event) => {
      if (event.type === "passages") {
        const cut = [event.n_trimmed ? `${event.n_trimmed} trimmed` : "", event.n_left_out ? `${event.n_left_out} left out` : ""].filter(Boolean);
        $("answer-info").textContent = `The prompt holds ${event.passages.length} passage${event.passages.length === 1 ? "" : "s"} (${event.n_prompt_tokens} tokens)${cut.length ? `; to fit the chat model's context, ${cut.join(" and ")}` : ""}.`;
        for (const p of event.passages) $("passages").append(hitItem(p, `[${p.number}] `));
      } else if (event.type === "text") {
        $("answer-text").textContent += event.text;
      }
    },
  });
  state.answering = job;
  render();
  try {
    const done = await job.done;
    state.lastAnswer = done;
    [...$("passages").children].forEach((li, i) => li.classList.toggle("cited", done.cited.includes(i + 1)));
    $("answer-text").textContent = done.text;
    $("answer-info").textContent += done.cited.length ? ` The answer cites ${done.cited.map((n) => `[${n}]`).join(", ")}.` : " The answer cites no passage.";
    return done;
  } catch (e) {
    showError(e.message);
    throw e;
  } finally {
    state.answering = null;
    render();
  }
}

// The index kept at an earlier visit, if the service accepts it for this model (it says why not).
async function restore() {
  let record = null;
  try {
    record = await loadIndex();
  } catch (e) {
    $("stored").textContent = `The kept index could not be read (${e.message}).`;
  }
  if (!record) return null;
  try {
    showInfo(JSON.parse(await client.call("import_index", record.bytes)));
    state.restored = { n_chunks: record.n_chunks, savedAt: record.savedAt };
    $("stored").textContent = `Restored the index kept in this browser on ${new Date(record.savedAt).toLocaleString()}: no embedding needed.`;
  } catch (e) {
    state.restored = { error: e.message };
    $("stored").textContent = e.message;
  }
  return state.restored;
}

fileDrop($("drop"), $("file"), (files) => {
  state.adding = add(files);
  state.adding.catch(() => {});
}, { multiple: true, readBytes: false });
$("add-text").addEventListener("click", () => {
  if (!$("paste").value.trim()) return showError("Paste a text first.");
  state.pasted += 1;
  state.adding = add([], [{ name: `pasted text ${state.pasted}`, text: $("paste").value }]);
  state.adding.then(() => { $("paste").value = ""; }, () => {});
});
$("stop").addEventListener("click", () => state.job && state.job.stop());
$("stop-answer").addEventListener("click", () => state.answering && state.answering.stop());
$("clear").addEventListener("click", () => client.call("clear").then((info) => { showInfo(JSON.parse(info)); return keep(); })
  .catch((e) => showError(e.message)));
$("search").addEventListener("click", () => search().catch(() => {}));
$("query").addEventListener("keydown", (event) => { if (event.key === "Enter" && !$("search").disabled) search().catch(() => {}); });
$("answer").addEventListener("click", () => answer().catch(() => {}));
client.addEventListener("state", render);
client.addEventListener("recovered", () => refreshInfo().then(restore).catch((e) => showError(e.message)));

window.pocketmindSearch = { client, state, add, search, answer, restore, keep, ready: null };
render();
window.pocketmindSearch.ready = startPage(client)
  .then(() => client.load(asModel(embedderCard), "embedder"))
  .then(refreshInfo)
  .then(restore)
  .then(render);
window.pocketmindSearch.ready.catch((e) => showError(e.message));
