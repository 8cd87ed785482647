/* Argument checks and dispatch: combine. */
#include "internal.h"

moe_status moe_combine(moe_context *ctx, const moe_tensor *y, const moe_tensor *inv_perm, const moe_tensor *weights, float scale, moe_tensor *out, void *stream) {
    moe_clear_error();
    MOE_TRY(moe_check_ctx(ctx));
    return MOE_DISPATCH(ctx, combine, ctx, y, inv_perm, weights, scale, out, stream);
}

