"""Each libmoe op against a plain torch expression of the same math (docs/SPEC.md), on
random inputs, on the CPU backend and (where a GPU is present) the CUDA backend.

Tolerances follow from the number formats: results that libmoe and torch compute with the
same f32 operations in the same order are compared exactly; where the order or the
library's exp/sigmoid differs, the bound is a few f32 ulps, widened by one rounding of the
output format where an output is rounded."""
import pytest
import torch

import libmoe
from libmoe import _lib

E4M3 = torch.float8_e4m3fn
E2M1_VALUES = [0.0, 0.5, 1.0, 1.5, 2.0, 3.0, 4.0, 6.0]
# unit roundoff (half an ulp, relative) of each output format under RNE
UNIT_ROUNDOFF = {torch.float32: 2.0**-24, torch.bfloat16: 2.0**-8, torch.float16: 2.0**-11}


def round_up(v, m):
    return (v + m - 1) // m * m


def rel_fro(actual, expected):
    a, b = actual.double(), expected.double()
    return ((a - b).norm() / b.norm()).item()


def bytes_of(t):
    """The raw bytes of a 1-byte-element tensor (fp8 codes compare bitwise this way)."""
    return t.view(torch.uint8)


def e4m3_step(v):
    """The spacing of e4m3 values around |v| (3 mantissa bits; subnormal below 2^-6)."""
    return torch.exp2(torch.floor(torch.log2(v.abs().float().clamp_min(2.0**-6))) - 3)


def assert_fp8_codes_close(q, q_ref, max_fraction=1e-3):
    """Codes equal except rarely one e4m3 step apart: allowed where the value being
    rounded differs from torch's by an f32 ulp (libmoe's exp vs torch's) and sits on the
    boundary between two codes."""
    a, b = q.float().cpu(), q_ref.float().cpu()
    assert torch.all((a - b).abs() <= e4m3_step(torch.maximum(a.abs(), b.abs())))
    assert (a != b).float().mean().item() <= max_fraction


def routed_ids(gen, t, e, k):
    """Distinct expert ids per token, as routing makes them."""
    return torch.rand(t, e, generator=gen).topk(k, dim=-1).indices.int()


# ================================================================== 1. routing

@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.float16])
@pytest.mark.parametrize("experts,topk,renormalize", [
    (8, 2, True),      # Mixtral
    (128, 8, True),    # Qwen3-MoE
    (32, 4, False),    # gpt-oss-like width, raw probabilities
    (512, 16, True),   # the API's limits
])
def test_route_softmax_topk(device, rand, ref, dtype, experts, topk, renormalize):
    logits = rand(64, experts, dtype=dtype, scale=2.0)
    ids, w = libmoe.route_softmax_topk(logits, topk, renormalize)
    ref_ids, ref_w, _ = ref.softmax_topk(logits, topk, renormalize)
    # Random f32 logits make near-ties (probabilities an ulp apart) vanishingly unlikely,
    # and exact ties (bf16/f16 logits) follow the stable sort's lower-index rule.
    assert torch.equal(ids, ref_ids)
    # f32 softmax: exp to an ulp or two and a sum over E <= 512 terms in another order,
    # relative error ~ log2(E) * 2^-24 per weight, far inside 1e-5.
    torch.testing.assert_close(w, ref_w, rtol=1e-5, atol=1e-7)


def test_route_softmax_topk_nan_logits(device, rand):
    logits = rand(4, 8)
    logits[0, 3] = float("nan")          # never selected, left out of the softmax
    logits[1, :] = float("nan")          # nothing selectable: every slot -1, weight 0
    logits[2, 2:] = float("nan")         # two selectable experts for three slots
    ids, w = libmoe.route_softmax_topk(logits, 3, True)
    ids, w = ids.cpu(), w.cpu()
    assert 3 not in ids[0].tolist()
    assert ids[1].tolist() == [-1, -1, -1] and w[1].tolist() == [0, 0, 0]
    assert sorted(ids[2, :2].tolist()) == [0, 1] and ids[2, 2] == -1
    torch.testing.assert_close(w[2, :2].sum(), torch.tensor(1.0))


GROUPED_CASES = {
    # name: (E, G, TG, k, r, renormalize, scale_output, S, bias)
    "deepseek-v3": (256, 8, 4, 8, 2.5, True, False, 0, True),
    "deepseek-v3-shared": (256, 8, 4, 8, 2.5, True, False, 1, True),
    "deepseek-v3-shared-scaled": (256, 8, 4, 8, 2.5, True, True, 1, True),
    "kimi-k2": (384, 1, 1, 8, 2.827, True, True, 1, True),
    "glm-no-bias-no-renorm": (160, 1, 1, 8, 1.0, False, False, 0, False),
    "groups-of-one": (16, 16, 4, 3, 1.5, True, False, 2, False),
}


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("case", list(GROUPED_CASES), ids=list(GROUPED_CASES))
def test_route_grouped_topk(device, rand, ref, dtype, case):
    e, g, tg, k, r, renorm, scale_out, shared, has_bias = GROUPED_CASES[case]
    t = 64
    logits = rand(t, e, dtype=dtype, scale=2.0)
    bias = rand(e, scale=0.1) if has_bias else None
    ids, w = libmoe.route_grouped_topk(logits, bias, g, tg, k, renorm, r, scale_out, shared)
    ref_ids, ref_w, c = ref.grouped_topk(logits, bias, g, tg, k, renorm, r, scale_out, shared)
    assert ids.shape == (t, k + (shared > 0)) and w.shape == ids.shape

    # libmoe's sigmoid may differ from torch's by an ulp, which can swap two experts whose
    # biased scores are that close. A differing row must be such a near-tie: the experts it
    # picked score what the reference's picks score, to f32 noise. With 64 random tokens
    # that happens to at most a row or so.
    same = (ids == ref_ids).all(dim=1)
    if not same.all():
        rows = ~same
        torch.testing.assert_close(c[rows].gather(1, ids[rows, :k].long()),
                                   c[rows].gather(1, ref_ids[rows, :k].long()), rtol=0, atol=1e-6)
        assert rows.sum().item() <= 2
    # weights: sigmoid (a few ulp) renormalised over <= 9 terms: relative error < 1e-5
    torch.testing.assert_close(w[same], ref_w[same], rtol=1e-5, atol=1e-7)

    if shared:
        assert torch.equal(ids[:, k].cpu(), (e + torch.arange(t) % shared).int())
        # the shared expert counts exactly once in the output: 1 / r here, or 1 once the
        # weights carry r; without renormalisation it is the routed sum / r
        expected = torch.full((t,), 1.0 if scale_out else 1.0 / r) if renorm else \
            w[:, :k].sum(1).cpu() / r
        torch.testing.assert_close(w[:, k].cpu(), expected, rtol=1e-6, atol=0)


# ================================================================== 2. permutation

def ref_plan(ids, num_experts, alignment):
    """SPEC 2 in torch: a stable sort of the pairs by expert, padded per expert."""
    flat = ids.flatten().long().cpu()
    valid = (flat >= 0) & (flat < num_experts)
    counts = torch.bincount(flat[valid], minlength=num_experts)
    padded = (counts + alignment - 1) // alignment * alignment
    offsets = torch.cat([torch.zeros(1, dtype=torch.long), padded.cumsum(0)])
    key = torch.where(valid, flat, num_experts)             # skipped pairs sort last
    order = torch.argsort(key, stable=True)[: int(valid.sum())]
    expert = key[order]
    first_of_expert = torch.cat([torch.zeros(1, dtype=torch.long), counts.cumsum(0)[:-1]])
    rank = torch.arange(order.numel()) - first_of_expert[expert]
    return counts, offsets, order, expert, rank


def ids_with_holes(gen, t, e, k):
    """Routed ids with -1 (non-local experts under EP) and ids >= E sprinkled in."""
    ids = routed_ids(gen, t, e, k)
    holes = torch.rand(t, k, generator=gen)
    ids[holes < 0.1] = -1
    ids[holes > 0.97] = e + 2
    return ids


@pytest.mark.parametrize("alignment", [1, 4, 128])
@pytest.mark.parametrize("shared", [0, 1])
def test_permute_plan(device, gen, alignment, shared):
    t, e, k = 40, 16, 4
    ids = ids_with_holes(gen, t, e, k)
    if shared:  # the layer plans over E + 1 experts with the shared column last
        ids = torch.cat([ids, torch.full((t, 1), e, dtype=torch.int32)], dim=1)
    e_all, kp = e + shared, ids.shape[1]
    counts, offsets, perm, inv = libmoe.permute_plan(ids.to(device), e_all, alignment)

    ref_counts, ref_offsets, order, expert, rank = ref_plan(ids, e_all, alignment)
    rmax = t * kp + e_all * (alignment - 1)
    rows = ref_offsets[expert] + rank
    ref_perm = torch.full((rmax,), -1, dtype=torch.long)
    ref_perm[rows] = order
    ref_inv = torch.full((t * kp,), -1, dtype=torch.long)
    ref_inv[order] = rows

    assert libmoe.max_rows(t, kp, e_all, alignment) == rmax == perm.numel()
    assert torch.equal(counts.cpu().long(), ref_counts)
    assert torch.equal(offsets.cpu().long(), ref_offsets)
    assert torch.equal(perm.cpu().long(), ref_perm)
    assert torch.equal(inv.cpu().long(), ref_inv)


@pytest.mark.parametrize("capacity", [3, 12, 64])
def test_permute_plan_masked(device, gen, capacity):
    t, e, k = 40, 16, 4   # ten pairs per expert on average: capacity 3 drops many
    ids = ids_with_holes(gen, t, e, k)
    counts, perm, inv, overflow = libmoe.permute_plan_masked(ids.to(device), e, capacity)

    ref_counts, _, order, expert, rank = ref_plan(ids, e, 1)
    kept = rank < capacity
    ref_perm = torch.full((e, capacity), -1, dtype=torch.long)
    ref_perm[expert[kept], rank[kept]] = order[kept]
    ref_inv = torch.full((t * k,), -1, dtype=torch.long)
    ref_inv[order[kept]] = expert[kept] * capacity + rank[kept]

    assert torch.equal(counts.cpu().long(), ref_counts.clamp(max=capacity))
    assert torch.equal(perm.cpu().long(), ref_perm)
    assert torch.equal(inv.cpu().long(), ref_inv)
    assert overflow.item() == (ref_counts - capacity).clamp(min=0).sum().item()


def test_problem_sizes(device, gen):
    counts = torch.randint(0, 50, (12,), generator=gen, dtype=torch.int32)
    out = libmoe.problem_sizes(counts.to(device), 1536, 2048)
    n, k = torch.full_like(counts, 1536), torch.full_like(counts, 2048)
    expected = torch.stack([counts, n, k], dim=1)
    assert torch.equal(out.cpu(), expected)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.float16, E4M3])
def test_gather_rows(device, gen, rand, dtype):
    t, e, k, h = 24, 8, 2, 96
    ids = ids_with_holes(gen, t, e, k)
    _, _, perm, _ = libmoe.permute_plan(ids.to(device), e, 8)
    # plus an entry naming a token past T: a zero row, not a read out of bounds
    perm = torch.cat([perm, torch.tensor([t * k + 5], dtype=torch.int32, device=device)])
    x = rand(t, h).to(dtype)
    out = libmoe.gather_rows(x, perm, k)

    src = perm.long() // k
    valid = (perm >= 0) & (src < t)
    x_and_zero = torch.cat([x.float(), torch.zeros(1, h, device=device)]).to(dtype)
    expected = x_and_zero.index_select(0, torch.where(valid, src, t))
    assert torch.equal(bytes_of(out) if dtype == E4M3 else out,
                       bytes_of(expected) if dtype == E4M3 else expected)


# ================================================================== 3. quantisation

def fp8_scales_row_major(scales, m, column_major):
    """Scales as [M, K/g] whichever layout libmoe wrote (padding columns M..M4 dropped)."""
    return scales[:, :m].t() if column_major else scales


@pytest.mark.parametrize("column_major", [False, True], ids=["rows", "cols"])
@pytest.mark.parametrize("ue8m0", [False, True], ids=["f32", "ue8m0"])
@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float32, torch.float16])
def test_quant_fp8_group(device, rand, ref, dtype, ue8m0, column_major):
    m, k = 37, 384   # M not a multiple of 4: column-major scales carry padding columns
    x = rand(m, k, dtype=dtype, scale=3.0)
    q, s = libmoe.quant_fp8_group(x, ue8m0=ue8m0, column_major=column_major)
    ref_q, ref_s = ref.fp8_group_quant(x, 128, ue8m0=ue8m0)
    if column_major:
        assert s.shape == (k // 128, round_up(m, 4))
    # one f32 division (amax / 448) and one per element, then e4m3 RNE: exactly torch's
    assert torch.equal(fp8_scales_row_major(s, m, column_major), ref_s)
    assert torch.equal(bytes_of(q), bytes_of(ref_q))

    out = libmoe.dequant_fp8_group(q, s, column_major=column_major, out_dtype=torch.float32)
    # a single f32 product per element: bitwise torch's
    assert torch.equal(out, ref.fp8_group_dequant(ref_q, ref_s))
    out_bf16 = libmoe.dequant_fp8_group(q, s, column_major=column_major, out_dtype=torch.bfloat16)
    assert torch.equal(out_bf16, ref.fp8_group_dequant(ref_q, ref_s).bfloat16())


@pytest.mark.parametrize("group", [32, 64])
def test_quant_fp8_group_sizes(device, rand, ref, group):
    x = rand(9, 256, dtype=torch.bfloat16)
    q, s = libmoe.quant_fp8_group(x, group=group)
    ref_q, ref_s = ref.fp8_group_quant(x, group)
    assert torch.equal(s, ref_s) and torch.equal(bytes_of(q), bytes_of(ref_q))


@pytest.mark.parametrize("column_major", [False, True], ids=["rows", "cols"])
def test_quant_fp8_group_fused_gather(device, gen, rand, ref, column_major):
    t, e, k, h = 20, 8, 2, 256
    x = rand(t, h, dtype=torch.bfloat16)
    _, _, perm, _ = libmoe.permute_plan(ids_with_holes(gen, t, e, k).to(device), e, 4)
    q, s = libmoe.quant_fp8_group(x, perm, k, column_major=column_major)

    # quantising the gathered rows (zero rows included) must give the same bytes
    gathered = libmoe.gather_rows(x, perm, k)
    ref_q, ref_s = ref.fp8_group_quant(gathered, 128)
    assert torch.equal(bytes_of(q), bytes_of(ref_q))
    assert torch.equal(fp8_scales_row_major(s, perm.numel(), column_major), ref_s)
    # a zero row: amax floored at eps, every code 0
    padding = perm < 0
    assert padding.any() and not bytes_of(q)[padding].any()
    torch.testing.assert_close(ref_s[padding], torch.full_like(ref_s[padding], 1e-10 / 448))


# ---- MXFP8 / NVFP4: block scales in the swizzled per-expert layout of moe.h

def unswizzle(scales, offsets, blocks):
    """Undo moe.h's swizzle: the [M, blocks] matrix of scale bytes for the rows the experts
    cover (others 0), plus whether every padding byte of each expert's block is zero."""
    flat = bytes_of(scales).flatten().cpu()
    cols = round_up(blocks, 4)
    offsets = offsets.tolist()
    out = torch.zeros(offsets[-1], blocks, dtype=torch.uint8)
    written = torch.zeros_like(flat, dtype=torch.bool)
    block_row = 0
    for begin, end in zip(offsets[:-1], offsets[1:]):
        m = torch.arange(round_up(end - begin, 128))[:, None]
        c = torch.arange(cols)[None, :]
        at = (block_row * cols + ((m // 128) * (cols // 4) + c // 4) * 512
              + (m % 32) * 16 + ((m % 128) // 32) * 4 + c % 4)
        real = (m < end - begin) & (c < blocks)
        out[begin:end] = flat[at[: end - begin, :blocks]]
        written[at[~real]] = True
        block_row += round_up(end - begin, 128)
    padding_zero = not flat[written].any()
    return out, padding_zero


def ref_mxfp8(x, ocp_rule=False):
    m, k = x.shape
    xf = x.float().view(m, k // 32, 32)
    amax = xf.abs().amax(-1).double()   # log2 in float64: exact enough at powers of two
    if ocp_rule:
        e = torch.floor(torch.log2(amax)) - 8
    else:
        e = torch.ceil(torch.log2(amax / 448))
    e = torch.where(amax > 0, e, torch.full_like(e, -127)).clamp(-127, 127)
    # the OCP rule can push a block's largest values past 448: libmoe saturates there
    q = (xf / torch.exp2(e).float()[..., None]).clamp(-448, 448).to(E4M3)
    return q.view(m, k), (e + 127).to(torch.uint8)


# Experts of uneven size: one empty, one spanning two 128-row tiles, rows past the last
# expert that no op may touch.
EXPERT_ROWS = [70, 0, 150, 5]
UNCOVERED_ROWS = 7


def expert_offsets(device):
    return torch.tensor([0] + EXPERT_ROWS, dtype=torch.int32).cumsum(0).int().to(device)


@pytest.mark.parametrize("k", [96, 256])   # 3 blocks (padded to 4 columns) and 8
@pytest.mark.parametrize("experts", [False, True], ids=["one", "experts"])
@pytest.mark.parametrize("ocp_rule", [False, True], ids=["ceil", "ocp"])
def test_quant_mxfp8(device, rand, k, experts, ocp_rule):
    m = sum(EXPERT_ROWS) + UNCOVERED_ROWS
    x = rand(m, k, dtype=torch.bfloat16, scale=5.0)
    offsets = expert_offsets(device) if experts else None
    q, s = libmoe.quant_mxfp8(x, offsets, ocp_rule)
    covered = sum(EXPERT_ROWS) if experts else m
    assert s.shape == (_lib.lib.moe_swizzled_scale_rows(m, len(EXPERT_ROWS) if experts else 1),
                       round_up(k // 32, 4))

    # the reference on the CPU: torch's CUDA kernels may round its steps differently
    ref_q, ref_e = ref_mxfp8(x[:covered].cpu(), ocp_rule)
    assert torch.equal(bytes_of(q[:covered]).cpu(), bytes_of(ref_q))
    offs = offsets.cpu() if experts else torch.tensor([0, m])
    got_e, padding_zero = unswizzle(s, offs, k // 32)
    assert torch.equal(got_e, ref_e)
    assert padding_zero

    out = libmoe.dequant_mxfp8(q, s, offsets)
    expected = ref_q.float() * torch.exp2(ref_e.float() - 127).repeat_interleave(32, 1)
    assert torch.equal(out[:covered].cpu(), expected)


def decode_e2m1(packed):
    """[M, K/2] bytes -> [M, K] f32; element 2i is the low nibble."""
    lut = torch.tensor(E2M1_VALUES + [-v for v in E2M1_VALUES], device=packed.device)
    nibbles = torch.stack([packed & 0xF, packed >> 4], dim=-1).flatten(1).long()
    return lut[nibbles]


@pytest.mark.parametrize("experts", [False, True], ids=["one", "experts"])
def test_quant_nvfp4(device, rand, experts):
    k = 160                      # 10 blocks of 16, padded to 12 scale columns
    m = sum(EXPERT_ROWS) + UNCOVERED_ROWS
    x = rand(m, k, dtype=torch.bfloat16, scale=2.0)
    offs = torch.tensor([0] + EXPERT_ROWS).cumsum(0) if experts else torch.tensor([0, m])
    # global scale per expert as NVIDIA's recipe sets it: 448 * 6 / amax of the expert
    gs = torch.tensor([448 * 6 / x[b:e].float().abs().max().item() if e > b else 1.0
                       for b, e in zip(offs[:-1].tolist(), offs[1:].tolist())], device=device)
    offsets = offs.int().to(device) if experts else None
    q, s = libmoe.quant_nvfp4(x, gs, offsets)
    covered = offs[-1].item()

    # scale bytes: e4m3(gs * amax / 6), evaluated in f32 in libmoe's order
    rows_gs = torch.repeat_interleave(gs.cpu(), offs.diff())[:, None].to(device)
    amax = x[:covered].float().view(covered, k // 16, 16).abs().amax(-1)
    ref_sf = (rows_gs * amax / 6).to(E4M3)
    got_sf, padding_zero = unswizzle(s, offs, k // 16)
    assert torch.equal(got_sf, bytes_of(ref_sf).cpu())
    assert padding_zero

    # dequant is exactly code * sf / gs
    deq = libmoe.dequant_nvfp4(q, s, gs, offsets)[:covered]
    sf = ref_sf.float().repeat_interleave(16, 1)
    torch.testing.assert_close(deq, decode_e2m1(q[:covered]) * sf / rows_gs, rtol=2**-23, atol=0)

    # The error bound. With y = x * gs / sf, e2m1's grid has spacing 0.5 on [0, 2], 1 on
    # [2, 4] and 2 on [4, 6]; RNE lands within half a spacing. sf is e4m3 (3 mantissa
    # bits), so it is within 2^-4 of gs * amax / 6 and |y| <= 6 / (1 - 2^-4) = 6.4: the
    # saturation to 6 costs at most 0.4, inside the top half-step of 1. Scaled back by
    # sf / gs: |deq - x| <= halfstep(|y|) * sf / gs, and <= sf / gs over the whole block.
    # (A factor 1 + 2^-20 absorbs the f32 products in y and in the dequantisation.)
    xf = x[:covered].float()
    y = (xf * rows_gs / sf).abs()
    half_step = torch.where(y <= 2, 0.25, torch.where(y <= 4, 0.5, 1.0))
    bound = half_step * sf / rows_gs * (1 + 2**-20)
    assert torch.all((deq - xf).abs() <= bound)
    assert torch.all(y <= 6.4)


# ================================================================== 4. grouped GEMM

GEMM_ROWS = [5, 0, 17, 9]   # one expert without rows
GEMM_TAIL = 3               # rows past offsets[E]: not written (zero in the binding's output)


def gemm_offsets(device):
    return torch.tensor([0] + GEMM_ROWS).cumsum(0).int().to(device)


def per_expert_matmul(a, b, offsets):
    """float64 reference: rows offsets[e]..offsets[e+1] of a times b[e]^T."""
    out = torch.zeros(a.shape[0], b.shape[1], dtype=torch.float64, device=a.device)
    offs = offsets.tolist()
    for e, (lo, hi) in enumerate(zip(offs[:-1], offs[1:])):
        out[lo:hi] = a[lo:hi].double() @ b[e].double().t()
    return out


# One rounding of the output dominates (f32 accumulation adds ~sqrt(K) * 2^-24). RNE to
# bf16 leaves each element a relative error spread evenly over +-2^-8 / mantissa, whose
# RMS over many elements is ~1.7e-3 (f16: 2^-11 instead, ~2.1e-4): hence SPEC 4's bounds
# on ||D - ref|| / ||ref||, 2e-3 for bf16 and 5e-4 for f16.
GEMM_TOL = {torch.bfloat16: 2e-3, torch.float16: 5e-4}


@pytest.mark.parametrize("out_dtype", [torch.bfloat16, torch.float16])
def test_grouped_gemm_bf16(device, rand, out_dtype):
    e, n, k = len(GEMM_ROWS), 72, 200
    r = sum(GEMM_ROWS) + GEMM_TAIL
    a, b = rand(r, k, dtype=torch.bfloat16), rand(e, n, k, dtype=torch.bfloat16)
    offsets = gemm_offsets(device)
    d = libmoe.grouped_gemm(a, b, offsets, out_dtype=out_dtype)
    covered = sum(GEMM_ROWS)
    expected = per_expert_matmul(a, b, offsets)
    assert rel_fro(d[:covered], expected[:covered]) <= GEMM_TOL[out_dtype]
    assert not d[covered:].any()


def fp8_col_major(scales, rows):
    """Row-major [R, K/128] activation scales -> libmoe's column-major [K/128, R4]."""
    out = torch.zeros(scales.shape[1], round_up(rows, 4), device=scales.device)
    out[:, :rows] = scales.t()
    return out


@pytest.mark.parametrize("column_major", [False, True], ids=["rows", "cols"])
def test_grouped_gemm_fp8(device, rand, ref, column_major):
    e, n, k = len(GEMM_ROWS), 256, 384
    r = sum(GEMM_ROWS) + GEMM_TAIL
    a_q, a_s = ref.fp8_group_quant(rand(r, k, dtype=torch.bfloat16))
    b_q, b_s = ref.block_quant_weights(rand(e, n, k, scale=0.05))
    offsets = gemm_offsets(device)
    d = libmoe.grouped_gemm(a_q, b_q, offsets, fp8_col_major(a_s, r) if column_major else a_s,
                            b_s, column_major)
    # the reference multiplies the same quantised values, dequantised exactly
    expected = per_expert_matmul(ref.fp8_group_dequant(a_q, a_s),
                                 ref.block_dequant_weights(b_q, b_s), offsets)
    covered = sum(GEMM_ROWS)
    assert rel_fro(d[:covered], expected[:covered]) <= GEMM_TOL[torch.bfloat16]
    assert not d[covered:].any()


@pytest.mark.parametrize("fmt", ["bf16", "fp8-rows", "fp8-cols"])
def test_grouped_gemm_masked(device, rand, ref, fmt):
    e, cap, n, k = 3, 6, 128, 256
    counts = torch.tensor([3, 0, 11], dtype=torch.int32, device=device)   # 11 > C: C rows
    if fmt == "bf16":
        a = rand(e, cap, k, dtype=torch.bfloat16)
        b = rand(e, n, k, dtype=torch.bfloat16)
        d = libmoe.grouped_gemm_masked(a, b, counts)
        a_val, b_val = a, b
    else:
        a_q, a_s = ref.fp8_group_quant(rand(e * cap, k, dtype=torch.bfloat16))
        b_q, b_s = ref.block_quant_weights(rand(e, n, k, scale=0.05))
        a_s3 = a_s.view(e, cap, k // 128)
        if fmt == "fp8-cols":   # [E, K/128, C4], C = 6 padded to 8
            a_s_arg = torch.zeros(e, k // 128, round_up(cap, 4), device=device)
            a_s_arg[:, :, :cap] = a_s3.transpose(1, 2)
        else:
            a_s_arg = a_s3
        d = libmoe.grouped_gemm_masked(a_q.view(e, cap, k), b_q, counts, a_s_arg, b_s,
                                       fmt == "fp8-cols")
        a_val = ref.fp8_group_dequant(a_q, a_s).view(e, cap, k)
        b_val = ref.block_dequant_weights(b_q, b_s)
    for x in range(e):
        rows = min(counts[x].item(), cap)
        if rows:
            expected = a_val[x, :rows].double() @ b_val[x].double().t()
            assert rel_fro(d[x, :rows], expected) <= GEMM_TOL[torch.bfloat16]
        assert not d[x, rows:].any()


# ================================================================== 5. activation

@pytest.mark.parametrize("dtype,out_dtype", [
    (torch.float32, torch.float32), (torch.bfloat16, torch.bfloat16),
    (torch.float16, torch.float16), (torch.bfloat16, torch.float32),
])
def test_silu_and_mul(device, rand, ref, dtype, out_dtype):
    x = rand(33, 2 * 160, dtype=dtype, scale=3.0)
    out = libmoe.silu_and_mul(x, out_dtype)
    assert out.dtype == out_dtype
    expected = ref.silu_and_mul(x)   # f32, unrounded
    # libmoe's f32 silu * mul is within a few f32 ulps of torch's (its own exp); the output
    # then rounds once, within the format's unit roundoff. atol covers f16 subnormals.
    rtol = UNIT_ROUNDOFF[out_dtype] + 8 * 2.0**-24
    torch.testing.assert_close(out.float(), expected, rtol=rtol, atol=2.0**-24)


@pytest.mark.parametrize("column_major", [False, True], ids=["rows", "cols"])
@pytest.mark.parametrize("ue8m0", [False, True], ids=["f32", "ue8m0"])
def test_silu_and_mul_quant_fp8(device, rand, ref, ue8m0, column_major):
    m, i = 17, 256
    x = rand(m, 2 * i, dtype=torch.bfloat16, scale=3.0)
    q, s = libmoe.silu_and_mul_quant_fp8(x, ue8m0=ue8m0, column_major=column_major)
    # quantise torch's f32 silu * mul directly: no rounding in between (SPEC 5)
    ref_q, ref_s = ref.fp8_group_quant(ref.silu_and_mul(x), 128, ue8m0=ue8m0)
    got_s = fp8_scales_row_major(s, m, column_major)
    if ue8m0:
        assert torch.equal(got_s, ref_s)   # powers of two: an ulp in amax rarely moves them
    else:
        torch.testing.assert_close(got_s, ref_s, rtol=8 * 2.0**-24, atol=0)
    assert_fp8_codes_close(q, ref_q)


# ================================================================== 6. combine

@pytest.mark.parametrize("scale", [1.0, 2.5])
@pytest.mark.parametrize("dtype,out_dtype", [
    (torch.float32, torch.float32), (torch.bfloat16, torch.bfloat16),
    (torch.bfloat16, torch.float32), (torch.float16, torch.float16),
])
def test_combine(device, gen, rand, dtype, out_dtype, scale):
    t, e, k, h = 24, 8, 3, 96
    ids = ids_with_holes(gen, t, e, k)
    _, _, perm, inv = libmoe.permute_plan(ids.to(device), e, 4)
    r = perm.numel()
    # the seed's bug compared a row with T instead of R: point pairs at the very last row
    # of y, and one at R itself, which must be skipped like -1
    inv[0], inv[1], inv[2] = r - 1, r, -1
    y, w = rand(r, h, dtype=dtype), rand(t, k)
    out = libmoe.combine(y, inv, w, scale, out_dtype)

    valid = ((inv >= 0) & (inv < r)).view(t, k, 1)
    picked = y[inv.long().clamp(0, r - 1)].view(t, k, h).double() * valid
    terms = picked * w.double()[..., None]
    expected = terms.sum(1) * scale   # float64: exact up to 2^-53
    # libmoe sums k f32 products in slot order (<= k+1 roundings of 2^-24, relative to the
    # sum of magnitudes), then rounds once to the output format.
    bound = (UNIT_ROUNDOFF[out_dtype] * expected.abs()
             + (k + 2) * 2.0**-24 * scale * terms.abs().sum(1))
    assert torch.all((out.double() - expected).abs() <= bound + 1e-30)


# ================================================================== strides

def test_padded_rows_read_like_contiguous(device, gen, rand):
    """Descriptors carry torch's strides: views whose rows are padded (a leading dimension
    above the width) must give what their contiguous copies give."""
    def padded(t, extra=24):
        wide = torch.cat([t, rand(t.shape[0], extra).to(t.dtype)], dim=1)
        return wide[:, : t.shape[1]]

    t, e, k, h = 16, 8, 2, 128
    logits, x = padded(rand(t, e)), padded(rand(t, h, dtype=torch.bfloat16))
    assert not logits.is_contiguous() and not x.is_contiguous()
    ids, w = libmoe.route_softmax_topk(logits, k)
    ids_c, w_c = libmoe.route_softmax_topk(logits.contiguous(), k)
    assert torch.equal(ids, ids_c) and torch.equal(w, w_c)
    _, _, perm, inv = libmoe.permute_plan(ids, e)
    assert torch.equal(libmoe.gather_rows(x, perm, k), libmoe.gather_rows(x.contiguous(), perm, k))
    (q, s), (q_c, s_c) = libmoe.quant_fp8_group(x), libmoe.quant_fp8_group(x.contiguous())
    assert torch.equal(bytes_of(q), bytes_of(q_c)) and torch.equal(s, s_c)
    assert torch.equal(libmoe.silu_and_mul(x), libmoe.silu_and_mul(x.contiguous()))
    y = padded(rand(perm.numel(), h))
    assert torch.equal(libmoe.combine(y, inv, w), libmoe.combine(y.contiguous(), inv, w))


def test_transposed_input_is_rejected(device, rand):
    with pytest.raises(libmoe.MoeError, match=r"logits.stride\[1\] \(16\) must be 1"):
        libmoe.route_softmax_topk(rand(8, 16).t(), 2)


# ================================================================== errors

def test_errors_carry_the_library_sentence(device, rand):
    logits = rand(4, 8)
    with pytest.raises(libmoe.MoeError, match=r"topk \(9\)") as err:
        libmoe.route_softmax_topk(logits, 9)
    assert err.value.status == _lib.ERR_INVALID_ARGUMENT
    assert "moe_route_softmax_topk" in str(err.value)

    with pytest.raises(libmoe.MoeError, match=r"num_groups \(3\).*divide"):
        libmoe.route_grouped_topk(rand(4, 16), None, 3, 1, 2)
    with pytest.raises(libmoe.MoeError, match=r"topk_group \(5\)"):
        libmoe.route_grouped_topk(rand(4, 16), None, 4, 5, 2)
    with pytest.raises(libmoe.MoeError, match=r"multiple of 128"):
        libmoe.quant_fp8_group(rand(4, 100))
    with pytest.raises(libmoe.MoeError, match=r"inv_perm"):
        libmoe.combine(rand(6, 8), torch.zeros(5, dtype=torch.int32, device=device), rand(2, 2))
    a_q, a_s = libmoe.quant_fp8_group(rand(8, 128))
    with pytest.raises(libmoe.MoeError, match=r"b_scales"):   # FP8 without weight scales
        libmoe.grouped_gemm(a_q, torch.zeros(2, 128, 128, dtype=E4M3, device=device),
                            torch.tensor([0, 4, 8], dtype=torch.int32, device=device), a_s)

    # the error text is per call: a good call afterwards succeeds
    ids, _ = libmoe.route_softmax_topk(logits, 2)
    assert ids.shape == (4, 2)


def test_wrong_dtype_is_a_type_error(device, rand):
    with pytest.raises(TypeError, match="logits has dtype torch.float64"):
        libmoe.route_softmax_topk(rand(4, 8).double(), 2)
    with pytest.raises(TypeError, match="ids has dtype torch.int64"):
        libmoe.permute_plan(torch.zeros(4, 2, dtype=torch.int64, device=device), 8)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_mixed_devices_are_a_value_error():
    logits = torch.randn(4, 16, device="cuda")
    with pytest.raises(ValueError, match="bias is on cpu"):
        libmoe.route_grouped_topk(logits, torch.zeros(16), 1, 1, 2)
    with pytest.raises(ValueError, match="is on"):
        libmoe.combine(torch.randn(8, 4, device="cuda"), torch.zeros(4, dtype=torch.int32),
                       torch.randn(2, 2, device="cuda"))


# ================================================================== torch integration

def _opcheck_cases(rand):
    t, e, k, h = 8, 16, 4, 256
    logits = rand(t, e)
    ids, w = libmoe.route_softmax_topk(logits, k)
    _, offsets, perm, inv = libmoe.permute_plan(ids, e, 4)
    x = rand(t, h, dtype=torch.bfloat16)
    q, s = libmoe.quant_fp8_group(x)
    mq, ms = libmoe.quant_mxfp8(x, None)
    dev = x.device
    # opcheck compares outputs between runs, so every byte must be written: experts that
    # cover all rows (uncovered rows and column-major scale padding are left unwritten)
    two_experts = torch.tensor([0, 3, t], dtype=torch.int32, device=dev)
    return {
        "route_softmax_topk": (logits, k, True),
        "route_grouped_topk": (logits, rand(e), 4, 2, k, True, 2.5, False, 1),
        "permute_plan": (ids, e, 4),
        "permute_plan_masked": (ids, e, 3),
        "gather_rows": (x, perm, k),
        "quant_fp8_group": (x, perm, k, 128, 1e-10, False, True),   # R = 80: no padding
        "quant_mxfp8": (x, two_experts),
        "quant_nvfp4": (x, torch.ones(1, device=dev), None),
        "silu_and_mul": (x, torch.float32),
        "silu_and_mul_quant_fp8": (rand(t, 512),),
        "combine": (rand(perm.numel(), h), inv, w, 2.0, torch.bfloat16),
        "grouped_gemm": (rand(perm.numel(), 64, dtype=torch.bfloat16),
                         rand(e, 32, 64, dtype=torch.bfloat16), offsets),
        "dequant_fp8_group": (q, s, 128, False, torch.bfloat16),
        "dequant_mxfp8": (mq, ms, None, torch.float32),
    }


# torch's SchemaCheckMode compares inputs before and after with a multiply that CPU
# float8 tensors lack, so ops taking fp8 inputs run every check but the schema one.
FP8_INPUT_OPS = {"dequant_fp8_group", "dequant_mxfp8"}


def test_opcheck(device, rand):
    for name, args in _opcheck_cases(rand).items():
        op = getattr(torch.ops.libmoe, name).default
        if name in FP8_INPUT_OPS:
            utils = ("test_autograd_registration", "test_faketensor", "test_aot_dispatch_dynamic")
            torch.library.opcheck(op, args, test_utils=utils)
        else:
            torch.library.opcheck(op, args)


def test_torch_compile_pipeline(device, rand):
    e, k, i = 16, 2, 64

    def block(x, logits):
        ids, w = libmoe.route_softmax_topk(logits, k, True)
        _, _, perm, inv = libmoe.permute_plan(ids, e, 1)
        rows = libmoe.gather_rows(x, perm, k)
        act = libmoe.silu_and_mul(rows)
        return libmoe.combine(act, inv, w, 1.0, torch.float32)

    compiled = torch.compile(block, backend="aot_eager", fullgraph=True)
    for t in (12, 20):   # the second size runs the fake impls with symbolic shapes
        x, logits = rand(t, 2 * i, dtype=torch.bfloat16), rand(t, e)
        assert torch.equal(compiled(x, logits), block(x, logits))
