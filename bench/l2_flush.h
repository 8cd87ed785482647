/* Cold-L2 flush for the GPU benchmarks (bench/l2_flush.cu). */
#ifndef MOE_BENCH_L2_FLUSH_H
#define MOE_BENCH_L2_FLUSH_H

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

#ifdef __cplusplus
}
#endif

#endif
