/* GPU side of the harness: a CUDA context or a clear skip, and device buffers that are
 * poisoned when made and freed after each test. Builds without CUDA too: then every GPU
 * test skips. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "harness.h"

#ifdef MOE_HAVE_CUDA
#include <cuda_runtime_api.h>
#endif

static moe_context *gpu_ctx;
static int gpu_probed, n_skipped;
static char skip_reason[256];

int test_gpu_skipped(void) { return n_skipped; }

moe_context *test_gpu(void) {
    if (!gpu_probed) {
        gpu_probed = 1;
        moe_status s = moe_context_create(&gpu_ctx, MOE_BACKEND_CUDA, 0);
        if (s != MOE_OK) {
            gpu_ctx = NULL;
            snprintf(skip_reason, sizeof skip_reason, "%s", moe_last_error());
        }
    }
    if (!gpu_ctx) {
        n_skipped++;
        printf("  SKIP: no CUDA device (%s)\n", skip_reason);
    }
    return gpu_ctx;
}

void test_gpu_release(void) {
    moe_context_destroy(gpu_ctx);
    gpu_ctx = NULL;
}

#ifdef MOE_HAVE_CUDA
static void **dev_allocs;
static size_t n_dev, cap_dev;

static void cuda_or_die(cudaError_t e, const char *what) {
    if (e != cudaSuccess) {
        fprintf(stderr, "%s: %s\n", what, cudaGetErrorString(e));
        exit(2);
    }
}

void *test_device_alloc(size_t bytes) {
    void *p = NULL;
    cuda_or_die(cudaMalloc(&p, bytes ? bytes : 1), "cudaMalloc");
    cuda_or_die(cudaMemset(p, 0xFF, bytes), "cudaMemset");
    if (n_dev == cap_dev) {
        cap_dev = cap_dev ? 2 * cap_dev : 64;
        dev_allocs = realloc(dev_allocs, cap_dev * sizeof *dev_allocs);
        if (!dev_allocs) exit(2);
    }
    dev_allocs[n_dev++] = p;
    return p;
}

void test_gpu_free_all(void) {
    for (size_t i = 0; i < n_dev; i++) cudaFree(dev_allocs[i]);
    n_dev = 0;
}

void test_device_sync(void) {
    cuda_or_die(cudaDeviceSynchronize(), "cudaDeviceSynchronize");
    cuda_or_die(cudaGetLastError(), "after synchronize");
}

void test_copy_bytes(void *dst, const void *src, size_t bytes, int to_device) {
    cuda_or_die(cudaMemcpy(dst, src, bytes, to_device ? cudaMemcpyHostToDevice
                                                      : cudaMemcpyDeviceToHost),
                "cudaMemcpy");
}
#else
void *test_device_alloc(size_t bytes) {
    (void)bytes;
    fprintf(stderr, "test_device_alloc without CUDA\n");
    exit(2);
}
void test_gpu_free_all(void) {}
void test_device_sync(void) {}
void test_copy_bytes(void *dst, const void *src, size_t bytes, int to_device) {
    (void)dst, (void)src, (void)bytes, (void)to_device;
    exit(2);
}
#endif

static size_t tensor_bytes(const moe_tensor *t) {
    int64_t last = 0;
    for (int d = 0; d < t->rank; d++) {
        if (t->shape[d] == 0) return 0;
        last += (t->shape[d] - 1) * t->stride[d];
    }
    return (size_t)(last + 1) * moe_dtype_size(t->dtype);
}

moe_tensor test_device_like(const moe_tensor *host) {
    moe_tensor d = *host;
    d.data = test_device_alloc(tensor_bytes(host));
    if (host->dtype == MOE_DTYPE_I32) {
        /* the same poison the host side uses for ints */
        moe_tensor tmp = *host;
        tmp.data = test_alloc(tensor_bytes(host));
        test_poison(&tmp);
        test_copy_bytes(d.data, tmp.data, tensor_bytes(host), 1);
    }
    return d;
}

moe_tensor test_to_device(const moe_tensor *host) {
    moe_tensor d = test_device_like(host);
    test_copy_bytes(d.data, host->data, tensor_bytes(host), 1);
    return d;
}

void test_to_host(const moe_tensor *dev, moe_tensor *host) {
    test_device_sync();
    test_copy_bytes(host->data, dev->data, tensor_bytes(dev), 0);
}
