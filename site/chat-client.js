// The one client of chat-worker.js: every page that chats (chat.js, embed.js) drives the worker through this
// module and keeps only its rendering. It owns the worker's life (boot, serialized model loads, a watchdog, a
// fresh worker after a crash) and the conversations (their histories live here, so a crash loses nothing but the
// answer being written).
//
//   const client = new ChatClient({ wheels });
//   client.addEventListener("loaded", (e) => ...);   // also: stage, progress, ready, state, restart, failed
//   await client.start(model);                         // model: {url, bytes, sha256}
//   const chat = client.conversation();
//   const done = await chat.ask(text, { system, settings, maxTokens, onText, onPrompt });
//   chat.stop(); chat.reset();
//
// Worker protocol (chat-worker.js): every request carries an id, and every reply names the id it answers.
//   page -> worker: boot {id, config, model} | load {id, model} | ask {id, request} | bench {id, n_prompt, n_gen}
//                   | stop {id} | ping {id}
//   worker -> page: stage | progress | ready | loaded {id} | prompt {id} | text {id} | done {id} | bench {id}
//                   | error {id, message, during} | pong {id} | crashed {message}
"use strict";

const HANG_MS = 60_000; // a worker that answers no ping for this long is stuck (a prompt batch takes seconds)
const PING_MS = 2_000;

// What a person reads when the engine stopped, and whether it is being started again.
function crashText(reason, restarting) {
  return restarting
    ? `The engine stopped (${reason}). It was restarted; your conversation is kept, the answer being written was lost.`
    : `The engine stopped (${reason}) and could not be restarted with this model. Choose a model to try again.`;
}

export class ChatClient extends EventTarget {
  constructor({ wheels, workerUrl = "chat-worker.js", hangMs = HANG_MS, pingMs = PING_MS }) {
    super();
    this.wheels = wheels;
    this.workerUrl = workerUrl;
    this.hangMs = hangMs;
    this.pingMs = pingMs;
    this.card = null; // the loaded model's card, null while none is usable
    this.engine = null; // {variant, threads} of the running engine
    this.model = null; // the model asked for last ({url, bytes, sha256})
    this.loading = false;
    this.restarts = 0;
    this._ids = 0;
    this._pending = new Map(); // request id -> {resolve, reject, onText, onPrompt}
    this._queue = Promise.resolve(); // requests run one at a time, in the order made
    this._worker = null;
  }

  // ---- the worker's life ----

  // Boot a worker and load `model`: resolves with the card.
  start(model) {
    this.model = model;
    return this._enqueue(() => this._boot());
  }

  _spawn() {
    const worker = new Worker(this.workerUrl);
    this._worker = worker;
    this._lastPing = null; // {id, at} of the ping still unanswered
    worker.onmessage = ({ data }) => this._onMessage(worker, data);
    // an error nothing in the worker caught (a failed pthread, a broken script): the worker can't be trusted
    worker.onerror = (event) => {
      event.preventDefault();
      this._crash(worker, event.message || "the worker failed");
    };
    clearInterval(this._pinger);
    this._pinger = setInterval(() => this._watch(worker), this.pingMs);
    return worker;
  }

  _watch(worker) {
    if (worker !== this._worker) return;
    const now = performance.now();
    if (this._lastPing && now - this._lastPing.at > this.hangMs) {
      this._crash(worker, `it did not answer for ${Math.round((now - this._lastPing.at) / 1000)} s`);
      return;
    }
    if (!this._lastPing) {
      this._lastPing = { id: ++this._ids, at: now };
      worker.postMessage({ type: "ping", id: this._lastPing.id });
    }
  }

  _boot() {
    const worker = this._worker || this._spawn();
    this.loading = true;
    this._state();
    return this._send(worker, "boot", { config: { wheels: this.wheels }, model: this.model }).answer
      .then((data) => this._loaded(data), (e) => this._loadFailed(e));
  }

  // Load another model (serialized: waits for the answer or load in flight).
  load(model) {
    this.model = model;
    this.loading = true; // at once: the page disables its model menu until this settles
    this._state();
    return this._enqueue(() => {
      if (!this._worker) return this._boot();
      this.loading = true;
      return this._send(this._worker, "load", { model }).answer
        .then((data) => this._loaded(data), (e) => this._loadFailed(e));
    });
  }

  _loaded(data) {
    this.loading = false;
    this.card = data.card;
    this._restarting = false;
    this._state();
    this._emit("loaded", data);
    return data.card;
  }

  _loadFailed(error) {
    this.loading = false;
    this._restarting = false;
    this.card = null; // the old model was closed before the new one was read
    this._state();
    throw error;
  }

  // The worker crashed, aborted or hangs: end it, fail what was in flight, and start a fresh one that loads the
  // same model, unless the fresh one fails too before its model is loaded (then the person picks what to do).
  _crash(worker, reason) {
    if (worker !== this._worker) return;
    worker.terminate();
    clearInterval(this._pinger);
    this._worker = null;
    const again = Boolean(!this._restarting && this.model); // a fresh worker that crashes before loading: no third
    const error = new Error(crashText(reason, again));
    error.crashed = true;
    for (const [id, pending] of this._pending) {
      this._pending.delete(id);
      pending.reject(error);
    }
    this.card = null;
    this._emit("restart", { reason, message: error.message, reloading: again });
    if (again) {
      this.restarts += 1;
      this._restarting = true; // until the fresh worker has loaded the model, or failed to
      this._enqueue(() => this._boot()).catch(() => {});
    } else {
      this.loading = false;
      this._state();
      this._emit("failed", { message: error.message });
    }
  }

  // ---- requests ----

  _enqueue(job) {
    const run = this._queue.then(job);
    this._queue = run.catch(() => {});
    return run;
  }

  // Send one request: {id, answer} (answer settles with its reply, or rejects on its error or a crash).
  _send(worker, type, fields, hooks = {}) {
    const id = ++this._ids;
    const answer = new Promise((resolve, reject) => this._pending.set(id, { resolve, reject, ...hooks }));
    worker.postMessage({ type, id, ...fields });
    return { id, answer };
  }

  _settle(id, error, value) {
    const pending = this._pending.get(id);
    if (!pending) return;
    this._pending.delete(id);
    if (error) pending.reject(error);
    else pending.resolve(value);
  }

  _onMessage(worker, data) {
    if (worker !== this._worker) return; // a terminated worker's last words
    const pending = data.id != null ? this._pending.get(data.id) : null;
    switch (data.type) {
      case "pong":
        if (this._lastPing && data.id === this._lastPing.id) this._lastPing = null;
        return;
      case "stage": case "progress": case "ready":
        if (data.type === "ready") this.engine = { variant: data.variant, threads: data.threads };
        this._emit(data.type, data);
        return;
      case "prompt":
        if (pending && pending.onPrompt) pending.onPrompt(data);
        return;
      case "text":
        if (pending && pending.onText) pending.onText(data.text);
        return;
      case "loaded": case "done": case "bench":
        this._settle(data.id, null, data);
        return;
      case "error":
        this._settle(data.id, new Error(data.message));
        return;
      case "crashed":
        this._crash(worker, data.message);
        return;
    }
  }

  _state() {
    this._emit("state", { loading: this.loading, card: this.card });
  }

  _emit(type, detail) {
    this.dispatchEvent(new CustomEvent(type, { detail }));
  }

  // ---- what pages call ----

  conversation() {
    return new Conversation(this);
  }

  bench(nPrompt, nGen) {
    return this._enqueue(() => {
      if (!this.card) throw new Error("no model is loaded");
      return this._send(this._worker, "bench", { n_prompt: nPrompt, n_gen: nGen }).answer;
    });
  }

  // Run one request to the end (queued behind the others); `ticket` learns its id once it is sent.
  _ask(request, hooks, ticket) {
    return this._enqueue(() => {
      if (ticket.cancelled) return { cancelled: true };
      if (!this.card) throw new Error(this.loading ? "the model is still loading" : "no model is loaded");
      const { id, answer } = this._send(this._worker, "ask", { request }, hooks);
      ticket.id = id;
      return answer;
    });
  }

  _stop(ticket) {
    ticket.cancelled = true; // not sent yet: it never will be
    if (ticket.id != null && this._pending.has(ticket.id) && this._worker) {
      this._worker.postMessage({ type: "stop", id: ticket.id });
    }
  }
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
    return this.client._ask(request, { onText, onPrompt }, ticket).then(
      (done) => {
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
    if (this._ticket) this.client._stop(this._ticket);
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
