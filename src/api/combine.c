/* Argument checks and dispatch: combine (SPEC 6). Rows of y are not bounded here: inv_perm
 * is device data, so the backend skips rows outside [0, R) itself. */
#include <inttypes.h>
#include <math.h>
#include <stdint.h>

#include "internal.h"

moe_status moe_combine(moe_context *ctx, const moe_tensor *y, const moe_tensor *inv_perm,
                       const moe_tensor *weights, float scale, moe_tensor *out, void *stream) {
    moe_clear_error();
    MOE_TRY(moe_check_ctx(ctx));
    MOE_TRY(moe_check_tensor(y, "y", MOE_DT_FLOAT, 2));
    MOE_TRY(moe_check_tensor(weights, "weights", MOE_DT(MOE_DTYPE_F32), 2));
    int64_t t = weights->shape[0], kp = weights->shape[1];
    MOE_TRY(moe_check_range(kp, "weights.shape[1]", 1, INT32_MAX));
    /* pair t*k' + j is an i32 index, as in the permutation that made inv_perm */
    if (t > INT32_MAX / kp)
        return moe_fail(MOE_ERR_INVALID_ARGUMENT,
                        "weights: T (%" PRId64 ") * k' (%" PRId64
                        ") pairs exceed INT32_MAX (%d), the limit of i32 pair indices",
                        t, kp, INT32_MAX);
    MOE_TRY(moe_check_tensor(inv_perm, "inv_perm", MOE_DT(MOE_DTYPE_I32), 1));
    MOE_TRY(moe_check_dim(inv_perm, "inv_perm", 0, t * kp, "T*k' (weights.shape[0] * shape[1])"));
    MOE_TRY(moe_check_tensor(out, "out", MOE_DT_FLOAT, 2));
    MOE_TRY(moe_check_dim(out, "out", 0, t, "T (weights.shape[0])"));
    MOE_TRY(moe_check_dim(out, "out", 1, y->shape[1], "H (y.shape[1])"));
    if (!isfinite(scale))
        return moe_fail(MOE_ERR_INVALID_ARGUMENT, "scale (%g) must be finite", (double)scale);
    return MOE_DISPATCH(ctx, combine, ctx, y, inv_perm, weights, scale, out, stream);
}
