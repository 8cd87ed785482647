/* What both moe-bench modes (one run, --layer sweep) share: the seeded generator and the
 * random tensors made from it, buffers where the backend works, wall-clock timing and
 * medians, and the ways out on failure. */
#ifndef MOE_BENCH_DATA_H
#define MOE_BENCH_DATA_H

#include <stddef.h>
#include <stdint.h>

#include "moe.h"

#ifdef MOE_HAVE_CUDA
#include <cuda_runtime_api.h>
/* Exits with a message naming what failed. */
void cuda_or_die(cudaError_t e, const char *what);
#endif

/* malloc that exits on failure (a benchmark has nothing better to do). */
void *xmalloc(size_t bytes);

/* Prints "moe-bench: WHAT failed: ..." with libmoe's last error; returns 1 (exit status). */
int report_moe_failure(const char *what, moe_status s);

/* ---- random data: one splitmix64 stream, so a seed fixes every tensor made after it */

void random_seed(unsigned long long seed);

/* ---- backend buffers: host memory for the CPU backend, device memory for the GPU */

/* Where the buffers made from now on live (default: the host). */
void set_buffers_on_gpu(int on_gpu);
int buffers_on_gpu(void);

/* Takes a host buffer of bytes (filled for its first min(bytes, 64 MB) when on the GPU)
 * and returns the backend's buffer. */
void *to_backend(void *host, size_t bytes);
void to_host(void *dst, const void *src, size_t bytes);
void buffer_free(void *p);

/* Random tensors' storage on the backend: e4m3 codes with magnitudes in [2^-9, 1.875],
 * bf16 uniform in [-amp, amp), f32 uniform in [lo, hi), and normals (f32 of deviation
 * sigma, bf16 standard). */
void *rand_e4m3(size_t n);
void *rand_bf16(size_t n, float amp);
void *rand_f32(size_t n, float lo, float hi);
void *rand_normal_f32(size_t n, float sigma);
void *rand_normal_bf16(size_t n);

/* Random w1, w2 (and FP8 block scales) for cfg's experts in cfg->weights' format, scaled so
 * activations stay O(1); returns the bytes of w1 + w2. */
size_t random_expert_weights(const moe_layer_config *cfg, moe_layer_weights *w);

/* ---- timing */

double now_ms(void);

/* Median of v[0 .. n) (sorts v); -1 (not measured) when n is 0. */
double median(double *v, int n);

#endif
