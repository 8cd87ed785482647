/* Contexts: which backend runs the ops. */
#include <stdlib.h>

#include "internal.h"

int moe_backend_available(moe_backend backend) {
    if (backend == MOE_BACKEND_CPU) return 1;
#ifdef MOE_HAVE_CUDA
    if (backend == MOE_BACKEND_CUDA) return moe_cuda_device_count() > 0;
#endif
    return 0;
}

moe_status moe_context_create(moe_context **ctx, moe_backend backend, int device) {
    moe_clear_error();
    MOE_TRY(moe_check_ptr(ctx, "ctx"));
    *ctx = NULL;
    if (backend != MOE_BACKEND_CPU && backend != MOE_BACKEND_CUDA)
        return moe_fail(MOE_ERR_INVALID_ARGUMENT, "backend (%d) is not a moe_backend",
                        (int)backend);
#ifndef MOE_HAVE_CUDA
    if (backend == MOE_BACKEND_CUDA)
        return moe_fail(MOE_ERR_UNSUPPORTED,
                        "backend: libmoe was built without the CUDA backend");
#endif
    if (backend == MOE_BACKEND_CPU && device != 0)
        return moe_fail(MOE_ERR_INVALID_ARGUMENT, "device (%d) must be 0 for the CPU backend",
                        device);
    moe_context *c = calloc(1, sizeof *c);
    if (!c) return moe_fail(MOE_ERR_OUT_OF_MEMORY, "moe_context_create: out of host memory");
    c->backend = backend;
    c->device = device;
    c->ops = &moe_cpu_ops;
#ifdef MOE_HAVE_CUDA
    if (backend == MOE_BACKEND_CUDA) {
        c->ops = &moe_cuda_ops;
        moe_status s = moe_cuda_context_init(c, device);
        if (s != MOE_OK) {
            free(c);
            return s;
        }
    }
#endif
    *ctx = c;
    return MOE_OK;
}

void moe_context_destroy(moe_context *ctx) {
    if (!ctx) return;
#ifdef MOE_HAVE_CUDA
    if (ctx->backend == MOE_BACKEND_CUDA) moe_cuda_context_release(ctx);
#endif
    free(ctx);
}

moe_backend moe_context_backend(const moe_context *ctx) {
    return ctx ? ctx->backend : MOE_BACKEND_CPU;
}
