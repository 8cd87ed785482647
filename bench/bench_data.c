#define _POSIX_C_SOURCE 200809L
#include "bench_data.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "../src/common/formats.h"

void *xmalloc(size_t bytes) {
    void *p = malloc(bytes ? bytes : 1);
    if (!p) {
        fprintf(stderr, "moe-bench: cannot allocate %zu bytes\n", bytes);
        exit(1);
    }
    return p;
}

int report_moe_failure(const char *what, moe_status s) {
    fprintf(stderr, "moe-bench: %s failed: %s: %s\n", what, moe_status_string(s), moe_last_error());
    return 1;
}

#ifdef MOE_HAVE_CUDA
void cuda_or_die(cudaError_t e, const char *what) {
    if (e != cudaSuccess) {
        fprintf(stderr, "moe-bench: %s: %s\n", what, cudaGetErrorString(e));
        exit(1);
    }
}
#endif

/* ---------------------------------------------------------------- random data */

static unsigned long long rng_state;

void random_seed(unsigned long long seed) { rng_state = seed; }

static unsigned long long next_u64(void) {
    unsigned long long z = (rng_state += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

/* Uniform in [-1, 1). */
static float next_signed(void) { return (float)((double)(next_u64() >> 11) * 0x1p-52 - 1.0); }

/* Uniform in (0, 1]: never 0, so its log is finite. */
static double next_unit(void) { return (double)((next_u64() >> 11) + 1) * 0x1p-53; }

/* e4m3 codes with magnitudes in [2^-9, 1.875] (no NaN, nothing near saturation). */
static void fill_e4m3(uint8_t *p, size_t n) {
    for (size_t i = 0; i < n; i += 8) {
        unsigned long long r = next_u64();
        for (size_t b = 0; b < 8 && i + b < n; b++) p[i + b] = (uint8_t)((r >> (8 * b)) & 0xbf);
    }
}

static void fill_bf16(uint16_t *p, size_t n, float amp) {
    for (size_t i = 0; i < n; i++) p[i] = moe_f32_to_bf16(amp * next_signed());
}

static void fill_f32(float *p, size_t n, float lo, float hi) {
    for (size_t i = 0; i < n; i++) p[i] = lo + (hi - lo) * 0.5f * (next_signed() + 1.0f);
}

/* Standard normals by Box-Muller: each pair of uniforms gives two values. */
static void fill_normal_f32(float *p, size_t n, float sigma) {
    for (size_t i = 0; i < n; i += 2) {
        double r = sigma * sqrt(-2.0 * log(next_unit())), a = 6.283185307179586 * next_unit();
        p[i] = (float)(r * cos(a));
        if (i + 1 < n) p[i + 1] = (float)(r * sin(a));
    }
}

static void fill_normal_bf16(uint16_t *p, size_t n) {
    for (size_t i = 0; i < n; i += 2) {
        double r = sqrt(-2.0 * log(next_unit())), a = 6.283185307179586 * next_unit();
        p[i] = moe_f32_to_bf16((float)(r * cos(a)));
        if (i + 1 < n) p[i + 1] = moe_f32_to_bf16((float)(r * sin(a)));
    }
}

/* ---------------------------------------------------------------- backend memory
 * On the GPU, big random tensors are made by repeating one host chunk: generating 11 GB of
 * DeepSeek-V3 weights on the host would take longer than the benchmark. */

static int on_gpu;
#define CHUNK_BYTES ((size_t)64 << 20)

void set_buffers_on_gpu(int gpu) { on_gpu = gpu; }
int buffers_on_gpu(void) { return on_gpu; }

void *to_backend(void *host, size_t bytes) {
    if (!on_gpu) return host;
#ifdef MOE_HAVE_CUDA
    void *d = NULL;
    cuda_or_die(cudaMalloc(&d, bytes ? bytes : 1), "cudaMalloc");
    /* the chunk crosses the bus once; the repeats are device copies of it */
    size_t first = bytes < CHUNK_BYTES ? bytes : CHUNK_BYTES;
    cuda_or_die(cudaMemcpy(d, host, first, cudaMemcpyHostToDevice), "cudaMemcpy");
    for (size_t o = first; o < bytes; o += CHUNK_BYTES) {
        size_t n = bytes - o < CHUNK_BYTES ? bytes - o : CHUNK_BYTES;
        cuda_or_die(cudaMemcpy((char *)d + o, d, n, cudaMemcpyDeviceToDevice), "cudaMemcpy");
    }
    free(host);
    return d;
#else
    (void)bytes;
    return host;
#endif
}

/* Bytes of a host buffer that need generating before to_backend. */
static size_t gen_bytes(size_t bytes) {
    return on_gpu && bytes > CHUNK_BYTES ? CHUNK_BYTES : bytes;
}

void buffer_free(void *p) {
    if (!on_gpu) {
        free(p);
        return;
    }
#ifdef MOE_HAVE_CUDA
    cudaFree(p);
#endif
}

void to_host(void *dst, const void *src, size_t bytes) {
    if (!on_gpu) {
        memcpy(dst, src, bytes);
        return;
    }
#ifdef MOE_HAVE_CUDA
    cuda_or_die(cudaMemcpy(dst, src, bytes, cudaMemcpyDeviceToHost), "cudaMemcpy");
#endif
}

void *rand_e4m3(size_t n) {
    void *h = xmalloc(gen_bytes(n));
    fill_e4m3(h, gen_bytes(n));
    return to_backend(h, n);
}
void *rand_bf16(size_t n, float amp) {
    size_t g = gen_bytes(n * 2);
    void *h = xmalloc(g);
    fill_bf16(h, g / 2, amp);
    return to_backend(h, n * 2);
}
void *rand_f32(size_t n, float lo, float hi) {
    size_t g = gen_bytes(n * 4);
    void *h = xmalloc(g);
    fill_f32(h, g / 4, lo, hi);
    return to_backend(h, n * 4);
}
void *rand_normal_f32(size_t n, float sigma) {
    size_t g = gen_bytes(n * 4);
    void *h = xmalloc(g);
    fill_normal_f32(h, g / 4, sigma);
    return to_backend(h, n * 4);
}
void *rand_normal_bf16(size_t n) {
    size_t g = gen_bytes(n * 2);
    void *h = xmalloc(g);
    fill_normal_bf16(h, g / 2);
    return to_backend(h, n * 2);
}

size_t random_expert_weights(const moe_layer_config *cfg, moe_layer_weights *w) {
    int64_t e = cfg->num_experts + cfg->num_shared, h = cfg->hidden, in = cfg->intermediate;
    int fp8 = cfg->weights == MOE_WEIGHTS_FP8_BLOCKWISE;
    moe_dtype wt = fp8 ? MOE_DTYPE_E4M3 : MOE_DTYPE_BF16;
    size_t n1 = (size_t)(e * 2 * in * h), n2 = (size_t)(e * h * in);
    if (fp8) {
        /* one f32 scale per 128x128 block; codes of O(1) times scales of O(1/sqrt(K)) */
        size_t s1 = (size_t)(e * 2 * in * h / 16384), s2 = (size_t)(e * h * in / 16384);
        w->w1 = moe_tensor_3d(rand_e4m3(n1), wt, e, 2 * in, h);
        w->w2 = moe_tensor_3d(rand_e4m3(n2), wt, e, h, in);
        w->w1_scales = moe_tensor_3d(rand_f32(s1, 1.0f / sqrtf((float)h), 2.0f / sqrtf((float)h)),
                                     MOE_DTYPE_F32, e, 2 * in / 128, h / 128);
        w->w2_scales = moe_tensor_3d(rand_f32(s2, 1.0f / sqrtf((float)in), 2.0f / sqrtf((float)in)),
                                     MOE_DTYPE_F32, e, h / 128, in / 128);
    } else {
        w->w1 = moe_tensor_3d(rand_bf16(n1, 1.7f / sqrtf((float)h)), wt, e, 2 * in, h);
        w->w2 = moe_tensor_3d(rand_bf16(n2, 1.7f / sqrtf((float)in)), wt, e, h, in);
    }
    return (n1 + n2) * moe_dtype_size(wt);
}

/* ---------------------------------------------------------------- timing */

double now_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1e3 + ts.tv_nsec * 1e-6;
}

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

double median(double *v, int n) {
    if (n <= 0) return -1.0;
    qsort(v, (size_t)n, sizeof *v, cmp_double);
    return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}
