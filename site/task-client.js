// The one client of task-worker.js, for the Tasks and Evaluate pages: models stay loaded together (an evaluation
// asks them all), a task is loaded once, runs and evaluations stream their events and can be stopped. After a
// crash a fresh worker loads the same models and task again; only the run in flight is lost.
//
//   const client = new TaskClient({ python: config.python });
//   await client.start();                      // the engine and Python; no model yet
//   const card = await client.load(model);     // {url, bytes, sha256, name}; already loaded: its card at once
//   const info = await client.loadTask(json);  // {name, labels, json_schema, n_examples} or a clear error
//   const job = client.run(request, { data, onEvent });        // job.done -> the done event; job.stop()
//   const job = client.evaluate(request, { data, onEvent });
//   const job = client.answers(request, { data, onEvent });   // done.answers: for another client's evaluate()
//   const csv = await client.call("results_csv");
//   const job = client.trainHead(request, { data, onEvent });  // a task head: progress and epoch events, then done
//   const job = client.finetune(request, { data, onEvent });   // fine-tuning: done.model_bytes, the written model
// Heads live in the worker: after a crash they are gone (the pages keep them in the model store: local-models.js).
// Events: those of WorkerClient (stage, progress, ready, restart, failed), loaded {card, fromCache, stored,
// storeError} and state {ready, loading}.
import { WorkerClient } from "./worker-client.js";

const FINETUNE_HANG_MS = 15 * 60_000; // the watchdog's patience while fine-tuning (a model's conversion)

export class TaskClient extends WorkerClient {
  constructor({ python, maxThreads = 4, workerUrl = "task-worker.js", ...options }) {
    super({ workerUrl, ...options });
    this.python = python; // {wheels, snapshot}
    this.maxThreads = maxThreads; // several clients side by side share the cores
    this.ready = false; // the engine and Python run
    this.loading = false; // a model is being loaded
    this.models = new Map(); // name -> {model, card}
    this.taskJson = null; // the task loaded last
  }

  start() {
    return this._enqueue(() => this._boot());
  }

  _boot() {
    const worker = this._worker || this._spawn();
    return this._send(worker, "boot", { config: { python: this.python, maxThreads: this.maxThreads } }).answer.then(() => {
      this.ready = true;
      this._state();
    });
  }

  load(model) {
    const known = this.models.get(model.name);
    if (known) return Promise.resolve(known.card);
    this.loading = true;
    this._state();
    return this._enqueue(() => this._load(model)).finally(() => {
      this.loading = false;
      this._state();
    });
  }

  async _load(model) {
    if (!this.ready) throw new Error("the engine is not running");
    const reply = await this._send(this._worker, "load", { model }).answer;
    this.models.set(model.name, { model, card: reply.card });
    this._emit("loaded", reply);
    return reply.card;
  }

  loadTask(json) {
    return this.call("load_task", json).then((info) => {
      this.taskJson = json;
      return JSON.parse(info);
    });
  }

  call(method, ...args) {
    return this._enqueue(() => {
      if (!this.ready) throw new Error("the engine is not running");
      return this._send(this._worker, "call", { method, args }).answer.then((reply) => reply.value);
    });
  }

  run(request, options) {
    return this._job("run", request, options);
  }

  evaluate(request, options) {
    return this._job("evaluate", request, options);
  }

  // Answer the rows of an evaluation with this worker's models, for an evaluate() in another worker (parallel).
  answers(request, options) {
    return this._job("answers", request, options);
  }

  // Train a task head on a labelled CSV (task_service.py's start_train_head).
  trainHead(request, options) {
    return this._job("train", request, options);
  }

  // Fine-tune the model on a labelled CSV (task_service.py's start_finetune): its done event carries the written
  // model's bytes (model_bytes, a Uint8Array) when there is one. The model's conversion (to F32 before, to Q8_0
  // after) is one engine call with no graph, so no sign of life, that can take minutes on a slow device: the
  // watchdog waits longer meanwhile (a training window's graph says "busy" as it goes).
  finetune(request, options) {
    const job = this._job("finetune", request, options);
    const usual = this.hangMs;
    this.hangMs = Math.max(usual, FINETUNE_HANG_MS);
    job.done.finally(() => { this.hangMs = usual; }).catch(() => {});
    return job;
  }

  _job(type, request, { data = null, onEvent = null } = {}) {
    const ticket = { id: null, cancelled: false };
    const done = this._enqueueStoppable(ticket, type, { request, data }, { onEvent }, () => {
      if (!this.ready) throw new Error("the engine is not running");
    });
    return { done, stop: () => this._stopRequest(ticket) };
  }

  // A fresh worker after a crash: the same models, then the same task.
  _recover() {
    if (!this.ready) return null; // it crashed while starting: nothing to bring back
    this.ready = false;
    const models = [...this.models.values()].map(({ model }) => model);
    this.models.clear();
    this._state();
    return this._enqueue(async () => {
      await this._boot();
      for (const model of models) await this._load(model);
      if (this.taskJson) await this._send(this._worker, "call", { method: "load_task", args: [this.taskJson] }).answer;
    });
  }

  _crashText(reason, recovering) {
    return recovering
      ? `The engine stopped (${reason}). It was restarted with the same models and task; the run in flight was lost.`
      : `The engine stopped (${reason}). Reload the page to start again.`;
  }

  _state() {
    this._emit("state", { ready: this.ready, loading: this.loading });
  }
}
