// Storage on this device: how much is used of the quota, whether the browser may evict it, and a control to
// delete the stored models. model-store.js (loaded by the page as a classic script) does the work.
import { formatBytes as format } from "./chat-shared.js";

const store = () => self.pocketmindModelStore;

export function storagePanel({ usage, persisted, list, remove }) {
  async function refresh() {
    const estimate = await store().storageEstimate();
    usage.textContent = estimate ? `Storage used: ${format(estimate.usage)} of ${format(estimate.quota)} available to this site.`
      : "This browser does not report storage use.";
    const models = await store().listModels();
    list.textContent = models.length
      ? `Stored models: ${models.map((m) => `${decodeURIComponent(m.url.split("/").pop())} (${format(m.size)})`).join(", ")}`
      : "No models stored on this device.";
    remove.disabled = models.length === 0;
    return { estimate, models };
  }

  // Asked when a model has been kept, as browsers grant persistence to sites the user actually uses.
  async function modelKept() {
    const granted = navigator.storage && navigator.storage.persist ? await navigator.storage.persist() : null;
    persisted.textContent = granted === true ? "Stored models are kept until you delete them."
      : granted === false ? "The browser may remove stored models when it runs short of space."
      : "";
    return refresh();
  }

  remove.addEventListener("click", async () => {
    remove.disabled = true;
    for (const model of await store().listModels()) await store().deleteModel(model.url);
    await refresh();
  });
  refresh().catch(() => {});
  return { refresh, modelKept };
}
