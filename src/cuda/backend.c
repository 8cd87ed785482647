/* The CUDA backend's op table. */
#include "cuda.h"
#include "gemm/gemm.h"

const moe_backend_ops moe_cuda_ops = {
    .name = "CUDA",
    .route_grouped_topk = moe_cuda_route_grouped_topk,
    .route_softmax_topk = moe_cuda_route_softmax_topk,
    .permute_workspace_size = moe_cuda_permute_workspace_size,
    .permute_plan = moe_cuda_permute_plan,
    .permute_plan_masked = moe_cuda_permute_plan_masked,
    .problem_sizes = moe_cuda_problem_sizes,
    .gather_rows = moe_cuda_gather_rows,
    .quant_fp8_group = moe_cuda_quant_fp8_group,
    .dequant_fp8_group = moe_cuda_dequant_fp8_group,
    .quant_mxfp8 = moe_cuda_quant_mxfp8,
    .dequant_mxfp8 = moe_cuda_dequant_mxfp8,
    .quant_nvfp4 = moe_cuda_quant_nvfp4,
    .dequant_nvfp4 = moe_cuda_dequant_nvfp4,
    .silu_and_mul = moe_cuda_silu_and_mul,
    .silu_and_mul_quant_fp8 = moe_cuda_silu_and_mul_quant_fp8,
    .combine = moe_cuda_combine,
    .grouped_gemm_workspace_size = moe_cuda_grouped_gemm_workspace_size,
    .grouped_gemm = moe_cuda_grouped_gemm,
    .grouped_gemm_masked = moe_cuda_grouped_gemm_masked,
    .grouped_gemm_silu_quant = moe_cuda_grouped_gemm_silu_quant,
};
