/* silu(a) * b as SPEC 5 defines it, for every kernel that applies the activation: the
 * silu_and_mul ops (activation.cu) and GEMM 1's fused epilogue (gemm/consumer.cuh),
 * so the fused and the unfused layer compute the same floats.
 *
 * Step for step the CPU's silu_mul: a / (1 + e^-a) * b in f32 with each operation rounded
 * once (the _rn intrinsics keep the compiler from fusing the add or the product into an
 * FMA the CPU does not do). The one difference is expf itself: CUDA's is within 2 ulp,
 * the C library's (glibc) within 1, so a result may differ from the CPU's by a few f32
 * ulp, and a rounded output by one ulp of its format; FP8 codes then differ only where a
 * quotient lies within a few ulp of an e4m3 rounding boundary. */
#ifndef MOE_CUDA_SILU_MUL_CUH
#define MOE_CUDA_SILU_MUL_CUH

__device__ __forceinline__ float moe_silu_mul(float a, float b) {
    /* e^-a overflows to Inf for a < -88.7: a / Inf is a signed zero, as on the CPU */
    return __fmul_rn(__fdiv_rn(a, __fadd_rn(1.0f, expf(-a))), b);
}

#endif /* MOE_CUDA_SILU_MUL_CUH */
