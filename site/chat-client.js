// The one client of chat-worker.js: every page that chats (chat.js, embed.js) drives the worker through this
// module and keeps only its rendering. The worker's life (a watchdog, a fresh worker after a crash) and the
// protocol are worker-client.js's; this adds the chat's requests (boot with a model, serialized model loads,
// bench) and the conversations (their histories live here, so a crash loses nothing but the answer being written).
//
//   const client = new ChatClient({ python: config.python });
//   client.addEventListener("loaded", (e) => ...);   // also: stage, progress, ready, state, restart, failed
//   await client.start(model);                         // model: {url, bytes, sha256}
//   const chat = client.conversation();
//   const done = await chat.ask(text, { system, settings, maxTokens, onText, onPrompt }); // onText: the text in
//                                                      // pieces, at most one every TEXT_MS (see below)
//   chat.stop(); chat.reset();
//   await client.setAdapter(adapter, scale);           // adapter: {url, bytes, sha256} or null; -> [{id, name, ...}]
//
// Requests (chat-worker.js): boot {id, config, model} -> loaded | load {id, model} -> loaded (or an error with
//   modelKept: refused before the loaded model was closed)
//   | ask {id, request} -> prompt*, text*, done | bench {id, n_prompt, n_gen} -> bench
//   | adapter {id, adapter, scale} -> result {adapters}
"use strict";
import { WorkerClient } from "./worker-client.js";

export class ChatClient extends WorkerClient {
  constructor({ python, workerUrl = "chat-worker.js", hangMs, pingMs }) {
    super({ workerUrl, hangMs, pingMs });
    this.python = python; // {wheels, snapshot}: what the worker starts Python with
    this.card = null; // the loaded model's card, null while none is usable
    this.model = null; // the model asked for last ({url, bytes, sha256})
    this.loading = false;
    // first of all listeners: the model died with the worker before the page hears of it
    this.addEventListener("restart", () => { this.card = null; });
    this.addEventListener("failed", () => {
      this.loading = false;
      this._state();
    });
  }

  // Boot a worker and load `model`: resolves with the card.
  start(model) {
    this.model = model;
    return this._enqueue(() => this._boot());
  }

  _boot() {
    const worker = this._worker || this._spawn();
    this.loading = true;
    this._state();
    return this._send(worker, "boot", { config: { python: this.python }, model: this.model }).answer
      .then((data) => this._loaded(data), (e) => this._loadFailed(e));
  }

  // Load another model (serialized: waits for the answer or load in flight).
  // A load refused before the old model was closed (too large for the memory left: error.modelKept) leaves that
  // model loaded and usable.
  load(model) {
    const previous = this.model;
    this.model = model;
    this.loading = true; // at once: the page disables its model menu until this settles
    this._state();
    return this._enqueue(() => {
      if (!this._worker) return this._boot();
      this.loading = true;
      return this._send(this._worker, "load", { model }).answer
        .then((data) => this._loaded(data), (e) => this._loadFailed(e, previous));
    });
  }

  _loaded(data) {
    this.loading = false;
    this.card = data.card;
    this._state();
    this._emit("loaded", data);
    return data.card;
  }

  _loadFailed(error, previous = null) {
    this.loading = false;
    if (error.modelKept) this.model = previous; // still loaded: a fresh worker after a crash loads it again
    else this.card = null; // the old model was closed before the new one was read
    this._state();
    throw error;
  }

  _onMessage(worker, data) {
    if (data.type === "error" && data.modelKept && worker === this._worker) {
      const error = new Error(data.message);
      error.modelKept = true;
      this._settle(data.id, error);
    } else {
      super._onMessage(worker, data);
    }
  }

  // After a crash, a fresh worker loads the same model (once: worker-client.js gives up if it crashes too).
  _recover() {
    return this.model ? this._enqueue(() => this._boot()).catch(() => {}) : null;
  }

  // What a person reads when the engine stopped, and whether it is being started again.
  _crashText(reason, recovering) {
    return recovering
      ? `The engine stopped (${reason}). It was restarted; your conversation is kept, the answer being written was lost.`
      : `The engine stopped (${reason}) and could not be restarted with this model. Choose a model to try again.`;
  }

  _state() {
    this._emit("state", { loading: this.loading, card: this.card });
  }

  // ---- what pages call ----

  conversation() {
    return new Conversation(this);
  }

  // Apply a LoRA adapter to the loaded model (queued behind answers and loads), replacing the one applied before;
  // null removes it. A new model, or a fresh worker after a crash, starts without one.
  setAdapter(adapter, scale = 1) {
    return this._enqueue(() => {
      if (!this.card) throw new Error("no model is loaded");
      return this._send(this._worker, "adapter", { adapter, scale }).answer.then((data) => data.adapters);
    });
  }

  bench(nPrompt, nGen) {
    return this._enqueue(() => {
      if (!this.card) throw new Error("no model is loaded");
      return this._send(this._worker, "bench", { n_prompt: nPrompt, n_gen: nGen }).answer;
    });
  }

  // Run one request to the end (queued behind the others); `ticket` learns its id once it is sent.
  _ask(request, { onText, onPrompt }, ticket) {
    const onEvent = (data) => {
      if (data.type === "text" && onText) onText(data.text);
      else if (data.type === "prompt" && onPrompt) onPrompt(data);
    };
    return this._enqueueStoppable(ticket, "ask", { request }, { onEvent }, () => {
      if (!this.card) throw new Error(this.loading ? "the model is still loading" : "no model is loaded");
    });
  }
}

// The pages redraw on every piece of an answer's text they are given, and a redraw per token (60-75 a second at 2
// threads) takes CPU from the engine's threads (an event drawn per token cost the Benchmark page 15-29 % of its
// speed on a 2-core machine, docs/glue_overhead.md; docs/chat_drawing.md measures the chat). So pieces are joined
// and handed on at most every TEXT_MS: the first at once, the rest when the interval has passed, and what is held
// when the answer ends before ask() resolves.
const TEXT_MS = 50;

function joinedText(onText, ms = TEXT_MS) {
  let held = "";
  let timer = null;
  let last = -Infinity;
  const flush = () => {
    clearTimeout(timer);
    timer = null;
    last = performance.now();
    if (held) {
      const text = held;
      held = "";
      onText(text);
    }
  };
  const push = (piece) => {
    held += piece;
    const wait = last + ms - performance.now();
    if (wait <= 0) flush();
    else if (timer === null) timer = setTimeout(flush, wait);
  };
  return { push, flush };
}

// One conversation: its own history and its own answer in flight. Several share one client (and one worker);
// a stop or reset touches only its own.
export class Conversation {
  constructor(client) {
    this.client = client;
    this.history = []; // {role, content} of finished turns
    this._ticket = null;
  }

  get busy() {
    return this._ticket !== null;
  }

  // Ask `text` (with `system` first, if any): resolves with the worker's done message (finish_reason, text,
  // n_dropped, ...). The question joins the history now; it leaves it again if no answer comes.
  ask(text, { system = "", settings = {}, maxTokens = 256, onText = null, onPrompt = null } = {}) {
    if (this._ticket) return Promise.reject(new Error("an answer is already being written"));
    const question = { role: "user", content: text };
    this.history.push(question);
    const messages = system ? [{ role: "system", content: system }, ...this.history] : [...this.history];
    const ticket = (this._ticket = { id: null, cancelled: false });
    const request = { messages, max_tokens: maxTokens, settings };
    const pieces = onText ? joinedText(onText) : null;
    return this.client._ask(request, { onText: pieces && pieces.push, onPrompt }, ticket).then(
      (done) => {
        if (pieces) pieces.flush();
        if (this._ticket === ticket) this._ticket = null;
        if (done.cancelled) {
          this._forget(question);
          return { type: "done", finish_reason: "abort", text: "", n_generated: 0, cancelled: true };
        }
        if (ticket.reset) return done; // a new chat began meanwhile: the old answer joins nothing
        this.history.push({ role: "assistant", content: done.text });
        return done;
      },
      (error) => {
        if (pieces) pieces.flush(); // the text that came before the failure is shown
        if (this._ticket === ticket) this._ticket = null;
        this._forget(question);
        throw error;
      },
    );
  }

  _forget(message) {
    const i = this.history.lastIndexOf(message);
    if (i >= 0) this.history.splice(i, 1);
  }

  stop() {
    if (this._ticket) this.client._stopRequest(this._ticket);
  }

  // A new chat: the history is emptied and an answer in flight is stopped.
  reset() {
    if (this._ticket) {
      this._ticket.reset = true;
      this.stop();
    }
    this.history = [];
  }
}
