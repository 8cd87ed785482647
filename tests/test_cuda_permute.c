/* The CUDA permutation ops against the CPU reference (SPEC 2), bit for bit: both plans,
 * problem sizes and the row gather, on the same random inputs (ids with -1 and
 * out-of-range values), at decode and prefill sizes of DeepSeek-V3-like models
 * (k' = 9, E' = 257 and 385) and at the edges of the kernels' own structure (one block
 * vs several, 4096-pair chunks, shared-memory opt-in). Every output is poisoned and
 * carries poisoned elements past its end (and between strided rows) that must survive. */
#include <string.h>

#include "guarded_buffer.h"
#include "harness.h"

#ifdef MOE_HAVE_CUDA
#include <cuda_runtime_api.h>
#endif

#define POISON_I32 0x7BADBAD7
#define GUARD 8 /* poisoned elements past the end of every output */

/* ---------------------------------------------------------------- data */

/* Mostly a valid expert; sometimes -1 (non-local) or another id outside [0, E). */
static int32_t random_id(int32_t experts) {
    int64_t u = rng_int(0, 99);
    if (u < 5) return -1;
    if (u < 7) return (int32_t)(experts + rng_int(0, 3));
    if (u == 7) return rng_int(0, 1) ? INT32_MAX : INT32_MIN;
    if (u == 8) return (int32_t)-rng_int(2, 1000);
    return (int32_t)rng_int(0, experts - 1);
}

/* ids [T, k'] whose rows are ld >= k' apart; the padding holds expert 0, so a kernel that
 * read it would place pairs that do not exist. */
static moe_tensor random_ids_ld(int64_t tokens, int32_t kp, int64_t ld, int32_t experts) {
    moe_tensor ids = test_tensor2(MOE_DTYPE_I32, tokens, ld);
    memset(ids.data, 0, (size_t)(tokens * ld) * sizeof(int32_t));
    ids.shape[1] = kp;
    for (int64_t t = 0; t < tokens; t++)
        for (int32_t j = 0; j < kp; j++) test_set_i32(&ids, t, j, random_id(experts));
    return ids;
}

static moe_tensor random_ids(int64_t tokens, int32_t kp, int32_t experts) {
    return random_ids_ld(tokens, kp, kp, experts);
}

static moe_tensor constant_ids(int64_t tokens, int32_t kp, int32_t id) {
    moe_tensor ids = test_tensor2(MOE_DTYPE_I32, tokens, kp);
    for (int64_t t = 0; t < tokens; t++)
        for (int32_t j = 0; j < kp; j++) test_set_i32(&ids, t, j, id);
    return ids;
}

/* ---------------------------------------------------------------- buffers */

/* An i32 output of n elements (or [n0, n1] with rows ld apart) inside a buffer of
 * span + GUARD elements, all poisoned; full describes the whole buffer. One is made on
 * the host for the CPU op and one on the device for the CUDA op. */
typedef struct {
    moe_tensor view, full;
} guarded;

static guarded host_i32(int rank, int64_t n0, int64_t n1, int64_t ld) {
    int64_t span = rank == 1 ? n0 : (n0 > 0 ? (n0 - 1) * ld + n1 : 0);
    guarded g;
    g.full = test_tensor1(MOE_DTYPE_I32, span + GUARD);
    g.view = g.full;
    if (rank == 1) {
        g.view.shape[0] = n0;
    } else {
        g.view = moe_tensor_2d(g.full.data, MOE_DTYPE_I32, n0, n1);
        g.view.stride[0] = ld;
    }
    return g;
}

static guarded device_of(const guarded *h) {
    guarded d;
    d.full = test_to_device(&h->full); /* carries the poison */
    d.view = h->view;
    d.view.data = d.full.data;
    return d;
}

/* The device buffer's whole content, guards included. */
static const int32_t *fetch_i32(const guarded *d) {
    moe_tensor h = d->full;
    h.data = test_alloc((size_t)d->full.shape[0] * sizeof(int32_t));
    test_to_host(&d->full, &h);
    return h.data;
}

/* Equal element for element, guards included; names the first difference. */
static void check_same_i32(const int32_t *got, const int32_t *want, int64_t n,
                           const char *what, const char *where) {
    int64_t d = -1;
    for (int64_t i = 0; i < n && d < 0; i++)
        if (got[i] != want[i]) d = i;
    CHECK(d < 0, "%s: %s[%lld] = %d (0x%x), CPU %d (0x%x)", where, what, (long long)d,
          d < 0 ? 0 : got[d], d < 0 ? 0u : (unsigned)got[d], d < 0 ? 0 : want[d],
          d < 0 ? 0u : (unsigned)want[d]);
}

static void *gpu_workspace(moe_context *gpu, const moe_tensor *ids, int32_t experts,
                           size_t *bytes) {
    CHECK_OK(moe_permute_workspace_size(gpu, ids->shape[0], (int32_t)ids->shape[1], experts,
                                        bytes));
    return *bytes ? test_device_alloc(*bytes) : NULL; /* 0xFF: the op must not trust it */
}

static void *cpu_workspace(const moe_tensor *ids, int32_t experts, size_t *bytes) {
    CHECK_OK(moe_permute_workspace_size(test_cpu(), ids->shape[0], (int32_t)ids->shape[1],
                                        experts, bytes));
    return test_alloc(*bytes);
}

/* ---------------------------------------------------------------- contiguous plan */

/* The CUDA plan of ids equals the CPU plan, guards included. A workspace may be passed
 * in (to reuse a dirty one); NULL makes a fresh poisoned one. */
static void compare_plan_ws(moe_context *gpu, const moe_tensor *ids, int32_t experts,
                            int32_t align, int with_counts, void *gws, size_t gbytes,
                            const char *what) {
    int64_t tokens = ids->shape[0], kp = ids->shape[1], pairs = tokens * kp;
    int64_t rmax = moe_permute_max_rows(tokens, (int32_t)kp, experts, align);
    char where[160];
    snprintf(where, sizeof where, "%s (T %lld, k' %lld, E' %d, A %d%s)", what,
             (long long)tokens, (long long)kp, (int)experts, (int)align,
             with_counts ? "" : ", no counts");

    guarded c = host_i32(1, experts, 0, 0), o = host_i32(1, experts + 1, 0, 0);
    guarded p = host_i32(1, rmax, 0, 0), v = host_i32(1, pairs, 0, 0);
    guarded dc = device_of(&c), dof = device_of(&o), dp = device_of(&p), dv = device_of(&v);
    size_t cbytes;
    void *cws = cpu_workspace(ids, experts, &cbytes);
    CHECK_OK(moe_permute_plan(test_cpu(), ids, experts, align, with_counts ? &c.view : NULL,
                              &o.view, &p.view, &v.view, cws, cbytes, NULL));

    moe_tensor dids = test_to_device(ids);
    if (!gws) gws = gpu_workspace(gpu, ids, experts, &gbytes);
    moe_status s = moe_permute_plan(gpu, &dids, experts, align, with_counts ? &dc.view : NULL,
                                    &dof.view, &dp.view, &dv.view, gws, gbytes, NULL);
    CHECK(s == MOE_OK, "%s: %s: %s", where, moe_status_string(s), moe_last_error());
    if (s != MOE_OK) return;
    check_same_i32(fetch_i32(&dc), c.full.data, experts + GUARD, "counts", where);
    check_same_i32(fetch_i32(&dof), o.full.data, experts + 1 + GUARD, "offsets", where);
    check_same_i32(fetch_i32(&dp), p.full.data, rmax + GUARD, "perm", where);
    check_same_i32(fetch_i32(&dv), v.full.data, pairs + GUARD, "inv_perm", where);
}

static void compare_plan(moe_context *gpu, const moe_tensor *ids, int32_t experts,
                         int32_t align, int with_counts, const char *what) {
    compare_plan_ws(gpu, ids, experts, align, with_counts, NULL, 0, what);
}

/* T from decode to prefill, both DeepSeek-V3-like expert counts, three alignments. The
 * first three T take the one-block path, 512 and up the three-launch path. */
static void test_cuda_plan_shapes(void) {
    moe_context *gpu = test_gpu();
    if (!gpu) return;
    const int64_t ts[] = {0, 1, 32, 512, 4096, 16384};
    const int32_t es[] = {257, 385}, aligns[] = {1, 16, 128};
    for (int ti = 0; ti < 6; ti++)
        for (int ei = 0; ei < 2; ei++) {
            moe_tensor ids = random_ids(ts[ti], 9, es[ei]);
            for (int a = 0; a < 3; a++) compare_plan(gpu, &ids, es[ei], aligns[a], 1, "random");
            compare_plan(gpu, &ids, es[ei], 16, 0, "random");
        }
}

static void test_cuda_plan_edges(void) {
    moe_context *gpu = test_gpu();
    if (!gpu) return;
    const int32_t aligns[] = {1, 128};
    for (int a = 0; a < 2; a++) {
        int32_t al = aligns[a];
        /* every pair on one expert: one block's and 9 blocks' worth, first and last expert */
        moe_tensor one_s = constant_ids(32, 9, 0), one_l = constant_ids(4096, 9, 256);
        compare_plan(gpu, &one_s, 257, al, 1, "one expert");
        compare_plan(gpu, &one_l, 257, al, 1, "one expert");
        moe_tensor one_m = constant_ids(4096, 9, 0);
        compare_plan(gpu, &one_m, 385, al, 1, "one expert");
        /* every pair skipped; id == E' */
        moe_tensor skip_s = constant_ids(20, 9, -1), skip_l = constant_ids(2000, 9, 257);
        compare_plan(gpu, &skip_s, 257, al, 1, "all skipped");
        compare_plan(gpu, &skip_l, 257, al, 1, "all skipped");
        /* most experts empty */
        moe_tensor sparse = test_tensor2(MOE_DTYPE_I32, 4096, 9);
        for (int64_t t = 0; t < 4096; t++)
            for (int j = 0; j < 9; j++)
                test_set_i32(&sparse, t, j, (int32_t)(rng_int(0, 2) * 128));
        compare_plan(gpu, &sparse, 257, al, 1, "sparse experts");
        moe_tensor sparse_s = test_tensor2(MOE_DTYPE_I32, 64, 9);
        memcpy(sparse_s.data, sparse.data, 64 * 9 * sizeof(int32_t));
        compare_plan(gpu, &sparse_s, 257, al, 1, "sparse experts");
        /* E' not a multiple of 4 or 16 */
        const int64_t ts75[] = {1, 512, 16384};
        for (int i = 0; i < 3; i++) {
            moe_tensor ids = random_ids(ts75[i], 9, 75);
            compare_plan(gpu, &ids, 75, al, 1, "E' = 75");
            compare_plan(gpu, &ids, 75, 16, 1, "E' = 75");
        }
    }
    /* E' = 1 and k' = 1, in one block and in several */
    moe_tensor single = random_ids(50, 1, 1), single_l = random_ids(10000, 1, 1);
    compare_plan(gpu, &single, 1, 1, 1, "E' = 1");
    compare_plan(gpu, &single_l, 1, 1, 1, "E' = 1");
    compare_plan(gpu, &single_l, 1, 128, 0, "E' = 1");
    moe_tensor odd = random_ids(37, 3, 5), odd_l = random_ids(5001, 2, 8);
    compare_plan(gpu, &odd, 5, 4, 1, "few experts");
    compare_plan(gpu, &odd_l, 8, 4, 1, "few experts");
    /* either side of one 4096-pair chunk, and of one 32-pair slice */
    const int64_t tk[][2] = {{4096, 1}, {4097, 1}, {455, 9}, {456, 9}, {1, 31}, {1, 33},
                             {8193, 1}};
    for (int i = 0; i < 7; i++) {
        moe_tensor ids = random_ids(tk[i][0], (int32_t)tk[i][1], 257);
        compare_plan(gpu, &ids, 257, 1, 1, "chunk edge");
        compare_plan(gpu, &ids, 257, 16, 1, "chunk edge");
    }
    /* a small problem whose perm is too large for one block to fill (A = 1024) */
    moe_tensor dec = random_ids(32, 9, 385);
    compare_plan(gpu, &dec, 385, 1024, 1, "decode, large Rmax");
    /* ids with padded rows */
    moe_tensor strided = random_ids_ld(512, 9, 12, 257);
    moe_tensor strided_l = random_ids_ld(6000, 9, 16, 385);
    compare_plan(gpu, &strided, 257, 16, 1, "strided ids");
    compare_plan(gpu, &strided_l, 385, 16, 1, "strided ids");
}

/* E' beyond 48 KB of per-warp counters (shared-memory opt-in) and far beyond the device. */
static void test_cuda_plan_many_experts(void) {
    moe_context *gpu = test_gpu();
    if (!gpu) return;
    moe_tensor s1000 = random_ids(32, 9, 1000), l1000 = random_ids(4096, 9, 1000);
    compare_plan(gpu, &s1000, 1000, 1, 1, "E' = 1000");
    compare_plan(gpu, &l1000, 1000, 16, 1, "E' = 1000");
    moe_tensor l3000 = random_ids(4096, 9, 3000);
    compare_plan(gpu, &l3000, 3000, 1, 1, "E' = 3000");

    int32_t huge = 1 << 20;
    moe_tensor ids = random_ids(4, 2, huge), dids = test_to_device(&ids);
    int64_t rmax = moe_permute_max_rows(4, 2, huge, 1);
    moe_tensor hoff = test_tensor1(MOE_DTYPE_I32, (int64_t)huge + 1);
    moe_tensor hperm = test_tensor1(MOE_DTYPE_I32, rmax), hinv = test_tensor1(MOE_DTYPE_I32, 8);
    moe_tensor off = test_device_like(&hoff), perm = test_device_like(&hperm);
    moe_tensor inv = test_device_like(&hinv);
    size_t bytes;
    void *ws = gpu_workspace(gpu, &ids, huge, &bytes);
    CHECK_ERR(moe_permute_plan(gpu, &dids, huge, 1, NULL, &off, &perm, &inv, ws, bytes, NULL),
              MOE_ERR_UNSUPPORTED, "num_experts");
}

/* A workspace left dirty by another plan (and other ids) gives the same results. */
static void test_cuda_plan_reuse(void) {
    moe_context *gpu = test_gpu();
    if (!gpu) return;
    moe_tensor a = random_ids(16384, 9, 257), b = random_ids(16384, 9, 257);
    size_t bytes;
    void *ws = gpu_workspace(gpu, &a, 257, &bytes);
    compare_plan_ws(gpu, &a, 257, 128, 1, ws, bytes, "reused workspace");
    compare_plan_ws(gpu, &b, 257, 1, 1, ws, bytes, "reused workspace");
    compare_plan_ws(gpu, &b, 257, 1, 1, ws, bytes, "same plan again");
    moe_tensor small = random_ids(100, 9, 257);
    compare_plan_ws(gpu, &small, 257, 16, 1, ws, bytes, "smaller T, larger workspace");
}

/* ---------------------------------------------------------------- masked plan */

static void compare_masked_ld(moe_context *gpu, const moe_tensor *ids, int32_t experts,
                              int64_t cap, int64_t ld, const char *what) {
    int64_t tokens = ids->shape[0], kp = ids->shape[1], pairs = tokens * kp;
    char where[160];
    snprintf(where, sizeof where, "%s (T %lld, k' %lld, E' %d, C %lld, ld %lld)", what,
             (long long)tokens, (long long)kp, (int)experts, (long long)cap, (long long)ld);
    guarded c = host_i32(1, experts, 0, 0), p = host_i32(2, experts, cap, ld);
    guarded v = host_i32(1, pairs, 0, 0), of = host_i32(1, 1, 0, 0);
    guarded dc = device_of(&c), dp = device_of(&p), dv = device_of(&v), dof = device_of(&of);
    size_t cbytes, gbytes;
    void *cws = cpu_workspace(ids, experts, &cbytes);
    CHECK_OK(moe_permute_plan_masked(test_cpu(), ids, experts, cap, &c.view, &p.view, &v.view,
                                     &of.view, cws, cbytes, NULL));
    moe_tensor dids = test_to_device(ids);
    void *gws = gpu_workspace(gpu, ids, experts, &gbytes);
    moe_status s = moe_permute_plan_masked(gpu, &dids, experts, cap, &dc.view, &dp.view,
                                           &dv.view, &dof.view, gws, gbytes, NULL);
    CHECK(s == MOE_OK, "%s: %s: %s", where, moe_status_string(s), moe_last_error());
    if (s != MOE_OK) return;
    check_same_i32(fetch_i32(&dc), c.full.data, experts + GUARD, "masked counts", where);
    check_same_i32(fetch_i32(&dp), p.full.data, p.full.shape[0], "masked perm", where);
    check_same_i32(fetch_i32(&dv), v.full.data, pairs + GUARD, "masked inv_perm", where);
    check_same_i32(fetch_i32(&dof), of.full.data, 1 + GUARD, "overflow", where);
}

static void compare_masked(moe_context *gpu, const moe_tensor *ids, int32_t experts,
                           int64_t cap, const char *what) {
    compare_masked_ld(gpu, ids, experts, cap, cap, what);
}

/* Capacities 0, 1, half the mean load (most experts overflow) and twice it. */
static void test_cuda_masked_shapes(void) {
    moe_context *gpu = test_gpu();
    if (!gpu) return;
    const int64_t ts[] = {0, 1, 32, 512, 4096, 16384};
    const int32_t es[] = {257, 385};
    for (int ti = 0; ti < 6; ti++)
        for (int ei = 0; ei < 2; ei++) {
            moe_tensor ids = random_ids(ts[ti], 9, es[ei]);
            int64_t mean = ts[ti] * 9 / es[ei];
            const int64_t caps[] = {0, 1, mean / 2 > 1 ? mean / 2 : 2, 2 * mean + 8};
            for (int c = 0; c < 4; c++) compare_masked(gpu, &ids, es[ei], caps[c], "random");
        }
}

static void test_cuda_masked_edges(void) {
    moe_context *gpu = test_gpu();
    if (!gpu) return;
    /* one expert takes every pair: keeps exactly its first C */
    moe_tensor one = constant_ids(4096, 9, 7), one_s = constant_ids(100, 3, 15);
    const int64_t caps[] = {100, 36864, 36863, 36865};
    for (int c = 0; c < 4; c++) compare_masked(gpu, &one, 16, caps[c], "one expert");
    compare_masked(gpu, &one_s, 16, 50, "one expert");
    compare_masked(gpu, &one_s, 16, 300, "one expert");
    compare_masked(gpu, &one_s, 16, 299, "one expert");
    /* skipped pairs are not overflow */
    moe_tensor skipped = constant_ids(1000, 9, -1);
    compare_masked(gpu, &skipped, 8, 4, "all skipped");
    /* E' = 75, E' = 1 */
    moe_tensor e75 = random_ids(3000, 9, 75), e1 = random_ids(5000, 1, 1);
    compare_masked(gpu, &e75, 75, 100, "E' = 75");
    compare_masked(gpu, &e75, 75, 300, "E' = 75");
    compare_masked(gpu, &e1, 1, 4000, "E' = 1");
    compare_masked(gpu, &e1, 1, 6000, "E' = 1");
    /* rows of perm with padding between them (which must stay poisoned) */
    moe_tensor ids = random_ids(512, 9, 257), big = random_ids(8000, 9, 257);
    compare_masked_ld(gpu, &ids, 257, 12, 17, "strided perm");
    compare_masked_ld(gpu, &big, 257, 200, 203, "strided perm");
    compare_masked_ld(gpu, &ids, 257, 0, 3, "strided perm");
    /* a decode batch with a large capacity: the perm is too big for one block */
    moe_tensor dec = random_ids(32, 9, 257);
    compare_masked(gpu, &dec, 257, 1000, "decode, large C");
    /* many experts */
    moe_tensor m = random_ids(2000, 9, 1000);
    compare_masked(gpu, &m, 1000, 16, "E' = 1000");
    moe_tensor ms = random_ids(20, 9, 1000);
    compare_masked(gpu, &ms, 1000, 2, "E' = 1000");
}

/* ---------------------------------------------------------------- problem sizes */

static void test_cuda_problem_sizes(void) {
    moe_context *gpu = test_gpu();
    if (!gpu) return;
    const int32_t es[] = {1, 75, 257, 385};
    for (int i = 0; i < 4; i++) {
        int32_t e = es[i];
        moe_tensor counts = test_tensor1(MOE_DTYPE_I32, e);
        for (int32_t x = 0; x < e; x++) test_set_i32(&counts, x, 0, (int32_t)rng_int(0, 900));
        for (int ld = 3; ld <= 5; ld += 2) {
            guarded o = host_i32(2, e, 3, ld), d = device_of(&o);
            moe_tensor dcounts = test_to_device(&counts);
            CHECK_OK(moe_problem_sizes(test_cpu(), &counts, 4096, 7168, &o.view, NULL));
            CHECK_OK(moe_problem_sizes(gpu, &dcounts, 4096, 7168, &d.view, NULL));
            check_same_i32(fetch_i32(&d), o.full.data, o.full.shape[0], "problem sizes",
                           "problem_sizes");
        }
    }
}

/* ---------------------------------------------------------------- gather */

static void fill_random(moe_tensor *t) {
    for (int64_t r = 0; r < t->shape[0]; r++)
        for (int64_t c = 0; c < t->shape[1]; c++) test_set(t, r, c, 0, 4.0 * rng_normal());
}

/* The bytes of the device buffer equal the CPU's, padding and tail rows included. */
static void check_same_bytes(const padded *dev, const padded *host, const char *where) {
    size_t n = (size_t)host->full.shape[0] * moe_dtype_size(host->full.dtype);
    moe_tensor h = dev->full;
    h.data = test_alloc(n);
    test_to_host(&dev->full, &h);
    const unsigned char *g = h.data, *w = host->full.data;
    size_t d = n;
    for (size_t i = 0; i < n && d == n; i++)
        if (g[i] != w[i]) d = i;
    CHECK(d == n, "%s: byte %zu of %zu differs (0x%02x, CPU 0x%02x)", where, d, n,
          d < n ? g[d] : 0, d < n ? w[d] : 0);
}

static void compare_gather(moe_context *gpu, moe_dtype dt, int64_t tokens, int64_t h,
                           int64_t x_ld, int64_t x_shift, const moe_tensor *perm, int32_t topk,
                           int64_t out_ld, int64_t out_shift) {
    char where[160];
    snprintf(where, sizeof where,
             "gather %s (T %lld, H %lld, x ld %lld +%lld, R %lld, out ld %lld +%lld)",
             moe_dtype_name(dt), (long long)tokens, (long long)h, (long long)x_ld,
             (long long)x_shift, (long long)perm->shape[0], (long long)out_ld,
             (long long)out_shift);
    padded x = host_rows(dt, tokens, h, x_ld, x_shift, 0);
    fill_random(&x.view);
    padded o = host_rows(dt, perm->shape[0], h, out_ld, out_shift, 2);
    padded dx = device_rows(&x), dout = device_rows(&o);
    moe_tensor dperm = test_to_device(perm);
    CHECK_OK(moe_gather_rows(test_cpu(), &x.view, perm, topk, &o.view, NULL));
    moe_status s = moe_gather_rows(gpu, &dx.view, &dperm, topk, &dout.view, NULL);
    CHECK(s == MOE_OK, "%s: %s: %s", where, moe_status_string(s), moe_last_error());
    if (s == MOE_OK) check_same_bytes(&dout, &o, where);
}

static moe_tensor random_perm(int64_t rows, int64_t tokens, int32_t topk) {
    moe_tensor perm = test_tensor1(MOE_DTYPE_I32, rows);
    for (int64_t r = 0; r < rows; r++)
        test_set_i32(&perm, r, 0, (int32_t)rng_int(-3, tokens * topk + 20));
    const int32_t edges[] = {0, topk - 1, topk, (int32_t)(tokens * topk - 1),
                             (int32_t)(tokens * topk), -1, INT32_MAX, INT32_MIN};
    for (int i = 0; i < 8 && i * 13 < rows; i++) test_set_i32(&perm, i * 13, 0, edges[i]);
    return perm;
}

/* Every dtype; row lengths and strides that allow 16-, 8-, 4-, 2- and 1-byte copies;
 * shifted (16-byte-misaligned) starts of x and out. */
static void test_cuda_gather(void) {
    moe_context *gpu = test_gpu();
    if (!gpu) return;
    const moe_dtype dts[] = {MOE_DTYPE_F32, MOE_DTYPE_F16, MOE_DTYPE_BF16, MOE_DTYPE_E4M3};
    int64_t tokens = 64;
    int32_t topk = 9;
    moe_tensor perm = random_perm(700, tokens, topk);
    for (int d = 0; d < 4; d++) {
        compare_gather(gpu, dts[d], tokens, 256, 256, 0, &perm, topk, 256, 0);
        compare_gather(gpu, dts[d], tokens, 136, 144, 0, &perm, topk, 139, 0);
        compare_gather(gpu, dts[d], tokens, 136, 136, 1, &perm, topk, 136, 3);
        compare_gather(gpu, dts[d], tokens, 7, 9, 0, &perm, topk, 7, 1);
        compare_gather(gpu, dts[d], tokens, 1, 1, 0, &perm, topk, 2, 0);
        compare_gather(gpu, dts[d], tokens, 1000, 1024, 0, &perm, topk, 1000, 0);
    }
    /* no token exists: every row is zero; no rows at all */
    moe_tensor few = random_perm(5, 1, 1);
    compare_gather(gpu, MOE_DTYPE_BF16, 0, 32, 32, 0, &few, 1, 32, 0);
    moe_tensor none = test_tensor1(MOE_DTYPE_I32, 0);
    compare_gather(gpu, MOE_DTYPE_BF16, 4, 32, 32, 0, &none, 1, 32, 0);
    /* DeepSeek-V3's hidden size in e4m3, one decode batch */
    moe_tensor dec = random_perm(300, 32, 9);
    compare_gather(gpu, MOE_DTYPE_E4M3, 32, 7168, 7168, 0, &dec, 9, 7168, 0);
}

/* Gather by the CUDA plan's own perm at prefill size, padding rows included, then by a
 * CUDA masked perm viewed 1-D. */
static void test_cuda_gather_plan(void) {
    moe_context *gpu = test_gpu();
    if (!gpu) return;
    int64_t tokens = 16384, h = 256;
    int32_t kp = 9, experts = 257, align = 128;
    moe_tensor ids = random_ids(tokens, kp, experts), dids = test_to_device(&ids);
    int64_t rmax = moe_permute_max_rows(tokens, kp, experts, align);
    moe_tensor off = test_tensor1(MOE_DTYPE_I32, experts + 1);
    moe_tensor perm = test_tensor1(MOE_DTYPE_I32, rmax);
    moe_tensor inv = test_tensor1(MOE_DTYPE_I32, tokens * kp);
    moe_tensor doff = test_device_like(&off), dperm = test_device_like(&perm);
    moe_tensor dinv = test_device_like(&inv);
    size_t bytes;
    void *ws = gpu_workspace(gpu, &ids, experts, &bytes);
    CHECK_OK(moe_permute_plan(gpu, &dids, experts, align, NULL, &doff, &dperm, &dinv, ws, bytes,
                              NULL));
    test_to_host(&dperm, &perm);
    compare_gather(gpu, MOE_DTYPE_BF16, tokens, h, h, 0, &perm, kp, h, 0);

    int64_t cap = 300;
    moe_tensor counts = test_tensor1(MOE_DTYPE_I32, experts);
    moe_tensor mperm = test_tensor2(MOE_DTYPE_I32, experts, cap);
    moe_tensor of = test_tensor1(MOE_DTYPE_I32, 1);
    moe_tensor dcounts = test_device_like(&counts), dmperm = test_device_like(&mperm);
    moe_tensor dof = test_device_like(&of);
    CHECK_OK(moe_permute_plan_masked(gpu, &dids, experts, cap, &dcounts, &dmperm, &dinv, &dof,
                                     ws, bytes, NULL));
    test_to_host(&dmperm, &mperm);
    moe_tensor flat = moe_tensor_1d(mperm.data, MOE_DTYPE_I32, experts * cap);
    compare_gather(gpu, MOE_DTYPE_E4M3, tokens, 512, 512, 0, &flat, kp, 512, 0);
}

/* ---------------------------------------------------------------- timing (information) */

#ifdef MOE_HAVE_CUDA
/* Mean microseconds of one plan over 20 launches, printed for the first GPU runs; only
 * success is checked. */
static void time_plan(moe_context *gpu, int64_t tokens, int32_t experts, int32_t align,
                      int64_t cap) {
    int32_t kp = 9;
    moe_tensor ids = random_ids(tokens, kp, experts), dids = test_to_device(&ids);
    int64_t rmax = moe_permute_max_rows(tokens, kp, experts, align);
    moe_tensor c = test_tensor1(MOE_DTYPE_I32, experts);
    moe_tensor o = test_tensor1(MOE_DTYPE_I32, experts + 1);
    moe_tensor p = cap ? test_tensor2(MOE_DTYPE_I32, experts, cap)
                       : test_tensor1(MOE_DTYPE_I32, rmax);
    moe_tensor v = test_tensor1(MOE_DTYPE_I32, tokens * kp), of = test_tensor1(MOE_DTYPE_I32, 1);
    moe_tensor dc = test_device_like(&c), dof = test_device_like(&o), dp = test_device_like(&p);
    moe_tensor dv = test_device_like(&v), dovf = test_device_like(&of);
    size_t bytes;
    void *ws = gpu_workspace(gpu, &ids, experts, &bytes);
    cudaEvent_t start, stop;
    cudaEventCreate(&start);
    cudaEventCreate(&stop);
    moe_status s = MOE_OK;
    for (int it = -3; it < 20; it++) {
        if (it == 0) cudaEventRecord(start, NULL);
        s = cap ? moe_permute_plan_masked(gpu, &dids, experts, cap, &dc, &dp, &dv, &dovf, ws,
                                          bytes, NULL)
                : moe_permute_plan(gpu, &dids, experts, align, &dc, &dof, &dp, &dv, ws, bytes,
                                   NULL);
        if (s != MOE_OK) break;
    }
    cudaEventRecord(stop, NULL);
    cudaEventSynchronize(stop);
    float ms = 0;
    cudaEventElapsedTime(&ms, start, stop);
    cudaEventDestroy(start);
    cudaEventDestroy(stop);
    CHECK(s == MOE_OK, "timed plan: %s", moe_last_error());
    double us = ms * 1000.0 / 20;
    double mb = (double)(tokens * kp * 3 + (cap ? experts * cap : rmax)) * 4 / 1e6;
    printf("  info: %s plan T=%lld k'=9 E'=%d %s=%lld: %.2f us (%.1f GB/s: ids, inv_perm, perm)\n",
           cap ? "masked" : "contiguous", (long long)tokens, (int)experts, cap ? "C" : "A",
           (long long)(cap ? cap : align), us, mb * 1e-3 / (us * 1e-6));
}
#endif

static void test_cuda_plan_timing(void) {
    moe_context *gpu = test_gpu();
    if (!gpu) return;
#ifdef MOE_HAVE_CUDA
    time_plan(gpu, 1, 257, 1, 0);
    time_plan(gpu, 32, 257, 16, 0);
    time_plan(gpu, 32, 257, 128, 0);
    time_plan(gpu, 32, 385, 128, 0);
    time_plan(gpu, 512, 257, 128, 0);
    time_plan(gpu, 4096, 257, 128, 0);
    time_plan(gpu, 16384, 257, 1, 0);
    time_plan(gpu, 16384, 257, 128, 0);
    time_plan(gpu, 16384, 385, 128, 0);
    time_plan(gpu, 32, 257, 0, 16);
    time_plan(gpu, 16384, 257, 0, 1024);
#endif
}

void suite_cuda_permute(void) {
    RUN(test_cuda_plan_shapes);
    RUN(test_cuda_plan_edges);
    RUN(test_cuda_plan_many_experts);
    RUN(test_cuda_plan_reuse);
    RUN(test_cuda_masked_shapes);
    RUN(test_cuda_masked_edges);
    RUN(test_cuda_problem_sizes);
    RUN(test_cuda_gather);
    RUN(test_cuda_gather_plan);
    RUN(test_cuda_plan_timing);
}
