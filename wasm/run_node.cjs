// Drive a built pocketmind wasm module under Node, for parity tests and benchmarks.
//
//   node --no-experimental-fetch wasm/run_node.cjs JOB.json
//
// JOB: {module: ".../pocketmind-st.js", model: "x.gguf", n_ctx, n_batch, threads, kv_f32, high_memory, progress,
//       tasks: [...]}; model may be left out (tasks that need one then fail). Each task is
//   {op: "logits", tokens, out, last_only} write float32 logits of every position (last_only: of the last) to
//                                         `out` (and say where they lay)
//   {op: "stepped_logits", tokens, steps, out, batch}  decode all but the last `steps` tokens in one batch, then
//                                         those `batch` at a time (default 1: one by one, as generated tokens are),
//                                         writing each one's logits to `out`
//   {op: "greedy", tokens, n, ignore_eog}  greedy continuation (stops at end-of-generation unless ignore_eog)
//   {op: "tokenize", text, parse_special}
//   {op: "token_bytes", tokens}           each token's raw bytes, as arrays of numbers
//   {op: "bench", n_prompt, n_gen}        prompt-processing and generation tokens/s
//   {op: "load", model}                   load another model (errors are reported, not thrown)
//   {op: "try", model}                    load a model, run one token, free it: "ran", "load-error: ..." or
//                                         "run-error: ..." (for fuzzing; the current model stays)
//   {op: "alloc", size}                   the address pm_buffer_alloc(size) returns (freed again)
//   {op: "argmax", values, lengths}       pm_argmax over the first n float32 values of the file `values`, for each n
//                                         of `lengths`
//   {op: "train", windows, counted, layers, lr, train}  fine-tune the model: converted to F32 in the module's
//                                         file system, loaded trainable, one pm_trainer_step per window (n_ctx = its
//                                         length - 1; counted: per window its n_ctx 0/1 flags, or absent: all count;
//                                         train: whether to update): {losses, heap_before, heap_after (the wasm
//                                         memory's size)}; the trained model is freed after
//   {op: "adapters", adapters: [{file, scale}]}  free the LoRA adapters loaded before, load these (from wasm
//                                         memory) and apply them to the context; a refused one is reported as
//                                         {error} and then none is applied
// high_memory: bytes to take with pm_buffer_alloc before anything else, so that what follows lies above 2 GiB.
// progress: print {"started": i} before task i, so a crash or hang can be pinned on it.
// Prints one JSON array with a result per task, after an "info" entry. Models load from wasm memory.
"use strict";
const fs = require("fs");
const path = require("path");
const pocketmindApi = require("./pocketmind_api.js");

// Take `bytes` (in blocks of at most 1 GiB: sbrk's increment is a signed 32-bit int), then every free block below
// 2 GiB that a 64-byte allocation could use (in halving sizes), so that later allocations, small ones included,
// land above 2 GiB. Nothing taken is freed.
function takeLowMemory(M, bytes) {
  const high = 2 ** 31;
  for (let left = bytes; left > 0; left -= 2 ** 30) {
    const size = Math.min(left, 2 ** 30);
    if (!(M._pm_buffer_alloc(size) >>> 0)) throw new Error(`cannot allocate ${size} bytes`);
  }
  for (let size = 1 << 20; size >= 64;) {
    const ptr = M._pm_buffer_alloc(size) >>> 0;
    if (!ptr) throw new Error(`out of memory filling below 2 GiB`);
    if (ptr >= high) {
      M._pm_buffer_free(ptr);
      size >>= 1;
    }
  }
}

// One fuzzing case: any outcome but a clean error or a clean run is a failure of the module. An abort or a trap
// throws a WebAssembly.RuntimeError, which ends the driver (the module is unusable after it).
function tryModel(M, A, file) {
  const loaded = A.loadModelBytes(fs.readFileSync(file));
  if (loaded.error) return `load-error: ${loaded.error}`;
  let ctx = 0;
  let result;
  try {
    const nVocab = M._pm_model_n_vocab(loaded.model);
    const nCtxTrain = M._pm_model_n_ctx_train(loaded.model);
    ctx = A.newContext(loaded.model, { n_ctx: Math.min(64, Math.max(nCtxTrain, 1)), n_batch: 64 });
    const bos = M._pm_model_token_bos(loaded.model);
    A.decode(ctx, [bos >= 0 && bos < nVocab ? bos : 0], 0, false);
    A.logits(ctx, nVocab, -1);
    result = "ran";
  } catch (e) {
    if (e instanceof WebAssembly.RuntimeError || !(e instanceof Error)) throw e;
    result = `run-error: ${e.message}`;
  }
  if (ctx) M._pm_context_free(ctx);
  A.freeModel(loaded.model, loaded.buffer);
  return result;
}

// The C API's fine-tuning calls on a copy of `model` (tests compare the losses with the native build's).
function train(M, A, model, { windows, counted = null, layers, lr, train: update = true }) {
  const withString = (text, fn) => {
    const bytes = Buffer.from(text + "\0", "utf8");
    return A.withBuffer(bytes.length, (ptr) => {
      M.HEAPU8.set(bytes, ptr);
      return fn(ptr);
    });
  };
  const out = A.withBuffer(8, (ptr) => {
    A.check(M._pm_model_source(model, ptr), "source");
    return M.UTF8ToString(M.HEAPU32[ptr >>> 2]);
  });
  const f32 = "/train.f32.gguf";
  withString(out, (src) => withString(f32, (dst) => withString("F32", (type) =>
    A.check(M._pm_model_convert(src, dst, type, 1), "convert"))));
  const trainable = withString(f32, (path) => A.withBuffer(8, (ptr) => {
    A.check(M._pm_model_load_trainable(path, ptr), "load trainable");
    return M.HEAPU32[ptr >>> 2];
  }));
  const nCtx = windows[0].length - 1;
  const trainer = A.withBuffer(8, (ptr) => {
    A.check(M._pm_trainer_new(trainable, nCtx, layers, 1, ptr), "trainer");
    return M.HEAPU32[ptr >>> 2];
  });
  const losses = windows.map((w, i) => A.withBuffer(4 * w.length + nCtx + 8, (ptr) => {
    M.HEAP32.set(w, ptr >>> 2);
    const flags = counted ? ptr + 4 * w.length : 0;
    if (counted) M.HEAPU8.set(counted[i], flags);
    const loss = ptr + 4 * w.length + nCtx;
    A.check(M._pm_trainer_step(trainer, ptr, flags, update ? 1 : 0, lr, 0, loss), "step");
    return M.HEAPF32[loss >>> 2];
  }));
  M._pm_trainer_free(trainer);
  M._pm_model_free(trainable);
  return losses;
}

// Resolves once the line has been handed to the OS: a pipe that is full takes the rest later, and exiting before
// that would cut the output short.
function emit(value) {
  return new Promise((resolve) => process.stdout.write(JSON.stringify(value) + "\n", resolve));
}

async function main() {
  const job = JSON.parse(fs.readFileSync(process.argv[2], "utf8"));
  const createPocketmind = require(path.resolve(job.module));
  const M = await createPocketmind({ printErr: (s) => process.stderr.write(s + "\n") });
  M._pm_set_log_level(job.log_level ?? 1);
  if (job.high_memory) takeLowMemory(M, job.high_memory);
  const A = pocketmindApi(M);
  const contextOptions = { n_ctx: job.n_ctx || 0, n_batch: job.n_batch || 512, threads: job.threads || 1,
                           kv_f32: !!job.kv_f32 };
  let loaded = null;
  let ctx = 0;
  let adapters = [];
  const info = { op: "info", version: M.UTF8ToString(M._pm_version() >>> 0) };
  if (job.model) {
    loaded = A.loadModelBytes(fs.readFileSync(job.model));
    if (loaded.error) throw new Error(`load: ${loaded.error}`);
    ctx = A.newContext(loaded.model, contextOptions);
    Object.assign(info, { heap_growth_on_load: loaded.heapGrowth, model_buffer: loaded.buffer });
  }
  const results = [info];

  for (const [i, task] of job.tasks.entries()) {
    if (job.progress) emit({ started: i });
    const nVocab = loaded ? M._pm_model_n_vocab(loaded.model) : 0;
    if (task.op === "logits") {
      M._pm_kv_clear(ctx);
      A.decode(ctx, task.tokens, 0, true);
      const first = task.last_only ? task.tokens.length - 1 : 0;
      const all = new Float32Array((task.tokens.length - first) * nVocab);
      let lowest = Infinity;
      for (let pos = first; pos < task.tokens.length; pos++) {
        const row = A.logits(ctx, nVocab, pos);
        lowest = Math.min(lowest, row.byteOffset);
        all.set(row, (pos - first) * nVocab);
      }
      fs.writeFileSync(task.out, Buffer.from(all.buffer));
      results.push({ op: "logits", n: task.tokens.length, lowest_address: lowest });
    } else if (task.op === "stepped_logits") {
      const n = task.tokens.length - task.steps;
      M._pm_kv_clear(ctx);
      A.decode(ctx, task.tokens.slice(0, n), 0, false);
      const all = new Float32Array(task.steps * nVocab);
      const size = task.batch || 1;
      for (let step = 0; step < task.steps; step += size) {
        const chunk = task.tokens.slice(n + step, n + Math.min(step + size, task.steps));
        A.decode(ctx, chunk, n + step, true);
        chunk.forEach((_, i) => all.set(A.logits(ctx, nVocab, i), (step + i) * nVocab));
      }
      fs.writeFileSync(task.out, Buffer.from(all.buffer));
      results.push({ op: "stepped_logits", n: task.steps });
    } else if (task.op === "greedy") {
      const tokens = A.greedy(loaded.model, ctx, task.tokens, task.n, { ignoreEog: !!task.ignore_eog });
      results.push({ op: "greedy", tokens });
    } else if (task.op === "tokenize") {
      results.push({ op: "tokenize", tokens: A.tokenize(loaded.model, task.text, { parseSpecial: task.parse_special }) });
    } else if (task.op === "token_bytes") {
      results.push({ op: "token_bytes", bytes: task.tokens.map((t) => Array.from(A.tokenBytes(loaded.model, t))) });
    } else if (task.op === "bench") {
      results.push({ op: "bench", ...A.bench(loaded.model, ctx, task.n_prompt, task.n_gen) });
    } else if (task.op === "load") {
      const other = A.loadModelBytes(fs.readFileSync(task.model));
      if (other.error) {
        results.push({ op: "load", error: other.error, status: other.status });
      } else {
        if (loaded) {
          M._pm_context_free(ctx);
          A.freeModel(loaded.model, loaded.buffer);
        }
        loaded = other;
        ctx = A.newContext(loaded.model, contextOptions);
        results.push({ op: "load", n_vocab: M._pm_model_n_vocab(loaded.model), heap_growth: other.heapGrowth });
      }
    } else if (task.op === "try") {
      results.push({ op: "try", result: tryModel(M, A, task.model) });
    } else if (task.op === "adapters") {
      A.setAdapters(ctx, []);
      adapters.forEach((a) => M._pm_adapter_free(a));
      adapters = [];
      let error = null;
      for (const { file } of task.adapters) {
        const got = A.loadAdapter(loaded.model, fs.readFileSync(file));
        if (got.error) {
          error = got.error;
          break;
        }
        adapters.push(got.adapter);
      }
      if (!error) A.setAdapters(ctx, adapters.map((a, i) => [a, task.adapters[i].scale]));
      results.push(error ? { op: "adapters", error } : { op: "adapters", n: adapters.length });
    } else if (task.op === "train") {
      const heapBefore = M.HEAPU8.length;
      const losses = train(M, A, loaded.model, task);
      results.push({ op: "train", losses, heap_before: heapBefore, heap_after: M.HEAPU8.length });
    } else if (task.op === "argmax") {
      const bytes = fs.readFileSync(task.values);
      const ptr = M._pm_buffer_alloc(bytes.length) >>> 0;
      if (!ptr) throw new Error(`cannot allocate ${bytes.length} bytes`);
      M.HEAPU8.set(bytes, ptr);
      results.push({ op: "argmax", indices: task.lengths.map((n) => M._pm_argmax(ptr, n)) });
      M._pm_buffer_free(ptr);
    } else if (task.op === "alloc") {
      const ptr = M._pm_buffer_alloc(task.size) >>> 0;
      if (ptr) M._pm_buffer_free(ptr);
      results.push({ op: "alloc", address: ptr });
    } else {
      throw new Error(`unknown op ${task.op}`);
    }
  }
  await emit(results);
}

main().then(
  () => process.exit(0),
  (e) => emit({ error: String(e && e.message ? e.message : e) }).then(() => process.exit(1))
);
