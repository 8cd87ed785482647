/* STUB: to be implemented. */
#include "cpu.h"

moe_status moe_cpu_quant_mxfp8(moe_context *ctx, const moe_tensor *x, const moe_tensor *offsets, moe_mx_rule rule, moe_tensor *q, moe_tensor *scales, void *stream) {
    (void)ctx;
    (void)x;
    (void)offsets;
    (void)rule;
    (void)q;
    (void)scales;
    (void)stream;
    return moe_unsupported(ctx, "moe_quant_mxfp8");
}

moe_status moe_cpu_dequant_mxfp8(moe_context *ctx, const moe_tensor *q, const moe_tensor *scales, const moe_tensor *offsets, moe_tensor *out, void *stream) {
    (void)ctx;
    (void)q;
    (void)scales;
    (void)offsets;
    (void)out;
    (void)stream;
    return moe_unsupported(ctx, "moe_dequant_mxfp8");
}

