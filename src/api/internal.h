/* What the API layer and the backends share: the context, the backend's op table, error
 * reporting and argument checks. Nothing here is exported from the shared library. */
#ifndef MOE_API_INTERNAL_H
#define MOE_API_INTERNAL_H

#include "moe.h"

#define MOE_INTERNAL __attribute__((visibility("hidden")))

#ifdef __cplusplus
extern "C" {
#endif

/* A backend implements each op with the public function's signature; the API layer has
 * checked every argument before the call. A NULL entry means the backend lacks the op. */
typedef struct moe_backend_ops {
    const char *name;
    moe_status (*route_grouped_topk)(moe_context *, const moe_tensor *, const moe_tensor *,
                                     const moe_grouped_topk_params *, moe_tensor *,
                                     moe_tensor *, void *);
    moe_status (*route_softmax_topk)(moe_context *, const moe_tensor *, int32_t, int32_t,
                                     moe_tensor *, moe_tensor *, void *);
    moe_status (*permute_workspace_size)(moe_context *, int64_t, int32_t, int32_t, size_t *);
    moe_status (*permute_plan)(moe_context *, const moe_tensor *, int32_t, int32_t,
                               moe_tensor *, moe_tensor *, moe_tensor *, moe_tensor *, void *,
                               size_t, void *);
    moe_status (*permute_plan_masked)(moe_context *, const moe_tensor *, int32_t, int64_t,
                                      moe_tensor *, moe_tensor *, moe_tensor *, moe_tensor *,
                                      void *, size_t, void *);
    moe_status (*problem_sizes)(moe_context *, const moe_tensor *, int64_t, int64_t,
                                moe_tensor *, void *);
    moe_status (*gather_rows)(moe_context *, const moe_tensor *, const moe_tensor *, int32_t,
                              moe_tensor *, void *);
    /* x, perm, inv_perm (NULL, or perm's inverse: see moe_quant_fp8_group_planned), topk,
     * params, q, scales, stream */
    moe_status (*quant_fp8_group)(moe_context *, const moe_tensor *, const moe_tensor *,
                                  const moe_tensor *, int32_t, const moe_fp8_group_params *,
                                  moe_tensor *, moe_tensor *, void *);
    moe_status (*dequant_fp8_group)(moe_context *, const moe_tensor *, const moe_tensor *,
                                    const moe_fp8_group_params *, moe_tensor *, void *);
    moe_status (*quant_mxfp8)(moe_context *, const moe_tensor *, const moe_tensor *,
                              moe_mx_rule, moe_tensor *, moe_tensor *, void *);
    moe_status (*dequant_mxfp8)(moe_context *, const moe_tensor *, const moe_tensor *,
                                const moe_tensor *, moe_tensor *, void *);
    moe_status (*quant_nvfp4)(moe_context *, const moe_tensor *, const moe_tensor *,
                              const moe_tensor *, moe_tensor *, moe_tensor *, void *);
    moe_status (*dequant_nvfp4)(moe_context *, const moe_tensor *, const moe_tensor *,
                                const moe_tensor *, const moe_tensor *, moe_tensor *, void *);
    moe_status (*grouped_gemm_workspace_size)(moe_context *, int32_t, size_t *);
    moe_status (*grouped_gemm)(moe_context *, const moe_tensor *, const moe_tensor *,
                               moe_scale_layout, const moe_tensor *, const moe_tensor *,
                               const moe_tensor *, moe_tensor *, void *, size_t, void *);
    moe_status (*grouped_gemm_masked)(moe_context *, const moe_tensor *, const moe_tensor *,
                                      moe_scale_layout, const moe_tensor *,
                                      const moe_tensor *, const moe_tensor *, moe_tensor *,
                                      void *, size_t, void *);
    /* moe_grouped_gemm_silu_quant's arguments; NULL: the backend never fuses them */
    moe_status (*grouped_gemm_silu_quant)(moe_context *, const moe_tensor *, const moe_tensor *,
                                          moe_scale_layout, const moe_tensor *,
                                          const moe_tensor *, const moe_tensor *, moe_tensor *,
                                          const moe_fp8_group_params *, moe_tensor *,
                                          moe_tensor *, void *, size_t, int *, void *);
    moe_status (*silu_and_mul)(moe_context *, const moe_tensor *, moe_tensor *, void *);
    moe_status (*silu_and_mul_quant_fp8)(moe_context *, const moe_tensor *,
                                         const moe_fp8_group_params *, moe_tensor *,
                                         moe_tensor *, void *);
    moe_status (*combine)(moe_context *, const moe_tensor *, const moe_tensor *,
                          const moe_tensor *, float, moe_tensor *, void *);
} moe_backend_ops;

struct moe_context {
    moe_backend backend;
    int device;
    const moe_backend_ops *ops;
    void *state; /* backend-owned */
};

/* The backends' tables (src/cpu/backend.c, src/cuda/backend.c). */
MOE_INTERNAL extern const moe_backend_ops moe_cpu_ops;
MOE_INTERNAL extern const moe_backend_ops moe_cuda_ops;

/* CUDA backend lifecycle (src/cuda/context.cu); only in builds with MOE_HAVE_CUDA. */
MOE_INTERNAL int moe_cuda_device_count(void);
MOE_INTERNAL moe_status moe_cuda_context_init(moe_context *ctx, int device);
MOE_INTERNAL void moe_cuda_context_release(moe_context *ctx);

/* ---------------------------------------------------------------- errors */

/* Records a printf-style sentence as the thread's last error and returns status. */
MOE_INTERNAL moe_status moe_fail(moe_status status, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

/* Clears the thread's last error (every public function starts with this). */
MOE_INTERNAL void moe_clear_error(void);

/* Returns MOE_ERR_UNSUPPORTED naming the op and the context's backend. */
MOE_INTERNAL moe_status moe_unsupported(const moe_context *ctx, const char *op);

/* Calls the backend's op, or reports that the backend lacks it. */
#define MOE_DISPATCH(ctx, op, ...) \
    ((ctx)->ops->op ? (ctx)->ops->op(__VA_ARGS__) : moe_unsupported((ctx), "moe_" #op))

/* moe_quant_fp8_group with the gather's inverse as well: inv_perm [T * topk] i32 is
 * perm's inverse from the same moe_permute_plan (inv_perm[t * topk + j] = r where
 * perm[r] = t * topk + j, -1 for none). The result is moe_quant_fp8_group's; a backend may
 * use the inverse to read and quantise each token once and write its copies (the CUDA
 * backend does), so a row r is written only if inv_perm[perm[r]] == r or perm[r] names no
 * token (a zero row). The layer's path (layer.c). */
MOE_INTERNAL moe_status moe_quant_fp8_group_planned(moe_context *ctx, const moe_tensor *x,
                                                    const moe_tensor *perm,
                                                    const moe_tensor *inv_perm, int32_t topk,
                                                    const moe_fp8_group_params *params,
                                                    moe_tensor *q, moe_tensor *scales,
                                                    void *stream);

/* GEMM 1 of the FP8 layer and its activation in one kernel, where the backend has one for
 * the shape: the results are those of moe_grouped_gemm(a, a_scales, a_layout, b, b_scales,
 * offsets, c) followed by moe_silu_and_mul_quant_fp8(c, params, q, q_scales), bit for bit,
 * except that c [R, 2I] bf16 is scratch (its up half is not written). *fused = 1 when done;
 * *fused = 0 (and nothing ran) where the backend has no fused path for the call (the CPU,
 * and the CUDA backend's decode-sized calls): the caller then runs the two ops. FP8 only,
 * with group 128 (one quantisation group per GEMM tile). The layer's path (layer.c). */
MOE_INTERNAL moe_status moe_grouped_gemm_silu_quant(
    moe_context *ctx, const moe_tensor *a, const moe_tensor *a_scales, moe_scale_layout a_layout,
    const moe_tensor *b, const moe_tensor *b_scales, const moe_tensor *offsets, moe_tensor *c,
    const moe_fp8_group_params *params, moe_tensor *q, moe_tensor *q_scales, void *workspace,
    size_t workspace_bytes, int *fused, void *stream);

/* ---------------------------------------------------------------- checks
 * Each check returns MOE_OK or records a sentence naming the argument and returns
 * MOE_ERR_INVALID_ARGUMENT. Chain them with MOE_TRY. */

#define MOE_TRY(expr)                         \
    do {                                      \
        moe_status moe_try_s_ = (expr);       \
        if (moe_try_s_ != MOE_OK) return moe_try_s_; \
    } while (0)

#define MOE_DT(d) (1u << (unsigned)(d))
#define MOE_DT_FLOAT (MOE_DT(MOE_DTYPE_F32) | MOE_DT(MOE_DTYPE_F16) | MOE_DT(MOE_DTYPE_BF16))

MOE_INTERNAL moe_status moe_check_ctx(const moe_context *ctx);
MOE_INTERNAL moe_status moe_check_ptr(const void *p, const char *name);

/* t is non-NULL, has a dtype in dtype_mask, the given rank, non-negative shape, innermost
 * stride 1, outer strides that do not overlap rows, and data unless it is empty. */
MOE_INTERNAL moe_status moe_check_tensor(const moe_tensor *t, const char *name,
                                         unsigned dtype_mask, int rank);

/* t->shape[dim] == want; what names want in the sentence ("T", "2*I"). */
MOE_INTERNAL moe_status moe_check_dim(const moe_tensor *t, const char *name, int dim,
                                      int64_t want, const char *what);

/* t->shape[dim] >= want. */
MOE_INTERNAL moe_status moe_check_dim_at_least(const moe_tensor *t, const char *name,
                                               int dim, int64_t want, const char *what);

/* Both tensors have the same dtype. */
MOE_INTERNAL moe_status moe_check_same_dtype(const moe_tensor *a, const char *an,
                                             const moe_tensor *b, const char *bn);

/* lo <= v <= hi. */
MOE_INTERNAL moe_status moe_check_range(int64_t v, const char *name, int64_t lo, int64_t hi);

/* v % m == 0. */
MOE_INTERNAL moe_status moe_check_multiple(int64_t v, const char *name, int64_t m);

/* The workspace holds at least need bytes (and is non-NULL when need > 0). */
MOE_INTERNAL moe_status moe_check_workspace(const void *ws, size_t have, size_t need);

/* Number of elements of a tensor (product of its shape). */
MOE_INTERNAL int64_t moe_numel(const moe_tensor *t);

/* Validates an FP8 group-quant params struct for K columns and M rows and the scales
 * tensor's shape for that layout. */
MOE_INTERNAL moe_status moe_check_fp8_group(const moe_fp8_group_params *params, int64_t m,
                                            int64_t k, const moe_tensor *scales);

static inline int64_t moe_round_up(int64_t v, int64_t m) { return (v + m - 1) / m * m; }

#ifdef __cplusplus
}
#endif

#endif /* MOE_API_INTERNAL_H */
