/* Dtype facts. */
#include "internal.h"

size_t moe_dtype_size(moe_dtype dtype) {
    switch (dtype) {
    case MOE_DTYPE_F32: case MOE_DTYPE_I32: return 4;
    case MOE_DTYPE_F16: case MOE_DTYPE_BF16: return 2;
    case MOE_DTYPE_E4M3: case MOE_DTYPE_E8M0: case MOE_DTYPE_E2M1X2: return 1;
    }
    return 0;
}

const char *moe_dtype_name(moe_dtype dtype) {
    switch (dtype) {
    case MOE_DTYPE_F32: return "f32";
    case MOE_DTYPE_F16: return "f16";
    case MOE_DTYPE_BF16: return "bf16";
    case MOE_DTYPE_E4M3: return "e4m3";
    case MOE_DTYPE_E8M0: return "e8m0";
    case MOE_DTYPE_E2M1X2: return "e2m1x2";
    case MOE_DTYPE_I32: return "i32";
    }
    return "unknown";
}
