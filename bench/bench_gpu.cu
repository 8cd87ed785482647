/* What the GPU benchmarks share (bench/bench_gpu.h).
 *
 * One read kernel serves two ends. As the L2 flush it sweeps a 256 MB buffer before each
 * timed call: a read, not a memset, because after a memset L2 holds ~50 MB of dirty lines
 * and the next kernel to stream through L2 writes them back to DRAM, i.e. it is charged
 * ~16 us of bandwidth on an H100 for work that is not its own (bench/NOTES.md). As the
 * read-bandwidth probe for the memory floors it runs over 2 GiB, best of 10. Each thread
 * walks the buffer grid-stride in 16-byte words, four independent loads in flight per
 * step (ld.global.cg: through L2, not kept in L1), and XORs what it reads; the result is
 * stored only if it equals a constant the fill never produces, so the loads cannot be
 * optimised away and nothing is written. */
#include <cuda_runtime.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

#include "bench_gpu.h"

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
        int4 v0 = __ldcg(src + i), v1 = __ldcg(src + i + stride);
        int4 v2 = __ldcg(src + i + 2 * stride), v3 = __ldcg(src + i + 3 * stride);
        a ^= fold(v0);
        b ^= fold(v1);
        c ^= fold(v2);
        d ^= fold(v3);
    }
    for (; i < n; i += stride) a ^= fold(__ldcg(src + i));
    unsigned r = a ^ b ^ c ^ d;
    if (r == MAGIC) *out = r;
}

/* SMs of the current device, or 0. */
int sm_count(void) {
    int dev = 0, sms = 0;
    if (cudaGetDevice(&dev) != cudaSuccess ||
        cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, dev) != cudaSuccess)
        return 0;
    return sms;
}

} // namespace

extern "C" void *moe_bench_flush_alloc(void) {
    void *buf = NULL;
    int sms = sm_count();
    if (sms <= 0 || cudaMalloc(&buf, MOE_BENCH_FLUSH_BYTES) != cudaSuccess) return NULL;
    fill_kernel<<<(unsigned)sms * 4, 256>>>((uint32_t *)buf, MOE_BENCH_FLUSH_BYTES / 4);
    if (cudaGetLastError() != cudaSuccess || cudaDeviceSynchronize() != cudaSuccess) {
        cudaFree(buf);
        return NULL;
    }
    return buf;
}

extern "C" int moe_bench_flush_l2(void *buf, int write, void *stream) {
    cudaStream_t s = (cudaStream_t)stream;
    static int sms = 0;
    if (write) return cudaMemsetAsync(buf, 0x5a, MOE_BENCH_FLUSH_BYTES, s) == cudaSuccess ? 0 : -1;
    if (sms == 0 && (sms = sm_count()) <= 0) return -1;
    /* the last 16 bytes are the kernel's output word, never read */
    size_t words = MOE_BENCH_FLUSH_BYTES / 16 - 1;
    read_xor_kernel<<<(unsigned)sms * 8, 256, 0, s>>>((const int4 *)buf, words,
                                                      (unsigned *)((int4 *)buf + words));
    return cudaGetLastError() == cudaSuccess ? 0 : -1;
}

extern "C" double moe_bench_read_bandwidth(void) {
    const size_t bytes = (size_t)2 << 30;
    void *buf = NULL, *out = NULL;
    cudaEvent_t e0 = NULL, e1 = NULL;
    double result = 0.0;
    int sms = sm_count();
    float best = 1e30f;
    if (sms <= 0) goto done;
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

extern "C" void moe_bench_cuda_check(int err, const char *expr, const char *file, int line) {
    if (err == (int)cudaSuccess) return;
    fprintf(stderr, "%s:%d %s: %s\n", file, line, expr, cudaGetErrorString((cudaError_t)err));
    exit(1);
}

extern "C" void *moe_bench_dev_alloc(size_t bytes) {
    void *p = NULL;
    cudaError_t e = cudaMalloc(&p, bytes > 16 ? bytes : 16);
    if (e != cudaSuccess) {
        fprintf(stderr, "cudaMalloc(%zu bytes): %s\n", bytes, cudaGetErrorString(e));
        exit(1);
    }
    return p;
}

extern "C" double moe_bench_copy_bandwidth(void) {
    const size_t bytes = (size_t)2 << 30;
    void *a = moe_bench_dev_alloc(bytes), *b = moe_bench_dev_alloc(bytes);
    cudaEvent_t e0, e1;
    CK(cudaEventCreate(&e0));
    CK(cudaEventCreate(&e1));
    CK(cudaMemset(a, 1, bytes));
    float best = 1e30f;
    for (int i = 0; i < 10; i++) {
        float ms = 0.0f;
        CK(cudaEventRecord(e0, 0));
        CK(cudaMemcpyAsync(b, a, bytes, cudaMemcpyDeviceToDevice, 0));
        CK(cudaEventRecord(e1, 0));
        CK(cudaEventSynchronize(e1));
        CK(cudaEventElapsedTime(&ms, e0, e1));
        if (i >= 2 && ms < best) best = ms;
    }
    CK(cudaEventDestroy(e0));
    CK(cudaEventDestroy(e1));
    CK(cudaFree(a));
    CK(cudaFree(b));
    return 2.0 * (double)bytes / (best * 1e-3); /* read + written */
}
