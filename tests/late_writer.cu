/* A kernel for the GPU tests of programmatic dependent launch (src/cuda/common.cuh): it
 * lets the next kernel on the stream start at once, then waits and only then writes, so
 * a PDL kernel after it that read its input before its own wait would see stale data. */
#include <cuda_runtime.h>
#include <stdint.h>

extern "C" int test_late_copy_i32(int32_t *dst, const int32_t *src, int n, long long delay_ns);

static __global__ void late_copy_kernel(int32_t *dst, const int32_t *src, int n, long long ns) {
    asm volatile("griddepcontrol.launch_dependents;" ::: "memory");
    long long t0 = clock64();
    /* ~ns nanoseconds at >= 1 GHz: long enough for the next kernel to get going */
    while (clock64() - t0 < ns) {
    }
    for (int i = threadIdx.x; i < n; i += blockDim.x) dst[i] = src[i];
}

extern "C" int test_late_copy_i32(int32_t *dst, const int32_t *src, int n, long long delay_ns) {
    late_copy_kernel<<<1, 256>>>(dst, src, n, delay_ns);
    return cudaGetLastError() == cudaSuccess ? 0 : -1;
}
