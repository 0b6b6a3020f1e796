// Load one GGUF into a pocketmind wasm module as the page does (one buffer from pm_buffer_alloc, filled in pieces,
// used in place), make a context and decode a few tokens. For benchmarks/model_fit.py: unlike wasm/run_node.cjs it
// never holds the whole file in one Node buffer (Node refuses files over 2 GiB), so the engine's own limits show.
//   node model_fit.cjs MODULE.js MODEL.gguf N_CTX   ->  one JSON line: {stage, ok, error?, heap_bytes, file_bytes}
"use strict";
const fs = require("fs");
const path = require("path");
const pocketmindApi = require(path.join(__dirname, "..", "wasm", "pocketmind_api.js"));

async function main() {
  const [modulePath, modelPath, nCtx] = process.argv.slice(2);
  const M = await require(path.resolve(modulePath))({ printErr: (s) => process.stderr.write(s + "\n") });
  M._pm_set_log_level(1);
  const A = pocketmindApi(M);
  const size = fs.statSync(modelPath).size;
  const report = (stage, extra) => ({ stage, heap_bytes: M.HEAPU8.length, file_bytes: size, ...extra });
  let buffer;
  try {
    buffer = A.allocModelBuffer(size);
  } catch (e) {
    return report("alloc", { ok: false, error: e.message });
  }
  const fd = fs.openSync(modelPath, "r");
  const piece = Buffer.alloc(64 * 1024 * 1024);
  for (let offset = 0; offset < size;) {
    const n = fs.readSync(fd, piece, 0, Math.min(piece.length, size - offset), offset);
    M.HEAPU8.set(piece.subarray(0, n), buffer + offset);
    offset += n;
  }
  fs.closeSync(fd);
  const loaded = A.loadModel(buffer, size);
  if (loaded.error) return report("load", { ok: false, error: loaded.error });
  let ctx;
  try {
    ctx = A.newContext(loaded.model, { n_ctx: Number(nCtx), n_batch: 512 });
  } catch (e) {
    return report("context", { ok: false, error: e.message });
  }
  try {
    const tokens = A.greedy(loaded.model, ctx, [1, 300, 301, 302], 2, { ignoreEog: true });
    return report("decode", { ok: tokens.length === 2 });
  } catch (e) {
    return report("decode", { ok: false, error: e.message });
  }
}

main().then(
  (r) => process.stdout.write(JSON.stringify(r) + "\n", () => process.exit(0)),
  (e) => process.stdout.write(JSON.stringify({ stage: "crash", ok: false, error: String(e && e.message || e) }) + "\n",
                              () => process.exit(1)));
