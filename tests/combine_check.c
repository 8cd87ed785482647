/* The combine tests' shared inputs (tests/combine_check.h). */
#include "combine_check.h"

#include "harness.h"

moe_tensor combine_random_weights(int64_t tokens, int64_t kp, int64_t ld, double lo,
                                  double hi) {
    moe_tensor w = test_tensor2(MOE_DTYPE_F32, tokens, ld);
    w.shape[1] = kp;
    for (int64_t t = 0; t < tokens; t++)
        for (int64_t j = 0; j < kp; j++) test_set(&w, t, j, 0, rng_uniform(lo, hi));
    return w;
}

moe_tensor combine_random_inv_perm(int64_t pairs, int64_t rows, int skip_percent) {
    moe_tensor inv = test_tensor1(MOE_DTYPE_I32, pairs);
    int64_t n = rows > pairs ? rows : pairs;
    int32_t *pool = test_alloc((size_t)n * sizeof(int32_t));
    for (int64_t r = 0; r < rows; r++) pool[r] = (int32_t)r;
    for (int64_t r = rows - 1; r > 0; r--) {
        int64_t s = rng_int(0, r);
        int32_t tmp = pool[r];
        pool[r] = pool[s];
        pool[s] = tmp;
    }
    for (int64_t p = 0; p < pairs; p++) {
        int32_t row = p < rows ? pool[p] : -1;
        if (rng_int(0, 99) < skip_percent) row = -1;
        test_set_i32(&inv, p, 0, row);
    }
    return inv;
}

moe_tensor combine_edge_inv_perm(int64_t tokens, int64_t kp, int64_t rows) {
    int64_t pairs = tokens * kp;
    moe_tensor inv = test_tensor1(MOE_DTYPE_I32, pairs);
    for (int64_t p = 0; p < pairs; p++)
        test_set_i32(&inv, p, 0, (int32_t)rng_int(-2, pairs + 5));
    const int32_t edges[] = {(int32_t)rows - 1, (int32_t)rows,      (int32_t)tokens - 1,
                             (int32_t)tokens,   (int32_t)pairs - 1, INT32_MAX,
                             INT32_MIN,         0,                  -1};
    for (int i = 0; i < 9; i++) test_set_i32(&inv, 3 + 7 * i, 0, edges[i]);
    int between = 0, beyond = 0;
    for (int64_t p = 0; p < pairs; p++) {
        int32_t r = test_get_i32(&inv, p, 0);
        between += r >= tokens && r < rows;
        beyond += r >= rows;
    }
    CHECK(between > 10 && beyond > 10, "the data has rows in [T, R) (%d) and >= R (%d)",
          between, beyond);
    return inv;
}
