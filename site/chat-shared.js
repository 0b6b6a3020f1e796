// What the pages say alike (sizes, download progress, the engine, a shortened conversation), and the embed
// snippet the chat page shows.

const MB = 1048576;

// 1234567 -> "1.2 MB"; sizes of a GB and more in GB
export function formatBytes(bytes) {
  return bytes >= 1024 * MB ? `${(bytes / 1024 / MB).toFixed(1)} GB` : `${(bytes / MB).toFixed(1)} MB`;
}

// {loaded, total, fromCache} of a "progress" message -> "1.2 of 3.4 MB from this device (35 %)"
export function progressText({ loaded, total, fromCache }) {
  const mb = (n) => (n / MB).toFixed(1);
  return `${mb(loaded)} of ${mb(total)} MB${fromCache ? " from this device" : ""} (${Math.round((100 * loaded) / total)} %)`;
}

// n_dropped of a "done" message -> what the person should know about it ("" when nothing was left out)
export function droppedText(nDropped) {
  if (!nDropped) return "";
  return `The conversation no longer fits in the model's context: the oldest ${nDropped} message${nDropped > 1 ? "s were" : " was"} left out of this answer's prompt.`;
}

// Show how an answer ended, the same on every chat page: on success what was left out of its prompt (in `note`),
// on failure the error (through showError) and the answer's message marked as failed. Resolves like `answer`.
export function showOutcome(answer, { element, note, showError }) {
  return answer.then((done) => {
    note.textContent = droppedText(done.n_dropped);
    return done;
  }, (error) => {
    showError(error.message);
    element.classList.add("failed");
    throw error;
  });
}

// {variant, threads} of a "ready" message -> "Engine wasm-mt, 3 threads (cross-origin isolated)."
export function runtimeText({ variant, threads }, isolated = self.crossOriginIsolated) {
  const how = threads > 1 ? `${threads} threads` : "1 thread";
  const why = isolated ? "cross-origin isolated" : "not cross-origin isolated, so a single thread";
  return `Engine ${variant}, ${how} (${why}).`;
}

// The HTML another site pastes to embed this chat: an iframe, or the custom element. URLs are absolute, taken
// from where this page is served; `model` is a card's file ("models/x.gguf"), the first model when empty.
export function embedSnippet(model = "", base = location.href) {
  const embed = new URL("embed.html", base);
  if (model) embed.searchParams.set("model", model);
  const script = new URL("pocketmind-chat.js", base);
  const attr = (s) => s.replace(/&/g, "&amp;").replace(/"/g, "&quot;").replace(/</g, "&lt;");
  return `<iframe src="${attr(embed.href)}" allow="cross-origin-isolated" width="100%" height="420" style="border:0" title="pocketmind chat"></iframe>\n\n`
    + `<script src="${attr(script.href)}"></script>\n<pocketmind-chat${model ? ` model="${attr(model)}"` : ""}></pocketmind-chat>`;
}

// Keep a <pre> showing the snippet for the model chosen in `select`.
export function showEmbedSnippet(pre, select) {
  const render = () => { pre.textContent = embedSnippet(select ? select.value : ""); }; // text, never HTML
  render();
  if (select) select.addEventListener("change", render);
}
