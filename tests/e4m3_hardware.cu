/* A kernel for test_cuda_e4m3_hardware (tests/test_cuda_quant.c): the hardware f32 ->
 * e4m3 conversion the FP8 kernels use (moe_e4m3x2, src/cuda/common.cuh) against the
 * software code moe_e4m3_code (src/cuda/fp8_code.h, itself checked against
 * moe_f32_to_e4m3 on the host), over every f32 bit pattern u = first, first + step, ...,
 * in both halves of the pair. A NaN must give 0x7f or 0xff; everything else the same
 * byte. */
#include "../src/cuda/common.cuh"
#include "../src/cuda/fp8_code.h"

extern "C" int test_e4m3_hardware_mismatches(uint32_t step, unsigned long long *count,
                                             uint32_t *first);

static __global__ void e4m3_compare_kernel(uint32_t step, unsigned long long *count,
                                           uint32_t *first) {
    unsigned long long bad = 0;
    uint64_t n = ((1ull << 32) + step - 1) / step;
    for (uint64_t i = (uint64_t)blockIdx.x * blockDim.x + threadIdx.x; i < n;
         i += (uint64_t)gridDim.x * blockDim.x) {
        uint32_t u = (uint32_t)(i * step);
        float f = __uint_as_float(u);
        uint32_t lo = moe_e4m3x2(f, 0.0f) & 0xffu, hi = moe_e4m3x2(0.0f, f) >> 8;
        bool ok = f != f ? (lo & 0x7fu) == 0x7fu && (hi & 0x7fu) == 0x7fu
                         : lo == moe_e4m3_code(f) && hi == lo;
        if (!ok) {
            bad++;
            atomicMin(first, u);
        }
    }
    if (bad) atomicAdd(count, bad);
}

extern "C" int test_e4m3_hardware_mismatches(uint32_t step, unsigned long long *count,
                                             uint32_t *first) {
    unsigned long long *d_count = NULL;
    uint32_t *d_first = NULL, init = 0xffffffffu;
    int rc = -1;
    if (cudaMalloc(&d_count, sizeof *d_count) != cudaSuccess ||
        cudaMalloc(&d_first, sizeof *d_first) != cudaSuccess)
        goto done;
    if (cudaMemset(d_count, 0, sizeof *d_count) != cudaSuccess ||
        cudaMemcpy(d_first, &init, sizeof init, cudaMemcpyHostToDevice) != cudaSuccess)
        goto done;
    e4m3_compare_kernel<<<1024, 256>>>(step, d_count, d_first);
    if (cudaGetLastError() != cudaSuccess || cudaDeviceSynchronize() != cudaSuccess) goto done;
    if (cudaMemcpy(count, d_count, sizeof *count, cudaMemcpyDeviceToHost) != cudaSuccess ||
        cudaMemcpy(first, d_first, sizeof *first, cudaMemcpyDeviceToHost) != cudaSuccess)
        goto done;
    rc = 0;
done:
    cudaFree(d_count);
    cudaFree(d_first);
    return rc;
}
