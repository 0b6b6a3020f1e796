// ggml's wasm SIMD kernels next to its generic C ones, in one wasm module: for each weight type, a row of weights
// quantized with the reference quantizer, an activation row quantized by the wasm quantizer and by the reference
// one, and the dot product by the wasm kernel, by the generic kernel and in double precision. Built by
// tests/test_quant_parity.py from the pinned (patched) source, and from an upstream copy of arch/wasm/quants.c to
// show what the rounding patch changes.
#include <stdint.h>
#include <string.h>

#include "ggml-common.h"
#include "ggml-impl.h"
#include "ggml-quants.h"
#include "quants.h"

// ggml-cpu's fp16 -> fp32 table, filled as ggml_cpu_init fills it
float ggml_table_f32_f16[1 << 16];

typedef void (*quantize_fn)(const float *, void *, int64_t);
typedef void (*dequantize_fn)(const void *, float *, int64_t);
typedef void (*dot_fn)(int, float *, size_t, const void *, size_t, const void *, size_t, int);

#define REF(name) ((quantize_fn) quantize_row_##name##_ref)
#define DQ(name) ((dequantize_fn) dequantize_row_##name)

struct kind {
    int type;                  // ggml_type of the weights
    quantize_fn weight_ref;    // reference quantizer of the weights
    dequantize_fn weight_dq, act_dq;  // act_dq: NULL for q8_1 (no dequantizer upstream; done below)
    size_t weight_block, weight_bytes;
    quantize_fn act_wasm, act_ref;  // the activation's quantizers (q8_0, q8_1 or q8_K)
    size_t act_bytes;          // bytes of the activation block that pairs with one weight block
    dot_fn dot_wasm, dot_generic;
};

static const struct kind kinds[] = {
    {GGML_TYPE_Q4_0, REF(q4_0), DQ(q4_0), DQ(q8_0),
     QK4_0, sizeof(block_q4_0), quantize_row_q8_0, REF(q8_0), sizeof(block_q8_0),
     ggml_vec_dot_q4_0_q8_0, ggml_vec_dot_q4_0_q8_0_generic},
    {GGML_TYPE_Q4_1, REF(q4_1), DQ(q4_1), NULL,
     QK4_1, sizeof(block_q4_1), quantize_row_q8_1, REF(q8_1), sizeof(block_q8_1),
     ggml_vec_dot_q4_1_q8_1, ggml_vec_dot_q4_1_q8_1_generic},
    {GGML_TYPE_Q5_0, REF(q5_0), DQ(q5_0), DQ(q8_0),
     QK5_0, sizeof(block_q5_0), quantize_row_q8_0, REF(q8_0), sizeof(block_q8_0),
     ggml_vec_dot_q5_0_q8_0, ggml_vec_dot_q5_0_q8_0_generic},
    {GGML_TYPE_Q5_1, REF(q5_1), DQ(q5_1), NULL,
     QK5_1, sizeof(block_q5_1), quantize_row_q8_1, REF(q8_1), sizeof(block_q8_1),
     ggml_vec_dot_q5_1_q8_1, ggml_vec_dot_q5_1_q8_1_generic},
    {GGML_TYPE_Q8_0, REF(q8_0), DQ(q8_0), DQ(q8_0),
     QK8_0, sizeof(block_q8_0), quantize_row_q8_0, REF(q8_0), sizeof(block_q8_0),
     ggml_vec_dot_q8_0_q8_0, ggml_vec_dot_q8_0_q8_0_generic},
    {GGML_TYPE_Q4_K, REF(q4_K), DQ(q4_K), DQ(q8_K),
     QK_K, sizeof(block_q4_K), quantize_row_q8_K, REF(q8_K), sizeof(block_q8_K),
     ggml_vec_dot_q4_K_q8_K, ggml_vec_dot_q4_K_q8_K_generic},
    {GGML_TYPE_Q5_K, REF(q5_K), DQ(q5_K), DQ(q8_K),
     QK_K, sizeof(block_q5_K), quantize_row_q8_K, REF(q8_K), sizeof(block_q8_K),
     ggml_vec_dot_q5_K_q8_K, ggml_vec_dot_q5_K_q8_K_generic},
    {GGML_TYPE_Q6_K, REF(q6_K), DQ(q6_K), DQ(q8_K),
     QK_K, sizeof(block_q6_K), quantize_row_q8_K, REF(q8_K), sizeof(block_q8_K),
     ggml_vec_dot_q6_K_q8_K, ggml_vec_dot_q6_K_q8_K_generic},
};

static uint8_t wq[1 << 16], aw[1 << 16], ar[1 << 16];
static float wf[8192], af[8192];

static void fill_fp16_table(void) {
    if (ggml_table_f32_f16[0x3c00] != 1.0f) {
        for (uint32_t i = 0; i < (1 << 16); i++) ggml_table_f32_f16[i] = ggml_compute_fp16_to_fp32((ggml_fp16_t) i);
    }
}

// n values (a multiple of 256, at most 8192): out[0] the wasm kernel on the wasm-quantized activation, out[1] the
// generic kernel on the reference-quantized activation, out[2] the generic kernel on the wasm-quantized activation,
// out[3] the dot product of the dequantized weights and reference-quantized activation, summed in double.
// Returns 1 if the two quantized activations are the same bytes, 0 if not, -1 for an unknown type.
int harness_dot(int type, int n, const float * w, const float * a, float * out) {
    fill_fp16_table();
    for (size_t k = 0; k < sizeof(kinds) / sizeof(kinds[0]); k++) {
        const struct kind * t = &kinds[k];
        if (t->type != type) continue;
        const size_t blocks = n / t->weight_block;
        const size_t act = blocks * t->act_bytes;  // one activation block per weight block
        t->weight_ref(w, wq, n);
        t->act_wasm(a, aw, n);
        t->act_ref(a, ar, n);
        t->dot_wasm(n, &out[0], 0, wq, 0, aw, 0, 1);
        t->dot_generic(n, &out[1], 0, wq, 0, ar, 0, 1);
        t->dot_generic(n, &out[2], 0, wq, 0, aw, 0, 1);
        t->weight_dq(wq, wf, n);
        if (!t->act_dq) {  // q8_1: value = d * q (its s, the block's sum in fp16, is only for the kernels)
            const block_q8_1 * b = (const block_q8_1 *) ar;
            for (int i = 0; i < n; i++) af[i] = GGML_FP16_TO_FP32(b[i / 32].d) * b[i / 32].qs[i % 32];
        } else {
            t->act_dq(ar, af, n);
        }
        double exact = 0;
        for (int i = 0; i < n; i++) exact += (double) wf[i] * af[i];
        out[3] = (float) exact;
        return memcmp(aw, ar, act) == 0;
    }
    return -1;
}

static uint8_t wq2[2][1 << 15], aw2[2][1 << 15];  // two rows each, 32 KiB apart

// The 2x2 call (nrc == 2) that ggml's matmul makes for types whose kernel takes it (wasm-simd-2x2-dot.patch): two
// weight rows w0, w1 and two activations a0, a1 of n values each. out[0..3]: the 2x2 call's x0.y0, x1.y0, x0.y1,
// x1.y1 (as it stores them: s[0], s[1], s[bs], s[bs + 1]); out[4..7]: x0.y0, x1.y0, x0.y1, x1.y1 by four one-row
// calls.
// Returns -1 for an unknown type.
int harness_dot_2x2(int type, int n, const float * w0, const float * w1, const float * a0, const float * a1,
                    float * out) {
    fill_fp16_table();
    for (size_t k = 0; k < sizeof(kinds) / sizeof(kinds[0]); k++) {
        const struct kind * t = &kinds[k];
        if (t->type != type) continue;
        t->weight_ref(w0, wq2[0], n);
        t->weight_ref(w1, wq2[1], n);
        t->act_wasm(a0, aw2[0], n);
        t->act_wasm(a1, aw2[1], n);
        const size_t bx = (size_t) (wq2[1] - wq2[0]), by = (size_t) (aw2[1] - aw2[0]);
        float s[2 * 16];
        t->dot_wasm(n, s, 16, wq2[0], bx, aw2[0], by, 2);
        out[0] = s[0], out[1] = s[1], out[2] = s[16], out[3] = s[17];
        for (int c = 0; c < 2; c++) {
            for (int r = 0; r < 2; r++) t->dot_wasm(n, &out[4 + 2 * c + r], 0, wq2[r], 0, aw2[c], 0, 1);
        }
        return 0;
    }
    return -1;
}
