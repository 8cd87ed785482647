/* CUDA permutation (SPEC 2): contiguous and masked plans, problem sizes, row gather.
 *
 * A plan must match the CPU reference bit for bit: the rows of one expert hold its pairs
 * in ascending pair index p = t*k' + j. The kernels get that order without sorting:
 * pairs are cut into chunks of PLAN_CHUNK consecutive pairs, each chunk into one
 * contiguous sub-chunk per warp, each sub-chunk into 32-pair slices walked in order. A
 * pair's row is then
 *   (expert's first row) + (its pairs in earlier chunks) + (in earlier warps of the chunk)
 *   + (in earlier slices of the warp) + (in lower lanes of the slice),
 * where the first three are prefix sums of histograms, the fourth a per-warp running
 * counter, the last a popcount over __match_any_sync. Counting itself uses shared-memory
 * atomics: a count does not depend on the order of the increments, so the result stays
 * deterministic.
 *
 * Launches: a problem of at most PLAN_CHUNK pairs whose perm is small is planned by one
 * block in one launch (decode). Otherwise three: (1) per-chunk histograms into the
 * workspace, while every block also sets perm to -1; (2) one block turns them into
 * counts, offsets and each (chunk, expert)'s first row; (3) one block per chunk places
 * its pairs, overwriting the -1 of every row that holds a pair. Filling all of perm first
 * (rather than only padding and tail rows) writes a placed row twice, but those are at
 * most T*k' i32 and it keeps the kernels free of any bookkeeping about padding.
 *
 * The API has checked that every pair index, row index and E'*C fits in i32. */
#include <string.h>

#include "common.cuh"

#define PLAN_WARPS 16
#define PLAN_THREADS (PLAN_WARPS * 32)
#define PLAN_SLICES 8 /* 32-pair slices per warp and chunk */
#define PLAN_CHUNK (PLAN_THREADS * PLAN_SLICES)
#define SCAN_THREADS 1024
/* Largest perm (i32 entries) the single-block plan sets to -1 itself: past this one SM's
 * store bandwidth costs more than the two extra launches of the multi-block plan. */
#define FUSED_FILL_MAX 65536
#define STATIC_SMEM_LIMIT 49152 /* beyond this a kernel must opt in */

typedef struct plan_args {
    const int32_t *ids;
    int64_t ids_ld; /* elements between token rows of ids */
    int32_t topk;   /* k' */
    int32_t pairs;  /* T*k' */
    int32_t experts;
    int32_t align;    /* contiguous plan */
    int32_t capacity; /* masked plan */
    int32_t masked;
    int32_t *counts; /* NULL allowed for the contiguous plan */
    int32_t *offsets;
    int32_t *perm;
    int64_t perm_ld; /* masked perm row stride */
    int32_t *inv;
    int32_t *overflow;
    int32_t *hist; /* workspace [chunks][E']: per-chunk counts, then first rows */
    int32_t chunks;
    /* the region of perm set to -1 first: fill_rows rows of fill_cols, fill_ld apart */
    int32_t fill_rows, fill_cols;
    int64_t fill_ld;
} plan_args;

/* ---------------------------------------------------------------- device helpers */

/* The expert of pair p, or -1 if p is past the end or its id is outside [0, E'). */
static __device__ __forceinline__ int pair_expert(const plan_args &a, int64_t pos) {
    if (pos >= a.pairs) return -1;
    int p = (int)pos;
    int64_t at = a.ids_ld == a.topk ? (int64_t)p : (int64_t)(p / a.topk) * a.ids_ld + p % a.topk;
    int32_t id = __ldg(a.ids + at);
    return (uint32_t)id < (uint32_t)a.experts ? id : -1;
}

/* First pair of warp w's sub-chunk of chunk c; slice s starts 32*s pairs later. 64-bit:
 * the last chunk may reach past INT32_MAX. */
static __device__ __forceinline__ int64_t warp_first_pair(int c, int w) {
    return (int64_t)c * PLAN_CHUNK + w * (PLAN_SLICES * 32);
}

/* All PLAN_SLICES experts of this lane's pairs, loaded before any is used so that the
 * loads overlap. */
static __device__ __forceinline__ void load_experts(const plan_args &a, int c,
                                                    int ev[PLAN_SLICES]) {
    int64_t first = warp_first_pair(c, threadIdx.x / 32) + threadIdx.x % 32;
#pragma unroll
    for (int s = 0; s < PLAN_SLICES; s++) ev[s] = pair_expert(a, first + 32 * s);
}

/* Sets fill_rows x fill_cols i32 of perm to -1, spread over nthreads threads. */
static __device__ void fill_perm(const plan_args &a, int64_t tid, int64_t nthreads) {
    if (a.fill_rows == 1) {
        int32_t *p = a.perm;
        int64_t n = a.fill_cols;
        /* i32 up to the first 16-byte boundary, then int4 stores, then the rest */
        int64_t head = (int64_t)((16 - ((uintptr_t)p & 15)) & 15) / 4;
        if (head > n) head = n;
        if (tid < head) p[tid] = -1;
        int4 *v = (int4 *)(p + head);
        int64_t nv = (n - head) / 4;
        for (int64_t i = tid; i < nv; i += nthreads) v[i] = make_int4(-1, -1, -1, -1);
        int64_t done = head + 4 * nv;
        if (tid < n - done) p[done + tid] = -1;
        return;
    }
    /* rows with padding between them (a strided masked perm); E'*C fits in i32 */
    uint32_t cols = (uint32_t)a.fill_cols, n = (uint32_t)a.fill_rows * cols;
    for (uint32_t q = (uint32_t)tid; q < n; q += (uint32_t)nthreads)
        a.perm[(int64_t)(q / cols) * a.fill_ld + q % cols] = -1;
}

/* Counts this lane's experts into the block's per-warp rows cnt[w][e]. */
static __device__ __forceinline__ void count_experts(int *cnt, int experts,
                                                     const int ev[PLAN_SLICES]) {
    int *row = cnt + (threadIdx.x / 32) * experts;
#pragma unroll
    for (int s = 0; s < PLAN_SLICES; s++)
        if (ev[s] >= 0) atomicAdd(row + ev[s], 1);
}

/* cnt[w][e] := base + sum over w' < w of cnt[w'][e]: warp w's first row (or rank) for e. */
static __device__ __forceinline__ void warp_prefix(int *cnt, int experts, int e, int base) {
    for (int w = 0; w < PLAN_WARPS; w++) {
        int n = cnt[w * experts + e];
        cnt[w * experts + e] = base;
        base += n;
    }
}

/* Walks warp w's slices in pair order and writes perm and inv_perm of each pair. On
 * entry cnt[w][e] is the row (contiguous) or rank (masked) of warp w's first pair of e. */
static __device__ void place_pairs(const plan_args &a, int *cnt, int c,
                                   const int ev[PLAN_SLICES]) {
    int w = threadIdx.x / 32, lane = threadIdx.x % 32;
    int *row = cnt + w * a.experts;
    unsigned lower = (1u << lane) - 1u;
    int64_t first = warp_first_pair(c, w);
#pragma unroll
    for (int s = 0; s < PLAN_SLICES; s++) {
        if (first + 32 * s >= a.pairs) break; /* warp-uniform */
        int64_t pos = first + 32 * s + lane;
        int e = ev[s];
        unsigned peers = __match_any_sync(0xffffffffu, e);
        int before = __popc(peers & lower), r = 0;
        if (e >= 0) r = row[e] + before;
        __syncwarp(); /* every peer has read row[e] before its leader moves it on */
        if (e >= 0 && before == 0) row[e] += __popc(peers);
        __syncwarp();
        if (pos >= a.pairs) continue;
        int p = (int)pos, inv = -1;
        if (e >= 0 && !a.masked) {
            a.perm[r] = p;
            inv = r;
        } else if (e >= 0 && r < a.capacity) {
            a.perm[(int64_t)e * a.perm_ld + r] = p;
            inv = e * a.capacity + r;
        }
        a.inv[p] = inv;
    }
}

/* Exclusive prefix sum of v[0..n) in place by the whole block (every thread must call);
 * returns the total. scratch holds 32 ints. Each thread sums a contiguous run, so any n
 * works with any block size; the runs are not the elements a thread wrote before the
 * call, hence the barrier first. */
static __device__ int block_exclusive_scan(int *v, int n, int *scratch) {
    __syncthreads();
    int nt = blockDim.x, tid = threadIdx.x, lane = tid % 32, warp = tid / 32;
    int per = (n + nt - 1) / nt;
    int lo = min(n, tid * per), hi = min(n, lo + per);
    int sum = 0;
    for (int i = lo; i < hi; i++) sum += v[i];
    int x = sum;
    for (int o = 1; o < 32; o <<= 1) {
        int y = __shfl_up_sync(0xffffffffu, x, o);
        if (lane >= o) x += y;
    }
    if (lane == 31) scratch[warp] = x;
    __syncthreads();
    if (warp == 0) {
        int nw = nt / 32;
        int t = lane < nw ? scratch[lane] : 0;
        for (int o = 1; o < 32; o <<= 1) {
            int y = __shfl_up_sync(0xffffffffu, t, o);
            if (lane >= o) t += y;
        }
        if (lane < nw) scratch[lane] = t;
    }
    __syncthreads();
    int run = (warp ? scratch[warp - 1] : 0) + x - sum;
    for (int i = lo; i < hi; i++) {
        int t = v[i];
        v[i] = run;
        run += t;
    }
    int total = scratch[nt / 32 - 1];
    __syncthreads(); /* scratch is free again */
    return total;
}

/* Rows an expert of n pairs spans in the contiguous plan. Rmax bounds the sum, so i32. */
static __device__ __forceinline__ int rounded_rows(int n, int align) {
    return (int)(((int64_t)n + align - 1) / align * align);
}

/* ---------------------------------------------------------------- kernels */

/* The whole plan in one block (pairs <= PLAN_CHUNK): chunk 0 with no earlier chunks. */
static __global__ void __launch_bounds__(PLAN_THREADS) plan_fused_kernel(plan_args a) {
    extern __shared__ int smem[];
    moe_pdl_release(); /* launched with PDL (common.cuh): ids may come from the router */
    moe_pdl_wait();
    int E = a.experts, tid = threadIdx.x;
    int *cnt = smem;                          /* [PLAN_WARPS][E] */
    int *off = cnt + PLAN_WARPS * E;          /* [E + 1]: rounded sizes, then offsets */
    int *scratch = off + E + 1;               /* [32] scan, [32] dropped pairs */
    int ev[PLAN_SLICES];
    load_experts(a, 0, ev);
    for (int i = tid; i < PLAN_WARPS * E; i += PLAN_THREADS) cnt[i] = 0;
    if (tid == 0) scratch[32] = 0;
    fill_perm(a, tid, PLAN_THREADS);
    __syncthreads();
    count_experts(cnt, E, ev);
    __syncthreads();
    int dropped = 0;
    for (int e = tid; e < E; e += PLAN_THREADS) {
        int n = 0;
        for (int w = 0; w < PLAN_WARPS; w++) n += cnt[w * E + e];
        if (a.masked) {
            int kept = min(n, a.capacity);
            a.counts[e] = kept;
            dropped += n - kept;
        } else {
            if (a.counts) a.counts[e] = n;
            off[e] = rounded_rows(n, a.align);
        }
    }
    if (a.masked) {
        if (dropped) atomicAdd(&scratch[32], dropped);
    } else {
        int total = block_exclusive_scan(off, E, scratch);
        for (int e = tid; e < E; e += PLAN_THREADS) a.offsets[e] = off[e];
        if (tid == 0) a.offsets[E] = total;
    }
    for (int e = tid; e < E; e += PLAN_THREADS) warp_prefix(cnt, E, e, a.masked ? 0 : off[e]);
    __syncthreads(); /* also orders the -1 fill before the placements that overwrite it */
    if (a.masked && tid == 0) a.overflow[0] = scratch[32];
    place_pairs(a, cnt, 0, ev);
}

/* Launch 1: chunk c's histogram into hist[c][:]; every block sets part of perm to -1. */
static __global__ void __launch_bounds__(PLAN_THREADS) plan_count_kernel(plan_args a) {
    extern __shared__ int smem[];
    int E = a.experts, tid = threadIdx.x, c = blockIdx.x;
    if (c < a.chunks) { /* block-uniform */
        int ev[PLAN_SLICES];
        load_experts(a, c, ev);
        for (int e = tid; e < E; e += PLAN_THREADS) smem[e] = 0;
        __syncthreads();
#pragma unroll
        for (int s = 0; s < PLAN_SLICES; s++)
            if (ev[s] >= 0) atomicAdd(smem + ev[s], 1);
        __syncthreads();
        int32_t *out = a.hist + (int64_t)c * E;
        for (int e = tid; e < E; e += PLAN_THREADS) out[e] = smem[e];
    }
    fill_perm(a, (int64_t)blockIdx.x * PLAN_THREADS + tid, (int64_t)gridDim.x * PLAN_THREADS);
}

/* Chunks [c0, c1) of group g when nc chunks are split into groups parts. */
static __device__ __forceinline__ int split(int nc, int groups, int g) {
    return (int)((int64_t)nc * g / groups);
}

/* Launch 2 (one block): counts, offsets (or masked counts and overflow), and hist[c][e]
 * := the first row (rank) of expert e's pairs in chunk c. Threads take (group, expert)
 * pairs, each group a run of chunks, so that E' = 257 still keeps ~1000 threads loading. */
static __global__ void __launch_bounds__(SCAN_THREADS) plan_scan_kernel(plan_args a) {
    extern __shared__ int smem[];
    int E = a.experts, nc = a.chunks, tid = threadIdx.x;
    int groups = E >= SCAN_THREADS ? 1 : min(SCAN_THREADS / E, max(nc, 1));
    int *part = smem;                             /* [groups][E], at most max(1024, E) */
    int *off = part + max(SCAN_THREADS, E);       /* [E + 1] */
    int *scratch = off + E + 1;                   /* [32] scan, [32] dropped pairs */
    if (tid == 0) scratch[32] = 0;
    for (int i = tid; i < groups * E; i += SCAN_THREADS) {
        int e = i % E, g = i / E, s = 0;
        int c1 = split(nc, groups, g + 1);
#pragma unroll 4
        for (int c = split(nc, groups, g); c < c1; c++) s += a.hist[(int64_t)c * E + e];
        part[i] = s;
    }
    __syncthreads();
    int dropped = 0;
    for (int e = tid; e < E; e += SCAN_THREADS) {
        int run = 0;
        for (int g = 0; g < groups; g++) {
            int n = part[g * E + e];
            part[g * E + e] = run;
            run += n;
        }
        if (a.masked) {
            int kept = min(run, a.capacity);
            a.counts[e] = kept;
            dropped += run - kept;
        } else {
            if (a.counts) a.counts[e] = run;
            off[e] = rounded_rows(run, a.align);
        }
    }
    if (a.masked) {
        if (dropped) atomicAdd(&scratch[32], dropped);
        __syncthreads();
        if (tid == 0) a.overflow[0] = scratch[32];
    } else {
        int total = block_exclusive_scan(off, E, scratch);
        for (int e = tid; e < E; e += SCAN_THREADS) a.offsets[e] = off[e];
        if (tid == 0) a.offsets[E] = total;
    }
    for (int i = tid; i < groups * E; i += SCAN_THREADS) {
        int e = i % E, g = i / E;
        int run = part[i] + (a.masked ? 0 : off[e]);
        int c1 = split(nc, groups, g + 1);
#pragma unroll 4
        for (int c = split(nc, groups, g); c < c1; c++) {
            int n = a.hist[(int64_t)c * E + e];
            a.hist[(int64_t)c * E + e] = run;
            run += n;
        }
    }
}

/* Launch 3: chunk c's pairs into perm and inv_perm, starting from hist[c][:]. */
static __global__ void __launch_bounds__(PLAN_THREADS) plan_place_kernel(plan_args a) {
    extern __shared__ int smem[];
    int E = a.experts, tid = threadIdx.x, c = blockIdx.x;
    int ev[PLAN_SLICES];
    load_experts(a, c, ev);
    for (int i = tid; i < PLAN_WARPS * E; i += PLAN_THREADS) smem[i] = 0;
    __syncthreads();
    count_experts(smem, E, ev);
    __syncthreads();
    const int32_t *first = a.hist + (int64_t)c * E;
    for (int e = tid; e < E; e += PLAN_THREADS) warp_prefix(smem, E, e, first[e]);
    __syncthreads();
    place_pairs(a, smem, c, ev);
}

/* ---------------------------------------------------------------- host: plans */

static int64_t plan_chunks(int64_t pairs) { return (pairs + PLAN_CHUNK - 1) / PLAN_CHUNK; }

moe_status moe_cuda_permute_workspace_size(moe_context *ctx, int64_t num_tokens, int32_t topk,
                                           int32_t num_experts, size_t *bytes) {
    (void)ctx;
    /* the histograms of the multi-block plan; the single-block plan needs none */
    *bytes = (size_t)plan_chunks(num_tokens * topk) * (size_t)num_experts * sizeof(int32_t);
    return MOE_OK;
}

static moe_status set_smem(const void *kernel, size_t bytes, const char *op) {
    if (bytes <= STATIC_SMEM_LIMIT) return MOE_OK;
    cudaError_t e =
        cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, (int)bytes);
    if (e != cudaSuccess)
        return moe_fail(MOE_ERR_BACKEND, "%s: cannot opt in to %zu bytes of shared memory: %s",
                        op, bytes, cudaGetErrorString(e));
    return MOE_OK;
}

/* Runs a plan whose arguments are in a (all but chunks/hist). */
static moe_status run_plan(moe_context *ctx, plan_args *a, void *workspace, void *stream,
                           const char *op) {
    MOE_TRY(moe_cuda_use_device(ctx));
    const moe_cuda_state *st = (const moe_cuda_state *)ctx->state;
    cudaStream_t s = moe_cuda_stream(stream);
    int64_t E = a->experts;
    size_t place_smem = (size_t)PLAN_WARPS * E * sizeof(int32_t);
    size_t fused_smem = ((size_t)(PLAN_WARPS + 1) * E + 1 + 64) * sizeof(int32_t);
    size_t scan_smem =
        ((size_t)(E > SCAN_THREADS ? E : SCAN_THREADS) + E + 1 + 64) * sizeof(int32_t);
    if (place_smem > st->smem_optin || scan_smem > st->smem_optin)
        return moe_fail(MOE_ERR_UNSUPPORTED,
                        "num_experts (%d) is too large for the CUDA plan: it keeps %d counters "
                        "per expert in shared memory (%zu bytes > the device's %zu)",
                        (int)E, PLAN_WARPS, place_smem, st->smem_optin);
    int64_t fill = (int64_t)a->fill_rows * a->fill_cols;
    a->chunks = (int32_t)plan_chunks(a->pairs);
    a->hist = (int32_t *)workspace;

    if (a->pairs <= PLAN_CHUNK && fill <= FUSED_FILL_MAX && fused_smem <= st->smem_optin) {
        MOE_TRY(set_smem((const void *)plan_fused_kernel, fused_smem, op));
        moe_pdl_launch l;
        moe_pdl_config(&l, 1, PLAN_THREADS, fused_smem, s, a->pairs);
        cudaLaunchKernelEx(&l.cfg, plan_fused_kernel, *a);
        return moe_cuda_launch_status(op);
    }
    /* enough blocks for the -1 fill too: ~16 int4 stores per thread, a few waves */
    int64_t blocks = moe_grid(fill, (int64_t)PLAN_THREADS * 64, 4 * (int64_t)st->sm_count);
    if (blocks < a->chunks) blocks = a->chunks;
    MOE_TRY(set_smem((const void *)plan_count_kernel, (size_t)E * sizeof(int32_t), op));
    plan_count_kernel<<<(unsigned)blocks, PLAN_THREADS, (size_t)E * sizeof(int32_t), s>>>(*a);
    MOE_TRY(moe_cuda_launch_status(op));
    MOE_TRY(set_smem((const void *)plan_scan_kernel, scan_smem, op));
    plan_scan_kernel<<<1, SCAN_THREADS, scan_smem, s>>>(*a);
    MOE_TRY(moe_cuda_launch_status(op));
    if (a->chunks == 0) return MOE_OK;
    MOE_TRY(set_smem((const void *)plan_place_kernel, place_smem, op));
    plan_place_kernel<<<(unsigned)a->chunks, PLAN_THREADS, place_smem, s>>>(*a);
    return moe_cuda_launch_status(op);
}

static plan_args ids_args(const moe_tensor *ids, int32_t num_experts, moe_tensor *inv_perm) {
    plan_args a;
    memset(&a, 0, sizeof a);
    a.ids = (const int32_t *)ids->data;
    a.ids_ld = ids->stride[0];
    a.topk = (int32_t)ids->shape[1];
    a.pairs = (int32_t)(ids->shape[0] * ids->shape[1]);
    a.experts = num_experts;
    a.inv = (int32_t *)inv_perm->data;
    return a;
}

moe_status moe_cuda_permute_plan(moe_context *ctx, const moe_tensor *ids, int32_t num_experts,
                                 int32_t alignment, moe_tensor *counts, moe_tensor *offsets,
                                 moe_tensor *perm, moe_tensor *inv_perm, void *workspace,
                                 size_t workspace_bytes, void *stream) {
    (void)workspace_bytes; /* checked by the API against our workspace size */
    plan_args a = ids_args(ids, num_experts, inv_perm);
    a.align = alignment;
    a.counts = counts ? (int32_t *)counts->data : NULL;
    a.offsets = (int32_t *)offsets->data;
    a.perm = (int32_t *)perm->data;
    a.fill_rows = 1;
    a.fill_cols = (int32_t)perm->shape[0]; /* Rmax <= INT32_MAX, checked by the API */
    a.fill_ld = a.fill_cols;
    return run_plan(ctx, &a, workspace, stream, "moe_permute_plan");
}

moe_status moe_cuda_permute_plan_masked(moe_context *ctx, const moe_tensor *ids,
                                        int32_t num_experts, int64_t capacity,
                                        moe_tensor *counts, moe_tensor *perm,
                                        moe_tensor *inv_perm, moe_tensor *overflow,
                                        void *workspace, size_t workspace_bytes, void *stream) {
    (void)workspace_bytes;
    plan_args a = ids_args(ids, num_experts, inv_perm);
    a.masked = 1;
    a.capacity = (int32_t)capacity;
    a.counts = (int32_t *)counts->data;
    a.perm = (int32_t *)perm->data;
    a.perm_ld = perm->stride[0];
    a.overflow = (int32_t *)overflow->data;
    /* E'*C <= INT32_MAX, checked by the API; rows without padding fill as one run */
    if (a.perm_ld == capacity) {
        a.fill_rows = 1;
        a.fill_cols = (int32_t)(num_experts * capacity);
    } else {
        a.fill_rows = num_experts;
        a.fill_cols = (int32_t)capacity;
    }
    a.fill_ld = a.perm_ld;
    return run_plan(ctx, &a, workspace, stream, "moe_permute_plan_masked");
}

/* ---------------------------------------------------------------- problem sizes */

static __global__ void problem_sizes_kernel(const int32_t *counts, int32_t experts, int32_t n,
                                            int32_t k, int32_t *out, int64_t ld) {
    for (int e = blockIdx.x * blockDim.x + threadIdx.x; e < experts;
         e += gridDim.x * blockDim.x) {
        int32_t *row = out + (int64_t)e * ld;
        row[0] = counts[e];
        row[1] = n;
        row[2] = k;
    }
}

moe_status moe_cuda_problem_sizes(moe_context *ctx, const moe_tensor *counts, int64_t n,
                                  int64_t k, moe_tensor *out, void *stream) {
    MOE_TRY(moe_cuda_use_device(ctx));
    const moe_cuda_state *st = (const moe_cuda_state *)ctx->state;
    int32_t experts = (int32_t)counts->shape[0]; /* >= 1, <= INT32_MAX: checked */
    problem_sizes_kernel<<<moe_grid(experts, 256, 4 * (int64_t)st->sm_count), 256, 0,
                           moe_cuda_stream(stream)>>>((const int32_t *)counts->data, experts,
                                                      (int32_t)n, (int32_t)k,
                                                      (int32_t *)out->data, out->stride[0]);
    return moe_cuda_launch_status("moe_problem_sizes");
}

/* ---------------------------------------------------------------- gather */

/* The unsigned type of V bytes: one load or store instruction per element of a row. */
template <int V> struct gather_vec;
template <> struct gather_vec<16> { typedef uint4 T; };
template <> struct gather_vec<8> { typedef uint2 T; };
template <> struct gather_vec<4> { typedef unsigned int T; };
template <> struct gather_vec<2> { typedef unsigned short T; };
template <> struct gather_vec<1> { typedef unsigned char T; };

#define GATHER_THREADS 256
#define GATHER_UNROLL 4 /* loads in flight per thread before its stores */

typedef struct gather_args {
    const char *x;
    int64_t x_ld; /* bytes */
    int64_t tokens;
    const int32_t *perm;
    int32_t topk;
    char *out;
    int64_t out_ld; /* bytes */
    int64_t rows;
    int64_t nvec;    /* V-byte elements per row */
    int32_t per_row; /* threads per row: a power of two dividing GATHER_THREADS */
} gather_args;

/* Rows are copied as raw bytes (x and out share a dtype), so one kernel per vector width
 * serves every dtype. Several rows share a block when rows are short. */
template <int V> static __global__ void __launch_bounds__(GATHER_THREADS)
gather_kernel(gather_args a) {
    typedef typename gather_vec<V>::T VT;
    moe_pdl_release(); /* launched with PDL (common.cuh) */
    moe_pdl_wait();
    int sub = threadIdx.x / a.per_row, lane = threadIdx.x % a.per_row;
    int64_t rows_per_block = GATHER_THREADS / a.per_row;
    for (int64_t r = blockIdx.x * rows_per_block + sub; r < a.rows;
         r += (int64_t)gridDim.x * rows_per_block) {
        int32_t p = __ldg(a.perm + r);
        VT *dst = (VT *)(a.out + r * a.out_ld);
        /* every format's all-zero bit pattern is +0 */
        if (p < 0 || p / a.topk >= a.tokens) {
            VT zero;
            memset(&zero, 0, sizeof zero);
            for (int64_t v = lane; v < a.nvec; v += a.per_row) dst[v] = zero;
            continue;
        }
        const VT *src = (const VT *)(a.x + (int64_t)(p / a.topk) * a.x_ld);
        int64_t step = a.per_row;
        int64_t v = lane;
        for (; v + (GATHER_UNROLL - 1) * step < a.nvec; v += GATHER_UNROLL * step) {
            VT t[GATHER_UNROLL];
#pragma unroll
            for (int u = 0; u < GATHER_UNROLL; u++) t[u] = __ldg(src + v + u * step);
#pragma unroll
            for (int u = 0; u < GATHER_UNROLL; u++) dst[v + u * step] = t[u];
        }
        for (; v < a.nvec; v += step) dst[v] = __ldg(src + v);
    }
}

moe_status moe_cuda_gather_rows(moe_context *ctx, const moe_tensor *x, const moe_tensor *perm,
                                int32_t topk, moe_tensor *out, void *stream) {
    int64_t rows = out->shape[0], esize = (int64_t)moe_dtype_size(out->dtype);
    int64_t row_bytes = out->shape[1] * esize;
    if (rows == 0 || row_bytes == 0) return MOE_OK; /* nothing to write */
    MOE_TRY(moe_cuda_use_device(ctx));
    const moe_cuda_state *st = (const moe_cuda_state *)ctx->state;
    gather_args a;
    a.x = (const char *)x->data;
    a.x_ld = x->stride[0] * esize;
    a.tokens = x->shape[0];
    a.perm = (const int32_t *)perm->data;
    a.topk = topk;
    a.out = (char *)out->data;
    a.out_ld = out->stride[0] * esize;
    a.rows = rows;
    /* the widest access that every row start of x and out and the row length allow; x is
     * not read at all when it has no rows (its data may then be NULL) */
    uint64_t bits = (uint64_t)row_bytes | (uint64_t)(uintptr_t)a.out | (uint64_t)a.out_ld;
    if (a.tokens > 0) bits |= (uint64_t)(uintptr_t)a.x | (uint64_t)a.x_ld;
    int v = 16;
    while (v > 1 && bits % (uint64_t)v) v /= 2;
    a.nvec = row_bytes / v;
    int per_row = GATHER_THREADS;
    while (per_row > 1 && per_row / 2 >= a.nvec) per_row /= 2;
    a.per_row = per_row;
    unsigned grid = moe_grid(rows, GATHER_THREADS / per_row, 16 * (int64_t)st->sm_count);
    moe_pdl_launch l;
    moe_pdl_config(&l, grid, GATHER_THREADS, 0, moe_cuda_stream(stream), rows);
    switch (v) {
    case 16: cudaLaunchKernelEx(&l.cfg, gather_kernel<16>, a); break;
    case 8: cudaLaunchKernelEx(&l.cfg, gather_kernel<8>, a); break;
    case 4: cudaLaunchKernelEx(&l.cfg, gather_kernel<4>, a); break;
    case 2: cudaLaunchKernelEx(&l.cfg, gather_kernel<2>, a); break;
    default: cudaLaunchKernelEx(&l.cfg, gather_kernel<1>, a); break;
    }
    return moe_cuda_launch_status("moe_gather_rows");
}
