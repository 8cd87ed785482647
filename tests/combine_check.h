/* What the CPU and CUDA combine tests share. */
#ifndef MOE_TESTS_COMBINE_CHECK_H
#define MOE_TESTS_COMBINE_CHECK_H

#include <stdint.h>

#include "moe.h"

/* weights [tokens, kp] f32, rows ld apart (ld >= kp), uniform in [lo, hi). */
moe_tensor combine_random_weights(int64_t tokens, int64_t kp, int64_t ld, double lo, double hi);

/* inv_perm [pairs] naming distinct rows of [0, rows) (as a plan would), then -1 for the
 * pairs past rows and for about skip_percent % of all. */
moe_tensor combine_random_inv_perm(int64_t pairs, int64_t rows, int skip_percent);

/* inv_perm [tokens * kp] i32 for y of `rows` rows: random entries in [-2, tokens*kp + 5)
 * and, at fixed places, the edges rows - 1, rows, tokens - 1, tokens, tokens*kp - 1,
 * INT32_MAX, INT32_MIN, 0 and -1. Checks that some entries fall in [tokens, rows) (to be
 * summed) and some at or past rows (to be skipped). Freed after the test. */
moe_tensor combine_edge_inv_perm(int64_t tokens, int64_t kp, int64_t rows);

#endif
