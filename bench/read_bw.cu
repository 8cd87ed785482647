/* The device's read bandwidth for moe-bench --layer's memory floor: a read-only kernel over
 * a 2 GiB buffer, best of 10 timed runs. Each thread walks the buffer grid-stride in 16-byte
 * words, four independent loads in flight per step, and XORs what it reads; the result is
 * stored only if it equals a constant that the data never produces, so the loads cannot be
 * optimised away and nothing but one word is ever written. */
#include <cuda_runtime.h>
#include <stddef.h>
#include <stdint.h>

namespace {

const unsigned MAGIC = 0x7f3a9c15u;

__global__ void fill_kernel(uint32_t *p, size_t n) {
    size_t stride = (size_t)gridDim.x * blockDim.x;
    for (size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += stride)
        p[i] = (uint32_t)(i * 2654435761u) ^ (uint32_t)(i >> 32);
}

__device__ __forceinline__ unsigned fold(int4 v) {
    return (unsigned)v.x ^ (unsigned)v.y ^ (unsigned)v.z ^ (unsigned)v.w;
}

__global__ void read_xor_kernel(const int4 *__restrict__ src, size_t n, unsigned *out) {
    size_t stride = (size_t)gridDim.x * blockDim.x;
    size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x;
    unsigned a = 0, b = 0, c = 0, d = 0;
    for (; i + 3 * stride < n; i += 4 * stride) {
        int4 v0 = __ldg(src + i), v1 = __ldg(src + i + stride);
        int4 v2 = __ldg(src + i + 2 * stride), v3 = __ldg(src + i + 3 * stride);
        a ^= fold(v0);
        b ^= fold(v1);
        c ^= fold(v2);
        d ^= fold(v3);
    }
    for (; i < n; i += stride) a ^= fold(__ldg(src + i));
    unsigned r = a ^ b ^ c ^ d;
    if (r == MAGIC) *out = r;
}

} // namespace

/* Bytes per second read by the kernel (best of 10 after 2 warm-up runs), or 0 on any
 * failure (the CUDA error is cleared so the caller can go on). Synchronises the device. */
extern "C" double moe_bench_read_bandwidth(void) {
    const size_t bytes = (size_t)2 << 30;
    void *buf = NULL, *out = NULL;
    cudaEvent_t e0 = NULL, e1 = NULL;
    double result = 0.0;
    int dev = 0, sms = 0;
    float best = 1e30f;
    if (cudaGetDevice(&dev) != cudaSuccess ||
        cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, dev) != cudaSuccess ||
        sms <= 0)
        goto done;
    if (cudaMalloc(&buf, bytes) != cudaSuccess || cudaMalloc(&out, 16) != cudaSuccess) goto done;
    if (cudaEventCreate(&e0) != cudaSuccess || cudaEventCreate(&e1) != cudaSuccess) goto done;
    fill_kernel<<<(unsigned)sms * 8, 256>>>((uint32_t *)buf, bytes / 4);
    if (cudaGetLastError() != cudaSuccess) goto done;
    for (int i = 0; i < 12; i++) {
        /* 8 blocks of 256 threads per SM: full occupancy, 64 bytes in flight per thread */
        cudaEventRecord(e0, 0);
        read_xor_kernel<<<(unsigned)sms * 8, 256>>>((const int4 *)buf, bytes / 16,
                                                    (unsigned *)out);
        cudaEventRecord(e1, 0);
        if (cudaEventSynchronize(e1) != cudaSuccess || cudaGetLastError() != cudaSuccess)
            goto done;
        float ms = 0.0f;
        if (cudaEventElapsedTime(&ms, e0, e1) != cudaSuccess) goto done;
        if (i >= 2 && ms > 0.0f && ms < best) best = ms;
    }
    if (best < 1e30f) result = (double)bytes / (best * 1e-3);
done:
    cudaDeviceSynchronize();
    cudaGetLastError(); /* leave no error behind for the caller */
    if (e0) cudaEventDestroy(e0);
    if (e1) cudaEventDestroy(e1);
    if (buf) cudaFree(buf);
    if (out) cudaFree(out);
    return result;
}
