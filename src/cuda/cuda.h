/* The CUDA backend: one function per op with the public signature (arguments already
 * checked by src/api/), plus what every kernel file shares. Tensors hold device
 * pointers; no op allocates, synchronises or copies to the host. */
#ifndef MOE_CUDA_H
#define MOE_CUDA_H

#include "../api/internal.h"

#ifdef __cplusplus
extern "C" {
#endif

/* What the context keeps about its device. */
typedef struct moe_cuda_state {
    int sm_count;
    int cc_major, cc_minor;
    size_t smem_optin; /* shared memory a block may opt into */
} moe_cuda_state;

/* route.cu */
MOE_INTERNAL moe_status moe_cuda_route_grouped_topk(moe_context *, const moe_tensor *,
                                                    const moe_tensor *,
                                                    const moe_grouped_topk_params *,
                                                    moe_tensor *, moe_tensor *, void *);
MOE_INTERNAL moe_status moe_cuda_route_softmax_topk(moe_context *, const moe_tensor *, int32_t,
                                                    int32_t, moe_tensor *, moe_tensor *,
                                                    void *);
/* permute.cu */
MOE_INTERNAL moe_status moe_cuda_permute_workspace_size(moe_context *, int64_t, int32_t,
                                                        int32_t, size_t *);
MOE_INTERNAL moe_status moe_cuda_permute_plan(moe_context *, const moe_tensor *, int32_t,
                                              int32_t, moe_tensor *, moe_tensor *,
                                              moe_tensor *, moe_tensor *, void *, size_t,
                                              void *);
MOE_INTERNAL moe_status moe_cuda_permute_plan_masked(moe_context *, const moe_tensor *,
                                                     int32_t, int64_t, moe_tensor *,
                                                     moe_tensor *, moe_tensor *, moe_tensor *,
                                                     void *, size_t, void *);
MOE_INTERNAL moe_status moe_cuda_problem_sizes(moe_context *, const moe_tensor *, int64_t,
                                               int64_t, moe_tensor *, void *);
MOE_INTERNAL moe_status moe_cuda_gather_rows(moe_context *, const moe_tensor *,
                                             const moe_tensor *, int32_t, moe_tensor *, void *);
/* quant_fp8.cu */
MOE_INTERNAL moe_status moe_cuda_quant_fp8_group(moe_context *, const moe_tensor *,
                                                 const moe_tensor *, const moe_tensor *, int32_t,
                                                 const moe_fp8_group_params *, moe_tensor *,
                                                 moe_tensor *, void *);
MOE_INTERNAL moe_status moe_cuda_dequant_fp8_group(moe_context *, const moe_tensor *,
                                                   const moe_tensor *,
                                                   const moe_fp8_group_params *, moe_tensor *,
                                                   void *);
/* quant_block.cu: MXFP8 and NVFP4 */
MOE_INTERNAL moe_status moe_cuda_quant_mxfp8(moe_context *, const moe_tensor *,
                                             const moe_tensor *, moe_mx_rule, moe_tensor *,
                                             moe_tensor *, void *);
MOE_INTERNAL moe_status moe_cuda_dequant_mxfp8(moe_context *, const moe_tensor *,
                                               const moe_tensor *, const moe_tensor *,
                                               moe_tensor *, void *);
MOE_INTERNAL moe_status moe_cuda_quant_nvfp4(moe_context *, const moe_tensor *,
                                             const moe_tensor *, const moe_tensor *,
                                             moe_tensor *, moe_tensor *, void *);
MOE_INTERNAL moe_status moe_cuda_dequant_nvfp4(moe_context *, const moe_tensor *,
                                               const moe_tensor *, const moe_tensor *,
                                               const moe_tensor *, moe_tensor *, void *);
/* activation.cu */
MOE_INTERNAL moe_status moe_cuda_silu_and_mul(moe_context *, const moe_tensor *, moe_tensor *,
                                              void *);
MOE_INTERNAL moe_status moe_cuda_silu_and_mul_quant_fp8(moe_context *, const moe_tensor *,
                                                        const moe_fp8_group_params *,
                                                        moe_tensor *, moe_tensor *, void *);
/* combine.cu */
MOE_INTERNAL moe_status moe_cuda_combine(moe_context *, const moe_tensor *, const moe_tensor *,
                                         const moe_tensor *, float, moe_tensor *, void *);

/* Makes ctx's device current for this thread (a cheap host call, graph-safe). */
MOE_INTERNAL moe_status moe_cuda_use_device(const moe_context *ctx);

/* After a launch: MOE_OK, or MOE_ERR_BACKEND naming op and the CUDA error. */
MOE_INTERNAL moe_status moe_cuda_launch_status(const char *op);

#ifdef __cplusplus
}
#endif

#endif /* MOE_CUDA_H */
