// <pocketmind-chat>: pocketmind's chat on any page, from one script.
//
//   <script src="https://where-pocketmind-is/pocketmind-chat.js"></script>
//   <pocketmind-chat model="models/x.gguf" height="420"></pocketmind-chat>
//
// The element shows (in its shadow root) an iframe of embed.html from the origin this script was loaded from; the
// model runs in that frame, in the visitor's browser. Attributes: model (a model file of that site; default its
// first), temperature, top-p, max-tokens, system (given to the chat; changing one restarts it), height (CSS
// length or pixels; default 420px).
//
// API:  element.ask(text) -> Promise of the answer's text (questions wait their turn; rejects on an error)
//       element.stop()                 stops the answer being written (its ask resolves with the text so far)
//       element.ready -> Promise of the status once the model is loaded (rejects if the chat cannot start)
//       element.status                 the last status: {state: "starting"|"loading"|"ready"|"busy"|"error", ...}
// Events (CustomEvent, on the element): "status" (detail: the status), "text" (detail: {id, text}: a piece of an
// answer to ask()), "answer" (detail: {id, question, text, finish_reason, n_generated}), "error" (detail: {id,
// message}). Questions typed into the frame by the visitor, and their answers, stay inside the frame.
//
// Threads: the frame gets allow="cross-origin-isolated"; it runs multi-threaded when this page is cross-origin
// isolated too (COOP same-origin and COEP require-corp), else on one thread, and says so.
(function () {
  "use strict";
  if (!window.customElements || customElements.get("pocketmind-chat")) return;
  // currentScript exists only while this classic script first runs: where it came from is where embed.html is
  const script = document.currentScript;
  const BASE = new URL(".", script && script.src ? script.src : location.href);
  const ORIGIN = BASE.origin;
  const FORWARDED = { model: "model", temperature: "temperature", "top-p": "top_p", "max-tokens": "max_tokens",
                      system: "system" };
  const START_GRACE_MS = 5000; // after the frame's load event, for its first status
  const CSS = ":host { display: block; height: 420px; } iframe { display: block; width: 100%; height: 100%; border: 0; }";
  let counter = 0;

  function styleFor(root) {
    // a constructed stylesheet: no inline <style>, which a Content-Security-Policy of the host page may forbid
    try {
      const sheet = new CSSStyleSheet();
      sheet.replaceSync(CSS);
      root.adoptedStyleSheets = [sheet];
    } catch (_) {
      const style = document.createElement("style");
      style.textContent = CSS;
      root.append(style);
    }
  }

  class PocketmindChat extends HTMLElement {
    static get observedAttributes() { return [...Object.keys(FORWARDED), "height"]; }

    constructor() {
      super();
      const root = this.attachShadow({ mode: "open" });
      styleFor(root);
      this._frame = document.createElement("iframe");
      this._frame.setAttribute("allow", "cross-origin-isolated");
      this._frame.title = "pocketmind chat";
      root.append(this._frame);
      this._pending = new Map(); // id -> {question, resolve, reject}
      this._onMessage = this._onMessage.bind(this);
      this.status = null;
      this._generation = 0;
      this._reset();
    }

    get ready() { return this._ready; }

    connectedCallback() {
      window.addEventListener("message", this._onMessage);
      this._applyHeight();
      if (!this._frame.src) this._load();
    }

    disconnectedCallback() {
      window.removeEventListener("message", this._onMessage);
    }

    attributeChangedCallback(name, old, value) {
      if (name === "height") this._applyHeight();
      else if (old !== value && this._frame.src) this._load(); // new settings: a new chat
    }

    ask(text) {
      if (typeof text !== "string" || !text.trim()) return Promise.reject(new TypeError("ask(text): text must be a non-empty string"));
      const id = `q${++counter}`;
      const answer = new Promise((resolve, reject) => this._pending.set(id, { question: text, resolve, reject }));
      this._started.then(() => this._post({ type: "ask", id, text }), (e) => this._settle(id, null, e));
      return answer;
    }

    stop() {
      this._started.then(() => this._post({ type: "stop" }), () => {});
    }

    _post(message) {
      this._frame.contentWindow.postMessage(message, ORIGIN); // only embed.html of our origin may read it
    }

    _applyHeight() {
      const h = this.getAttribute("height");
      if (h) this.style.height = /^\d+$/.test(h) ? `${h}px` : h;
    }

    _reset() {
      let started, ready;
      this._started = new Promise((resolve, reject) => (started = { resolve, reject }));
      this._ready = new Promise((resolve, reject) => (ready = { resolve, reject }));
      this._started.catch(() => {});
      this._ready.catch(() => {});
      this._startedHooks = started;
      this._readyHooks = ready;
    }

    _load() {
      for (const id of [...this._pending.keys()]) this._settle(id, null, new Error("the chat was restarted"));
      this._startedHooks.reject(new Error("the chat was restarted"));
      this._readyHooks.reject(new Error("the chat was restarted"));
      this._reset();
      this.status = null;
      const url = new URL("embed.html", BASE);
      for (const [attr, param] of Object.entries(FORWARDED)) {
        if (this.hasAttribute(attr)) url.searchParams.set(param, this.getAttribute(attr));
      }
      // embed.html then takes requests from this origin only and tells it its status (opaque origins: nothing)
      if (location.origin !== "null") url.searchParams.set("origin", location.origin);
      const generation = ++this._generation;
      this._frame.onload = () => setTimeout(() => {
        if (generation !== this._generation || this.status) return; // restarted since, or it did start
        const error = new Error(`${url.origin}/embed.html did not start in the frame (blocked by its headers, or not there?)`);
        this._startedHooks.reject(error);
        this._readyHooks.reject(error);
        this._emit("status", { state: "error", message: error.message });
      }, START_GRACE_MS);
      this._frame.src = url.href;
    }

    _settle(id, value, error) {
      const pending = this._pending.get(id);
      if (!pending) return;
      this._pending.delete(id);
      if (error) pending.reject(error);
      else pending.resolve(value);
    }

    _emit(type, detail) {
      this.dispatchEvent(new CustomEvent(type, { detail }));
    }

    _onMessage(event) {
      // only our own frame, from the origin this script came from
      if (event.source !== this._frame.contentWindow || event.origin !== ORIGIN) return;
      const data = event.data;
      if (!data || typeof data !== "object" || data.source !== "pocketmind") return;
      if (data.type === "status") {
        this._startedHooks.resolve();
        const { source, type, ...status } = data;
        this.status = status;
        if (status.state === "ready") this._readyHooks.resolve(status);
        if (status.state === "error") this._readyHooks.reject(new Error(status.message || "the chat could not start"));
        this._emit("status", status);
      } else if (data.type === "text" && this._pending.has(data.id)) {
        this._emit("text", { id: data.id, text: data.text });
      } else if (data.type === "answer" && this._pending.has(data.id)) {
        const { question } = this._pending.get(data.id);
        this._settle(data.id, data.text);
        this._emit("answer", { id: data.id, question, text: data.text, finish_reason: data.finish_reason,
                               n_generated: data.n_generated });
      } else if (data.type === "error" && this._pending.has(data.id)) {
        this._settle(data.id, null, new Error(data.message));
        this._emit("error", { id: data.id, message: data.message });
      }
    }
  }

  customElements.define("pocketmind-chat", PocketmindChat);
})();
