/* What the CPU and CUDA routing tests share: the model shapes they both run, poisoned
 * row padding, and the tally of compared and near-tie tokens. */
#ifndef MOE_TESTS_ROUTE_CHECK_H
#define MOE_TESTS_ROUTE_CHECK_H

#include <stddef.h>
#include <stdint.h>

#include "moe.h"

/* Poison bit patterns of the harness's i32 and f32 outputs (test_poison, test_tensor,
 * test_device_like). */
#define POISON_I32 0x7BADBAD7
#define POISON_F32_BITS 0xFFFFFFFFu

/* A grouped-routing model: E experts in g groups, topk_group tg, k, scale r, s shared. */
typedef struct grouped_shape {
    const char *name;
    int32_t e, g, tg, k;
    float r;
    int32_t s;
} grouped_shape;

/* DeepSeek-V3, Kimi K2, Kimi-VL, GLM-4.5 and an E=512, k=16 stress shape. */
extern const grouped_shape route_grouped_models[];
extern const size_t route_grouped_model_count;

/* Whether element (i, j) of t (i32 or f32) still holds the poison. */
int route_is_poison(const moe_tensor *t, int64_t i, int64_t j);

/* Whether the padding after each row of t (i32 or f32, stride[0] > shape[1]) is still
 * the harness's poison, i.e. nothing was written past a row. */
int route_padding_intact(const moe_tensor *t);

/* Mismatches and near-tie skips of one run. */
typedef struct tally {
    int64_t tokens, skipped, bad;
    char first[320]; /* the first mismatch */
} tally;

/* Fails the test if y has mismatches (naming the first), and adds y's tokens and skips to
 * the test's totals. */
void route_check_tally(const tally *y, const char *what);

/* Fails the test if 2% or more of the tokens since the last call were skipped as
 * near-ties (rare at these shapes, mostly where sigmoid saturates near 1; many skips would
 * hide a real ordering bug), then starts new totals. */
void route_check_skipped(const char *what);

#endif
