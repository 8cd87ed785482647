/* The CPU backend's op table. */
#include "cpu.h"

const moe_backend_ops moe_cpu_ops = {
    .name = "CPU",
    .route_grouped_topk = moe_cpu_route_grouped_topk,
    .route_softmax_topk = moe_cpu_route_softmax_topk,
    .permute_workspace_size = moe_cpu_permute_workspace_size,
    .permute_plan = moe_cpu_permute_plan,
    .permute_plan_masked = moe_cpu_permute_plan_masked,
    .problem_sizes = moe_cpu_problem_sizes,
    .gather_rows = moe_cpu_gather_rows,
    .quant_fp8_group = moe_cpu_quant_fp8_group,
    .dequant_fp8_group = moe_cpu_dequant_fp8_group,
    .quant_mxfp8 = moe_cpu_quant_mxfp8,
    .dequant_mxfp8 = moe_cpu_dequant_mxfp8,
    .quant_nvfp4 = moe_cpu_quant_nvfp4,
    .dequant_nvfp4 = moe_cpu_dequant_nvfp4,
    .grouped_gemm_workspace_size = moe_cpu_grouped_gemm_workspace_size,
    .grouped_gemm = moe_cpu_grouped_gemm,
    .grouped_gemm_masked = moe_cpu_grouped_gemm_masked,
    .silu_and_mul = moe_cpu_silu_and_mul,
    .silu_and_mul_quant_fp8 = moe_cpu_silu_and_mul_quant_fp8,
    .combine = moe_cpu_combine,
};
