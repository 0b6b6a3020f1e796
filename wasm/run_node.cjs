// Drive a built pocketmind wasm module under Node, for parity tests and benchmarks.
//
//   node --no-experimental-fetch wasm/run_node.cjs JOB.json
//
// JOB: {module: ".../pocketmind-st.js", model: "x.gguf", n_ctx, n_batch, threads, tasks: [...]}; each task is
//   {op: "logits", tokens, out}          write float32 logits of every position to `out`
//   {op: "greedy", tokens, n, ignore_eog} greedy continuation (stops at end-of-generation unless ignore_eog)
//   {op: "tokenize", text, parse_special}
//   {op: "bench", n_prompt, n_gen}       prompt-processing and generation tokens/s
//   {op: "load", model}                  load another model (errors are reported, not thrown)
// Prints one JSON object with a result per task. The model is loaded from memory (pm_model_load_buffer).
"use strict";
const fs = require("fs");
const path = require("path");

function api(M) {
  const lastError = () => M.UTF8ToString(M._pm_last_error());
  const check = (status, what) => {
    if (status < 0) throw new Error(`${what}: ${lastError()} (status ${status})`);
    return status;
  };
  const scratch = M._pm_buffer_alloc(1 << 20);
  const i32 = (ptr) => M.HEAP32[ptr >> 2];
  const u32 = (ptr) => M.HEAP32[ptr >> 2] >>> 0;

  function loadModel(file) {
    const bytes = fs.readFileSync(file);
    const buf = M._pm_buffer_alloc(bytes.length);
    if (!buf) throw new Error(`cannot allocate ${bytes.length} bytes`);
    M.HEAPU8.set(bytes, buf);
    const heapBefore = M.HEAPU8.length;
    const status = M._pm_model_load_buffer(buf, bytes.length, scratch);
    if (status < 0) {
      const message = lastError();
      M._pm_buffer_free(buf);
      return { error: message, status };
    }
    return { model: u32(scratch), buffer: buf, size: bytes.length, heapGrowth: M.HEAPU8.length - heapBefore };
  }

  function newContext(model, job) {
    check(M._pm_context_new(model, job.n_ctx || 0, job.n_batch || 512, job.threads || 1, 0, scratch), "context");
    return u32(scratch);
  }

  function decode(ctx, tokens, pos, all) {
    const ptr = M._pm_buffer_alloc(4 * tokens.length);
    M.HEAP32.set(Int32Array.from(tokens), ptr >> 2);
    const status = M._pm_decode(ctx, ptr, tokens.length, pos, all ? 1 : 0);
    M._pm_buffer_free(ptr);
    check(status, "decode");
  }

  function logits(ctx, nVocab, i) {
    const ptr = M._pm_logits(ctx, i);
    if (!ptr) throw new Error(`logits: ${lastError()}`);
    return M.HEAPF32.subarray(ptr >> 2, (ptr >> 2) + nVocab);
  }

  function argmax(a) {
    let best = 0;
    for (let i = 1; i < a.length; i++) if (a[i] > a[best]) best = i;
    return best;
  }

  function tokenize(model, text, parseSpecial) {
    const bytes = Buffer.from(text, "utf8");
    const tp = M._pm_buffer_alloc(bytes.length + 1);
    M.HEAPU8.set(bytes, tp);
    const nMax = bytes.length + 8;
    const out = M._pm_buffer_alloc(4 * nMax + 8);
    check(M._pm_tokenize(model, tp, bytes.length, 1, parseSpecial ? 1 : 0, out, nMax, out + 4 * nMax), "tokenize");
    const n = i32(out + 4 * nMax);
    const tokens = Array.from(M.HEAP32.subarray(out >> 2, (out >> 2) + n));
    M._pm_buffer_free(tp);
    M._pm_buffer_free(out);
    return tokens;
  }

  return { check, lastError, loadModel, newContext, decode, logits, argmax, tokenize, scratch };
}

async function main() {
  const job = JSON.parse(fs.readFileSync(process.argv[2], "utf8"));
  const createPocketmind = require(path.resolve(job.module));
  const M = await createPocketmind({ printErr: (s) => process.stderr.write(s + "\n") });
  M._pm_set_log_level(job.log_level ?? 1);
  const A = api(M);
  const results = [];
  let loaded = A.loadModel(job.model);
  if (loaded.error) throw new Error(`load: ${loaded.error}`);
  const nVocab = M._pm_model_n_vocab(loaded.model);
  let ctx = A.newContext(loaded.model, job);

  for (const task of job.tasks) {
    if (task.op === "logits") {
      M._pm_kv_clear(ctx);
      A.decode(ctx, task.tokens, 0, true);
      const all = new Float32Array(task.tokens.length * nVocab);
      for (let i = 0; i < task.tokens.length; i++) all.set(A.logits(ctx, nVocab, i), i * nVocab);
      fs.writeFileSync(task.out, Buffer.from(all.buffer));
      results.push({ op: "logits", n: task.tokens.length });
    } else if (task.op === "greedy") {
      M._pm_kv_clear(ctx);
      A.decode(ctx, task.tokens, 0, false);
      const out = [];
      let pos = task.tokens.length;
      for (let i = 0; i < task.n; i++) {
        const t = A.argmax(A.logits(ctx, nVocab, -1));
        if (M._pm_model_is_eog(loaded.model, t) && !task.ignore_eog) break;
        out.push(t);
        A.decode(ctx, [t], pos++, false);
      }
      results.push({ op: "greedy", tokens: out });
    } else if (task.op === "tokenize") {
      results.push({ op: "tokenize", tokens: A.tokenize(loaded.model, task.text, task.parse_special) });
    } else if (task.op === "bench") {
      const prompt = Array.from({ length: task.n_prompt }, (_, i) => 1 + ((i * 7919) % (nVocab - 1)));
      M._pm_kv_clear(ctx);
      A.decode(ctx, [prompt[0]], 0, false); // warm-up
      M._pm_kv_clear(ctx);
      let t0 = performance.now();
      A.decode(ctx, prompt, 0, false);
      const ppS = (performance.now() - t0) / 1000;
      let pos = prompt.length;
      t0 = performance.now();
      for (let i = 0; i < task.n_gen; i++) {
        const t = A.argmax(A.logits(ctx, nVocab, -1));
        A.decode(ctx, [t], pos++, false);
      }
      const tgS = (performance.now() - t0) / 1000;
      results.push({ op: "bench", pp_tps: task.n_prompt / ppS, tg_tps: task.n_gen / tgS });
    } else if (task.op === "load") {
      // load another model, reporting (not throwing) its error; on success it replaces the current one
      const other = A.loadModel(task.model);
      if (other.error) {
        results.push({ op: "load", error: other.error, status: other.status });
      } else {
        M._pm_context_free(ctx);
        M._pm_model_free(loaded.model);
        M._pm_buffer_free(loaded.buffer);
        loaded = other;
        ctx = A.newContext(loaded.model, job);
        results.push({ op: "load", n_vocab: M._pm_model_n_vocab(loaded.model), heap_growth: other.heapGrowth, size: other.size });
      }
    } else {
      throw new Error(`unknown op ${task.op}`);
    }
  }
  results.unshift({ op: "info", version: M.UTF8ToString(M._pm_version()), heap_growth_on_load: loaded.heapGrowth });
  process.stdout.write(JSON.stringify(results) + "\n");
}

main().then(
  () => process.exit(0),
  (e) => {
    process.stdout.write(JSON.stringify({ error: String(e && e.message ? e.message : e) }) + "\n");
    process.exit(1);
  }
);
