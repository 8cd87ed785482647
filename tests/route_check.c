/* The routing tests' shared checks (tests/route_check.h). */
#include "route_check.h"

#include <string.h>

#include "harness.h"

const grouped_shape route_grouped_models[] = {
    {"DeepSeek-V3", 256, 8, 4, 8, 2.5f, 1},
    {"Kimi K2", 384, 1, 1, 8, 2.827f, 1},
    {"Kimi-VL", 64, 1, 1, 6, 2.446f, 2},
    {"GLM-4.5", 160, 1, 1, 8, 2.5f, 1},
    {"E512 k16", 512, 16, 4, 16, 1.5f, 0},
};
const size_t route_grouped_model_count =
    sizeof route_grouped_models / sizeof route_grouped_models[0];

int route_is_poison(const moe_tensor *t, int64_t i, int64_t j) {
    uint32_t bits;
    memcpy(&bits, (const char *)t->data + (i * t->stride[0] + j) * 4, 4);
    return t->dtype == MOE_DTYPE_I32 ? bits == (uint32_t)POISON_I32 : bits == POISON_F32_BITS;
}

int route_padding_intact(const moe_tensor *t) {
    for (int64_t i = 0; i < t->shape[0]; i++)
        for (int64_t j = t->shape[1]; j < t->stride[0]; j++)
            if (!route_is_poison(t, i, j)) return 0;
    return 1;
}

/* Tokens compared and skipped over all runs of one test. */
static int64_t all_tokens, all_skipped;

void route_check_tally(const tally *y, const char *what) {
    CHECK(y->bad == 0, "%s: %lld mismatches, first %s", what, (long long)y->bad, y->first);
    all_tokens += y->tokens;
    all_skipped += y->skipped;
}

void route_check_skipped(const char *what) {
    CHECK(all_skipped * 50 < all_tokens, "%s: %lld of %lld tokens skipped as near-ties", what,
          (long long)all_skipped, (long long)all_tokens);
    all_tokens = all_skipped = 0;
}
