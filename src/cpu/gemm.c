/* STUB: to be implemented. */
#include "cpu.h"

moe_status moe_cpu_grouped_gemm_workspace_size(moe_context *ctx, int32_t num_experts, size_t *bytes) {
    (void)ctx;
    (void)num_experts;
    (void)bytes;
    return moe_unsupported(ctx, "moe_grouped_gemm_workspace_size");
}

moe_status moe_cpu_grouped_gemm(moe_context *ctx, const moe_tensor *a, const moe_tensor *a_scales, moe_scale_layout a_layout, const moe_tensor *b, const moe_tensor *b_scales, const moe_tensor *offsets, moe_tensor *d, void *workspace, size_t workspace_bytes, void *stream) {
    (void)ctx;
    (void)a;
    (void)a_scales;
    (void)a_layout;
    (void)b;
    (void)b_scales;
    (void)offsets;
    (void)d;
    (void)workspace;
    (void)workspace_bytes;
    (void)stream;
    return moe_unsupported(ctx, "moe_grouped_gemm");
}

moe_status moe_cpu_grouped_gemm_masked(moe_context *ctx, const moe_tensor *a, const moe_tensor *a_scales, moe_scale_layout a_layout, const moe_tensor *b, const moe_tensor *b_scales, const moe_tensor *counts, moe_tensor *d, void *workspace, size_t workspace_bytes, void *stream) {
    (void)ctx;
    (void)a;
    (void)a_scales;
    (void)a_layout;
    (void)b;
    (void)b_scales;
    (void)counts;
    (void)d;
    (void)workspace;
    (void)workspace_bytes;
    (void)stream;
    return moe_unsupported(ctx, "moe_grouped_gemm_masked");
}

