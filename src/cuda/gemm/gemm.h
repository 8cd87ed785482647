/* The CUDA backend's grouped GEMM (SPEC 4): Hopper (sm_90a) kernels in grouped_gemm.cu.
 * Signatures are the public ones; src/api/gemm.c has checked every argument. */
#ifndef MOE_CUDA_GEMM_H
#define MOE_CUDA_GEMM_H

#include "../cuda.h"

#ifdef __cplusplus
extern "C" {
#endif

MOE_INTERNAL moe_status moe_cuda_grouped_gemm_workspace_size(moe_context *, int32_t, size_t *);
MOE_INTERNAL moe_status moe_cuda_grouped_gemm(moe_context *, const moe_tensor *,
                                              const moe_tensor *, moe_scale_layout,
                                              const moe_tensor *, const moe_tensor *,
                                              const moe_tensor *, moe_tensor *, void *, size_t,
                                              void *);
MOE_INTERNAL moe_status moe_cuda_grouped_gemm_masked(moe_context *, const moe_tensor *,
                                                     const moe_tensor *, moe_scale_layout,
                                                     const moe_tensor *, const moe_tensor *,
                                                     const moe_tensor *, moe_tensor *, void *,
                                                     size_t, void *);
MOE_INTERNAL moe_status moe_cuda_grouped_gemm_silu_quant(
    moe_context *, const moe_tensor *, const moe_tensor *, moe_scale_layout, const moe_tensor *,
    const moe_tensor *, const moe_tensor *, moe_tensor *, const moe_fp8_group_params *,
    moe_tensor *, moe_tensor *, void *, size_t, int *, void *);

#ifdef __cplusplus
}
#endif

#endif /* MOE_CUDA_GEMM_H */
