/* CPU reference combine (SPEC 6): out[t, h] = scale * sum_j weights[t, j] * y[row, h] with
 * row = inv_perm[t*k' + j], in f32, j ascending, rounded once to out's dtype.
 *
 * A row is skipped unless 0 <= row < R, R being y's row count: inv_perm is caller data,
 * and bounding it by anything else (the token count, T*k') would either read past y or
 * drop valid rows. Each token is one thread's work and its sum order is fixed, so the
 * result does not depend on the thread count. */
#include "cpu.h"

/* Columns accumulated at once: an f32 stack buffer, since ops never allocate. */
#define COMBINE_CHUNK 256

/* Columns [h0, h0 + n) of token t into acc. */
static void combine_chunk(const moe_tensor *y, const moe_tensor *inv_perm,
                          const moe_tensor *weights, int64_t t, int64_t h0, int64_t n,
                          float *acc) {
    int64_t kp = weights->shape[1], rows = y->shape[0];
    for (int64_t h = 0; h < n; h++) acc[h] = 0.0f;
    for (int64_t j = 0; j < kp; j++) {
        int32_t row = moe_cpu_i32(inv_perm, t * kp + j, 0);
        if (row < 0 || row >= rows) continue;
        float w = *(const float *)moe_cpu_at(weights, t, j, 0);
        const void *src = moe_cpu_at(y, row, h0, 0);
        for (int64_t h = 0; h < n; h++) {
            /* its own statement: the product is rounded to f32, never fused into an FMA */
            float term = w * moe_cpu_load(y->dtype, src, h);
            acc[h] += term;
        }
    }
}

moe_status moe_cpu_combine(moe_context *ctx, const moe_tensor *y, const moe_tensor *inv_perm,
                           const moe_tensor *weights, float scale, moe_tensor *out,
                           void *stream) {
    (void)ctx;
    (void)stream;
    int64_t tokens = out->shape[0], cols = out->shape[1];
    if (cols == 0) return MOE_OK; /* nothing to write, and maybe no data to point into */
#pragma omp parallel for schedule(static)
    for (int64_t t = 0; t < tokens; t++) {
        float acc[COMBINE_CHUNK];
        for (int64_t h0 = 0; h0 < cols; h0 += COMBINE_CHUNK) {
            int64_t n = cols - h0 < COMBINE_CHUNK ? cols - h0 : COMBINE_CHUNK;
            combine_chunk(y, inv_perm, weights, t, h0, n, acc);
            void *dst = moe_cpu_at(out, t, h0, 0);
            for (int64_t h = 0; h < n; h++) moe_cpu_store(out->dtype, dst, h, scale * acc[h]);
        }
    }
    return MOE_OK;
}
