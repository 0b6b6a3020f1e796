// Which of the engine's wasm builds this browser runs. A classic script (importScripts) defining two globals, for
// the engine's workers (engine-boot.js) and the service worker (which precaches only the builds this browser uses).
// Relaxed SIMD gives the kernels an 8-bit dot product (wasm/build.py: RELAXED); a browser without it (Safari, say)
// rejects a module that has one, so the plain build is kept for it. Checked by validating a one-function module.
"use strict";

const V128_ZERO = [0xfd, 0x0c, ...new Array(16).fill(0)]; // v128.const 0
const RELAXED_SIMD_PROBE = new Uint8Array([
  0x00, 0x61, 0x73, 0x6d, 0x01, 0x00, 0x00, 0x00, // "\0asm", version 1
  0x01, 0x05, 0x01, 0x60, 0x00, 0x01, 0x7b, //       type section: () -> v128
  0x03, 0x02, 0x01, 0x00, //                         function section: one function of that type
  0x0a, 0x2b, 0x01, 0x29, 0x00, //                   code section: one body of 41 bytes, no locals
  ...V128_ZERO, ...V128_ZERO, 0xfd, 0x92, 0x02, //   i16x8.relaxed_dot_i8x16_i7x16_s of two zero vectors
  0x0b, //                                           end
]);

// validated once: the answer does not change while the script runs
const HAS_RELAXED_SIMD = (() => {
  try {
    return WebAssembly.validate(RELAXED_SIMD_PROBE);
  } catch {
    return false;
  }
})();

function relaxedSimd() {
  return HAS_RELAXED_SIMD;
}

// Whether this browser never loads `path` (a site-relative path): the relaxed builds' files where it lacks relaxed
// SIMD, the plain builds' where it has it. Other files: false.
function unusedEngineFile(path) {
  const match = /^wasm\/pocketmind-(st|mt)(-relaxed)?\./.exec(path);
  return match !== null && Boolean(match[2]) !== relaxedSimd();
}
