// node fp16_run.cjs MODULE.js N: harness_fp16 (fp16_harness.c) with N random floats; prints its seven counts as JSON
"use strict";
const path = require("path");
require(path.resolve(process.argv[2]))().then((M) => {
  const out = M._malloc(28);
  M._harness_fp16(Number(process.argv[3]), out);
  console.log(JSON.stringify(Array.from(M.HEAPU32.slice(out >> 2, (out >> 2) + 7))));
});
