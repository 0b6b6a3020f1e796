// What the chat page (chat.js) and the embeddable chat (embed.js) say alike about chat-worker.js's messages,
// and the embed snippet the chat page shows.

// {loaded, total, fromCache} of a "progress" message -> "1.2 of 3.4 MB from this device (35 %)"
export function progressText({ loaded, total, fromCache }) {
  const mb = (n) => (n / 1048576).toFixed(1);
  return `${mb(loaded)} of ${mb(total)} MB${fromCache ? " from this device" : ""} (${Math.round((100 * loaded) / total)} %)`;
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
