// What the Tasks and Evaluate pages share: starting the page (service worker, engine, model download progress),
// picking or pasting a task, taking a dropped or chosen file, and downloads. Rendering only: every check and every
// number comes from the worker's Python (task_service.py).
import "./frame-guard.js"; // first: nothing else runs in another site's frame
import { describe, showUpdate, startOffline } from "./offline.js";
import { formatBytes, progressText, runtimeText } from "./chat-shared.js";

export const $ = (id) => document.getElementById(id);
export { formatBytes };

// The name a model goes by in results: its file name without .gguf, as `python -m pocketmind eval` names it.
export function modelName(url) {
  return url.split("/").pop().replace(/\.gguf$/i, "");
}

// {url, bytes, sha256, name} of an <option> or <input> carrying a model's data attributes
export function modelOf(element) {
  return { url: element.value, bytes: Number(element.dataset.bytes), sha256: element.dataset.sha256 || undefined,
           name: modelName(element.value) };
}

export function showError(message) {
  $("error").textContent = message; // text, never HTML
  $("error").hidden = !message;
}

// Register the service worker and boot the client once the page may stay; resolves when the engine runs.
export function startPage(client, { onReady = () => {} } = {}) {
  client.addEventListener("ready", ({ detail }) => {
    $("runtime").textContent = runtimeText(detail);
    onReady(detail);
  });
  client.addEventListener("progress", ({ detail }) => {
    if (detail.what !== "model") return; // an evaluation's progress is the page's to draw
    $("model-progress").value = detail.loaded / detail.total;
    $("model-text").textContent = progressText(detail);
  });
  client.addEventListener("restart", ({ detail }) => {
    showError(detail.message);
    $("runtime").textContent = detail.reloading ? "Restarting the engine…" : "The engine stopped.";
  });
  client.addEventListener("failed", ({ detail }) => showError(detail.message));
  let stored = null; // how the last model was kept, for the offline line
  client.addEventListener("loaded", ({ detail }) => {
    stored = { fromCache: detail.fromCache, stored: detail.stored, storeError: detail.storeError };
    render();
  });
  const render = () => {
    $("offline").textContent = describe(offline.state, stored);
    showUpdate($("update"), offline.state, () => offline.update());
  };
  const offline = startOffline(render);
  window.pocketmindOffline = offline;
  render();
  return offline.ready.then(({ reloading }) => {
    if (reloading) return new Promise(() => {}); // this page is going away
    offline.booted();
    return client.start();
  });
}

// The task menu and its JSON box: a shipped task is fetched into the box and loaded; an edited one is loaded on
// "Use this task". onTask(info, shipped) gets the worker's description ({name, labels, json_schema, n_examples})
// and the shipped task's entry from the build's config (null for a pasted one). Returns {load, current}.
export function taskPicker(client, tasks, onTask) {
  const state = { info: null, shipped: null };
  const byFile = new Map(tasks.map((t) => [t.file, t]));

  async function use(json, shipped) {
    try {
      const info = await client.loadTask(json);
      Object.assign(state, { info, shipped });
      $("task-info").textContent = info.labels
        ? `${info.name}: ${info.labels.length} labels (${info.labels.slice(0, 12).join(", ")}${info.labels.length > 12 ? ", …" : ""}), ${info.n_examples} examples for few-shot prompts.`
        : `${info.name}: JSON output, checked against its schema token by token.`;
      showError("");
      onTask(info, shipped);
      return info;
    } catch (e) {
      Object.assign(state, { info: null, shipped: null });
      $("task-info").textContent = "";
      showError(`The task cannot be used: ${e.message}`);
      onTask(null, null);
      throw e;
    }
  }

  async function pick() {
    const shipped = byFile.get($("task").value) || null;
    if (!shipped) { // "your own": start from what is in the box
      $("task-details").open = true;
      return $("task-json").value.trim() ? use($("task-json").value, null) : null;
    }
    const response = await fetch(shipped.file);
    if (!response.ok) throw new Error(`${shipped.file}: HTTP ${response.status}`);
    $("task-json").value = await response.text();
    return use($("task-json").value, shipped);
  }

  $("task").addEventListener("change", () => pick().catch(() => {}));
  $("apply-task").addEventListener("click", () => {
    $("task").value = "";
    use($("task-json").value, null).catch(() => {});
  });
  return { pick, use, current: () => state };
}

// A file dropped on `zone` or chosen with `input`: onFile({name, size, kind: "csv"|"txt", bytes: Uint8Array}).
// With {multiple: true}, every file dropped or chosen at once: onFile([{name, size, kind, bytes}, ...]).
// The bytes go to Python unread: it checks the encoding, the size and the columns, with row numbers.
// readBytes: false hands over the File objects themselves, for a worker that reads each only when it needs it.
export function fileDrop(zone, input, onFile, { multiple = false, readBytes = true } = {}) {
  const read = async (file) => {
    const kind = /\.txt$/i.test(file.name) || file.type === "text/plain" ? "txt" : "csv";
    return { name: file.name, size: file.size, kind, bytes: new Uint8Array(await file.arrayBuffer()) };
  };
  const take = async (files) => {
    files = [...(files || [])];
    if (!files.length) return;
    if (!readBytes) return onFile(multiple ? files : files[0]);
    if (multiple) onFile(await Promise.all(files.map(read)));
    else onFile(await read(files[0]));
  };
  input.addEventListener("change", () => take(input.files).catch((e) => showError(e.message)));
  zone.addEventListener("dragover", (event) => { event.preventDefault(); zone.classList.add("over"); });
  zone.addEventListener("dragleave", () => zone.classList.remove("over"));
  zone.addEventListener("drop", (event) => {
    event.preventDefault();
    zone.classList.remove("over");
    take(event.dataTransfer.files).catch((e) => showError(e.message));
  });
}

// Offer `text` as a file download.
export function download(filename, text, type) {
  const url = URL.createObjectURL(new Blob([text], { type }));
  const a = document.createElement("a");
  a.href = url;
  a.download = filename;
  document.body.append(a);
  a.click();
  a.remove();
  setTimeout(() => URL.revokeObjectURL(url), 60_000); // after the browser has taken it
}

// A table cell with text (never HTML), right-aligned when numeric.
export function cell(row, text, numeric = false) {
  const td = document.createElement("td");
  td.textContent = text;
  if (numeric) td.className = "num";
  row.append(td);
  return td;
}
