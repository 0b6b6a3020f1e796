// ggml's wasm dot-product kernels timed the way ggml's matmul walks a weight matrix: times a matrix of activation
// columns (a prompt batch) by one-row calls (nrc == 1) and by 2x2 calls (nrc == 2, wasm-simd-2x2-dot.patch; only
// for the types that have them), the two ways alternated in each round inside one process; and times one column (a
// generated token), row by row as ggml walks it, for the matrix in the caches and for one larger than them
// (LARGE_BYTES, read from memory as a model's weights are for each generated token). Built and run by
// benchmarks/wasm_kernels.py.
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <emscripten.h>

#include "ggml-common.h"
#include "ggml-impl.h"
#include "ggml-quants.h"
#include "quants.h"

float ggml_table_f32_f16[1 << 16];  // ggml-cpu's fp16 -> fp32 table, filled as ggml_cpu_init fills it

typedef void (*quantize_fn)(const float *, void *, int64_t);
typedef void (*dot_fn)(int, float *, size_t, const void *, size_t, const void *, size_t, int);

struct kind {
    const char * name;
    quantize_fn weights, activations;
    int block;                       // values per block
    size_t weight_bytes, act_bytes;  // per block
    dot_fn dot;
    int two_by_two;                  // whether the kernel takes nrc == 2
};

static const struct kind kinds[] = {
    {"Q4_1", (quantize_fn) quantize_row_q4_1_ref, quantize_row_q8_1, QK4_1, sizeof(block_q4_1), sizeof(block_q8_1),
     ggml_vec_dot_q4_1_q8_1, 1},
    {"Q5_0", (quantize_fn) quantize_row_q5_0_ref, quantize_row_q8_0, QK5_0, sizeof(block_q5_0), sizeof(block_q8_0),
     ggml_vec_dot_q5_0_q8_0, 1},
    {"Q8_0", (quantize_fn) quantize_row_q8_0_ref, quantize_row_q8_0, QK8_0, sizeof(block_q8_0), sizeof(block_q8_0),
     ggml_vec_dot_q8_0_q8_0, 1},
    {"Q4_K", (quantize_fn) quantize_row_q4_K_ref, quantize_row_q8_K, QK_K, sizeof(block_q4_K), sizeof(block_q8_K),
     ggml_vec_dot_q4_K_q8_K, 1},
    {"Q5_K", (quantize_fn) quantize_row_q5_K_ref, quantize_row_q8_K, QK_K, sizeof(block_q5_K), sizeof(block_q8_K),
     ggml_vec_dot_q5_K_q8_K, 0},
    {"Q6_K", (quantize_fn) quantize_row_q6_K_ref, quantize_row_q8_K, QK_K, sizeof(block_q6_K), sizeof(block_q8_K),
     ggml_vec_dot_q6_K_q8_K, 1},
};

#define LARGE_BYTES (48u << 20)

// FNV-1a over the results' bytes: benchmarks/wasm_kernels.py compares the plain and relaxed-SIMD builds' bits
static uint32_t fnv1a(const void * data, size_t size, uint32_t hash) {
    for (size_t i = 0; i < size; i++) hash = (hash ^ ((const uint8_t *) data)[i]) * 16777619u;
    return hash;
}

static int compare(const void * a, const void * b) {
    const double x = *(const double *) a, y = *(const double *) b;
    return (x > y) - (x < y);
}

// rows x n weights times cols x n activations, `rounds` times each way, and one column of a copy of the weights
// repeated to LARGE_BYTES; prints one JSON line per type
int main(int argc, char ** argv) {
    const int n = argc > 1 ? atoi(argv[1]) : 640, rows = argc > 2 ? atoi(argv[2]) : 512;
    const int cols = argc > 3 ? atoi(argv[3]) : 64, rounds = argc > 4 ? atoi(argv[4]) : 30;
    for (uint32_t i = 0; i < (1 << 16); i++) ggml_table_f32_f16[i] = ggml_compute_fp16_to_fp32((ggml_fp16_t) i);
    float * values = malloc(n * sizeof(float));
    float * one = malloc(rows * cols * sizeof(float)), * two = malloc(rows * cols * sizeof(float));
    double * ms[4];  // per way, per round
    for (int way = 0; way < 4; way++) ms[way] = malloc(rounds * sizeof(double));
    uint8_t * large = malloc(LARGE_BYTES);
    float * large_out = malloc(LARGE_BYTES / 16 * sizeof(float));  // a row has 16 bytes at least
    srand(1);
    for (size_t k = 0; k < sizeof(kinds) / sizeof(kinds[0]); k++) {
        const struct kind * t = &kinds[k];
        if (n % t->block != 0) continue;  // K-quants need rows of a multiple of 256 values
        const size_t wrow = n / t->block * t->weight_bytes, arow = n / t->block * t->act_bytes;
        uint8_t * w = malloc(wrow * rows), * a = malloc(arow * cols);
        for (int r = 0; r < rows; r++) {
            for (int i = 0; i < n; i++) values[i] = (float) rand() / (float) RAND_MAX - 0.5f;
            t->weights(values, w + r * wrow, n);
        }
        for (int c = 0; c < cols; c++) {
            for (int i = 0; i < n; i++) values[i] = 4.0f * ((float) rand() / (float) RAND_MAX - 0.5f);
            t->activations(values, a + c * arow, n);
        }
        const int large_rows = (int) (LARGE_BYTES / wrow);
        for (int r = 0; r < large_rows; r++) memcpy(large + (size_t) r * wrow, w + (size_t) (r % rows) * wrow, wrow);
        int same = 1;
        uint32_t bits = 2166136261u;
        for (int round = 0; round < rounds; round++) {
            double start = emscripten_get_now();
            for (int c = 0; c < cols; c++)
                for (int r = 0; r < rows; r++) t->dot(n, &one[c * rows + r], 0, w + r * wrow, 0, a + c * arow, 0, 1);
            ms[0][round] = emscripten_get_now() - start;
            if (round == 0) bits = fnv1a(one, rows * cols * sizeof(float), bits);
            ms[1][round] = 0.0;
            if (t->two_by_two) {
                start = emscripten_get_now();
                for (int c = 0; c < cols; c += 2)
                    for (int r = 0; r < rows; r += 2)
                        t->dot(n, &two[c * rows + r], rows, w + r * wrow, wrow, a + c * arow, arow, 2);
                ms[1][round] = emscripten_get_now() - start;
                same &= memcmp(one, two, rows * cols * sizeof(float)) == 0;
            }
            // one column, row by row: the matrix in the caches, then the large one
            start = emscripten_get_now();
            for (int r = 0; r < rows; r++) t->dot(n, &one[r], 0, w + r * wrow, 0, a, 0, 1);
            ms[2][round] = emscripten_get_now() - start;
            start = emscripten_get_now();
            for (int r = 0; r < large_rows; r++) t->dot(n, &large_out[r], 0, large + (size_t) r * wrow, 0, a, 0, 1);
            ms[3][round] = emscripten_get_now() - start;
            same &= memcmp(one, large_out, rows * sizeof(float)) == 0;
            if (round == 0) bits = fnv1a(large_out, (size_t) large_rows * sizeof(float), bits);
        }
        for (int way = 0; way < 4; way++) qsort(ms[way], rounds, sizeof(double), compare);
        printf("{\"type\": \"%s\", \"n\": %d, \"rows\": %d, \"cols\": %d, \"rounds\": %d, "
               "\"matrix_one_row_ms\": %.4f, \"matrix_2x2_ms\": %.4f, \"vector_one_row_ms\": %.4f, "
               "\"large_vector_ms\": %.4f, \"large_bytes\": %zu, \"same_bits\": %s, \"bits\": \"%08x\"}\n", t->name, n,
               rows, cols, rounds, ms[0][rounds / 2], ms[1][rounds / 2], ms[2][rounds / 2], ms[3][rounds / 2],
               (size_t) large_rows * wrow, same ? "true" : "false", bits);
        free(w);
        free(a);
    }
    return 0;
}
