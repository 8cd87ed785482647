/* CUDA routing (SPEC 1): one warp per token for both ops, any E <= MOE_MAX_EXPERTS.
 *
 * A token's row is spread over the warp's registers: slot i of lane l holds expert
 * (i / V) * 32V + l*V + i % V, so each of the N / V chunks is one coalesced V-wide load
 * per lane (N = slots per lane, a compile-time bucket of ceil(E / 32); V = the widest
 * vector that the row's alignment, stride and E allow, picked on the host).
 *
 * Ranking works on 32-bit keys that order like the floats they encode, with NaN (and
 * slots past E, and experts already taken) mapped to key 0 = "not selectable". So a
 * warp argmax is two redux instructions: the maximum key, then the lowest expert index
 * among the lanes holding it; ties go to the lower index exactly as in src/cpu/route.c,
 * whose header states the NaN / Inf / tie rules reproduced here. Each lane caches its
 * three best remaining slots, so a round costs a few instructions; a lane that wins a
 * third time rescans its slots for the best below the last one taken.
 *
 * Grouped top-k, when TG < G, scores the groups (the sum of their two best c), takes TG
 * warp argmaxes over the scores and clears the keys of experts outside the kept groups.
 * When a group is a power-of-two run of whole vectors (DeepSeek-V3's 32 experts, E = 512
 * in 16 or 64 groups, one-expert groups) its lanes merge their top two with shuffles;
 * any other size goes through a per-warp copy of the keys in shared memory. The weights
 * s (not c = s + bias) of the chosen experts are read back from a per-warp copy of s in
 * shared memory.
 *
 * Arithmetic follows the CPU expression by expression (1 / (1 + expf(-x)) and e / sum
 * rounded as IEEE division: nvcc's own fast path, and for the rare subnormal quotients a
 * double reciprocal instead of its slow-path call; the weight sum in slot order), so
 * results differ from the CPU only where the device's expf differs from the host's (an
 * ulp or two) and, for softmax, in the rounding of the E-term sum, which the warp adds
 * as a tree. */
#include <math.h>
#include <stdint.h>

#include "common.cuh"

#define ROUTE_WARPS 4 /* tokens per block */
#define ROUTE_FULL 0xffffffffu
#define ROUTE_NONE 0xffffffffu /* "no expert" in an index minimum */

/* ---------------------------------------------------------------- keys */

/* A key that orders as the float does; NaN gets 0, below every number (-inf maps to
 * 0x007fffff). -0 would rank below +0, but no score here is -0: s, p and the group sums
 * are >= +0 or sums with a bias, and x + y is -0 only when both are. */
__device__ __forceinline__ uint32_t route_key(float v) {
    const uint32_t b = __float_as_uint(v);
    const uint32_t k = b ^ ((uint32_t)((int32_t)b >> 31) | 0x80000000u);
    return isnan(v) ? 0u : k;
}

/* The float of a non-zero key. */
__device__ __forceinline__ float route_key_value(uint32_t k) {
    return __uint_as_float((k & 0x80000000u) ? (k & 0x7fffffffu) : ~k);
}

__device__ __forceinline__ uint32_t route_warp_max(uint32_t v) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 800
    return __reduce_max_sync(ROUTE_FULL, v);
#else
    for (int o = 16; o > 0; o >>= 1) v = max(v, __shfl_xor_sync(ROUTE_FULL, v, o));
    return v;
#endif
}

__device__ __forceinline__ uint32_t route_warp_min(uint32_t v) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 800
    return __reduce_min_sync(ROUTE_FULL, v);
#else
    for (int o = 16; o > 0; o >>= 1) v = min(v, __shfl_xor_sync(ROUTE_FULL, v, o));
    return v;
#endif
}

/* ---------------------------------------------------------------- division */

/* The reciprocal nvcc computes on its fast path for IEEE division (an approximate
 * reciprocal and one Newton step): correctly rounded for 2^-126 <= d < 2^126. */
__device__ __forceinline__ float route_rcp(float d) {
    float r;
    asm("rcp.approx.ftz.f32 %0, %1;" : "=f"(r) : "f"(d));
    return __fmaf_rn(r, __fmaf_rn(-d, r, 1.0f), r);
}

/* a / b rounded once to f32, subnormal results included, for finite a >= 0 (or NaN) and
 * b >= 1 (b = inf gives 0): the rare cases the fast paths leave, without nvcc's
 * slow-path call (whose calling convention costs registers in the whole kernel). A
 * quotient of two 24-bit numbers is either an f32 or at least 2^-49 of itself away from
 * every f32 rounding boundary, so a double quotient within 2^-51 rounds the same way. */
__device__ __forceinline__ float route_div_exact(float a, float b) {
    if (isinf(b)) return 0.0f;
    const double bd = b;
    double r;
    asm("rcp.approx.ftz.f64 %0, %1;" : "=d"(r) : "d"(bd));
    /* each Newton step squares the relative error; three take any start below 2^-8
     * to the double's own rounding */
#pragma unroll
    for (int i = 0; i < 3; i++) r = __fma_rn(r, __fma_rn(-bd, r, 1.0), r);
    return __double2float_rn((double)a * r);
}

/* s = 1 / (1 + expf(-x)) as IEEE division rounds it, without the per-element branch to
 * nvcc's slow path: d >= 1 or NaN (which the fast path keeps NaN), so only d >= 2^126
 * (x <= -87.3: a subnormal or zero s) needs route_div_exact; slow reports it. */
__device__ __forceinline__ float route_sigmoid(float x, bool &slow) {
    const float d = 1.0f + expf(-x);
    slow |= d >= 0x1p126f;
    return route_rcp(d);
}

/* ---------------------------------------------------------------- row layout */

/* The expert held in slot i of a lane. */
template <int V>
__device__ __forceinline__ int route_expert(int i, int lane) {
    return (i / V) * 32 * V + lane * V + i % V;
}

/* Loads V consecutive logits as f32; p is aligned to V elements (checked on the host). */
template <moe_dtype D, int V>
__device__ __forceinline__ void route_load(const typename moe_elem<D>::T *p, float *out) {
    typedef typename moe_elem<D>::T T;
    constexpr int BYTES = V * (int)sizeof(T);
    if constexpr (BYTES < 4) {
        out[0] = moe_elem<D>::load(*p);
    } else {
        uint32_t w[BYTES / 4];
        if constexpr (BYTES >= 16) {
#pragma unroll
            for (int q = 0; q < BYTES / 16; q++) {
                const uint4 u = ((const uint4 *)p)[q];
                w[4 * q] = u.x, w[4 * q + 1] = u.y, w[4 * q + 2] = u.z, w[4 * q + 3] = u.w;
            }
        } else if constexpr (BYTES == 8) {
            const uint2 u = *(const uint2 *)p;
            w[0] = u.x, w[1] = u.y;
        } else {
            w[0] = *(const uint32_t *)p;
        }
#pragma unroll
        for (int j = 0; j < V; j++) {
            if constexpr (sizeof(T) == 4)
                out[j] = __uint_as_float(w[j]);
            else /* little-endian: element 2i is the low half of word i */
                out[j] = moe_elem<D>::load((T)(j % 2 ? w[j / 2] >> 16 : w[j / 2] & 0xffffu));
        }
    }
}

/* V consecutive f32 of the bias (aligned to min(V, 4) floats). */
template <int V>
__device__ __forceinline__ void route_load_f32(const float *p, float *out) {
    if constexpr (V >= 4) {
#pragma unroll
        for (int q = 0; q < V / 4; q++) {
            float4 u = ((const float4 *)p)[q];
            out[4 * q] = u.x, out[4 * q + 1] = u.y, out[4 * q + 2] = u.z, out[4 * q + 3] = u.w;
        }
    } else if constexpr (V == 2) {
        float2 u = *(const float2 *)p;
        out[0] = u.x, out[1] = u.y;
    } else {
        out[0] = *p;
    }
}

/* Stores V consecutive words to shared memory (aligned to V words). */
template <int V>
__device__ __forceinline__ void route_store_words(uint32_t *p, const uint32_t *v) {
    if constexpr (V >= 4) {
#pragma unroll
        for (int q = 0; q < V / 4; q++)
            ((uint4 *)p)[q] = make_uint4(v[4 * q], v[4 * q + 1], v[4 * q + 2], v[4 * q + 3]);
    } else if constexpr (V == 2) {
        *(uint2 *)p = make_uint2(v[0], v[1]);
    } else {
        *p = v[0];
    }
}

/* Loads this lane's slots of a row; slots past E read as NaN logits, which every rule
 * already treats as absent (no softmax mass, key 0, never selected). */
template <moe_dtype D, int N, int V>
__device__ __forceinline__ void route_load_row(const typename moe_elem<D>::T *row, int e,
                                               int lane, float *x) {
#pragma unroll
    for (int c = 0; c < N / V; c++) {
        const int e0 = c * 32 * V + lane * V;
        if (e0 < e) {
            route_load<D, V>(row + e0, x + c * V);
        } else {
#pragma unroll
            for (int v = 0; v < V; v++) x[c * V + v] = __uint_as_float(0x7fc00000u);
        }
    }
}

/* ---------------------------------------------------------------- top-k */

/* The three best slots of a lane, best first, as (key, expert; key 0 = none). With
 * THRESH only experts ranked below (tk, te) count: the lane's experts ranked above were
 * taken in earlier rounds, because the warp takes experts in rank order. */
template <int N, int V, bool THRESH>
__device__ __forceinline__ void route_top3(const uint32_t *key, int lane, uint32_t tk,
                                           uint32_t te, uint32_t (&b)[3], uint32_t (&p)[3]) {
    b[0] = b[1] = b[2] = 0u;
    p[0] = p[1] = p[2] = 0u;
#pragma unroll
    for (int i = 0; i < N; i++) {
        const uint32_t e = (uint32_t)route_expert<V>(i, lane);
        uint32_t k = key[i];
        if (THRESH && !(k < tk || (k == tk && e > te))) k = 0u;
        /* strict > keeps the lower expert first among equal keys (slots ascend) */
        const bool a0 = k > b[0], a1 = k > b[1], a2 = k > b[2];
        b[2] = a1 ? b[1] : (a2 ? k : b[2]);
        p[2] = a1 ? p[1] : (a2 ? e : p[2]);
        b[1] = a0 ? b[0] : (a1 ? k : b[1]);
        p[1] = a0 ? p[0] : (a1 ? e : p[1]);
        b[0] = a0 ? k : b[0];
        p[0] = a0 ? e : p[0];
    }
}

/* k rounds of warp argmax over the keys. The r-th winner goes to lane r with its key
 * (id -1 and key 0 when fewer than r + 1 experts are selectable); ksum adds the winners'
 * key values in slot order, as the CPU adds softmax weights. */
template <int N, int V>
__device__ __forceinline__ void route_topk(const uint32_t *key, int k, int lane, int &my_id,
                                           uint32_t &my_key, float &ksum) {
    my_id = -1;
    my_key = 0u;
    ksum = 0.0f;
    uint32_t b[3], p[3];
    route_top3<N, V, false>(key, lane, 0u, 0u, b, p);
    int exact = 3; /* b[0 .. exact-1] are the lane's best remaining experts */
    for (int r = 0; r < k; r++) {
        const uint32_t m = route_warp_max(b[0]);
        if (m == 0u) break; /* nothing selectable is left (uniform) */
        const uint32_t mine = b[0] == m ? p[0] : ROUTE_NONE;
        const uint32_t win = route_warp_min(mine);
        ksum += route_key_value(m);
        if (lane == r) {
            my_id = (int)win;
            my_key = m;
        }
        if (mine == win) {
            if (exact > 1) {
                b[0] = b[1], p[0] = p[1];
                b[1] = b[2], p[1] = p[2];
                b[2] = 0u;
                exact--;
            } else {
                route_top3<N, V, true>(key, lane, m, win, b, p);
                exact = 3;
            }
        }
    }
}

/* ---------------------------------------------------------------- kernels */

typedef enum route_group_mode {
    ROUTE_GROUPS_ALL = 0,  /* TG == G: every group is kept, no group phase */
    ROUTE_GROUPS_REGS = 1, /* a group is 2^j whole vectors of one chunk: shuffles */
    ROUTE_GROUPS_SMEM = 2  /* any other size: through shared memory */
} route_group_mode;

typedef struct route_args {
    const void *logits;
    int64_t logits_stride, tokens;
    int32_t experts, topk;
    int32_t *ids;
    int64_t ids_stride;
    float *weights;
    int64_t weights_stride;
    int32_t renormalize;
    /* grouped only */
    const float *bias;
    int32_t groups, topk_group, group_size;
    int32_t group_mode;
    int32_t group_lanes_log2; /* REGS: log2(group_size / V), lanes of a group in a chunk */
    int32_t lanes_per_group;  /* SMEM: lanes that scan one group */
    uint32_t group_mul;       /* SMEM: e * group_mul >> 20 == e / group_size for e < 512 */
    int32_t smem_words;       /* per warp */
    int32_t scale_output, num_shared;
    float scaling;
} route_args;

/* The key of a group score from its two best keys: the CPU's sum of the two largest
 * selectable c. NaN scores (no selectable expert, or +inf + -inf) get 1, below every
 * number yet above 0, which marks a group already kept. */
__device__ __forceinline__ uint32_t route_group_key(uint32_t t1, uint32_t t2) {
    if (t1 == 0u) return 1u;
    float v = route_key_value(t1);
    if (t2 != 0u) v += route_key_value(t2);
    return moe_isnan(v) ? 1u : route_key(v);
}

/* The group phase when each group is L = 2^j lanes' vectors of one chunk: lane l's chunk
 * c lies in group c * 32/L + l/L. Each lane takes the top two of its vector, the L lanes
 * of a group merge theirs with shuffles, TG warp argmaxes over the group keys (lowest
 * group on ties) pick the kept groups, and the keys of the others are cleared. */
template <int N, int V>
__device__ __forceinline__ void route_groups_regs(uint32_t *key, const route_args &a, int lane) {
    constexpr int NC = N / V;
    const int lg = a.group_lanes_log2, L = 1 << lg;
    uint32_t gk[NC];
#pragma unroll
    for (int c = 0; c < NC; c++) {
        uint32_t t1 = 0u, t2 = 0u;
#pragma unroll
        for (int v = 0; v < V; v++) {
            const uint32_t k = key[c * V + v], lo = min(t1, k);
            t1 = max(t1, k);
            t2 = max(t2, lo);
        }
        for (int o = 1; o < L; o <<= 1) {
            const uint32_t u1 = __shfl_xor_sync(ROUTE_FULL, t1, o);
            const uint32_t u2 = __shfl_xor_sync(ROUTE_FULL, t2, o);
            t2 = max(min(t1, u1), max(t2, u2));
            t1 = max(t1, u1);
        }
        /* a group lies wholly inside or outside [0, E); outside ones can never win */
        gk[c] = (c * 32 + lane) * V < a.experts ? route_group_key(t1, t2) : 0u;
    }
    unsigned kept = 0u;
    for (int r = 0; r < a.topk_group; r++) {
        uint32_t best = 0u, bg = ROUTE_NONE;
#pragma unroll
        for (int c = 0; c < NC; c++)
            if (gk[c] > best) best = gk[c], bg = (uint32_t)((c * 32 + lane) >> lg);
        const uint32_t m = route_warp_max(best);
        const uint32_t win = route_warp_min(best == m ? bg : ROUTE_NONE);
#pragma unroll
        for (int c = 0; c < NC; c++)
            if ((uint32_t)((c * 32 + lane) >> lg) == win) gk[c] = 0u, kept |= 1u << c;
    }
#pragma unroll
    for (int c = 0; c < NC; c++)
        if (!((kept >> c) & 1u))
#pragma unroll
            for (int v = 0; v < V; v++) key[c * V + v] = 0u;
}

/* Scores every group from the keys ck into gk, then keeps the TG best: a kept group's
 * gk becomes 0. G <= 32 groups share the warp in one pass, lanes_per_group lanes each;
 * more groups take one lane each over several passes. */
__device__ __forceinline__ void route_keep_groups(const uint32_t *ck, uint32_t *gk,
                                                  const route_args &a, int lane) {
    const int G = a.groups, size = a.group_size, lpg = a.lanes_per_group;
    const int per_pass = 32 / lpg, sub = lane & (lpg - 1), gl = lane / lpg;
    const int cnt = sub < size ? (size - sub + lpg - 1) / lpg : 0;
    for (int g0 = 0; g0 < G; g0 += per_pass) {
        const int g = g0 + gl;
        uint32_t t1 = 0u, t2 = 0u;
        if (g < G && cnt > 0) {
            const uint32_t *p = ck + g * size + sub;
            /* start each group at a different element so that the lanes of different
             * groups read different banks */
            int m = (int)((unsigned)g % (unsigned)cnt);
            for (int it = 0; it < cnt; it++) {
                const uint32_t v = p[m * lpg];
                const uint32_t lo = min(t1, v);
                t1 = max(t1, v);
                t2 = max(t2, lo);
                if (++m == cnt) m = 0;
            }
        }
        for (int o = lpg >> 1; o > 0; o >>= 1) {
            const uint32_t u1 = __shfl_xor_sync(ROUTE_FULL, t1, o);
            const uint32_t u2 = __shfl_xor_sync(ROUTE_FULL, t2, o);
            t2 = max(min(t1, u1), max(t2, u2));
            t1 = max(t1, u1);
        }
        if (g < G && sub == 0) gk[g] = route_group_key(t1, t2);
    }
    __syncwarp();
    for (int r = 0; r < a.topk_group; r++) {
        uint32_t best = 0u, bg = ROUTE_NONE;
        for (int g = lane; g < G; g += 32) {
            const uint32_t v = gk[g];
            if (v > best) best = v, bg = (uint32_t)g;
        }
        const uint32_t m = route_warp_max(best);
        const uint32_t win = route_warp_min(best == m ? bg : ROUTE_NONE);
        if (lane == 0) gk[win] = 0u;
        __syncwarp();
    }
}

/* Writes a token's outputs: lane j < k slot j, lane k the shared column (if S > 0).
 * w is this lane's weight before renormalisation, sum that of the k routed weights. */
__device__ __forceinline__ void route_write(const route_args &a, int64_t t, int lane, int id,
                                            float w, float sum, int shared) {
    const int k = a.topk;
    float out = lane < k ? w : sum / a.scaling; /* SGLang's fused shared-expert weight */
    if (a.renormalize && sum > 0.0f) out /= sum;
    if (a.scale_output) out *= a.scaling;
    if (lane < k || (shared && lane == k)) {
        if (lane == k) /* t < 2^32 for any output that fits in memory: a 32-bit modulo */
            id = a.experts + (int)((uint32_t)t % (uint32_t)a.num_shared);
        a.ids[t * a.ids_stride + lane] = id;
        a.weights[t * a.weights_stride + lane] = out;
    }
}

template <moe_dtype D, int N, int V>
__global__ void __launch_bounds__(ROUTE_WARPS * 32)
    route_grouped_kernel(const __grid_constant__ route_args a) {
    extern __shared__ __align__(16) uint32_t route_smem[];
    typedef typename moe_elem<D>::T T;
    moe_pdl_release(); /* launched with PDL at decode sizes (common.cuh) */
    moe_pdl_wait();
    const int warp = (int)(threadIdx.x >> 5), lane = (int)(threadIdx.x & 31);
    const int64_t t = (int64_t)blockIdx.x * ROUTE_WARPS + warp;
    if (t >= a.tokens) return;
    const int E = a.experts;

    float x[N], b[N];
    route_load_row<D, N, V>((const T *)a.logits + t * a.logits_stride, E, lane, x);
#pragma unroll
    for (int c = 0; c < N / V; c++) {
        const int e0 = c * 32 * V + lane * V;
        if (a.bias && e0 < E) {
            route_load_f32<V>(a.bias + e0, b + c * V);
        } else {
#pragma unroll
            for (int v = 0; v < V; v++) b[c * V + v] = 0.0f;
        }
    }

    uint32_t *s_row = route_smem + warp * a.smem_words;
    uint32_t key[N];
    /* batches of 4 slots (or a whole vector) share one vote for the rare exact path */
    constexpr int B = N < 4 ? N : (V > 4 ? V : 4);
#pragma unroll
    for (int q = 0; q < N / B; q++) {
        float s[B];
        bool slow = false;
#pragma unroll
        for (int j = 0; j < B; j++) s[j] = route_sigmoid(x[q * B + j], slow);
        if (__any_sync(ROUTE_FULL, slow)) {
#pragma unroll
            for (int j = 0; j < B; j++) s[j] = route_div_exact(1.0f, 1.0f + expf(-x[q * B + j]));
        }
#pragma unroll
        for (int j = 0; j < B; j++) key[q * B + j] = route_key(s[j] + b[q * B + j]);
#pragma unroll
        for (int c = 0; c < B / V; c++) {
            const int e0 = route_expert<V>(q * B + c * V, lane);
            uint32_t bits[V];
#pragma unroll
            for (int v = 0; v < V; v++) bits[v] = __float_as_uint(s[c * V + v]);
            if (e0 < E) route_store_words<V>(s_row + e0, bits);
        }
    }

    if (a.group_mode == ROUTE_GROUPS_REGS) {
        route_groups_regs<N, V>(key, a, lane);
    } else if (a.group_mode == ROUTE_GROUPS_SMEM) {
        uint32_t *ck = s_row + 32 * N, *gk = ck + 32 * N;
#pragma unroll
        for (int c = 0; c < N / V; c++) {
            const int e0 = c * 32 * V + lane * V;
            if (e0 < E) route_store_words<V>(ck + e0, key + c * V);
        }
        __syncwarp();
        route_keep_groups(ck, gk, a, lane);
#pragma unroll
        for (int i = 0; i < N; i++) {
            /* slots past E have key 0 already; the clamp only keeps their read in bounds */
            const uint32_t e = (uint32_t)route_expert<V>(i, lane);
            if (gk[min((e * a.group_mul) >> 20, (uint32_t)a.groups - 1u)] != 0u) key[i] = 0u;
        }
    }

    int id;
    uint32_t kk;
    float csum;
    route_topk<N, V>(key, a.topk, lane, id, kk, csum);
    __syncwarp(); /* s_row is complete */
    /* the weight is s, not c: the bias steers the choice, never the mix */
    const float w = id >= 0 ? __uint_as_float(s_row[id]) : 0.0f;
    float sum = 0.0f; /* the CPU's sum, in slot order */
    for (int j = 0; j < a.topk; j++) sum += __shfl_sync(ROUTE_FULL, w, j);
    route_write(a, t, lane, id, w, sum, a.num_shared > 0);
}

template <moe_dtype D, int N, int V>
__global__ void __launch_bounds__(ROUTE_WARPS * 32)
    route_softmax_kernel(const __grid_constant__ route_args a) {
    typedef typename moe_elem<D>::T T;
    moe_pdl_release();
    moe_pdl_wait();
    const int warp = (int)(threadIdx.x >> 5), lane = (int)(threadIdx.x & 31);
    const int64_t t = (int64_t)blockIdx.x * ROUTE_WARPS + warp;
    if (t >= a.tokens) return;
    const int E = a.experts;

    float x[N];
    route_load_row<D, N, V>((const T *)a.logits + t * a.logits_stride, E, lane, x);
    /* fmaxf skips NaN, so NaN logits take no part in the maximum */
    float mx = -INFINITY;
#pragma unroll
    for (int i = 0; i < N; i++) mx = fmaxf(mx, x[i]);
    mx = moe_warp_max(mx);
    const bool inf = isinf(mx);
    float sum = 0.0f;
#pragma unroll
    for (int i = 0; i < N; i++) {
        if (!moe_isnan(x[i])) {
            /* x - max is NaN when max is infinite; the limit puts all mass on the max */
            x[i] = inf ? (x[i] == mx ? 1.0f : 0.0f) : expf(x[i] - mx);
            sum += x[i];
        }
    }
    sum = moe_warp_sum(sum);
    /* p = e / sum as IEEE division rounds it: nvcc's fast path with the divisor's
     * reciprocal taken once; it is exact while e and p stay normal, so only subnormal e
     * (x - max < -87) take the full division. sum >= 1 unless every logit is NaN. */
    const float r = route_rcp(sum);
    constexpr int B = N < 4 ? N : 4; /* slots that share one vote for the rare exact path */
#pragma unroll
    for (int q = 0; q < N / B; q++) {
        float p[B];
        bool slow = false;
#pragma unroll
        for (int j = 0; j < B; j++) {
            const float e = x[q * B + j], q0 = __fmul_rn(e, r);
            p[j] = __fmaf_rn(r, __fmaf_rn(-sum, q0, e), q0);
            slow |= e > 0.0f && e < 0x1p-100f;
        }
        if (__any_sync(ROUTE_FULL, slow)) {
#pragma unroll
            for (int j = 0; j < B; j++) {
                const float e = x[q * B + j];
                if (e > 0.0f && e < 0x1p-100f) p[j] = route_div_exact(e, sum);
            }
        }
#pragma unroll
        for (int j = 0; j < B; j++) x[q * B + j] = p[j];
    }
    uint32_t key[N];
#pragma unroll
    for (int i = 0; i < N; i++) key[i] = route_key(x[i]);

    int id;
    uint32_t kk;
    float wsum;
    route_topk<N, V>(key, a.topk, lane, id, kk, wsum);
    route_write(a, t, lane, id, kk ? route_key_value(kk) : 0.0f, wsum, 0);
}

/* ---------------------------------------------------------------- host */

/* Slots per lane for E experts: ceil(E / 32) rounded up to a bucket. */
static int route_slots(int64_t e) {
    return e <= 32 ? 1 : e <= 64 ? 2 : e <= 128 ? 4 : e <= 256 ? 8 : e <= 384 ? 12 : 16;
}

/* The widest vector of a row: 16 bytes at most and a power of two dividing N. */
static constexpr int route_vmax(int elem_bytes, int n) {
    return (n % 8 == 0 && 16 / elem_bytes >= 8)   ? 8
           : (n % 4 == 0 && 16 / elem_bytes >= 4) ? 4
           : (n % 2 == 0)                         ? 2
                                                  : 1;
}

/* Whether the widest vector fits this call: the row start, every row stride, E, and the
 * bias (f32, read min(V, 4) floats at a time) must all be multiples of it. */
static int route_vector_ok(const moe_tensor *logits, const moe_tensor *bias, int vmax) {
    const size_t esize = moe_dtype_size(logits->dtype);
    if (vmax == 1) return 1;
    if ((uintptr_t)logits->data % (vmax * esize) != 0) return 0;
    if (logits->shape[0] > 1 && logits->stride[0] % vmax != 0) return 0;
    if (logits->shape[1] % vmax != 0) return 0;
    if (bias && (uintptr_t)bias->data % ((vmax < 4 ? vmax : 4) * sizeof(float)) != 0) return 0;
    return 1;
}

typedef enum { ROUTE_GROUPED, ROUTE_SOFTMAX } route_op;

template <moe_dtype D, int N>
static void route_launch_n(route_op op, const route_args &a, int vec, unsigned grid,
                           size_t smem, cudaStream_t st) {
    constexpr int VM = route_vmax((int)sizeof(typename moe_elem<D>::T), N);
    moe_pdl_launch l;
    moe_pdl_config(&l, grid, ROUTE_WARPS * 32, op == ROUTE_GROUPED ? smem : 0, st, a.tokens);
    if (op == ROUTE_GROUPED) {
        if (vec)
            cudaLaunchKernelEx(&l.cfg, route_grouped_kernel<D, N, VM>, a);
        else
            cudaLaunchKernelEx(&l.cfg, route_grouped_kernel<D, N, 1>, a);
    } else {
        if (vec)
            cudaLaunchKernelEx(&l.cfg, route_softmax_kernel<D, N, VM>, a);
        else
            cudaLaunchKernelEx(&l.cfg, route_softmax_kernel<D, N, 1>, a);
    }
}

/* Picks how the grouped kernel scores groups for vectors of V experts and sizes its
 * shared memory: the s row always, the keys and group scores for the SMEM mode. */
static void route_group_setup(route_args *a, int n, int v) {
    const int size = a->group_size;
    a->group_mode = ROUTE_GROUPS_ALL;
    if (a->topk_group < a->groups) {
        const int lanes = size % v == 0 ? size / v : 0;
        if (lanes > 0 && lanes <= 32 && (lanes & (lanes - 1)) == 0) {
            a->group_mode = ROUTE_GROUPS_REGS;
            while ((1 << a->group_lanes_log2) < lanes) a->group_lanes_log2++;
        } else {
            a->group_mode = ROUTE_GROUPS_SMEM;
        }
    }
    /* SMEM: lanes split a group when fewer than 32 groups leave lanes idle */
    int lpg = 1;
    if (a->groups <= 32)
        while (lpg * 2 * a->groups <= 32 && lpg * 2 <= size) lpg *= 2;
    a->lanes_per_group = lpg;
    a->group_mul = (uint32_t)(((1u << 20) + (uint32_t)size - 1u) / (uint32_t)size);
    const int words = 32 * n + (a->group_mode == ROUTE_GROUPS_SMEM ? 32 * n + a->groups : 0);
    a->smem_words = (words + 3) & ~3; /* keeps each warp's rows 16-byte aligned */
}

template <moe_dtype D>
static void route_launch(route_op op, route_args a, const moe_tensor *logits,
                         const moe_tensor *bias, cudaStream_t st) {
    const int n = route_slots(a.experts);
    const int vmax = route_vmax((int)sizeof(typename moe_elem<D>::T), n);
    const int vec = route_vector_ok(logits, bias, vmax);
    const unsigned grid = (unsigned)((a.tokens + ROUTE_WARPS - 1) / ROUTE_WARPS);
    size_t smem = 0;
    if (op == ROUTE_GROUPED) {
        route_group_setup(&a, n, vec ? vmax : 1);
        smem = (size_t)ROUTE_WARPS * a.smem_words * 4u;
    }
    switch (n) {
    case 1: route_launch_n<D, 1>(op, a, vec, grid, smem, st); break;
    case 2: route_launch_n<D, 2>(op, a, vec, grid, smem, st); break;
    case 4: route_launch_n<D, 4>(op, a, vec, grid, smem, st); break;
    case 8: route_launch_n<D, 8>(op, a, vec, grid, smem, st); break;
    case 12: route_launch_n<D, 12>(op, a, vec, grid, smem, st); break;
    default: route_launch_n<D, 16>(op, a, vec, grid, smem, st); break;
    }
}

static route_args route_common(const moe_tensor *logits, int32_t topk, int32_t renormalize,
                               moe_tensor *ids, moe_tensor *weights) {
    route_args a = {};
    a.logits = logits->data;
    a.logits_stride = logits->stride[0];
    a.tokens = logits->shape[0];
    a.experts = (int32_t)logits->shape[1];
    a.topk = topk;
    a.ids = (int32_t *)ids->data;
    a.ids_stride = ids->stride[0];
    a.weights = (float *)weights->data;
    a.weights_stride = weights->stride[0];
    a.renormalize = renormalize;
    a.scaling = 1.0f;
    return a;
}

moe_status moe_cuda_route_grouped_topk(moe_context *ctx, const moe_tensor *logits,
                                       const moe_tensor *bias,
                                       const moe_grouped_topk_params *params, moe_tensor *ids,
                                       moe_tensor *weights, void *stream) {
    MOE_TRY(moe_cuda_use_device(ctx));
    if (logits->shape[0] == 0) return MOE_OK;
    route_args a = route_common(logits, params->topk, params->renormalize, ids, weights);
    a.bias = bias ? (const float *)bias->data : NULL;
    a.groups = params->num_groups;
    a.topk_group = params->topk_group;
    a.group_size = a.experts / a.groups;
    a.scale_output = params->scale_output;
    a.num_shared = params->num_shared;
    a.scaling = params->routed_scaling_factor;
    cudaStream_t st = moe_cuda_stream(stream);
    MOE_FLOAT_DTYPE_SWITCH(logits->dtype, D, route_launch<D>(ROUTE_GROUPED, a, logits, bias, st));
    return moe_cuda_launch_status("moe_route_grouped_topk");
}

moe_status moe_cuda_route_softmax_topk(moe_context *ctx, const moe_tensor *logits,
                                       int32_t topk, int32_t renormalize, moe_tensor *ids,
                                       moe_tensor *weights, void *stream) {
    MOE_TRY(moe_cuda_use_device(ctx));
    if (logits->shape[0] == 0) return MOE_OK;
    route_args a = route_common(logits, topk, renormalize, ids, weights);
    cudaStream_t st = moe_cuda_stream(stream);
    MOE_FLOAT_DTYPE_SWITCH(logits->dtype, D, route_launch<D>(ROUTE_SOFTMAX, a, logits, NULL, st));
    return moe_cuda_launch_status("moe_route_softmax_topk");
}
