"""libmoe's ops on torch tensors, registered as torch custom ops (torch.ops.libmoe.*) so
they trace under torch.compile and capture in CUDA graphs. CPU tensors run on libmoe's
CPU backend, CUDA tensors on its CUDA backend on the tensor's device and current stream.
Outputs are allocated here; semantics are libmoe's (docs/SPEC.md)."""
import ctypes
from typing import Optional, Tuple

import torch
from torch import Tensor

from . import _lib as L
from ._core import E8M0, check, context, desc, lib, ref, same_device, stream, workspace

_op = torch.library.custom_op


def _round_up(v, m):
    return (v + m - 1) // m * m


def _i32(shape, device):
    return torch.empty(shape, dtype=torch.int32, device=device)


# ---------------------------------------------------------------- 1. routing

@_op("libmoe::route_grouped_topk", mutates_args=())
def route_grouped_topk(logits: Tensor, bias: Optional[Tensor], num_groups: int, topk_group: int,
                       topk: int, renormalize: bool = True, routed_scaling_factor: float = 1.0,
                       scale_output: bool = False, num_shared: int = 0) -> Tuple[Tensor, Tensor]:
    """Grouped top-k with sigmoid + correction bias: (ids [T, k'] i32, weights [T, k'] f32),
    k' = k + (num_shared > 0)."""
    dev = same_device(logits=logits, bias=bias)
    kp = topk + (num_shared > 0)
    ids = _i32((logits.shape[0], kp), dev)
    w = torch.empty((logits.shape[0], kp), dtype=torch.float32, device=dev)
    p = L.GroupedTopkParams(num_groups, topk_group, topk, int(renormalize),
                            routed_scaling_factor, int(scale_output), num_shared)
    check("moe_route_grouped_topk", lib.moe_route_grouped_topk(
        context(dev), ref(desc(logits, "logits")), ref(desc(bias, "bias")), ctypes.byref(p),
        ref(desc(ids)), ref(desc(w)), stream(dev)))
    return ids, w


@route_grouped_topk.register_fake
def _(logits, bias, num_groups, topk_group, topk, renormalize=True, routed_scaling_factor=1.0,
      scale_output=False, num_shared=0):
    kp = topk + (num_shared > 0)
    return (logits.new_empty((logits.shape[0], kp), dtype=torch.int32),
            logits.new_empty((logits.shape[0], kp), dtype=torch.float32))


@_op("libmoe::route_softmax_topk", mutates_args=())
def route_softmax_topk(logits: Tensor, topk: int, renormalize: bool = True) -> Tuple[Tensor, Tensor]:
    """Softmax top-k: (ids [T, k] i32, weights [T, k] f32)."""
    dev = logits.device
    ids = _i32((logits.shape[0], topk), dev)
    w = torch.empty((logits.shape[0], topk), dtype=torch.float32, device=dev)
    check("moe_route_softmax_topk", lib.moe_route_softmax_topk(
        context(dev), ref(desc(logits, "logits")), topk, int(renormalize), ref(desc(ids)),
        ref(desc(w)), stream(dev)))
    return ids, w


@route_softmax_topk.register_fake
def _(logits, topk, renormalize=True):
    return (logits.new_empty((logits.shape[0], topk), dtype=torch.int32),
            logits.new_empty((logits.shape[0], topk), dtype=torch.float32))


# ---------------------------------------------------------------- 2. permutation

def max_rows(num_tokens: int, topk: int, num_experts: int, alignment: int = 1) -> int:
    """Upper bound on a contiguous plan's rows: T*k' + E'*(alignment - 1)."""
    return int(lib.moe_permute_max_rows(num_tokens, topk, num_experts, alignment))


@_op("libmoe::permute_plan", mutates_args=())
def permute_plan(ids: Tensor, num_experts: int, alignment: int = 1) -> Tuple[Tensor, Tensor, Tensor, Tensor]:
    """Contiguous plan: (counts [E'], offsets [E'+1], perm [Rmax], inv_perm [T*k']), all i32."""
    dev = ids.device
    t, kp = ids.shape
    rmax = max_rows(t, kp, num_experts, alignment)
    if rmax < 0:
        raise ValueError(f"alignment ({alignment}) must be >= 1 and sizes non-negative")
    counts, offsets = _i32((num_experts,), dev), _i32((num_experts + 1,), dev)
    perm, inv = _i32((rmax,), dev), _i32((t * kp,), dev)
    ctx = context(dev)
    nbytes = ctypes.c_size_t()
    check("moe_permute_workspace_size",
          lib.moe_permute_workspace_size(ctx, t, kp, num_experts, ctypes.byref(nbytes)))
    ws = workspace(nbytes.value, dev)
    check("moe_permute_plan", lib.moe_permute_plan(
        ctx, ref(desc(ids, "ids")), num_experts, alignment, ref(desc(counts)), ref(desc(offsets)),
        ref(desc(perm)), ref(desc(inv)), ws.data_ptr(), nbytes.value, stream(dev)))
    return counts, offsets, perm, inv


@permute_plan.register_fake
def _(ids, num_experts, alignment=1):
    t, kp = ids.shape
    rmax = t * kp + num_experts * (alignment - 1)
    e = lambda *s: ids.new_empty(s, dtype=torch.int32)
    return e(num_experts), e(num_experts + 1), e(rmax), e(t * kp)


@_op("libmoe::permute_plan_masked", mutates_args=())
def permute_plan_masked(ids: Tensor, num_experts: int, capacity: int) -> Tuple[Tensor, Tensor, Tensor, Tensor]:
    """Masked plan: (counts [E'], perm [E', C], inv_perm [T*k'], overflow [1]), all i32."""
    dev = ids.device
    t, kp = ids.shape
    counts, perm = _i32((num_experts,), dev), _i32((num_experts, capacity), dev)
    inv, overflow = _i32((t * kp,), dev), _i32((1,), dev)
    ctx = context(dev)
    nbytes = ctypes.c_size_t()
    check("moe_permute_workspace_size",
          lib.moe_permute_workspace_size(ctx, t, kp, num_experts, ctypes.byref(nbytes)))
    ws = workspace(nbytes.value, dev)
    check("moe_permute_plan_masked", lib.moe_permute_plan_masked(
        ctx, ref(desc(ids, "ids")), num_experts, capacity, ref(desc(counts)), ref(desc(perm)),
        ref(desc(inv)), ref(desc(overflow)), ws.data_ptr(), nbytes.value, stream(dev)))
    return counts, perm, inv, overflow


@permute_plan_masked.register_fake
def _(ids, num_experts, capacity):
    t, kp = ids.shape
    e = lambda *s: ids.new_empty(s, dtype=torch.int32)
    return e(num_experts), e(num_experts, capacity), e(t * kp), e(1)


@_op("libmoe::problem_sizes", mutates_args=())
def problem_sizes(counts: Tensor, n: int, k: int) -> Tensor:
    """[E', 3] i32 rows (counts[e], n, k)."""
    out = _i32((counts.shape[0], 3), counts.device)
    check("moe_problem_sizes", lib.moe_problem_sizes(
        context(counts.device), ref(desc(counts, "counts")), n, k, ref(desc(out)),
        stream(counts.device)))
    return out


@problem_sizes.register_fake
def _(counts, n, k):
    return counts.new_empty((counts.shape[0], 3), dtype=torch.int32)


@_op("libmoe::gather_rows", mutates_args=())
def gather_rows(x: Tensor, perm: Tensor, topk: int) -> Tensor:
    """out[r] = x[perm[r] // topk], zero rows where perm[r] < 0."""
    dev = same_device(x=x, perm=perm)
    out = torch.empty((perm.shape[0], x.shape[1]), dtype=x.dtype, device=dev)
    check("moe_gather_rows", lib.moe_gather_rows(
        context(dev), ref(desc(x, "x")), ref(desc(perm, "perm")), topk, ref(desc(out)), stream(dev)))
    return out


@gather_rows.register_fake
def _(x, perm, topk):
    return x.new_empty((perm.shape[0], x.shape[1]))


# ---------------------------------------------------------------- 3. quantisation

def _fp8_params(group, eps, ue8m0, column_major):
    return L.Fp8GroupParams(group, eps, int(ue8m0),
                            L.SCALES_COL_MAJOR if column_major else L.SCALES_ROW_MAJOR)


def _fp8_scale_shape(m, k, group, column_major):
    return (k // group, _round_up(m, 4)) if column_major else (m, k // group)


@_op("libmoe::quant_fp8_group", mutates_args=())
def quant_fp8_group(x: Tensor, perm: Optional[Tensor] = None, topk: int = 1, group: int = 128,
                    eps: float = 1e-10, ue8m0: bool = False,
                    column_major: bool = False) -> Tuple[Tensor, Tensor]:
    """Per-token-group FP8 (optionally gathering rows through perm): (q e4m3, scales f32)."""
    dev = same_device(x=x, perm=perm)
    m = perm.shape[0] if perm is not None else x.shape[0]
    k = x.shape[1]
    q = torch.empty((m, k), dtype=torch.float8_e4m3fn, device=dev)
    s = torch.empty(_fp8_scale_shape(m, k, group, column_major) if group > 0 else (m, 0),
                    dtype=torch.float32, device=dev)
    p = _fp8_params(group, eps, ue8m0, column_major)
    check("moe_quant_fp8_group", lib.moe_quant_fp8_group(
        context(dev), ref(desc(x, "x")), ref(desc(perm, "perm")), topk, ctypes.byref(p),
        ref(desc(q)), ref(desc(s)), stream(dev)))
    return q, s


@quant_fp8_group.register_fake
def _(x, perm=None, topk=1, group=128, eps=1e-10, ue8m0=False, column_major=False):
    m = perm.shape[0] if perm is not None else x.shape[0]
    k = x.shape[1]
    return (x.new_empty((m, k), dtype=torch.float8_e4m3fn),
            x.new_empty(_fp8_scale_shape(m, k, group, column_major), dtype=torch.float32))


@_op("libmoe::dequant_fp8_group", mutates_args=())
def dequant_fp8_group(q: Tensor, scales: Tensor, group: int = 128, column_major: bool = False,
                      out_dtype: torch.dtype = torch.float32) -> Tensor:
    """q * scale per group."""
    dev = same_device(q=q, scales=scales)
    out = torch.empty(q.shape, dtype=out_dtype, device=dev)
    p = _fp8_params(group, 1e-10, False, column_major)
    check("moe_dequant_fp8_group", lib.moe_dequant_fp8_group(
        context(dev), ref(desc(q, "q")), ref(desc(scales, "scales")), ctypes.byref(p),
        ref(desc(out)), stream(dev)))
    return out


@dequant_fp8_group.register_fake
def _(q, scales, group=128, column_major=False, out_dtype=torch.float32):
    return q.new_empty(q.shape, dtype=out_dtype)


def _num_experts(offsets):
    return offsets.shape[0] - 1 if offsets is not None else 1


def _block_scale_shape(m, k, block, offsets):
    return (int(lib.moe_swizzled_scale_rows(m, _num_experts(offsets))), _round_up(k // block, 4))


@_op("libmoe::quant_mxfp8", mutates_args=())
def quant_mxfp8(x: Tensor, offsets: Optional[Tensor] = None, ocp_rule: bool = False) -> Tuple[Tensor, Tensor]:
    """MXFP8 (32-blocks, e8m0 scales in the swizzled layout): (q e4m3, scales)."""
    dev = same_device(x=x, offsets=offsets)
    m, k = x.shape
    q = torch.empty((m, k), dtype=torch.float8_e4m3fn, device=dev)
    s = torch.zeros(_block_scale_shape(m, k, 32, offsets), dtype=E8M0, device=dev)
    check("moe_quant_mxfp8", lib.moe_quant_mxfp8(
        context(dev), ref(desc(x, "x")), ref(desc(offsets, "offsets")),
        L.MX_RULE_OCP if ocp_rule else L.MX_RULE_CEIL, ref(desc(q)), ref(desc(s, dtype=L.E8M0)),
        stream(dev)))
    return q, s


@quant_mxfp8.register_fake
def _(x, offsets=None, ocp_rule=False):
    m, k = x.shape
    return (x.new_empty((m, k), dtype=torch.float8_e4m3fn),
            x.new_empty(_block_scale_shape(m, k, 32, offsets), dtype=E8M0))


@_op("libmoe::dequant_mxfp8", mutates_args=())
def dequant_mxfp8(q: Tensor, scales: Tensor, offsets: Optional[Tensor] = None,
                  out_dtype: torch.dtype = torch.float32) -> Tensor:
    dev = same_device(q=q, scales=scales, offsets=offsets)
    out = torch.zeros(q.shape, dtype=out_dtype, device=dev)
    check("moe_dequant_mxfp8", lib.moe_dequant_mxfp8(
        context(dev), ref(desc(q, "q")), ref(desc(scales, "scales", dtype=L.E8M0)),
        ref(desc(offsets, "offsets")), ref(desc(out)), stream(dev)))
    return out


@dequant_mxfp8.register_fake
def _(q, scales, offsets=None, out_dtype=torch.float32):
    return q.new_empty(q.shape, dtype=out_dtype)


@_op("libmoe::quant_nvfp4", mutates_args=())
def quant_nvfp4(x: Tensor, global_scale: Tensor, offsets: Optional[Tensor] = None) -> Tuple[Tensor, Tensor]:
    """NVFP4 (16-blocks, e4m3 scales swizzled, per-expert global scale): (q uint8 [M, K/2]
    packed pairs, scales e4m3)."""
    dev = same_device(x=x, global_scale=global_scale, offsets=offsets)
    m, k = x.shape
    q = torch.zeros((m, k // 2), dtype=torch.uint8, device=dev)
    s = torch.zeros(_block_scale_shape(m, k, 16, offsets), dtype=torch.float8_e4m3fn, device=dev)
    check("moe_quant_nvfp4", lib.moe_quant_nvfp4(
        context(dev), ref(desc(x, "x")), ref(desc(offsets, "offsets")),
        ref(desc(global_scale, "global_scale")), ref(desc(q)), ref(desc(s)), stream(dev)))
    return q, s


@quant_nvfp4.register_fake
def _(x, global_scale, offsets=None):
    m, k = x.shape
    return (x.new_empty((m, k // 2), dtype=torch.uint8),
            x.new_empty(_block_scale_shape(m, k, 16, offsets), dtype=torch.float8_e4m3fn))


@_op("libmoe::dequant_nvfp4", mutates_args=())
def dequant_nvfp4(q: Tensor, scales: Tensor, global_scale: Tensor, offsets: Optional[Tensor] = None,
                  out_dtype: torch.dtype = torch.float32) -> Tensor:
    dev = same_device(q=q, scales=scales, global_scale=global_scale, offsets=offsets)
    out = torch.zeros((q.shape[0], q.shape[1] * 2), dtype=out_dtype, device=dev)
    check("moe_dequant_nvfp4", lib.moe_dequant_nvfp4(
        context(dev), ref(desc(q, "q")), ref(desc(scales, "scales")), ref(desc(offsets, "offsets")),
        ref(desc(global_scale, "global_scale")), ref(desc(out)), stream(dev)))
    return out


@dequant_nvfp4.register_fake
def _(q, scales, global_scale, offsets=None, out_dtype=torch.float32):
    return q.new_empty((q.shape[0], q.shape[1] * 2), dtype=out_dtype)


# ---------------------------------------------------------------- 4. grouped GEMM

def _gemm_ws(ctx, e, dev):
    nbytes = ctypes.c_size_t()
    check("moe_grouped_gemm_workspace_size",
          lib.moe_grouped_gemm_workspace_size(ctx, e, ctypes.byref(nbytes)))
    return workspace(nbytes.value, dev), nbytes.value


@_op("libmoe::grouped_gemm", mutates_args=())
def grouped_gemm(a: Tensor, b: Tensor, offsets: Tensor, a_scales: Optional[Tensor] = None,
                 b_scales: Optional[Tensor] = None, scales_column_major: bool = False,
                 out_dtype: torch.dtype = torch.bfloat16) -> Tensor:
    """D[r] = A[r] @ B[e]^T for the expert e whose rows offsets[e]..offsets[e+1]-1 hold r.
    FP8 (a e4m3 with a_scales, b_scales) or BF16. Rows past offsets[E] are zero here."""
    dev = same_device(a=a, b=b, offsets=offsets, a_scales=a_scales, b_scales=b_scales)
    d = torch.zeros((a.shape[0], b.shape[1]), dtype=out_dtype, device=dev)
    ctx = context(dev)
    ws, nbytes = _gemm_ws(ctx, b.shape[0], dev)
    check("moe_grouped_gemm", lib.moe_grouped_gemm(
        ctx, ref(desc(a, "a")), ref(desc(a_scales, "a_scales")),
        L.SCALES_COL_MAJOR if scales_column_major else L.SCALES_ROW_MAJOR, ref(desc(b, "b")),
        ref(desc(b_scales, "b_scales")), ref(desc(offsets, "offsets")), ref(desc(d)),
        ws.data_ptr(), nbytes, stream(dev)))
    return d


@grouped_gemm.register_fake
def _(a, b, offsets, a_scales=None, b_scales=None, scales_column_major=False, out_dtype=torch.bfloat16):
    return a.new_empty((a.shape[0], b.shape[1]), dtype=out_dtype)


@_op("libmoe::grouped_gemm_masked", mutates_args=())
def grouped_gemm_masked(a: Tensor, b: Tensor, counts: Tensor, a_scales: Optional[Tensor] = None,
                        b_scales: Optional[Tensor] = None, scales_column_major: bool = False,
                        out_dtype: torch.dtype = torch.bfloat16) -> Tensor:
    """Masked layout: A [E, C, K] -> D [E, C, N]; rows >= counts[e] are zero here."""
    dev = same_device(a=a, b=b, counts=counts, a_scales=a_scales, b_scales=b_scales)
    d = torch.zeros((a.shape[0], a.shape[1], b.shape[1]), dtype=out_dtype, device=dev)
    ctx = context(dev)
    ws, nbytes = _gemm_ws(ctx, b.shape[0], dev)
    check("moe_grouped_gemm_masked", lib.moe_grouped_gemm_masked(
        ctx, ref(desc(a, "a")), ref(desc(a_scales, "a_scales")),
        L.SCALES_COL_MAJOR if scales_column_major else L.SCALES_ROW_MAJOR, ref(desc(b, "b")),
        ref(desc(b_scales, "b_scales")), ref(desc(counts, "counts")), ref(desc(d)),
        ws.data_ptr(), nbytes, stream(dev)))
    return d


@grouped_gemm_masked.register_fake
def _(a, b, counts, a_scales=None, b_scales=None, scales_column_major=False, out_dtype=torch.bfloat16):
    return a.new_empty((a.shape[0], a.shape[1], b.shape[1]), dtype=out_dtype)


# ---------------------------------------------------------------- 5. activation

@_op("libmoe::silu_and_mul", mutates_args=())
def silu_and_mul(x: Tensor, out_dtype: Optional[torch.dtype] = None) -> Tensor:
    """silu(x[:, :I]) * x[:, I:] in f32, rounded once to out_dtype (x's dtype by default)."""
    out = torch.empty((x.shape[0], x.shape[1] // 2), dtype=out_dtype or x.dtype, device=x.device)
    check("moe_silu_and_mul", lib.moe_silu_and_mul(
        context(x.device), ref(desc(x, "x")), ref(desc(out)), stream(x.device)))
    return out


@silu_and_mul.register_fake
def _(x, out_dtype=None):
    return x.new_empty((x.shape[0], x.shape[1] // 2), dtype=out_dtype or x.dtype)


@_op("libmoe::silu_and_mul_quant_fp8", mutates_args=())
def silu_and_mul_quant_fp8(x: Tensor, group: int = 128, eps: float = 1e-10, ue8m0: bool = False,
                           column_major: bool = False) -> Tuple[Tensor, Tensor]:
    """silu_and_mul fused with per-token-group FP8: (q e4m3 [M, I], scales f32)."""
    m, i = x.shape[0], x.shape[1] // 2
    q = torch.empty((m, i), dtype=torch.float8_e4m3fn, device=x.device)
    s = torch.empty(_fp8_scale_shape(m, i, group, column_major) if group > 0 else (m, 0),
                    dtype=torch.float32, device=x.device)
    p = _fp8_params(group, eps, ue8m0, column_major)
    check("moe_silu_and_mul_quant_fp8", lib.moe_silu_and_mul_quant_fp8(
        context(x.device), ref(desc(x, "x")), ctypes.byref(p), ref(desc(q)), ref(desc(s)),
        stream(x.device)))
    return q, s


@silu_and_mul_quant_fp8.register_fake
def _(x, group=128, eps=1e-10, ue8m0=False, column_major=False):
    m, i = x.shape[0], x.shape[1] // 2
    return (x.new_empty((m, i), dtype=torch.float8_e4m3fn),
            x.new_empty(_fp8_scale_shape(m, i, group, column_major), dtype=torch.float32))


# ---------------------------------------------------------------- 6. combine

@_op("libmoe::combine", mutates_args=())
def combine(y: Tensor, inv_perm: Tensor, weights: Tensor, scale: float = 1.0,
            out_dtype: Optional[torch.dtype] = None) -> Tensor:
    """out[t] = scale * sum_j weights[t, j] * y[inv_perm[t*k' + j]] (j order, f32)."""
    dev = same_device(y=y, inv_perm=inv_perm, weights=weights)
    out = torch.empty((weights.shape[0], y.shape[1]), dtype=out_dtype or y.dtype, device=dev)
    check("moe_combine", lib.moe_combine(
        context(dev), ref(desc(y, "y")), ref(desc(inv_perm, "inv_perm")),
        ref(desc(weights, "weights")), scale, ref(desc(out)), stream(dev)))
    return out


@combine.register_fake
def _(y, inv_perm, weights, scale=1.0, out_dtype=None):
    return y.new_empty((weights.shape[0], y.shape[1]), dtype=out_dtype or y.dtype)


__all__ = [
    "route_grouped_topk", "route_softmax_topk", "max_rows", "permute_plan",
    "permute_plan_masked", "problem_sizes", "gather_rows", "quant_fp8_group",
    "dequant_fp8_group", "quant_mxfp8", "dequant_mxfp8", "quant_nvfp4", "dequant_nvfp4",
    "grouped_gemm", "grouped_gemm_masked", "silu_and_mul", "silu_and_mul_quant_fp8", "combine",
]
