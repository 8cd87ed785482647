/* A small test harness: checks that count, a seeded RNG, poisoned buffers that are freed
 * after each test, and a check for the error sentence of bad input. */
#ifndef MOE_TEST_HARNESS_H
#define MOE_TEST_HARNESS_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "moe.h"

/* ---------------------------------------------------------------- checks */

void harness_check(int ok, const char *file, int line, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

/* CHECK(cond, "printf format", args): counts one passed or failed assertion. */
#define CHECK(cond, ...) harness_check(!!(cond), __FILE__, __LINE__, __VA_ARGS__)

/* The call returns MOE_OK; on failure the library's sentence is printed. */
#define CHECK_OK(call)                                                                  \
    do {                                                                                \
        moe_status check_ok_s_ = (call);                                                \
        CHECK(check_ok_s_ == MOE_OK, "%s -> %s: %s", #call, moe_status_string(check_ok_s_), \
              moe_last_error());                                                        \
    } while (0)

/* The call fails with status and its sentence contains needle (the argument's name). */
#define CHECK_ERR(call, status, needle) \
    harness_check_err((call), (status), (needle), #call, __FILE__, __LINE__)
void harness_check_err(moe_status got, moe_status want, const char *needle, const char *expr,
                       const char *file, int line);

/* ---------------------------------------------------------------- running */

typedef void (*test_fn)(void);
void harness_run(const char *name, test_fn fn);
#define RUN(fn) harness_run(#fn, fn)

/* One suite per tests/test_<op>.c; main runs them all (or those named on the command
 * line). */
void suite_formats(void);
void suite_api(void);
void suite_route(void);
void suite_permute(void);
void suite_combine(void);
void suite_quant_fp8(void);
void suite_quant_block(void); /* MXFP8 and NVFP4 */
void suite_activation(void);
void suite_gemm(void);
void suite_layer(void);
/* the CUDA backend against the CPU reference (skip without a GPU) */
void suite_cuda_route(void);
void suite_cuda_permute(void);
void suite_cuda_quant(void);       /* FP8 group, MXFP8, NVFP4 */
void suite_cuda_activation(void);
void suite_cuda_combine(void);
void suite_cuda_quant_block(void); /* MXFP8 and NVFP4 */
void suite_cuda_gemm(void);
void suite_cuda_layer(void);

/* ---------------------------------------------------------------- data */

/* Deterministic RNG (splitmix64), reseeded per test from the test's name. */
uint64_t rng_u64(void);
double rng_uniform(double lo, double hi); /* [lo, hi) */
double rng_normal(void);                  /* N(0, 1) */
int64_t rng_int(int64_t lo, int64_t hi);  /* [lo, hi] */

/* Rows per expert for the grouped-GEMM tests: uniform in [0, max], or skewed (expert E/3
 * gets max, the others 0..2). Zeros and ones occur in both. */
enum { COUNTS_UNIFORM, COUNTS_SKEWED };
void draw_counts(int32_t *counts, int64_t experts, int64_t max, int shape);

/* Memory freed automatically after the current test. test_alloc poisons it with 0xFF
 * bytes (NaN in every float format, 0xFF..: -1 in i32, so int outputs use test_poison). */
void *test_alloc(size_t bytes);

/* A contiguous tensor of fresh test memory. */
moe_tensor test_tensor(moe_dtype dtype, int rank, const int64_t *shape);
moe_tensor test_tensor1(moe_dtype dtype, int64_t n0);
moe_tensor test_tensor2(moe_dtype dtype, int64_t n0, int64_t n1);
moe_tensor test_tensor3(moe_dtype dtype, int64_t n0, int64_t n1, int64_t n2);

/* Poisons a tensor's bytes so an unwritten element is caught: NaN for float dtypes,
 * 0x7BADBAD7 for i32, 0xFF for e8m0/e2m1x2. */
void test_poison(moe_tensor *t);

/* Fills a float tensor (f32/f16/bf16) with N(0, sigma) values. */
void test_fill_normal(moe_tensor *t, double sigma);

/* Element (i0, i1, i2) of a float tensor (f32/f16/bf16/e4m3) as double. */
double test_get(const moe_tensor *t, int64_t i0, int64_t i1, int64_t i2);
/* Stores v (rounded to the dtype) at (i0, i1, i2). */
void test_set(moe_tensor *t, int64_t i0, int64_t i1, int64_t i2, double v);
int32_t test_get_i32(const moe_tensor *t, int64_t i0, int64_t i1);
void test_set_i32(moe_tensor *t, int64_t i0, int64_t i1, int32_t v);

/* 1 when MOE_TEST_QUICK is set (compute-sanitizer runs): tests skip their largest shapes. */
int test_quick(void);

/* A CPU context shared by the tests. */
moe_context *test_cpu(void);

/* ---------------------------------------------------------------- GPU (harness_gpu.c) */

/* A CUDA context shared by the tests, or NULL after printing "SKIP: no CUDA device (why)";
 * a GPU test starts with `moe_context *gpu = test_gpu(); if (!gpu) return;`. */
moe_context *test_gpu(void);
int test_gpu_skipped(void);
void test_gpu_release(void);
void test_gpu_free_all(void);

/* Device memory, poisoned with 0xFF bytes and freed after the current test. */
void *test_device_alloc(size_t bytes);
/* A device tensor of host's shape, dtype and strides: poisoned (i32 as test_poison does). */
moe_tensor test_device_like(const moe_tensor *host);
/* A device copy of a host tensor. */
moe_tensor test_to_device(const moe_tensor *host);
/* Synchronises, checks for asynchronous errors and copies dev into host (same layout). */
void test_to_host(const moe_tensor *dev, moe_tensor *host);
void test_device_sync(void);
/* Copies bytes host -> device (to_device = 1) or device -> host, synchronously. */
void test_copy_bytes(void *dst, const void *src, size_t bytes, int to_device);

/* CUDA builds only (tests/late_writer.cu): copies n ints src -> dst on the default stream
 * in a kernel that first lets the next kernel start (PDL) and spins delay_ns before
 * writing. 0, or -1 if the launch failed. */
int test_late_copy_i32(int32_t *dst, const int32_t *src, int n, long long delay_ns);

/* CUDA builds only (tests/e4m3_hardware.cu): the hardware f32 -> e4m3 conversion against
 * the software code on every step-th f32 bit pattern; *count mismatches, *first the
 * lowest mismatching pattern. 0, or -1 on a CUDA error. */
int test_e4m3_hardware_mismatches(uint32_t step, unsigned long long *count, uint32_t *first);

#endif
