// node kernel_run_2x2.cjs MODULE.js JOB.json OUT.json: for each case {type, n, w0, w1, a0, a1: files of n float32}
// of JOB, the harness's 2x2 call and the same products by one-row calls (harness_dot_2x2 in kernel_harness.c).
"use strict";
const fs = require("fs");
const path = require("path");
require(path.resolve(process.argv[2]))().then((M) => {
  const job = JSON.parse(fs.readFileSync(process.argv[3], "utf8"));
  const results = job.cases.map(({ type, n, w0, w1, a0, a1 }) => {
    const ptrs = [w0, w1, a0, a1].map((file) => {
      const p = M._malloc(n * 4);
      M.HEAPF32.set(new Float32Array(fs.readFileSync(file).buffer.slice(0)), p >> 2);
      return p;
    });
    const out = M._malloc(32);
    const rc = M._harness_dot_2x2(type, n, ...ptrs, out);
    const dots = Array.from(M.HEAPF32.slice(out >> 2, (out >> 2) + 8));
    [...ptrs, out].forEach((p) => M._free(p));
    return { rc, two_by_two: dots.slice(0, 4), one_row: dots.slice(4) };
  });
  fs.writeFileSync(process.argv[4], JSON.stringify(results));
});
