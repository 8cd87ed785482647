/* Contexts: which backend runs the ops. */
#include <stdlib.h>

#include "internal.h"

int moe_backend_available(moe_backend backend) {
    return backend == MOE_BACKEND_CPU;
}

moe_status moe_context_create(moe_context **ctx, moe_backend backend, int device) {
    moe_clear_error();
    MOE_TRY(moe_check_ptr(ctx, "ctx"));
    *ctx = NULL;
    if (backend == MOE_BACKEND_CUDA)
        return moe_fail(MOE_ERR_UNSUPPORTED,
                        "backend: libmoe was built without the CUDA backend");
    if (backend != MOE_BACKEND_CPU)
        return moe_fail(MOE_ERR_INVALID_ARGUMENT, "backend (%d) is not a moe_backend",
                        (int)backend);
    if (device != 0)
        return moe_fail(MOE_ERR_INVALID_ARGUMENT, "device (%d) must be 0 for the CPU backend",
                        device);
    moe_context *c = calloc(1, sizeof *c);
    if (!c) return moe_fail(MOE_ERR_OUT_OF_MEMORY, "moe_context_create: out of host memory");
    c->backend = backend;
    c->device = device;
    c->ops = &moe_cpu_ops;
    *ctx = c;
    return MOE_OK;
}

void moe_context_destroy(moe_context *ctx) { free(ctx); }

moe_backend moe_context_backend(const moe_context *ctx) {
    return ctx ? ctx->backend : MOE_BACKEND_CPU;
}
