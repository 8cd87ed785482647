/* Argument checks and dispatch: activation (SPEC 5). */
#include <inttypes.h>

#include "internal.h"

/* in [M, 2I] against an output [M, I], both already checked as tensors. */
static moe_status check_halves(const moe_tensor *in, const moe_tensor *out,
                               const char *out_name) {
    MOE_TRY(moe_check_dim(out, out_name, 0, in->shape[0], "M (in.shape[0])"));
    int64_t i = out->shape[1];
    /* written without 2 * i so that no shape can overflow the comparison */
    if (in->shape[1] % 2 != 0 || in->shape[1] / 2 != i)
        return moe_fail(MOE_ERR_INVALID_ARGUMENT,
                        "in.shape[1] (%" PRId64 ") must equal 2 * I, twice %s.shape[1] (%" PRId64
                        ")",
                        in->shape[1], out_name, i);
    return MOE_OK;
}

moe_status moe_silu_and_mul(moe_context *ctx, const moe_tensor *in, moe_tensor *out,
                            void *stream) {
    moe_clear_error();
    MOE_TRY(moe_check_ctx(ctx));
    MOE_TRY(moe_check_tensor(in, "in", MOE_DT_FLOAT, 2));
    MOE_TRY(moe_check_tensor(out, "out", MOE_DT_FLOAT, 2));
    MOE_TRY(check_halves(in, out, "out"));
    return MOE_DISPATCH(ctx, silu_and_mul, ctx, in, out, stream);
}

moe_status moe_silu_and_mul_quant_fp8(moe_context *ctx, const moe_tensor *in,
                                      const moe_fp8_group_params *params, moe_tensor *q,
                                      moe_tensor *scales, void *stream) {
    moe_clear_error();
    MOE_TRY(moe_check_ctx(ctx));
    MOE_TRY(moe_check_tensor(in, "in", MOE_DT_FLOAT, 2));
    MOE_TRY(moe_check_tensor(q, "q", MOE_DT(MOE_DTYPE_E4M3), 2));
    MOE_TRY(check_halves(in, q, "q"));
    /* the group quantisation runs over the I columns of the result */
    MOE_TRY(moe_check_fp8_group(params, q->shape[0], q->shape[1], scales));
    return MOE_DISPATCH(ctx, silu_and_mul_quant_fp8, ctx, in, params, q, scales, stream);
}
