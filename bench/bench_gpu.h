/* What the GPU benchmarks (moe-bench --layer, moe-bench-ops, moe-bench-gemm) share, in the
 * moe-bench-gpu library (bench_gpu.cu): the cold-L2 flush, the device's read and copy
 * bandwidth for the floors, and CUDA calls that exit on failure. */
#ifndef MOE_BENCH_GPU_H
#define MOE_BENCH_GPU_H

#include <stddef.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Bytes of the flush buffer: > 5x the H100's 50 MB L2. */
#define MOE_BENCH_FLUSH_BYTES ((size_t)256 << 20)

/* A flush buffer of MOE_BENCH_FLUSH_BYTES, filled once; NULL on failure. Free with cudaFree. */
void *moe_bench_flush_alloc(void);

/* Evicts L2 before a timed call, on `stream` (a cudaStream_t). By default the buffer is
 * read, which leaves L2 full of clean lines the timed call can drop for free; with
 * `write` it is memset (triton's do_bench way), which leaves ~50 MB of dirty lines that
 * the timed call then pays to write back. Returns 0, or -1 if the launch failed. */
int moe_bench_flush_l2(void *buf, int write, void *stream);

/* Bytes per second a read-only kernel reaches over 2 GiB (best of 10 after 2 warm-up
 * runs), or 0 on any failure (the CUDA error is cleared). Synchronises the device. */
double moe_bench_read_bandwidth(void);

/* What the floors use when the read kernel fails: docs/ANCHORS.md's H100 read ceiling. */
#define MOE_BENCH_FALLBACK_READ_BPS 3100e9

/* Bytes per second of a 2 GiB device-to-device cudaMemcpy, counting what is read and what
 * is written (best of 8 after 2 warm-up runs); exits on failure. */
double moe_bench_copy_bandwidth(void);

/* cudaMalloc of at least 16 bytes; exits on failure. */
void *moe_bench_dev_alloc(size_t bytes);

/* Exits, naming the call and where it was made, unless err is cudaSuccess (0). */
void moe_bench_cuda_check(int err, const char *expr, const char *file, int line);
#define CK(x) moe_bench_cuda_check((int)(x), #x, __FILE__, __LINE__)

#ifdef __cplusplus
}
#endif

#endif
