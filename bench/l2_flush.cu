/* The benchmarks' L2 flush (bench/l2_flush.h). A read-only sweep of the buffer, not a
 * memset: after a memset L2 holds ~50 MB of dirty lines, and the next kernel to stream
 * through L2 writes them back to DRAM, i.e. it is charged ~16 us of bandwidth on an H100
 * for work that is not its own (measured in bench/NOTES.md). */
#include <cuda_runtime.h>
#include <stdint.h>

#include "l2_flush.h"

namespace {

__global__ void fill_flush(uint32_t *p, size_t n) {
    size_t stride = (size_t)gridDim.x * blockDim.x;
    for (size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += stride)
        p[i] = (uint32_t)i * 2654435761u;
}

/* Reads every 16-byte word; stores only when the XOR of a thread's words equals a value
 * the fill never produces for it, so the loads stay and nothing is written. */
__global__ void read_flush(const int4 *__restrict__ p, size_t n, int4 *sink) {
    size_t stride = (size_t)gridDim.x * blockDim.x;
    unsigned x = 0;
    for (size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += stride) {
        int4 v = __ldcg(p + i);
        x ^= (unsigned)v.x ^ (unsigned)v.y ^ (unsigned)v.z ^ (unsigned)v.w;
    }
    if (x == 0x9e3779b9u && sink) sink->x = (int)x;
}

} // namespace

extern "C" void *moe_bench_flush_alloc(void) {
    void *buf = NULL;
    int dev = 0, sms = 0;
    if (cudaGetDevice(&dev) != cudaSuccess ||
        cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, dev) != cudaSuccess ||
        cudaMalloc(&buf, MOE_BENCH_FLUSH_BYTES) != cudaSuccess)
        return NULL;
    fill_flush<<<(unsigned)sms * 4, 256>>>((uint32_t *)buf, MOE_BENCH_FLUSH_BYTES / 4);
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
    if (sms == 0) {
        int dev = 0;
        if (cudaGetDevice(&dev) != cudaSuccess ||
            cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, dev) != cudaSuccess)
            return -1;
    }
    /* the last 16 bytes are the sink: the fill made them, so no word is ever stored twice */
    size_t words = MOE_BENCH_FLUSH_BYTES / 16 - 1;
    read_flush<<<(unsigned)sms * 8, 256, 0, s>>>((const int4 *)buf, words,
                                                 (int4 *)buf + words);
    return cudaGetLastError() == cudaSuccess ? 0 : -1;
}
