// Calls ggml's wasm quantize_row_q8_0 on floats from JS: compiled with one version of arch/wasm/quants.c by
// test_wasm_patches.py, to show what wasm-q8-round-to-nearest.patch changes.
#include <stdint.h>

void quantize_row_q8_0(const float * x, void * y, int64_t k);

void harness_q8_0(const float * x, void * y, int32_t k) { quantize_row_q8_0(x, y, k); }
