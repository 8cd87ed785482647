/* CUDA contexts: device checks at creation and what kernels need to know about the GPU. */
#include <cuda_runtime.h>
#include <stdlib.h>

#include "cuda.h"

int moe_cuda_device_count(void) {
    int n = 0;
    if (cudaGetDeviceCount(&n) != cudaSuccess) {
        cudaGetLastError(); /* no driver: clear the sticky error, report no devices */
        return 0;
    }
    return n;
}

moe_status moe_cuda_context_init(moe_context *ctx, int device) {
    int n = 0;
    cudaError_t e = cudaGetDeviceCount(&n);
    if (e != cudaSuccess) {
        cudaGetLastError();
        return moe_fail(MOE_ERR_NO_DEVICE, "backend CUDA: no usable GPU (%s)",
                        cudaGetErrorString(e));
    }
    if (device < 0 || device >= n)
        return moe_fail(MOE_ERR_NO_DEVICE, "device (%d) must be in [0, %d): the CUDA devices here",
                        device, n);
    cudaDeviceProp prop;
    e = cudaGetDeviceProperties(&prop, device);
    if (e != cudaSuccess)
        return moe_fail(MOE_ERR_BACKEND, "cudaGetDeviceProperties(%d): %s", device,
                        cudaGetErrorString(e));
    moe_cuda_state *s = (moe_cuda_state *)calloc(1, sizeof *s);
    if (!s) return moe_fail(MOE_ERR_OUT_OF_MEMORY, "moe_context_create: out of host memory");
    s->sm_count = prop.multiProcessorCount;
    s->cc_major = prop.major;
    s->cc_minor = prop.minor;
    s->smem_optin = prop.sharedMemPerBlockOptin;
    ctx->state = s;
    return MOE_OK;
}

void moe_cuda_context_release(moe_context *ctx) {
    free(ctx->state);
    ctx->state = NULL;
}

moe_status moe_cuda_use_device(const moe_context *ctx) {
    int cur = -1;
    if (cudaGetDevice(&cur) == cudaSuccess && cur == ctx->device) return MOE_OK;
    cudaError_t e = cudaSetDevice(ctx->device);
    if (e != cudaSuccess)
        return moe_fail(MOE_ERR_BACKEND, "cudaSetDevice(%d): %s", ctx->device,
                        cudaGetErrorString(e));
    return MOE_OK;
}

moe_status moe_cuda_launch_status(const char *op) {
    cudaError_t e = cudaGetLastError();
    if (e != cudaSuccess)
        return moe_fail(MOE_ERR_BACKEND, "%s: CUDA launch failed: %s", op, cudaGetErrorString(e));
    return MOE_OK;
}
