/* CPU reference permutation (SPEC 2). The API has checked shapes and that every pair and
 * row index fits in i32, so indices here are int32_t/int64_t without overflow.
 *
 * Both plans visit pairs p = t*k' + j in ascending order, which is what makes the rows of
 * one expert ascend in p and, for the masked plan, what decides which pairs an expert
 * keeps when it is full: its first C pairs. Ids outside [0, E') never touch a counter, so
 * caller data cannot index out of bounds. The one scratch array, an i32 per expert, lives
 * in the workspace so that the ops never allocate. */
#include <string.h>

#include "cpu.h"

/* The expert of pair p, or -1 if its id is outside [0, E'). */
static int32_t pair_expert(const moe_tensor *ids, int64_t p, int32_t num_experts) {
    int64_t kp = ids->shape[1];
    int32_t e = moe_cpu_i32(ids, p / kp, p % kp);
    return e >= 0 && e < num_experts ? e : -1;
}

static int32_t *i32_at(const moe_tensor *t, int64_t i0, int64_t i1) {
    return (int32_t *)moe_cpu_at(t, i0, i1, 0);
}

static void fill_i32(const moe_tensor *t, int32_t v) {
    int64_t n0 = t->shape[0], n1 = t->rank > 1 ? t->shape[1] : 1;
    for (int64_t a = 0; a < n0; a++)
        for (int64_t b = 0; b < n1; b++) *i32_at(t, a, b) = v;
}

moe_status moe_cpu_permute_workspace_size(moe_context *ctx, int64_t num_tokens, int32_t topk,
                                          int32_t num_experts, size_t *bytes) {
    (void)ctx;
    (void)num_tokens;
    (void)topk;
    *bytes = (size_t)num_experts * sizeof(int32_t);
    return MOE_OK;
}

/* count[e] = pairs of expert e. */
static void count_pairs(const moe_tensor *ids, int32_t num_experts, int32_t *count) {
    int64_t pairs = ids->shape[0] * ids->shape[1];
    memset(count, 0, (size_t)num_experts * sizeof *count);
    for (int64_t p = 0; p < pairs; p++) {
        int32_t e = pair_expert(ids, p, num_experts);
        if (e >= 0) count[e]++;
    }
}

/* Writes counts (if asked) and offsets, and turns count[e] into expert e's first row. */
static void lay_out_experts(int32_t num_experts, int32_t alignment, int32_t *count,
                            moe_tensor *counts, moe_tensor *offsets) {
    int32_t row = 0;
    *i32_at(offsets, 0, 0) = 0;
    for (int32_t e = 0; e < num_experts; e++) {
        int32_t n = count[e];
        if (counts) *i32_at(counts, e, 0) = n;
        count[e] = row;
        /* the API checked that Rmax, which bounds this sum, fits in i32 */
        row += (int32_t)moe_round_up(n, alignment);
        *i32_at(offsets, e + 1, 0) = row;
    }
}

moe_status moe_cpu_permute_plan(moe_context *ctx, const moe_tensor *ids, int32_t num_experts,
                                int32_t alignment, moe_tensor *counts, moe_tensor *offsets,
                                moe_tensor *perm, moe_tensor *inv_perm, void *workspace,
                                size_t workspace_bytes, void *stream) {
    (void)ctx;
    (void)workspace_bytes;
    (void)stream;
    int64_t pairs = ids->shape[0] * ids->shape[1];
    int32_t *next = workspace; /* pair counts, then each expert's next free row */

    count_pairs(ids, num_experts, next);
    lay_out_experts(num_experts, alignment, next, counts, offsets);
    fill_i32(perm, -1); /* what padding rows and rows past offsets[E'] keep */
    for (int64_t p = 0; p < pairs; p++) {
        int32_t e = pair_expert(ids, p, num_experts);
        int32_t r = -1;
        if (e >= 0) {
            r = next[e]++;
            *i32_at(perm, r, 0) = (int32_t)p;
        }
        *i32_at(inv_perm, p, 0) = r;
    }
    return MOE_OK;
}

moe_status moe_cpu_permute_plan_masked(moe_context *ctx, const moe_tensor *ids,
                                       int32_t num_experts, int64_t capacity,
                                       moe_tensor *counts, moe_tensor *perm,
                                       moe_tensor *inv_perm, moe_tensor *overflow,
                                       void *workspace, size_t workspace_bytes, void *stream) {
    (void)ctx;
    (void)workspace_bytes;
    (void)stream;
    int64_t pairs = ids->shape[0] * ids->shape[1];
    int32_t *kept = workspace; /* pairs placed so far per expert: the next pair's rank */
    int32_t dropped = 0;

    memset(kept, 0, (size_t)num_experts * sizeof *kept);
    fill_i32(perm, -1);
    for (int64_t p = 0; p < pairs; p++) {
        int32_t e = pair_expert(ids, p, num_experts);
        int32_t r = -1;
        if (e >= 0 && kept[e] < capacity) {
            int32_t rank = kept[e]++;
            *i32_at(perm, e, rank) = (int32_t)p;
            r = (int32_t)(e * capacity + rank);
        } else if (e >= 0) {
            dropped++;
        }
        *i32_at(inv_perm, p, 0) = r;
    }
    for (int32_t e = 0; e < num_experts; e++) *i32_at(counts, e, 0) = kept[e];
    *i32_at(overflow, 0, 0) = dropped;
    return MOE_OK;
}

moe_status moe_cpu_problem_sizes(moe_context *ctx, const moe_tensor *counts, int64_t n,
                                 int64_t k, moe_tensor *out, void *stream) {
    (void)ctx;
    (void)stream;
    for (int64_t e = 0; e < counts->shape[0]; e++) {
        *i32_at(out, e, 0) = moe_cpu_i32(counts, e, 0);
        *i32_at(out, e, 1) = (int32_t)n;
        *i32_at(out, e, 2) = (int32_t)k;
    }
    return MOE_OK;
}

/* Rows are copied bit for bit: x and out share a dtype, so no value is rounded. */
moe_status moe_cpu_gather_rows(moe_context *ctx, const moe_tensor *x, const moe_tensor *perm,
                               int32_t topk, moe_tensor *out, void *stream) {
    (void)ctx;
    (void)stream;
    int64_t rows = out->shape[0], tokens = x->shape[0];
    size_t row_bytes = (size_t)out->shape[1] * moe_dtype_size(out->dtype);
    if (row_bytes == 0) return MOE_OK; /* nothing to write, and maybe no data to point into */
#pragma omp parallel for schedule(static)
    for (int64_t r = 0; r < rows; r++) {
        int32_t p = moe_cpu_i32(perm, r, 0);
        void *dst = moe_cpu_at(out, r, 0, 0);
        /* every format's all-zero bit pattern is +0 */
        if (p < 0 || p / topk >= tokens)
            memset(dst, 0, row_bytes);
        else
            memcpy(dst, moe_cpu_at(x, p / topk, 0, 0), row_bytes);
    }
    return MOE_OK;
}
