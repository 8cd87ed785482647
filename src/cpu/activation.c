/* CPU reference activation (SPEC 5): out = silu(gate) * up in f32, rounded once to the
 * output format, or quantised to FP8 per token group straight from f32. */
#include <math.h>
#include <string.h>

#include "cpu.h"

/* f32 values of one row held at a time by the fused op: 8 KiB of stack per thread. */
#define ROW_CHUNK 2048

/* silu(a) * b = (a / (1 + e^-a)) * b, each step in f32. A large negative a makes e^-a
 * infinite and the result a signed zero, as it should be. */
static float silu_mul(float a, float b) { return a / (1.0f + expf(-a)) * b; }

/* y[c] = silu_mul(in[m, i0 + c], in[m, I + i0 + c]) for c < n. */
static void silu_mul_row(const moe_tensor *in, int64_t m, int64_t i0, int64_t n, float *y) {
    const void *row = moe_cpu_at(in, m, 0, 0);
    int64_t half = in->shape[1] / 2;
    for (int64_t c = 0; c < n; c++)
        y[c] = silu_mul(moe_cpu_load(in->dtype, row, i0 + c),
                        moe_cpu_load(in->dtype, row, half + i0 + c));
}

moe_status moe_cpu_silu_and_mul(moe_context *ctx, const moe_tensor *in, moe_tensor *out,
                                void *stream) {
    (void)ctx;
    (void)stream;
    int64_t rows = out->shape[0], cols = out->shape[1];
    if (cols == 0) return MOE_OK; /* nothing to write, and maybe no data to point into */
#pragma omp parallel for schedule(static)
    for (int64_t m = 0; m < rows; m++) {
        float y[ROW_CHUNK];
        void *dst = moe_cpu_at(out, m, 0, 0);
        for (int64_t i0 = 0; i0 < cols; i0 += ROW_CHUNK) {
            int64_t n = cols - i0 < ROW_CHUNK ? cols - i0 : ROW_CHUNK;
            silu_mul_row(in, m, i0, n, y);
            for (int64_t c = 0; c < n; c++) moe_cpu_store(out->dtype, dst, i0 + c, y[c]);
        }
    }
    return MOE_OK;
}

/* ------------------------------------------------------------------ fused FP8 */

/* Where row m's scales live and how far apart its groups' scales are. */
typedef struct scale_row {
    float *first;
    int64_t stride;
} scale_row;

static scale_row scales_of_row(const moe_tensor *scales, const moe_fp8_group_params *params,
                               int64_t m) {
    scale_row s;
    if (params->layout == MOE_SCALES_ROW_MAJOR) {
        s.first = (float *)moe_cpu_at(scales, m, 0, 0);
        s.stride = scales->stride[1];
    } else {
        s.first = (float *)moe_cpu_at(scales, 0, m, 0);
        s.stride = scales->stride[0];
    }
    return s;
}

/* The largest |y| of group columns i0..i0+g-1, ignoring NaN exactly as
 * moe_cpu_quant_fp8_row's amax does. */
static float group_amax(const moe_tensor *in, int64_t m, int64_t i0, int64_t g) {
    float y[ROW_CHUNK], amax = 0.0f;
    for (int64_t c0 = 0; c0 < g; c0 += ROW_CHUNK) {
        int64_t n = g - c0 < ROW_CHUNK ? g - c0 : ROW_CHUNK;
        silu_mul_row(in, m, i0 + c0, n, y);
        for (int64_t c = 0; c < n; c++) {
            float a = y[c] < 0.0f ? -y[c] : y[c];
            if (a > amax) amax = a;
        }
    }
    return amax;
}

/* A group wider than the buffer: quantised a piece at a time, each piece followed by one
 * extra element equal to the group's amax. moe_cpu_quant_fp8_row then sees the group's
 * amax in every piece and derives the group's scale, so the codes equal those of one call
 * over the whole group; the extra element's code is dropped. */
static void quant_wide_group(const moe_tensor *in, const moe_fp8_group_params *params,
                             int64_t m, int64_t i0, uint8_t *q, float *scale) {
    int64_t g = params->group;
    float amax = group_amax(in, m, i0, g);
    float y[ROW_CHUNK + 1];
    uint8_t code[ROW_CHUNK + 1];
    for (int64_t c0 = 0; c0 < g; c0 += ROW_CHUNK) {
        int64_t n = g - c0 < ROW_CHUNK ? g - c0 : ROW_CHUNK;
        silu_mul_row(in, m, i0 + c0, n, y);
        y[n] = amax;
        moe_fp8_group_params piece = *params;
        piece.group = (int32_t)(n + 1);
        moe_cpu_quant_fp8_row(y, n + 1, &piece, code, scale, 1);
        memcpy(q + c0, code, (size_t)n);
    }
}

/* Row m: as many whole groups at a time as fit the buffer. */
static void quant_row(const moe_tensor *in, const moe_fp8_group_params *params,
                      moe_tensor *q, const moe_tensor *scales, int64_t m) {
    int64_t cols = q->shape[1], g = params->group;
    uint8_t *qrow = (uint8_t *)moe_cpu_at(q, m, 0, 0);
    scale_row s = scales_of_row(scales, params, m);
    if (g > ROW_CHUNK) {
        for (int64_t i0 = 0; i0 < cols; i0 += g)
            quant_wide_group(in, params, m, i0, qrow + i0, s.first + (i0 / g) * s.stride);
        return;
    }
    float y[ROW_CHUNK];
    int64_t step = ROW_CHUNK / g * g;
    for (int64_t i0 = 0; i0 < cols; i0 += step) {
        int64_t n = cols - i0 < step ? cols - i0 : step;
        silu_mul_row(in, m, i0, n, y);
        moe_cpu_quant_fp8_row(y, n, params, qrow + i0, s.first + (i0 / g) * s.stride,
                              s.stride);
    }
}

moe_status moe_cpu_silu_and_mul_quant_fp8(moe_context *ctx, const moe_tensor *in,
                                          const moe_fp8_group_params *params, moe_tensor *q,
                                          moe_tensor *scales, void *stream) {
    (void)ctx;
    (void)stream;
    int64_t rows = q->shape[0];
    if (q->shape[1] == 0) return MOE_OK; /* nothing to write, and maybe no data to point into */
#pragma omp parallel for schedule(static)
    for (int64_t m = 0; m < rows; m++) quant_row(in, params, q, scales, m);
    return MOE_OK;
}
