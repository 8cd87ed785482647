/* CPU reference grouped GEMM (SPEC 4): contiguous and masked layouts, FP8 blockwise and
 * BF16 inputs, bf16 or f16 output.
 *
 * Order of the arithmetic, fixed so that a result never depends on the thread count or the
 * tiling. For output (r, n) of expert e:
 *   FP8:  acc = 0; then for each 128-wide K block b in ascending order
 *             p   = 0 + A[r,k0]*B[e,n,k0] + A[r,k0+1]*B[e,n,k0+1] + ... (ascending kappa)
 *             s   = SA[r,b] * SB[e, n/128, b]
 *             acc = acc + p * s
 *   BF16: acc = 0 + A[r,0]*B[e,n,0] + A[r,1]*B[e,n,1] + ... (one f32 sum over all of K)
 *   D[r,n] = acc rounded once to D's dtype (RNE).
 * Every step is one f32 operation (GCC does not contract them into FMAs in this build's
 * ISO C mode). Each output element is computed by one thread.
 *
 * Rows of expert e: contiguous, [offsets[e], offsets[e+1]) clamped to [0, R]; an expert's
 * range starts no earlier than the end of every earlier expert's range, so offsets that
 * decrease (invalid input) can never make two experts write one row. Masked, the first
 * min(counts[e], C) rows (a negative count is 0). Rows of no expert are not written.
 *
 * Speed: the work is cut into tiles of up to TILE_M rows x TILE_N columns of one expert,
 * walked one K block at a time; the block's A rows and B columns are converted to f32 into
 * stack buffers (B transposed so the inner loop runs over contiguous columns and
 * vectorises). Experts without rows cost nothing. */
#include "cpu.h"

#ifdef _OPENMP
#include <omp.h>
#endif

#define SCALE_BLOCK 128    /* FP8 scales cover 128 columns of K (and of N for B) */
#define TILE_K SCALE_BLOCK /* so a K block has one scale per row */
#define TILE_N 64          /* divides SCALE_BLOCK: a tile's columns share one b_scales entry */
#define TILE_M 16

/* What every expert shares. */
typedef struct gemm_args {
    int masked;
    int fp8;
    const float *lut; /* e4m3 code -> f32 (FP8) */
    int64_t n, k, rows; /* rows: R, or C when masked */
    const moe_tensor *a, *a_scales, *b, *b_scales, *d;
    moe_scale_layout a_layout;
    const moe_tensor *bounds; /* offsets [E+1] or counts [E] */
} gemm_args;

/* One expert's rows: where its A rows, their scales and its D rows start. */
typedef struct gemm_rows {
    int64_t count;
    const char *a;   /* row i at a + i * a_ld bytes */
    int64_t a_ld;
    const float *sa; /* SA of (row i, K block b) at sa[i * sa_row + b * sa_block] */
    int64_t sa_row, sa_block;
    char *d;         /* row i at d + i * d_ld bytes */
    int64_t d_ld;
} gemm_rows;

/* f32 scratch of one tile: B transposed ([TILE_K][TILE_N]), A ([TILE_M][TILE_K]), the
 * accumulators ([TILE_M][TILE_N]) and one row's block partial sums. About 44 KiB of stack. */
typedef struct gemm_scratch {
    float bt[TILE_K * TILE_N];
    float at[TILE_M * TILE_K];
    float acc[TILE_M * TILE_N];
    float part[TILE_N];
} gemm_scratch;

static int64_t min64(int64_t a, int64_t b) { return a < b ? a : b; }
static int64_t max64(int64_t a, int64_t b) { return a > b ? a : b; }

static int64_t elem_bytes(const moe_tensor *t) { return (int64_t)moe_dtype_size(t->dtype); }

/* moe_cpu_at, except that an empty tensor (K = 0) may have no data to point into. */
static void *at_or_null(const moe_tensor *t, int64_t i0, int64_t i1, int64_t i2) {
    return t->data ? moe_cpu_at(t, i0, i1, i2) : NULL;
}

/* ------------------------------------------------------------------ which rows */

/* Row r0.. of expert e in the contiguous layout, or row 0.. of expert e when masked. */
static void locate_rows(const gemm_args *g, int64_t e, int64_t r0, int64_t count,
                        gemm_rows *rows) {
    const moe_tensor *a = g->a, *d = g->d, *s = g->a_scales;
    int lead = g->masked; /* the masked layout's leading expert dimension */
    int64_t i0 = g->masked ? e : r0, i1 = g->masked ? r0 : 0;
    rows->count = count;
    rows->a = (const char *)at_or_null(a, i0, i1, 0);
    rows->a_ld = a->stride[lead] * elem_bytes(a);
    rows->d = (char *)moe_cpu_at(d, i0, i1, 0);
    rows->d_ld = d->stride[lead] * elem_bytes(d);
    rows->sa = NULL;
    if (!g->fp8) return;
    int row_dim = lead + (g->a_layout == MOE_SCALES_ROW_MAJOR ? 0 : 1);
    int block_dim = lead + (g->a_layout == MOE_SCALES_ROW_MAJOR ? 1 : 0);
    int64_t idx[3] = {0, 0, 0};
    if (g->masked) idx[0] = e;
    idx[row_dim] = r0;
    rows->sa = (const float *)at_or_null(s, idx[0], idx[1], idx[2]);
    rows->sa_row = s->stride[row_dim];
    rows->sa_block = s->stride[block_dim];
}

/* The rows of expert e, or 0 if it has none. claimed is the end of the earlier experts'
 * ranges, carried from expert to expert (contiguous layout). */
static int64_t expert_rows(const gemm_args *g, int64_t e, int64_t *claimed, gemm_rows *rows) {
    int64_t r0 = 0, r1;
    if (g->masked) {
        r1 = min64(max64(moe_cpu_i32(g->bounds, e, 0), 0), g->rows);
    } else {
        r0 = min64(max64(moe_cpu_i32(g->bounds, e, 0), 0), g->rows);
        r1 = min64(max64(moe_cpu_i32(g->bounds, e + 1, 0), 0), g->rows);
        r0 = max64(r0, *claimed);
        *claimed = max64(*claimed, r1);
    }
    if (r1 <= r0) return 0;
    locate_rows(g, e, r0, r1 - r0, rows);
    return r1 - r0;
}

/* ------------------------------------------------------------------ one tile */

/* dst[c * step] = f32(src[c]) for c < len: e4m3 through the table, bf16 by a shift. Two
 * loops rather than a per-element branch so each one stays tight. */
static void to_f32(const gemm_args *g, const char *src, int64_t len, float *dst, int64_t step) {
    if (g->fp8) {
        const uint8_t *q = (const uint8_t *)src;
        for (int64_t c = 0; c < len; c++) dst[c * step] = g->lut[q[c]];
    } else {
        const uint16_t *h = (const uint16_t *)src;
        for (int64_t c = 0; c < len; c++) dst[c * step] = moe_bf16_to_f32(h[c]);
    }
}

/* bt[c][j] = B[e, n0 + j, k0 + c] for c < len, j < nt. */
static void load_b(const gemm_args *g, int64_t e, int64_t n0, int64_t nt, int64_t k0,
                   int64_t len, float *bt) {
    for (int64_t j = 0; j < nt; j++)
        to_f32(g, (const char *)moe_cpu_at(g->b, e, n0 + j, k0), len, bt + j, TILE_N);
}

/* at[i][c] = A[row i0 + i, k0 + c] for i < mt, c < len. */
static void load_a(const gemm_args *g, const gemm_rows *rows, int64_t i0, int64_t mt,
                   int64_t k0, int64_t len, float *at) {
    int64_t off = k0 * elem_bytes(g->a);
    for (int64_t i = 0; i < mt; i++)
        to_f32(g, rows->a + (i0 + i) * rows->a_ld + off, len, at + i * TILE_K, 1);
}

/* sum[j] += a[c] * bt[c][j] for c = 0, 1, ..., len-1 in turn: each column's sum in
 * ascending K, vectorised across the columns. */
static void accumulate(float *restrict sum, const float *restrict a,
                       const float *restrict bt, int64_t len, int64_t nt) {
    for (int64_t c = 0; c < len; c++) {
        float x = a[c];
        const float *restrict col = bt + c * TILE_N;
        for (int64_t j = 0; j < nt; j++) sum[j] += x * col[j];
    }
}

/* One K block of the rows i0..i0+mt-1 of a tile into s->acc. */
static void tile_block(const gemm_args *g, int64_t e, const gemm_rows *rows, int64_t i0,
                       int64_t mt, int64_t n0, int64_t nt, int64_t k0, gemm_scratch *s) {
    int64_t len = min64(TILE_K, g->k - k0);
    load_b(g, e, n0, nt, k0, len, s->bt);
    load_a(g, rows, i0, mt, k0, len, s->at);
    for (int64_t i = 0; i < mt; i++) {
        float *acc = s->acc + i * TILE_N;
        if (!g->fp8) {
            accumulate(acc, s->at + i * TILE_K, s->bt, len, nt);
            continue;
        }
        int64_t b = k0 / SCALE_BLOCK;
        float sb = *(const float *)moe_cpu_at(g->b_scales, e, n0 / SCALE_BLOCK, b);
        float scale = rows->sa[(i0 + i) * rows->sa_row + b * rows->sa_block] * sb;
        for (int64_t j = 0; j < nt; j++) s->part[j] = 0.0f;
        accumulate(s->part, s->at + i * TILE_K, s->bt, len, nt);
        for (int64_t j = 0; j < nt; j++) acc[j] += s->part[j] * scale;
    }
}

/* Columns n0..n0+nt-1 of every row of expert e. */
static void run_tile(const gemm_args *g, int64_t e, const gemm_rows *rows, int64_t n0,
                     int64_t nt) {
    gemm_scratch s;
    moe_dtype out = g->d->dtype;
    for (int64_t i0 = 0; i0 < rows->count; i0 += TILE_M) {
        int64_t mt = min64(TILE_M, rows->count - i0);
        for (int64_t x = 0; x < mt * TILE_N; x++) s.acc[x] = 0.0f;
        for (int64_t k0 = 0; k0 < g->k; k0 += TILE_K)
            tile_block(g, e, rows, i0, mt, n0, nt, k0, &s);
        for (int64_t i = 0; i < mt; i++) {
            char *drow = rows->d + (i0 + i) * rows->d_ld;
            const float *acc = s.acc + i * TILE_N;
            for (int64_t j = 0; j < nt; j++) moe_cpu_store(out, drow, n0 + j, acc[j]);
        }
    }
}

/* ------------------------------------------------------------------ the whole GEMM */

/* Tiles are dealt to threads round-robin in (expert, column tile) order, skipping experts
 * without rows. Each thread walks the experts itself so the contiguous layout's running
 * "claimed" needs no shared state. */
static void run_gemm(const gemm_args *g) {
    int64_t experts = g->b->shape[0];
    int64_t tiles = (g->n + TILE_N - 1) / TILE_N;
    if (tiles == 0 || g->rows == 0) return;
#pragma omp parallel
    {
        int64_t thread = 0, threads = 1;
#ifdef _OPENMP
        thread = omp_get_thread_num();
        threads = omp_get_num_threads();
#endif
        int64_t claimed = 0, next = 0;
        for (int64_t e = 0; e < experts; e++) {
            gemm_rows rows;
            if (expert_rows(g, e, &claimed, &rows) == 0) continue;
            for (int64_t t = 0; t < tiles; t++, next++) {
                if (next % threads != thread) continue;
                int64_t n0 = t * TILE_N;
                run_tile(g, e, &rows, n0, min64(TILE_N, g->n - n0));
            }
        }
    }
}

/* e4m3 code -> f32, built per call so there is no global state to initialise. */
static void e4m3_table(float lut[256]) {
    for (int c = 0; c < 256; c++) lut[c] = moe_e4m3_to_f32((uint8_t)c);
}

static moe_status gemm(int masked, const moe_tensor *a, const moe_tensor *a_scales,
                       moe_scale_layout a_layout, const moe_tensor *b,
                       const moe_tensor *b_scales, const moe_tensor *bounds, moe_tensor *d) {
    float lut[256];
    gemm_args g = {
        .masked = masked,
        .fp8 = a->dtype == MOE_DTYPE_E4M3,
        .lut = lut,
        .n = b->shape[1],
        .k = b->shape[2],
        .rows = a->shape[masked ? 1 : 0],
        .a = a, .a_scales = a_scales, .b = b, .b_scales = b_scales, .d = d,
        .a_layout = a_layout,
        .bounds = bounds,
    };
    if (g.fp8) e4m3_table(lut);
    run_gemm(&g);
    return MOE_OK;
}

moe_status moe_cpu_grouped_gemm_workspace_size(moe_context *ctx, int32_t num_experts,
                                               size_t *bytes) {
    (void)ctx;
    (void)num_experts;
    *bytes = 0;
    return MOE_OK;
}

moe_status moe_cpu_grouped_gemm(moe_context *ctx, const moe_tensor *a,
                                const moe_tensor *a_scales, moe_scale_layout a_layout,
                                const moe_tensor *b, const moe_tensor *b_scales,
                                const moe_tensor *offsets, moe_tensor *d, void *workspace,
                                size_t workspace_bytes, void *stream) {
    (void)ctx;
    (void)workspace;
    (void)workspace_bytes;
    (void)stream;
    return gemm(0, a, a_scales, a_layout, b, b_scales, offsets, d);
}

moe_status moe_cpu_grouped_gemm_masked(moe_context *ctx, const moe_tensor *a,
                                       const moe_tensor *a_scales, moe_scale_layout a_layout,
                                       const moe_tensor *b, const moe_tensor *b_scales,
                                       const moe_tensor *counts, moe_tensor *d,
                                       void *workspace, size_t workspace_bytes, void *stream) {
    (void)ctx;
    (void)workspace;
    (void)workspace_bytes;
    (void)stream;
    return gemm(1, a, a_scales, a_layout, b, b_scales, counts, d);
}
