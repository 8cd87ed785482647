/* Argument checks shared by every public function: each failure names the argument,
 * its value and the limit. */
#include <inttypes.h>
#include <stdio.h>

#include "internal.h"

moe_status moe_check_ctx(const moe_context *ctx) {
    if (!ctx) return moe_fail(MOE_ERR_INVALID_ARGUMENT, "ctx is NULL");
    return MOE_OK;
}

moe_status moe_check_ptr(const void *p, const char *name) {
    if (!p) return moe_fail(MOE_ERR_INVALID_ARGUMENT, "%s is NULL", name);
    return MOE_OK;
}

int64_t moe_numel(const moe_tensor *t) {
    int64_t n = 1;
    for (int d = 0; d < t->rank; d++) n *= t->shape[d];
    return n;
}

static void dtype_list(unsigned mask, char *buf, size_t n) {
    size_t used = 0;
    buf[0] = '\0';
    for (int d = 0; d <= MOE_DTYPE_I32 && used < n; d++) {
        if (!(mask & MOE_DT(d))) continue;
        int w = snprintf(buf + used, n - used, "%s%s", used ? "/" : "",
                         moe_dtype_name((moe_dtype)d));
        if (w < 0) break;
        used += (size_t)w;
    }
}

moe_status moe_check_tensor(const moe_tensor *t, const char *name, unsigned dtype_mask,
                            int rank) {
    if (!t) return moe_fail(MOE_ERR_INVALID_ARGUMENT, "%s is NULL", name);
    if ((unsigned)t->dtype > MOE_DTYPE_I32 || !(dtype_mask & MOE_DT(t->dtype))) {
        char want[96];
        dtype_list(dtype_mask, want, sizeof want);
        return moe_fail(MOE_ERR_INVALID_ARGUMENT, "%s has dtype %s; it must be %s", name,
                        moe_dtype_name(t->dtype), want);
    }
    if (t->rank != rank)
        return moe_fail(MOE_ERR_INVALID_ARGUMENT, "%s has rank %d; it must be %d", name,
                        (int)t->rank, rank);
    for (int d = 0; d < rank; d++)
        if (t->shape[d] < 0)
            return moe_fail(MOE_ERR_INVALID_ARGUMENT, "%s.shape[%d] (%" PRId64 ") is negative",
                            name, d, t->shape[d]);
    if (t->stride[rank - 1] != 1)
        return moe_fail(MOE_ERR_INVALID_ARGUMENT,
                        "%s.stride[%d] (%" PRId64 ") must be 1 (innermost contiguous)", name,
                        rank - 1, t->stride[rank - 1]);
    for (int d = rank - 2; d >= 0; d--) {
        int64_t span = t->shape[d + 1] * t->stride[d + 1];
        if (t->stride[d] < span)
            return moe_fail(MOE_ERR_INVALID_ARGUMENT,
                            "%s.stride[%d] (%" PRId64 ") < shape[%d] * stride[%d] (%" PRId64
                            "): rows would overlap",
                            name, d, t->stride[d], d + 1, d + 1, span);
    }
    if (!t->data && moe_numel(t) > 0)
        return moe_fail(MOE_ERR_INVALID_ARGUMENT, "%s.data is NULL", name);
    size_t align = moe_dtype_size(t->dtype);
    if ((uintptr_t)t->data % align)
        return moe_fail(MOE_ERR_INVALID_ARGUMENT,
                        "%s.data (%p) must be aligned to its element size (%zu bytes)", name,
                        t->data, align);
    return MOE_OK;
}

moe_status moe_check_dim(const moe_tensor *t, const char *name, int dim, int64_t want,
                         const char *what) {
    if (t->shape[dim] != want)
        return moe_fail(MOE_ERR_INVALID_ARGUMENT,
                        "%s.shape[%d] (%" PRId64 ") must equal %s (%" PRId64 ")", name, dim,
                        t->shape[dim], what, want);
    return MOE_OK;
}

moe_status moe_check_dim_at_least(const moe_tensor *t, const char *name, int dim,
                                  int64_t want, const char *what) {
    if (t->shape[dim] < want)
        return moe_fail(MOE_ERR_INVALID_ARGUMENT,
                        "%s.shape[%d] (%" PRId64 ") must be at least %s (%" PRId64 ")", name,
                        dim, t->shape[dim], what, want);
    return MOE_OK;
}

moe_status moe_check_same_dtype(const moe_tensor *a, const char *an, const moe_tensor *b,
                                const char *bn) {
    if (a->dtype != b->dtype)
        return moe_fail(MOE_ERR_INVALID_ARGUMENT, "%s (%s) and %s (%s) must have one dtype",
                        an, moe_dtype_name(a->dtype), bn, moe_dtype_name(b->dtype));
    return MOE_OK;
}

moe_status moe_check_range(int64_t v, const char *name, int64_t lo, int64_t hi) {
    if (v < lo || v > hi)
        return moe_fail(MOE_ERR_INVALID_ARGUMENT,
                        "%s (%" PRId64 ") must be in [%" PRId64 ", %" PRId64 "]", name, v, lo,
                        hi);
    return MOE_OK;
}

moe_status moe_check_multiple(int64_t v, const char *name, int64_t m) {
    if (m <= 0 || v % m != 0)
        return moe_fail(MOE_ERR_INVALID_ARGUMENT,
                        "%s (%" PRId64 ") must be a multiple of %" PRId64, name, v, m);
    return MOE_OK;
}

moe_status moe_check_workspace(const void *ws, size_t have, size_t need) {
    if (have < need)
        return moe_fail(MOE_ERR_WORKSPACE_TOO_SMALL,
                        "workspace_bytes (%zu) < the %zu bytes this op needs", have, need);
    if (need > 0 && !ws)
        return moe_fail(MOE_ERR_INVALID_ARGUMENT, "workspace is NULL but %zu bytes are needed",
                        need);
    return MOE_OK;
}

moe_status moe_check_fp8_group(const moe_fp8_group_params *params, int64_t m, int64_t k,
                               const moe_tensor *scales) {
    MOE_TRY(moe_check_ptr(params, "params"));
    if (params->group <= 0)
        return moe_fail(MOE_ERR_INVALID_ARGUMENT, "params->group (%d) must be positive",
                        (int)params->group);
    MOE_TRY(moe_check_multiple(k, "K (columns)", params->group));
    if (!(params->eps > 0.0f))
        return moe_fail(MOE_ERR_INVALID_ARGUMENT, "params->eps (%g) must be positive",
                        (double)params->eps);
    MOE_TRY(moe_check_tensor(scales, "scales", MOE_DT(MOE_DTYPE_F32), 2));
    int64_t groups = k / params->group;
    if (params->layout == MOE_SCALES_ROW_MAJOR) {
        MOE_TRY(moe_check_dim(scales, "scales", 0, m, "M (rows)"));
        MOE_TRY(moe_check_dim(scales, "scales", 1, groups, "K / group"));
    } else if (params->layout == MOE_SCALES_COL_MAJOR) {
        MOE_TRY(moe_check_dim(scales, "scales", 0, groups, "K / group"));
        MOE_TRY(moe_check_dim(scales, "scales", 1, moe_round_up(m, 4), "M rounded up to 4"));
    } else {
        return moe_fail(MOE_ERR_INVALID_ARGUMENT, "params->layout (%d) is not a moe_scale_layout",
                        (int)params->layout);
    }
    return MOE_OK;
}
