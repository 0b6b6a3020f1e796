// ggml's wasm F16 vector load and store (simd-mappings.h: __wasm_f16x4_load / __wasm_f16x4_store, four values per
// call) against ggml's scalar conversions, which fill the fp16 -> fp32 table and round fp32 -> fp16: every half,
// and floats at, between and around the halves (ties included), plus random bit patterns. Built by
// test_wasm_patches.py with the patched tree's headers, to show wasm-simd-fp16-conversions.patch (the store) keeps
// the bits; and gqa-decode-reads-each-kv-row-once.patch's pm_round_to_f16 (a float rounded to a half's value, kept
// as a float) and its quick form where pm_f16_quick_missed trusts it, against the scalar rounding and conversion
// back, on the same floats; and wasm-simd-fp16-row-to-f32.patch's pm_f16x8_to_f32 (eight halves to floats in SIMD
// lanes) on every half.
#include <stdint.h>
#include <string.h>

#include "ggml-impl.h"
#include "simd-mappings.h"

float ggml_table_f32_f16[1 << 16];  // ggml-cpu's fp16 -> fp32 table (the vector load reads it), filled below

static uint32_t bits_of(float f) { uint32_t u; memcpy(&u, &f, 4); return u; }
static float float_of(uint32_t u) { float f; memcpy(&f, &u, 4); return f; }
static int is_nan(uint32_t u) { return (u & 0x7F800000u) == 0x7F800000u && (u & 0x007FFFFFu) != 0; }

static uint32_t round_mismatches;  // floats whose pm_round_to_f16 differs from the scalar round trip
static uint32_t quick_mismatches;  // floats whose trusted quick rounding differs from it
static uint32_t quick_trusted;     // floats whose quick rounding pm_f16_quick_missed trusts

// four floats through the vector store, each compared with the scalar rounding; returns the mismatches (and counts
// pm_round_to_f16's in round_mismatches)
static int check_store(const uint32_t in[4]) {
    float f[4], r[4], q[4];
    uint32_t missed[4];
    ggml_fp16_t h[4];
    for (int i = 0; i < 4; i++) f[i] = float_of(in[i]);
    __wasm_f16x4_store(h, wasm_v128_load(f));
    wasm_v128_store(r, pm_round_to_f16(wasm_v128_load(f)));
    const v128_t quick = pm_round_to_f16_quick(wasm_v128_load(f));
    wasm_v128_store(q, quick);
    wasm_v128_store(missed, pm_f16_quick_missed(quick));
    int bad = 0;
    for (int i = 0; i < 4; i++) {
        const ggml_fp16_t want = ggml_compute_fp32_to_fp16(f[i]);
        bad += h[i] != want;
        const uint32_t got = bits_of(r[i]), back = bits_of(ggml_compute_fp16_to_fp32(want));
        round_mismatches += is_nan(back) ? !is_nan(got) : got != back;
        if (!missed[i]) {
            quick_trusted++;
            quick_mismatches += bits_of(q[i]) != back;
        }
    }
    return bad;
}

// out[0]: halves whose vector load differs from the scalar conversion (NaN: both NaN), out[1]: floats whose vector
// store differs, out[2]: floats checked by the store, out[3]: those whose pm_round_to_f16 differs, out[4]: those
// whose trusted quick rounding differs, out[5]: those whose quick rounding was trusted, out[6]: halves whose
// pm_f16x8_to_f32 bits differ from the scalar conversion's (NaN included: the same steps)
void harness_fp16(uint32_t n_random, uint32_t * out) {
    out[0] = out[1] = out[2] = out[6] = 0;
    round_mismatches = quick_mismatches = quick_trusted = 0;
    for (uint32_t i = 0; i < (1 << 16); i++) ggml_table_f32_f16[i] = ggml_compute_fp16_to_fp32((ggml_fp16_t) i);
    for (uint32_t h0 = 0; h0 < 65536; h0 += 4) {
        ggml_fp16_t h[4] = {h0, h0 + 1, h0 + 2, h0 + 3};
        float f[4];
        wasm_v128_store(f, __wasm_f16x4_load(h));
        for (int i = 0; i < 4; i++) {
            const uint32_t got = bits_of(f[i]), want = bits_of(ggml_compute_fp16_to_fp32(h[i]));
            out[0] += is_nan(want) ? !is_nan(got) : got != want;
        }
    }
    for (uint32_t h0 = 0; h0 < 65536; h0 += 8) {
        ggml_fp16_t h[8];
        float f[8];
        for (int i = 0; i < 8; i++) h[i] = (ggml_fp16_t) (h0 + i);
        pm_f16x8_to_f32(h, f);
        for (int i = 0; i < 8; i++) out[6] += bits_of(f[i]) != bits_of(ggml_compute_fp16_to_fp32(h[i]));
    }
    // each half's value, the float just above it, the midpoint to the next half and the floats either side of it
    for (uint32_t h0 = 0; h0 < 65536; h0++) {
        const uint32_t a = bits_of(ggml_compute_fp16_to_fp32((ggml_fp16_t) h0));
        const uint32_t b = bits_of(ggml_compute_fp16_to_fp32((ggml_fp16_t) (h0 + 1 < 65536 ? h0 + 1 : h0)));
        const uint32_t mid = bits_of((float_of(a) + float_of(b)) / 2);  // exact for two finite halves
        const uint32_t v[8] = {a, a + 1, mid, mid - 1, mid + 1, a ^ 0x80000000u, mid ^ 0x80000000u, b - 1};
        out[1] += check_store(v) + check_store(v + 4);
        out[2] += 8;
    }
    // around the rounding to infinity: just under, at and just over the midpoint of 65504 and 65536, either sign
    const uint32_t top[8] = {0x477FEFFFu, 0x477FF000u, 0x477FF001u, 0x477FE000u,
                             0xC77FEFFFu, 0xC77FF000u, 0xC77FF001u, 0xC77FE000u};
    out[1] += check_store(top) + check_store(top + 4);
    out[2] += 8;
    uint32_t x = 2463534242u;  // xorshift32
    for (uint32_t i = 0; i < n_random; i += 4) {
        uint32_t v[4];
        for (int k = 0; k < 4; k++) { x ^= x << 13; x ^= x >> 17; x ^= x << 5; v[k] = x; }
        out[1] += check_store(v);
        out[2] += 4;
    }
    out[3] = round_mismatches;
    out[4] = quick_mismatches;
    out[5] = quick_trusted;
}
