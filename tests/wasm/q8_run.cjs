// node q8_run.cjs MODULE.js IN.f32 OUT.bin: quantize the floats of IN with the harness module, write the blocks.
"use strict";
const fs = require("fs");
const path = require("path");
require(path.resolve(process.argv[2]))().then((M) => {
  const x = new Float32Array(fs.readFileSync(process.argv[3]).buffer.slice(0));
  const blocks = x.length / 32;
  const xp = M._malloc(x.length * 4);
  const yp = M._malloc(blocks * 34);
  M.HEAPF32.set(x, xp >> 2);
  M._harness_q8_0(xp, yp, x.length);
  fs.writeFileSync(process.argv[4], M.HEAPU8.slice(yp, yp + blocks * 34));
});
