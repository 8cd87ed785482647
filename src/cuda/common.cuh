/* What the CUDA kernel files share: streams, float dtypes as template parameters, warp
 * reductions. The number formats themselves are in src/common/formats.h (host and
 * device), so both backends round identically. */
#ifndef MOE_CUDA_COMMON_CUH
#define MOE_CUDA_COMMON_CUH

#include <cuda_runtime.h>
#include <stdint.h>

#include "../common/formats.h"
#include "cuda.h"

static inline cudaStream_t moe_cuda_stream(void *stream) { return (cudaStream_t)stream; }

/* A float dtype's storage type and its conversions to and from f32 (RNE). */
template <moe_dtype D> struct moe_elem;
template <> struct moe_elem<MOE_DTYPE_F32> {
    typedef float T;
    static __device__ __forceinline__ float load(T v) { return v; }
    static __device__ __forceinline__ T store(float f) { return f; }
};
template <> struct moe_elem<MOE_DTYPE_F16> {
    typedef uint16_t T;
    static __device__ __forceinline__ float load(T v) { return moe_f16_to_f32(v); }
    static __device__ __forceinline__ T store(float f) { return moe_f32_to_f16(f); }
};
template <> struct moe_elem<MOE_DTYPE_BF16> {
    typedef uint16_t T;
    static __device__ __forceinline__ float load(T v) { return moe_bf16_to_f32(v); }
    static __device__ __forceinline__ T store(float f) { return moe_f32_to_bf16(f); }
};
template <> struct moe_elem<MOE_DTYPE_E4M3> {
    typedef uint8_t T;
    static __device__ __forceinline__ float load(T v) { return moe_e4m3_to_f32(v); }
    static __device__ __forceinline__ T store(float f) { return moe_f32_to_e4m3(f); }
};

/* Runs body with D bound to dtype as a compile-time constant (f32, f16, bf16); other
 * dtypes make the enclosing function return MOE_ERR_UNSUPPORTED. */
#define MOE_FLOAT_DTYPE_SWITCH(dtype, D, ...)                                             \
    switch (dtype) {                                                                      \
    case MOE_DTYPE_F32: { constexpr moe_dtype D = MOE_DTYPE_F32; __VA_ARGS__; } break;    \
    case MOE_DTYPE_F16: { constexpr moe_dtype D = MOE_DTYPE_F16; __VA_ARGS__; } break;    \
    case MOE_DTYPE_BF16: { constexpr moe_dtype D = MOE_DTYPE_BF16; __VA_ARGS__; } break;  \
    default:                                                                              \
        return moe_fail(MOE_ERR_UNSUPPORTED, "dtype %s is not a float dtype of this op",  \
                        moe_dtype_name(dtype));                                           \
    }

__device__ __forceinline__ float moe_warp_max(float v) {
    for (int o = 16; o > 0; o >>= 1) v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, o));
    return v;
}

__device__ __forceinline__ float moe_warp_sum(float v) {
    for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
    return v;
}

/* Blocks for n items of per_block each, capped for grid-stride loops. */
static inline unsigned moe_grid(int64_t n, int64_t per_block, int64_t cap) {
    int64_t b = (n + per_block - 1) / per_block;
    if (b < 1) b = 1;
    return (unsigned)(b < cap ? b : cap);
}

#endif /* MOE_CUDA_COMMON_CUH */
