// The Search page's client of search-worker.js: the embedding model is loaded at start, the chat model on the
// first answer; adding documents and answering stream their events and can be stopped. After a crash a fresh
// worker loads the same models; the index in it is gone (the page restores the kept one).
//
//   const client = new SearchClient({ python: config.python });
//   await client.start();                           // the engine and Python
//   const card = await client.load(model, "embedder");   // or "chat"; {url, bytes, sha256, name}
//   const job = client.add({ files: [name, ...], texts: [{name, text}] }, { data: [Uint8Array, ...], onEvent });
//   const job = client.answer({ question, top, max_tokens }, { onEvent });   // job.done -> the done event; job.stop()
//   const found = JSON.parse(await client.call("search", JSON.stringify({ query, top })));
//   const bytes = await client.exportIndex();       // Uint8Array; client.call("import_index", bytes) takes it back
// Events: those of WorkerClient (stage, progress, ready, restart, failed), loaded {card, ...}, state {ready, loading}
// and recovered (a fresh worker has the models again: the page may restore its index).
import { WorkerClient } from "./worker-client.js";

export class SearchClient extends WorkerClient {
  constructor({ python, maxThreads = 4, workerUrl = "search-worker.js", ...options }) {
    super({ workerUrl, ...options });
    this.python = python; // {wheels, snapshot}
    this.maxThreads = maxThreads;
    this.ready = false;
    this.loading = false;
    this.models = new Map(); // role -> {model, card}
  }

  start() {
    return this._enqueue(() => this._boot());
  }

  _boot() {
    const worker = this._worker || this._spawn();
    const config = { python: this.python, maxThreads: this.maxThreads };
    return this._send(worker, "boot", { config }).answer.then(() => {
      this.ready = true;
      this._state();
    });
  }

  load(model, role) {
    const known = this.models.get(role);
    if (known && known.model.name === model.name) return Promise.resolve(known.card);
    this.loading = true;
    this._state();
    return this._enqueue(() => this._load(model, role)).finally(() => {
      this.loading = false;
      this._state();
    });
  }

  async _load(model, role) {
    this._check();
    const reply = await this._send(this._worker, "load", { model, role }).answer;
    this.models.set(role, { model, card: reply.card });
    this._emit("loaded", reply);
    return reply.card;
  }

  call(method, ...args) {
    return this._enqueue(() => {
      this._check();
      return this._send(this._worker, "call", { method, args }).answer.then((reply) => reply.value);
    });
  }

  exportIndex() {
    return this._enqueue(() => {
      this._check();
      return this._send(this._worker, "export", {}).answer.then((reply) => reply.value);
    });
  }

  add(request, { data = null, onEvent = null } = {}) {
    return this._job("add", { request, data }, onEvent);
  }

  answer(request, { onEvent = null } = {}) {
    return this._job("answer", { request }, onEvent);
  }

  _job(type, fields, onEvent) {
    const ticket = { id: null, cancelled: false };
    const done = this._enqueueStoppable(ticket, type, fields, { onEvent }, () => this._check());
    return { done, stop: () => this._stopRequest(ticket) };
  }

  _check() {
    if (!this.ready) throw new Error("the engine is not running");
  }

  _recover() {
    if (!this.ready) return null;
    this.ready = false;
    const models = [...this.models.entries()];
    this.models.clear();
    this._state();
    return this._enqueue(async () => {
      await this._boot();
      for (const [role, { model }] of models) await this._load(model, role);
      this._emit("recovered", {});
    });
  }

  _crashText(reason, recovering) {
    return recovering
      ? `The engine stopped (${reason}). It was restarted with the same models; the index kept in this browser is loaded again, the work in flight was lost.`
      : `The engine stopped (${reason}). Reload the page to start again.`;
  }

  _state() {
    this._emit("state", { ready: this.ready, loading: this.loading });
  }
}
