/* The CPU reference backend: one function per op with the public signature, arguments
 * already checked by src/api/. Written to be obviously correct; it defines the semantics
 * every other backend is tested against. */
#ifndef MOE_CPU_H
#define MOE_CPU_H

#include "../api/internal.h"
#include "../common/formats.h"

/* ---------------------------------------------------------------- element access */

/* Address of element (i0, i1, ...) of a tensor; unused indices are 0. */
static inline void *moe_cpu_at(const moe_tensor *t, int64_t i0, int64_t i1, int64_t i2) {
    int64_t off = i0 * t->stride[0];
    if (t->rank > 1) off += i1 * t->stride[1];
    if (t->rank > 2) off += i2 * t->stride[2];
    return (char *)t->data + off * (int64_t)moe_dtype_size(t->dtype);
}

/* Loads element i of a row of a float dtype (f32/f16/bf16/e4m3) as f32. */
static inline float moe_cpu_load(moe_dtype dtype, const void *row, int64_t i) {
    switch (dtype) {
    case MOE_DTYPE_F32: return ((const float *)row)[i];
    case MOE_DTYPE_F16: return moe_f16_to_f32(((const uint16_t *)row)[i]);
    case MOE_DTYPE_BF16: return moe_bf16_to_f32(((const uint16_t *)row)[i]);
    case MOE_DTYPE_E4M3: return moe_e4m3_to_f32(((const uint8_t *)row)[i]);
    default: return 0.0f;
    }
}

/* Stores f32 v as element i of a row of a float dtype, rounding to nearest even. */
static inline void moe_cpu_store(moe_dtype dtype, void *row, int64_t i, float v) {
    switch (dtype) {
    case MOE_DTYPE_F32: ((float *)row)[i] = v; break;
    case MOE_DTYPE_F16: ((uint16_t *)row)[i] = moe_f32_to_f16(v); break;
    case MOE_DTYPE_BF16: ((uint16_t *)row)[i] = moe_f32_to_bf16(v); break;
    case MOE_DTYPE_E4M3: ((uint8_t *)row)[i] = moe_f32_to_e4m3(v); break;
    default: break;
    }
}

static inline int32_t moe_cpu_i32(const moe_tensor *t, int64_t i0, int64_t i1) {
    return *(const int32_t *)moe_cpu_at(t, i0, i1, 0);
}

/* Per-token-group FP8 of one f32 row of k values (SPEC 3): for each group g of
 * params->group columns, scale = max(amax, eps) / 448 (2^ceil(log2) if ue8m0),
 * q = e4m3(x / scale). Writes q[0..k) and scale of group g at scales[g * scale_stride].
 * Shared by moe_quant_fp8_group and moe_silu_and_mul_quant_fp8 so both round alike. */
MOE_INTERNAL void moe_cpu_quant_fp8_row(const float *x, int64_t k,
                                        const moe_fp8_group_params *params, uint8_t *q,
                                        float *scales, int64_t scale_stride);

/* ---------------------------------------------------------------- ops */

/* route.c */
MOE_INTERNAL moe_status moe_cpu_route_grouped_topk(moe_context *, const moe_tensor *,
                                                   const moe_tensor *,
                                                   const moe_grouped_topk_params *,
                                                   moe_tensor *, moe_tensor *, void *);
MOE_INTERNAL moe_status moe_cpu_route_softmax_topk(moe_context *, const moe_tensor *, int32_t,
                                                   int32_t, moe_tensor *, moe_tensor *,
                                                   void *);
/* permute.c */
MOE_INTERNAL moe_status moe_cpu_permute_workspace_size(moe_context *, int64_t, int32_t,
                                                       int32_t, size_t *);
MOE_INTERNAL moe_status moe_cpu_permute_plan(moe_context *, const moe_tensor *, int32_t,
                                             int32_t, moe_tensor *, moe_tensor *,
                                             moe_tensor *, moe_tensor *, void *, size_t,
                                             void *);
MOE_INTERNAL moe_status moe_cpu_permute_plan_masked(moe_context *, const moe_tensor *,
                                                    int32_t, int64_t, moe_tensor *,
                                                    moe_tensor *, moe_tensor *, moe_tensor *,
                                                    void *, size_t, void *);
MOE_INTERNAL moe_status moe_cpu_problem_sizes(moe_context *, const moe_tensor *, int64_t,
                                              int64_t, moe_tensor *, void *);
MOE_INTERNAL moe_status moe_cpu_gather_rows(moe_context *, const moe_tensor *,
                                            const moe_tensor *, int32_t, moe_tensor *, void *);
/* quant_fp8.c, quant_mxfp8.c, quant_nvfp4.c */
MOE_INTERNAL moe_status moe_cpu_quant_fp8_group(moe_context *, const moe_tensor *,
                                                const moe_tensor *, const moe_tensor *, int32_t,
                                                const moe_fp8_group_params *, moe_tensor *,
                                                moe_tensor *, void *);
MOE_INTERNAL moe_status moe_cpu_dequant_fp8_group(moe_context *, const moe_tensor *,
                                                  const moe_tensor *,
                                                  const moe_fp8_group_params *, moe_tensor *,
                                                  void *);
MOE_INTERNAL moe_status moe_cpu_quant_mxfp8(moe_context *, const moe_tensor *,
                                            const moe_tensor *, moe_mx_rule, moe_tensor *,
                                            moe_tensor *, void *);
MOE_INTERNAL moe_status moe_cpu_dequant_mxfp8(moe_context *, const moe_tensor *,
                                              const moe_tensor *, const moe_tensor *,
                                              moe_tensor *, void *);
MOE_INTERNAL moe_status moe_cpu_quant_nvfp4(moe_context *, const moe_tensor *,
                                            const moe_tensor *, const moe_tensor *,
                                            moe_tensor *, moe_tensor *, void *);
MOE_INTERNAL moe_status moe_cpu_dequant_nvfp4(moe_context *, const moe_tensor *,
                                              const moe_tensor *, const moe_tensor *,
                                              const moe_tensor *, moe_tensor *, void *);
/* gemm.c */
MOE_INTERNAL moe_status moe_cpu_grouped_gemm_workspace_size(moe_context *, int32_t,
                                                            size_t *);
MOE_INTERNAL moe_status moe_cpu_grouped_gemm(moe_context *, const moe_tensor *,
                                             const moe_tensor *, moe_scale_layout,
                                             const moe_tensor *, const moe_tensor *,
                                             const moe_tensor *, moe_tensor *, void *, size_t,
                                             void *);
MOE_INTERNAL moe_status moe_cpu_grouped_gemm_masked(moe_context *, const moe_tensor *,
                                                    const moe_tensor *, moe_scale_layout,
                                                    const moe_tensor *, const moe_tensor *,
                                                    const moe_tensor *, moe_tensor *, void *,
                                                    size_t, void *);
/* activation.c */
MOE_INTERNAL moe_status moe_cpu_silu_and_mul(moe_context *, const moe_tensor *, moe_tensor *,
                                             void *);
MOE_INTERNAL moe_status moe_cpu_silu_and_mul_quant_fp8(moe_context *, const moe_tensor *,
                                                       const moe_fp8_group_params *,
                                                       moe_tensor *, moe_tensor *, void *);
/* combine.c */
MOE_INTERNAL moe_status moe_cpu_combine(moe_context *, const moe_tensor *, const moe_tensor *,
                                        const moe_tensor *, float, moe_tensor *, void *);

#endif /* MOE_CPU_H */
