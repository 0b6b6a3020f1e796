// node --no-experimental-fetch benchmarks/wasm_ab.cjs JOB.json: two pocketmind wasm modules in one Node process,
// each with the same model loaded, benchmarked in turn (A, B, A, B, ...), so that what makes whole processes
// faster or slower on this machine (up to 1.5x for the same code) hits both alike. Run by benchmarks/wasm_ab.py.
// JOB: {modules: {name: path.js}, model, n_ctx, n_batch, threads, rounds, tasks: [{n_prompt, n_gen}]}.
// Prints one JSON object: {name: [[{pp_tps, tg_tps} per task] per round]}.
"use strict";
const fs = require("fs");
const path = require("path");
const pocketmindApi = require(path.resolve(__dirname, "../wasm/pocketmind_api.js"));

async function start(modulePath, modelBytes, job) {
  const M = await require(path.resolve(modulePath))({ printErr: () => {} });
  M._pm_set_log_level(1);
  const A = pocketmindApi(M);
  const loaded = A.loadModelBytes(modelBytes);
  if (loaded.error) throw new Error(`${modulePath}: ${loaded.error}`);
  const ctx = A.newContext(loaded.model, { n_ctx: job.n_ctx, n_batch: job.n_batch, threads: job.threads || 1,
                                           kv_f32: false });
  return { A, model: loaded.model, ctx };
}

async function main() {
  const job = JSON.parse(fs.readFileSync(process.argv[2], "utf8"));
  const modelBytes = fs.readFileSync(job.model);
  const engines = {};
  for (const [name, modulePath] of Object.entries(job.modules)) engines[name] = await start(modulePath, modelBytes, job);
  const results = Object.fromEntries(Object.keys(engines).map((name) => [name, []]));
  for (let round = 0; round < job.rounds; round++) {
    // the order turns each round
    const names = Object.keys(engines);
    if (round % 2) names.reverse();
    for (const name of names) {
      const { A, model, ctx } = engines[name];
      results[name].push(job.tasks.map((t) => A.bench(model, ctx, t.n_prompt, t.n_gen)));
    }
  }
  // exit once written: a multi-thread module's pthread workers would keep the process alive
  process.stdout.write(JSON.stringify(results) + "\n", () => process.exit(0));
}

main().catch((e) => {
  process.stderr.write(`${e.stack || e}\n`);
  process.exit(1);
});
