// The page's half of every pocketmind worker (worker-common.js is the worker's): it owns the worker's life (a
// watchdog, a fresh worker after a crash) and its requests (ids, one at a time in the order made, streamed events
// routed to the request they belong to). Each kind of worker has a subclass that adds its requests (chat-client.js).
//
// Protocol: every request carries an id, and every reply names the id it answers.
//   page -> worker: any request the worker serves ({type, id, ...}: boot, load, ask, bench, run, ...), queued there
//                   and run one at a time | stop {id}: stop the stream of request id, at once | ping {id}, at once
//   worker -> page:
//     final (settle the request): loaded | done | bench | result | booted {id, ...} | error {id, message, during}
//     streamed (to that request's onEvent): any other message with the id of a request in flight (text, prompt,
//                   item, ...)
//     broadcast (emitted as events of the same name): stage {stage, seconds, at; snapshot: whether the "python"
//                   stage restored Python's snapshot} | progress {what, loaded, total, ...}
//                   | ready {variant, threads}; a progress with a request's id reaches its onEvent too ("what"
//                   tells a model's download from a run's progress)
//     pong {id} (the watchdog's) | busy: a sign of life from inside a long engine call, as good as a pong |
//     crashed {message}: the engine aborted, the worker is unusable
//
// Events: stage, progress, ready, restart {reason, message, reloading}, failed {message}, and the subclass's own.
// Subclass hooks: _recover() queues what brings a fresh worker back after a crash (a promise), or returns null
// when there is nothing to bring back; _crashText(reason, recovering) is what a person reads about the crash.
"use strict";

// A worker that answers no ping and gives no sign of life for this long is stuck. Pings are answered between the
// steps of a run, and the engine says "busy" while it computes, so only a step of pure Python or JS (a template's
// render, a vocabulary's table) must end within this.
const HANG_MS = 60_000;
const PING_MS = 2_000;
const FINAL_REPLIES = new Set(["loaded", "done", "bench", "result", "booted"]);
const BROADCASTS = new Set(["stage", "progress", "ready"]);

export class WorkerClient extends EventTarget {
  constructor({ workerUrl, hangMs = HANG_MS, pingMs = PING_MS }) {
    super();
    this.workerUrl = workerUrl;
    this.hangMs = hangMs;
    this.pingMs = pingMs;
    this.engine = null; // {variant, threads} of the running engine
    this.restarts = 0;
    this._recovering = false; // a fresh worker is being brought back: a crash now is not retried
    this._ids = 0;
    this._pending = new Map(); // request id -> {resolve, reject, onEvent}
    this._queue = Promise.resolve(); // requests run one at a time, in the order made
    this._worker = null;
  }

  // ---- the worker's life ----

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

  // The worker crashed, aborted or hangs: end it, fail what was in flight, and let the subclass bring a fresh one
  // back, unless that fresh one crashes too before it is back (then the person picks what to do).
  _crash(worker, reason) {
    if (worker !== this._worker) return;
    worker.terminate();
    clearInterval(this._pinger);
    this._worker = null;
    // queued now, it runs after everything below (and before anything a "restart" listener asks for)
    const recovery = this._recovering ? null : this._recover();
    const error = new Error(this._crashText(reason, Boolean(recovery)));
    error.crashed = true;
    for (const [id, pending] of this._pending) {
      this._pending.delete(id);
      pending.reject(error);
    }
    this._emit("restart", { reason, message: error.message, reloading: Boolean(recovery) });
    if (recovery) {
      this.restarts += 1;
      this._recovering = true;
      const recovered = () => { this._recovering = false; };
      recovery.then(recovered, recovered);
    } else {
      this._emit("failed", { message: error.message });
    }
  }

  _recover() {
    return null;
  }

  _crashText(reason, recovering) {
    return recovering ? `The worker stopped (${reason}) and was restarted.` : `The worker stopped (${reason}).`;
  }

  // ---- requests ----

  _enqueue(job) {
    const run = this._queue.then(job);
    this._queue = run.catch(() => {});
    return run;
  }

  // Send one request: {id, answer} (answer settles with its final reply, or rejects on its error or a crash).
  // hooks.onEvent(data) gets the request's streamed messages.
  _send(worker, type, fields, hooks = {}) {
    const id = ++this._ids;
    const answer = new Promise((resolve, reject) => this._pending.set(id, { resolve, reject, ...hooks }));
    worker.postMessage({ type, id, ...fields });
    return { id, answer };
  }

  // Queue a request that can be stopped: `ticket` ({id: null, cancelled: false}) learns its id once it is sent, and
  // one stopped before then is never sent (it resolves {cancelled: true}). `check()` throws where it can't run.
  _enqueueStoppable(ticket, type, fields, hooks, check = () => {}) {
    return this._enqueue(() => {
      if (ticket.cancelled) return { cancelled: true };
      check();
      const { id, answer } = this._send(this._worker, type, fields, hooks);
      ticket.id = id;
      return answer;
    });
  }

  _stopRequest(ticket) {
    ticket.cancelled = true; // not sent yet: it never will be
    if (ticket.id != null && this._pending.has(ticket.id) && this._worker) {
      this._worker.postMessage({ type: "stop", id: ticket.id });
    }
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
    const { type } = data;
    if (type === "pong") {
      if (this._lastPing && data.id === this._lastPing.id) this._lastPing = null;
    } else if (type === "busy") {
      this._lastPing = null; // alive: the next watch sends a fresh ping
    } else if (BROADCASTS.has(type)) {
      if (type === "ready") this.engine = { variant: data.variant, threads: data.threads };
      this._emit(type, data);
      this._stream(data); // a run's own progress is its request's too
    } else if (FINAL_REPLIES.has(type)) {
      this._settle(data.id, null, data);
    } else if (type === "error") {
      this._settle(data.id, new Error(data.message));
    } else if (type === "crashed") {
      this._crash(worker, data.message);
    } else {
      this._stream(data);
    }
  }

  _stream(data) {
    const pending = data.id != null ? this._pending.get(data.id) : null;
    if (pending && pending.onEvent) pending.onEvent(data);
  }

  _emit(type, detail) {
    this.dispatchEvent(new CustomEvent(type, { detail }));
  }
}
