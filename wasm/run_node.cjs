// Drive a built pocketmind wasm module under Node, for parity tests and benchmarks.
//
//   node --no-experimental-fetch wasm/run_node.cjs JOB.json
//
// JOB: {module: ".../pocketmind-st.js", model: "x.gguf", n_ctx, n_batch, threads, kv_f32, tasks: [...]}; each task is
//   {op: "logits", tokens, out}           write float32 logits of every position to `out`
//   {op: "greedy", tokens, n, ignore_eog}  greedy continuation (stops at end-of-generation unless ignore_eog)
//   {op: "tokenize", text, parse_special}
//   {op: "bench", n_prompt, n_gen}        prompt-processing and generation tokens/s
//   {op: "load", model}                   load another model (errors are reported, not thrown)
// Prints one JSON array with a result per task, after an "info" entry. Models load from wasm memory.
"use strict";
const fs = require("fs");
const path = require("path");
const pocketmindApi = require("./pocketmind_api.js");

function loadFile(M, A, file) {
  const bytes = fs.readFileSync(file);
  const buffer = A.allocModelBuffer(bytes.length);
  M.HEAPU8.set(bytes, buffer);
  const heapBefore = M.HEAPU8.length;
  const loaded = A.loadModel(buffer, bytes.length);
  if (loaded.error) {
    M._pm_buffer_free(buffer);
    return loaded;
  }
  return { ...loaded, buffer, heapGrowth: M.HEAPU8.length - heapBefore };
}

async function main() {
  const job = JSON.parse(fs.readFileSync(process.argv[2], "utf8"));
  const createPocketmind = require(path.resolve(job.module));
  const M = await createPocketmind({ printErr: (s) => process.stderr.write(s + "\n") });
  M._pm_set_log_level(job.log_level ?? 1);
  const A = pocketmindApi(M);
  const contextOptions = { n_ctx: job.n_ctx || 0, n_batch: job.n_batch || 512, threads: job.threads || 1,
                           kv_f32: !!job.kv_f32 };
  let loaded = loadFile(M, A, job.model);
  if (loaded.error) throw new Error(`load: ${loaded.error}`);
  let ctx = A.newContext(loaded.model, contextOptions);
  const results = [{ op: "info", version: M.UTF8ToString(M._pm_version()), heap_growth_on_load: loaded.heapGrowth }];

  for (const task of job.tasks) {
    const nVocab = M._pm_model_n_vocab(loaded.model);
    if (task.op === "logits") {
      M._pm_kv_clear(ctx);
      A.decode(ctx, task.tokens, 0, true);
      const all = new Float32Array(task.tokens.length * nVocab);
      for (let i = 0; i < task.tokens.length; i++) all.set(A.logits(ctx, nVocab, i), i * nVocab);
      fs.writeFileSync(task.out, Buffer.from(all.buffer));
      results.push({ op: "logits", n: task.tokens.length });
    } else if (task.op === "greedy") {
      const tokens = A.greedy(loaded.model, ctx, task.tokens, task.n, { ignoreEog: !!task.ignore_eog });
      results.push({ op: "greedy", tokens });
    } else if (task.op === "tokenize") {
      results.push({ op: "tokenize", tokens: A.tokenize(loaded.model, task.text, { parseSpecial: task.parse_special }) });
    } else if (task.op === "bench") {
      results.push({ op: "bench", ...A.bench(loaded.model, ctx, task.n_prompt, task.n_gen) });
    } else if (task.op === "load") {
      const other = loadFile(M, A, task.model);
      if (other.error) {
        results.push({ op: "load", error: other.error, status: other.status });
      } else {
        M._pm_context_free(ctx);
        A.freeModel(loaded.model, loaded.buffer);
        loaded = other;
        ctx = A.newContext(loaded.model, contextOptions);
        results.push({ op: "load", n_vocab: M._pm_model_n_vocab(loaded.model), heap_growth: other.heapGrowth });
      }
    } else {
      throw new Error(`unknown op ${task.op}`);
    }
  }
  process.stdout.write(JSON.stringify(results) + "\n");
}

main().then(
  () => process.exit(0),
  (e) => {
    process.stdout.write(JSON.stringify({ error: String(e && e.message ? e.message : e) }) + "\n");
    process.exit(1);
  }
);
