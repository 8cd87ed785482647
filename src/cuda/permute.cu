/* Not yet implemented on the GPU: reports MOE_ERR_UNSUPPORTED. */
#include "cuda.h"

moe_status moe_cuda_permute_workspace_size(moe_context *ctx, int64_t num_tokens, int32_t topk, int32_t num_experts, size_t *bytes) {
    (void)num_tokens;
    (void)topk;
    (void)num_experts;
    (void)bytes;
    return moe_unsupported(ctx, "moe_permute_workspace_size");
}

moe_status moe_cuda_permute_plan(moe_context *ctx, const moe_tensor *ids, int32_t num_experts, int32_t alignment, moe_tensor *counts, moe_tensor *offsets, moe_tensor *perm, moe_tensor *inv_perm, void *workspace, size_t workspace_bytes, void *stream) {
    (void)ids;
    (void)num_experts;
    (void)alignment;
    (void)counts;
    (void)offsets;
    (void)perm;
    (void)inv_perm;
    (void)workspace;
    (void)workspace_bytes;
    (void)stream;
    return moe_unsupported(ctx, "moe_permute_plan");
}

moe_status moe_cuda_permute_plan_masked(moe_context *ctx, const moe_tensor *ids, int32_t num_experts, int64_t capacity, moe_tensor *counts, moe_tensor *perm, moe_tensor *inv_perm, moe_tensor *overflow, void *workspace, size_t workspace_bytes, void *stream) {
    (void)ids;
    (void)num_experts;
    (void)capacity;
    (void)counts;
    (void)perm;
    (void)inv_perm;
    (void)overflow;
    (void)workspace;
    (void)workspace_bytes;
    (void)stream;
    return moe_unsupported(ctx, "moe_permute_plan_masked");
}

moe_status moe_cuda_problem_sizes(moe_context *ctx, const moe_tensor *counts, int64_t n, int64_t k, moe_tensor *out, void *stream) {
    (void)counts;
    (void)n;
    (void)k;
    (void)out;
    (void)stream;
    return moe_unsupported(ctx, "moe_problem_sizes");
}

moe_status moe_cuda_gather_rows(moe_context *ctx, const moe_tensor *x, const moe_tensor *perm, int32_t topk, moe_tensor *out, void *stream) {
    (void)x;
    (void)perm;
    (void)topk;
    (void)out;
    (void)stream;
    return moe_unsupported(ctx, "moe_gather_rows");
}

