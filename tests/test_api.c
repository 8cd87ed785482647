/* Statuses, error sentences, dtypes, contexts and the tensor checks every op shares. */
#include <string.h>

#include "harness.h"

static void test_status_strings(void) {
    for (int s = MOE_OK; s <= MOE_ERR_BACKEND; s++) {
        const char *str = moe_status_string((moe_status)s);
        CHECK(str && strcmp(str, "unknown status") != 0, "status %d has a name", s);
    }
    CHECK(strcmp(moe_status_string((moe_status)99), "unknown status") == 0, "unknown status");
    char want[32];
    snprintf(want, sizeof want, "%d.%d.%d", MOE_VERSION_MAJOR, MOE_VERSION_MINOR,
             MOE_VERSION_PATCH);
    CHECK(strcmp(moe_version(), want) == 0, "version %s, header says %s", moe_version(), want);
}

static void test_dtypes(void) {
    const struct { moe_dtype d; size_t size; const char *name; } want[] = {
        {MOE_DTYPE_F32, 4, "f32"},   {MOE_DTYPE_F16, 2, "f16"},   {MOE_DTYPE_BF16, 2, "bf16"},
        {MOE_DTYPE_E4M3, 1, "e4m3"}, {MOE_DTYPE_E8M0, 1, "e8m0"}, {MOE_DTYPE_E2M1X2, 1, "e2m1x2"},
        {MOE_DTYPE_I32, 4, "i32"},
    };
    for (size_t i = 0; i < sizeof want / sizeof want[0]; i++) {
        CHECK(moe_dtype_size(want[i].d) == want[i].size, "size of %s", want[i].name);
        CHECK(strcmp(moe_dtype_name(want[i].d), want[i].name) == 0, "name of %s", want[i].name);
    }
    CHECK(moe_dtype_size((moe_dtype)42) == 0, "unknown dtype has size 0");
    CHECK(strcmp(moe_dtype_name((moe_dtype)42), "unknown") == 0, "unknown dtype name");
    moe_tensor t = moe_tensor_3d(NULL, MOE_DTYPE_BF16, 2, 3, 4);
    CHECK(t.rank == 3 && t.stride[0] == 12 && t.stride[1] == 4 && t.stride[2] == 1,
          "moe_tensor_3d strides");
}

static void test_context(void) {
    moe_context *ctx = (moe_context *)1;
    CHECK_ERR(moe_context_create(NULL, MOE_BACKEND_CPU, 0), MOE_ERR_INVALID_ARGUMENT, "ctx");
    CHECK_ERR(moe_context_create(&ctx, (moe_backend)7, 0), MOE_ERR_INVALID_ARGUMENT, "backend");
    CHECK(ctx == NULL, "failed create leaves *ctx NULL");
    CHECK_ERR(moe_context_create(&ctx, MOE_BACKEND_CPU, 1), MOE_ERR_INVALID_ARGUMENT, "device");
    if (!moe_backend_available(MOE_BACKEND_CUDA)) {
        moe_status s = moe_context_create(&ctx, MOE_BACKEND_CUDA, 0);
        CHECK(s == MOE_ERR_UNSUPPORTED || s == MOE_ERR_NO_DEVICE,
              "CUDA context without CUDA -> %s", moe_status_string(s));
        CHECK(strstr(moe_last_error(), "CUDA") != NULL, "error names CUDA: %s", moe_last_error());
    }
    CHECK(moe_backend_available(MOE_BACKEND_CPU), "CPU backend available");
    CHECK_OK(moe_context_create(&ctx, MOE_BACKEND_CPU, 0));
    CHECK(moe_context_backend(ctx) == MOE_BACKEND_CPU, "backend of a CPU context");
    CHECK(strcmp(moe_last_error(), "") == 0, "success clears the error");
    moe_context_destroy(ctx);
    moe_context_destroy(NULL);
}

/* The generic tensor checks, through one op (every op uses the same function). */
static void test_tensor_checks(void) {
    moe_context *ctx = test_cpu();
    moe_tensor in = test_tensor2(MOE_DTYPE_F32, 4, 16), out = test_tensor2(MOE_DTYPE_F32, 4, 8);
    test_fill_normal(&in, 1.0);
    CHECK_OK(moe_silu_and_mul(ctx, &in, &out, NULL));
    CHECK_ERR(moe_silu_and_mul(NULL, &in, &out, NULL), MOE_ERR_INVALID_ARGUMENT, "ctx");
    moe_tensor bad = in;
    bad.stride[1] = 2;
    CHECK_ERR(moe_silu_and_mul(ctx, &bad, &out, NULL), MOE_ERR_INVALID_ARGUMENT, "stride[1]");
    bad = in;
    bad.stride[0] = 8;
    CHECK_ERR(moe_silu_and_mul(ctx, &bad, &out, NULL), MOE_ERR_INVALID_ARGUMENT, "overlap");
    bad = in;
    bad.shape[0] = -1;
    CHECK_ERR(moe_silu_and_mul(ctx, &bad, &out, NULL), MOE_ERR_INVALID_ARGUMENT, "negative");
    bad = in;
    bad.data = NULL;
    CHECK_ERR(moe_silu_and_mul(ctx, &bad, &out, NULL), MOE_ERR_INVALID_ARGUMENT, "data");
    bad = in;
    bad.data = (char *)in.data + 2;
    CHECK_ERR(moe_silu_and_mul(ctx, &bad, &out, NULL), MOE_ERR_INVALID_ARGUMENT, "aligned");
    bad = in;
    bad.dtype = (moe_dtype)77;
    CHECK_ERR(moe_silu_and_mul(ctx, &bad, &out, NULL), MOE_ERR_INVALID_ARGUMENT, "dtype");
    bad = in;
    bad.rank = 3;
    CHECK_ERR(moe_silu_and_mul(ctx, &bad, &out, NULL), MOE_ERR_INVALID_ARGUMENT, "rank");
    /* padded rows (a leading dimension) are fine */
    moe_tensor wide = test_tensor2(MOE_DTYPE_F32, 4, 24);
    test_fill_normal(&wide, 1.0);
    wide.shape[1] = 16;
    CHECK_OK(moe_silu_and_mul(ctx, &wide, &out, NULL));
    /* an empty tensor may have NULL data */
    moe_tensor e_in = moe_tensor_2d(NULL, MOE_DTYPE_F32, 0, 16);
    moe_tensor e_out = moe_tensor_2d(NULL, MOE_DTYPE_F32, 0, 8);
    CHECK_OK(moe_silu_and_mul(ctx, &e_in, &e_out, NULL));
}

void suite_api(void) {
    RUN(test_status_strings);
    RUN(test_dtypes);
    RUN(test_context);
    RUN(test_tensor_checks);
}
