/* Status names and the thread-local sentence describing the last failure. */
#include <stdarg.h>
#include <stdio.h>

#include "internal.h"

static _Thread_local char last_error[512];

const char *moe_status_string(moe_status status) {
    switch (status) {
    case MOE_OK: return "ok";
    case MOE_ERR_INVALID_ARGUMENT: return "invalid argument";
    case MOE_ERR_UNSUPPORTED: return "unsupported";
    case MOE_ERR_WORKSPACE_TOO_SMALL: return "workspace too small";
    case MOE_ERR_OUT_OF_MEMORY: return "out of memory";
    case MOE_ERR_NO_DEVICE: return "no device";
    case MOE_ERR_BACKEND: return "backend error";
    }
    return "unknown status";
}

const char *moe_last_error(void) { return last_error; }

void moe_clear_error(void) { last_error[0] = '\0'; }

moe_status moe_fail(moe_status status, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(last_error, sizeof last_error, fmt, ap);
    va_end(ap);
    return status;
}

moe_status moe_unsupported(const moe_context *ctx, const char *op) {
    return moe_fail(MOE_ERR_UNSUPPORTED, "%s: the %s backend does not implement this op", op,
                    ctx->ops->name);
}

const char *moe_version(void) {
#define MOE_STR2(x) #x
#define MOE_STR(x) MOE_STR2(x)
    return MOE_STR(MOE_VERSION_MAJOR) "." MOE_STR(MOE_VERSION_MINOR) "." MOE_STR(
        MOE_VERSION_PATCH);
}
