/* Argument checks and dispatch: permutation (SPEC 2). Row and pair indices are i32 on the
 * device, so every count that becomes one (T*k' pairs, Rmax rows, E'*C masked rows) is
 * checked against INT32_MAX here; a backend may then index with plain int32_t. */
#include <inttypes.h>
#include <stdalign.h>
#include <stdint.h>

#include "internal.h"

/* Alignments beyond this pad every expert by more rows than any GEMM tile needs; a larger
 * value is far more likely a bug (a byte count passed as rows) than a wish. */
#define PERMUTE_MAX_ALIGNMENT 1024

int64_t moe_permute_max_rows(int64_t num_tokens, int32_t topk, int32_t num_experts,
                             int32_t alignment) {
    if (num_tokens < 0 || topk < 0 || num_experts < 0 || alignment < 1) return -1;
    if (topk > 0 && num_tokens > INT64_MAX / topk) return -1;
    int64_t pairs = num_tokens * topk;
    /* at most (2^31 - 1) * (2^31 - 2): always fits */
    int64_t padding = (int64_t)num_experts * (alignment - 1);
    if (pairs > INT64_MAX - padding) return -1;
    return pairs + padding;
}

/* ---------------------------------------------------------------- shared checks */

/* T tokens times k' slots must index pairs as i32. */
static moe_status check_pairs(int64_t tokens, int64_t topk, const char *what) {
    if (topk > 0 && tokens > INT32_MAX / topk)
        return moe_fail(MOE_ERR_INVALID_ARGUMENT,
                        "%s: T (%" PRId64 ") * k' (%" PRId64
                        ") pairs exceed INT32_MAX (%d), the limit of i32 pair indices",
                        what, tokens, topk, INT32_MAX);
    return MOE_OK;
}

/* ids [T, k'] i32 with k' >= 1 and T*k' within i32. */
static moe_status check_ids(const moe_tensor *ids) {
    MOE_TRY(moe_check_tensor(ids, "ids", MOE_DT(MOE_DTYPE_I32), 2));
    MOE_TRY(moe_check_range(ids->shape[1], "ids.shape[1]", 1, INT32_MAX));
    return check_pairs(ids->shape[0], ids->shape[1], "ids");
}

/* A 1-D i32 tensor of exactly n elements; what names n in the sentence. */
static moe_status check_i32_vector(const moe_tensor *t, const char *name, int64_t n,
                                   const char *what) {
    MOE_TRY(moe_check_tensor(t, name, MOE_DT(MOE_DTYPE_I32), 1));
    return moe_check_dim(t, name, 0, n, what);
}

/* The backend's scratch for a plan over ids, present and aligned for i32 counters. */
static moe_status check_plan_workspace(moe_context *ctx, const moe_tensor *ids,
                                       int32_t num_experts, const void *workspace,
                                       size_t workspace_bytes) {
    size_t need = 0;
    MOE_TRY(MOE_DISPATCH(ctx, permute_workspace_size, ctx, ids->shape[0],
                         (int32_t)ids->shape[1], num_experts, &need));
    MOE_TRY(moe_check_workspace(workspace, workspace_bytes, need));
    if (need > 0 && (uintptr_t)workspace % alignof(int32_t) != 0)
        return moe_fail(MOE_ERR_INVALID_ARGUMENT,
                        "workspace (%p) must be aligned to %zu bytes (i32 counters)",
                        workspace, alignof(int32_t));
    return MOE_OK;
}

/* ---------------------------------------------------------------- ops */

moe_status moe_permute_workspace_size(moe_context *ctx, int64_t num_tokens, int32_t topk,
                                      int32_t num_experts, size_t *bytes) {
    moe_clear_error();
    MOE_TRY(moe_check_ctx(ctx));
    MOE_TRY(moe_check_ptr(bytes, "bytes"));
    MOE_TRY(moe_check_range(num_tokens, "num_tokens", 0, INT32_MAX));
    MOE_TRY(moe_check_range(topk, "topk", 1, INT32_MAX));
    MOE_TRY(moe_check_range(num_experts, "num_experts", 1, INT32_MAX));
    MOE_TRY(check_pairs(num_tokens, topk, "num_tokens * topk"));
    return MOE_DISPATCH(ctx, permute_workspace_size, ctx, num_tokens, topk, num_experts, bytes);
}

moe_status moe_permute_plan(moe_context *ctx, const moe_tensor *ids, int32_t num_experts,
                            int32_t alignment, moe_tensor *counts, moe_tensor *offsets,
                            moe_tensor *perm, moe_tensor *inv_perm, void *workspace,
                            size_t workspace_bytes, void *stream) {
    moe_clear_error();
    MOE_TRY(moe_check_ctx(ctx));
    MOE_TRY(check_ids(ids));
    MOE_TRY(moe_check_range(num_experts, "num_experts", 1, INT32_MAX));
    MOE_TRY(moe_check_range(alignment, "alignment", 1, PERMUTE_MAX_ALIGNMENT));
    int64_t t = ids->shape[0], kp = ids->shape[1];
    int64_t rmax = moe_permute_max_rows(t, (int32_t)kp, num_experts, alignment);
    /* offsets[E'] and every perm row index must fit in i32 */
    if (rmax < 0 || rmax > INT32_MAX)
        return moe_fail(MOE_ERR_INVALID_ARGUMENT,
                        "Rmax = T*k' + num_experts*(alignment-1) (%" PRId64 " * %" PRId64
                        " + %d * %d) exceeds INT32_MAX (%d), the limit of i32 rows",
                        t, kp, (int)num_experts, (int)alignment - 1, INT32_MAX);
    if (counts) MOE_TRY(check_i32_vector(counts, "counts", num_experts, "num_experts"));
    MOE_TRY(check_i32_vector(offsets, "offsets", (int64_t)num_experts + 1, "num_experts + 1"));
    MOE_TRY(check_i32_vector(perm, "perm", rmax,
                             "Rmax = moe_permute_max_rows(T, k', num_experts, alignment)"));
    MOE_TRY(check_i32_vector(inv_perm, "inv_perm", t * kp, "T*k' (ids.shape[0] * shape[1])"));
    MOE_TRY(check_plan_workspace(ctx, ids, num_experts, workspace, workspace_bytes));
    return MOE_DISPATCH(ctx, permute_plan, ctx, ids, num_experts, alignment, counts, offsets,
                        perm, inv_perm, workspace, workspace_bytes, stream);
}

moe_status moe_permute_plan_masked(moe_context *ctx, const moe_tensor *ids,
                                   int32_t num_experts, int64_t capacity, moe_tensor *counts,
                                   moe_tensor *perm, moe_tensor *inv_perm,
                                   moe_tensor *overflow, void *workspace,
                                   size_t workspace_bytes, void *stream) {
    moe_clear_error();
    MOE_TRY(moe_check_ctx(ctx));
    MOE_TRY(check_ids(ids));
    MOE_TRY(moe_check_range(num_experts, "num_experts", 1, INT32_MAX));
    MOE_TRY(moe_check_range(capacity, "capacity", 0, INT32_MAX));
    /* inv_perm holds the row e*C + rank as an i32 */
    if (capacity > INT32_MAX / num_experts)
        return moe_fail(MOE_ERR_INVALID_ARGUMENT,
                        "num_experts (%d) * capacity (%" PRId64
                        ") rows exceed INT32_MAX (%d), the limit of i32 rows",
                        (int)num_experts, capacity, INT32_MAX);
    int64_t t = ids->shape[0], kp = ids->shape[1];
    MOE_TRY(check_i32_vector(counts, "counts", num_experts, "num_experts"));
    MOE_TRY(moe_check_tensor(perm, "perm", MOE_DT(MOE_DTYPE_I32), 2));
    MOE_TRY(moe_check_dim(perm, "perm", 0, num_experts, "num_experts"));
    MOE_TRY(moe_check_dim(perm, "perm", 1, capacity, "capacity"));
    MOE_TRY(check_i32_vector(inv_perm, "inv_perm", t * kp, "T*k' (ids.shape[0] * shape[1])"));
    MOE_TRY(check_i32_vector(overflow, "overflow", 1, "1"));
    MOE_TRY(check_plan_workspace(ctx, ids, num_experts, workspace, workspace_bytes));
    return MOE_DISPATCH(ctx, permute_plan_masked, ctx, ids, num_experts, capacity, counts, perm,
                        inv_perm, overflow, workspace, workspace_bytes, stream);
}

moe_status moe_problem_sizes(moe_context *ctx, const moe_tensor *counts, int64_t n, int64_t k,
                             moe_tensor *out, void *stream) {
    moe_clear_error();
    MOE_TRY(moe_check_ctx(ctx));
    MOE_TRY(moe_check_tensor(counts, "counts", MOE_DT(MOE_DTYPE_I32), 1));
    MOE_TRY(moe_check_range(counts->shape[0], "counts.shape[0]", 1, INT32_MAX));
    /* both are stored as i32 in out */
    MOE_TRY(moe_check_range(n, "n", 1, INT32_MAX));
    MOE_TRY(moe_check_range(k, "k", 1, INT32_MAX));
    MOE_TRY(moe_check_tensor(out, "out", MOE_DT(MOE_DTYPE_I32), 2));
    MOE_TRY(moe_check_dim(out, "out", 0, counts->shape[0], "experts (counts.shape[0])"));
    MOE_TRY(moe_check_dim(out, "out", 1, 3, "3 (count, n, k)"));
    return MOE_DISPATCH(ctx, problem_sizes, ctx, counts, n, k, out, stream);
}

moe_status moe_gather_rows(moe_context *ctx, const moe_tensor *x, const moe_tensor *perm,
                           int32_t topk, moe_tensor *out, void *stream) {
    moe_clear_error();
    MOE_TRY(moe_check_ctx(ctx));
    const unsigned rows = MOE_DT_FLOAT | MOE_DT(MOE_DTYPE_E4M3);
    MOE_TRY(moe_check_tensor(x, "x", rows, 2));
    MOE_TRY(moe_check_tensor(perm, "perm", MOE_DT(MOE_DTYPE_I32), 1));
    MOE_TRY(moe_check_range(topk, "topk", 1, INT32_MAX));
    MOE_TRY(moe_check_tensor(out, "out", rows, 2));
    MOE_TRY(moe_check_same_dtype(x, "x", out, "out"));
    MOE_TRY(moe_check_dim(out, "out", 0, perm->shape[0], "R (perm.shape[0])"));
    MOE_TRY(moe_check_dim(out, "out", 1, x->shape[1], "H (x.shape[1])"));
    return MOE_DISPATCH(ctx, gather_rows, ctx, x, perm, topk, out, stream);
}
