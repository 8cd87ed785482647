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

/* Two f32 as two e4m3 bytes (lo in the low byte) by the hardware: RNE, saturating to
 * +-448, Inf to +-448. Equal to moe_f32_to_e4m3 (src/common/formats.h) on every f32 but
 * NaN, which becomes 0x7f or 0xff whatever its sign (the CPU keeps the sign):
 * test_cuda_e4m3_hardware checks all 2^32 inputs on the GPU. */
__device__ __forceinline__ uint32_t moe_e4m3x2(float lo, float hi) {
    unsigned short r;
    asm("cvt.rn.satfinite.e4m3x2.f32 %0, %1, %2;" : "=h"(r) : "f"(hi), "f"(lo));
    return r;
}

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

/* ------------------------------------------------------------------ dependent launch
 * The kernels of the layer's chain after routing (gather / quantise, the GEMMs, the
 * activation, combine) are launched with programmatic dependent launch (PDL) at decode
 * sizes: a kernel may start while its predecessor on the stream still runs, so its launch
 * latency and prologue (the GEMM's barriers and tile table) hide behind the predecessor's
 * tail. The rules that keep this correct for any predecessor, the caller's kernels
 * included:
 * - such a kernel calls moe_pdl_wait() before its first global read or write of data a
 *   predecessor may produce or consume (it returns once every earlier kernel on the
 *   stream has completed and its writes are visible; without PDL it returns at once);
 * - reads before the wait are hints only: the GEMM checks after the wait that the expert
 *   bounds it read early are unchanged, and rebuilds its tile table if not;
 * - moe_pdl_release() lets the next PDL kernel start; it promises nothing about this
 *   kernel's writes, so it may come first. */
__device__ __forceinline__ void moe_pdl_wait(void) {
    asm volatile("griddepcontrol.wait;" ::: "memory");
}
__device__ __forceinline__ void moe_pdl_release(void) {
    asm volatile("griddepcontrol.launch_dependents;" ::: "memory");
}

/* PDL only pays at decode sizes. Measured on the H100 (bench/NOTES.md, DeepSeek-V3 layer
 * in a CUDA graph, same lease): T = 1 4 us faster, T = 32 even, T = 512 1.4% and T = 4096
 * 6% slower, where the GEMMs' CTAs start staggered as the kernel before them drains. So a
 * launch allows it when the op has at most this many rows (permuted rows: T x k'). */
#define MOE_PDL_MAX_ROWS 1024

/* A launch configuration, allowing PDL for ops of at most MOE_PDL_MAX_ROWS rows; l must
 * outlive the launch call (it holds the attribute the configuration points to). */
typedef struct moe_pdl_launch {
    cudaLaunchConfig_t cfg;
    cudaLaunchAttribute attr;
} moe_pdl_launch;

static inline void moe_pdl_config(moe_pdl_launch *l, unsigned grid, unsigned block, size_t smem,
                                  cudaStream_t stream, int64_t rows) {
    *l = moe_pdl_launch();
    l->cfg.gridDim = dim3(grid);
    l->cfg.blockDim = dim3(block);
    l->cfg.dynamicSmemBytes = smem;
    l->cfg.stream = stream;
    l->attr.id = cudaLaunchAttributeProgrammaticStreamSerialization;
    l->attr.val.programmaticStreamSerializationAllowed = rows <= MOE_PDL_MAX_ROWS;
    l->cfg.attrs = &l->attr;
    l->cfg.numAttrs = 1;
}

/* Blocks for n items of per_block each, capped for grid-stride loops. */
static inline unsigned moe_grid(int64_t n, int64_t per_block, int64_t cap) {
    int64_t b = (n + per_block - 1) / per_block;
    if (b < 1) b = 1;
    return (unsigned)(b < cap ? b : cap);
}

#endif /* MOE_CUDA_COMMON_CUH */
