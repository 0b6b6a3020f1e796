// Models made in this browser (fine-tuned on the Tasks page): kept in the model store (model-store.js, a classic
// script every page with a model menu loads) under LOCAL_PREFIX, as if downloaded from there, so that every page's
// model menu can offer them after the site's own models and the workers load them like any other (by url and
// sha256, from Cache Storage, offline too).
import { formatBytes } from "./chat-shared.js";

export const LOCAL_PREFIX = "models/local/";
const prefix = () => new URL(LOCAL_PREFIX, location.href).href;

// Keep a model's bytes under a name of [A-Za-z0-9._-] (the name results and menus show): {url, size, sha256, name}.
export async function keepLocalModel(name, bytes) {
  const kept = await pocketmindModelStore.storeModel(`${prefix()}${name}.gguf`, bytes);
  return { ...kept, name };
}

export async function listLocalModels() {
  const stored = await pocketmindModelStore.listModels();
  return stored.filter((m) => m.url.startsWith(prefix()))
    .map((m) => ({ ...m, name: m.url.slice(prefix().length).replace(/\.gguf$/i, "") }));
}

const label = (m) => `${m.name} (made in this browser), ${formatBytes(m.size)}`;

// An <option> for a <select> of models, with the data attributes task-shared.js's modelOf and chat.js read.
export function localModelOption(m) {
  const option = document.createElement("option");
  option.value = m.url;
  option.dataset.bytes = String(m.size);
  option.dataset.sha256 = m.sha256 || "";
  option.textContent = label(m); // text, never HTML
  return option;
}

// Add the stored local models missing from a <select> (as options) or a fieldset of checkboxes; returns the list.
export async function addLocalModels(container, { checkbox = false, checked = false } = {}) {
  const have = new Set([...container.querySelectorAll("option, input")].map((e) => e.value));
  const models = await listLocalModels();
  for (const m of models.filter((x) => !have.has(x.url))) {
    if (!checkbox) {
      container.append(localModelOption(m));
      continue;
    }
    const input = document.createElement("input");
    input.type = "checkbox";
    input.value = m.url;
    input.dataset.bytes = String(m.size);
    input.dataset.sha256 = m.sha256 || "";
    input.checked = checked;
    const wrap = document.createElement("label");
    wrap.className = "check";
    wrap.append(input, ` ${label(m)}`);
    container.append(wrap);
  }
  return models;
}

// Task heads trained or imported on the Tasks page, kept the same way (their JSON file) under HEADS_PREFIX: the
// Evaluate page offers a task's heads as voters.
export const HEADS_PREFIX = "models/local-heads/";
const headsPrefix = () => new URL(HEADS_PREFIX, location.href).href;

export function keepHead(name, json) {
  return pocketmindModelStore.storeModel(`${headsPrefix()}${encodeURIComponent(name)}.json`,
                                         new TextEncoder().encode(json));
}

// [{name, json, task, model_sha256, model_name}] of the kept heads (read back from the store, offline too)
export async function listHeads() {
  const stored = (await pocketmindModelStore.listModels()).filter((m) => m.url.startsWith(headsPrefix()));
  const heads = [];
  for (const m of stored) {
    const { bytes } = await pocketmindModelStore.fetchModel(m.url, { sha256: m.sha256, size: m.size });
    const json = new TextDecoder().decode(bytes);
    let doc;
    try {
      doc = JSON.parse(json);
    } catch {
      continue; // not a head any more: the worker would refuse it anyway
    }
    const name = decodeURIComponent(m.url.slice(headsPrefix().length).replace(/\.json$/i, ""));
    heads.push({ name, json, task: doc.task, model_sha256: doc.model_sha256, model_name: doc.model_name });
  }
  return heads;
}
