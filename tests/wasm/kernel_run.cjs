// node kernel_run.cjs MODULE.js JOB.json OUT.json: for each case {type, n, w: file of n float32, a: file of
// n float32} of JOB, the harness's dot products (wasm, generic, generic on the wasm activation, exact) and whether the activations were quantized alike.
"use strict";
const fs = require("fs");
const path = require("path");
require(path.resolve(process.argv[2]))().then((M) => {
  const job = JSON.parse(fs.readFileSync(process.argv[3], "utf8"));
  const results = job.cases.map(({ type, n, w, a }) => {
    const wp = M._malloc(n * 4), ap = M._malloc(n * 4), out = M._malloc(16);
    M.HEAPF32.set(new Float32Array(fs.readFileSync(w).buffer.slice(0)), wp >> 2);
    M.HEAPF32.set(new Float32Array(fs.readFileSync(a).buffer.slice(0)), ap >> 2);
    const same = M._harness_dot(type, n, wp, ap, out);
    const dots = Array.from(M.HEAPF32.slice(out >> 2, (out >> 2) + 4));
    M._free(wp); M._free(ap); M._free(out);
    return { same_activation: same, wasm: dots[0], generic: dots[1], generic_on_wasm_activation: dots[2], exact: dots[3] };
  });
  fs.writeFileSync(process.argv[4], JSON.stringify(results));
});
