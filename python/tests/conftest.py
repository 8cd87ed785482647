"""Shared fixtures for libmoe's Python tests, and the plain-torch references that both
test files compare against.

Every op is tested on CPU tensors (libmoe's CPU reference backend) and, where torch sees
a GPU, on CUDA tensors too; without one the CUDA variants show up as skipped rather than
silently disappearing. Random inputs are drawn on the CPU from a seeded generator and then
moved, so a failure reproduces identically on either device."""
import os
import types

# libmoe's CPU backend and torch each bring their own OpenMP runtime (the system libgomp
# and torch's bundled copy). By default each keeps its idle threads spinning after a
# parallel region, and on a small machine the two pools then starve each other: this
# suite ran 6x slower on 2 cores. Passive waiting costs nothing here; it must be set
# before either runtime loads, so before torch and libmoe are imported.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import pytest  # noqa: E402
import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

from libmoe import _lib  # noqa: E402

E4M3_MAX = 448.0


def _cuda_param():
    if not torch.cuda.is_available():
        reason = "torch sees no CUDA device"
    elif not _lib.lib.moe_backend_available(_lib.BACKEND_CUDA):
        reason = "libmoe was built without its CUDA backend (or finds no usable GPU)"
    else:
        reason = None
    return pytest.param("cuda", marks=pytest.mark.skipif(reason is not None, reason=reason or ""))


DEVICES = ["cpu", _cuda_param()]


@pytest.fixture(params=DEVICES)
def device(request):
    return torch.device(request.param)


@pytest.fixture
def gen():
    """A CPU generator with a fixed seed: each test gets fresh, reproducible inputs."""
    return torch.Generator().manual_seed(20240607)


@pytest.fixture
def rand(gen, device):
    """rand(*shape, dtype=, scale=) -> a normal random tensor on the test's device."""
    def draw(*shape, dtype=torch.float32, scale=1.0):
        x = torch.randn(*shape, generator=gen, dtype=torch.float32) * scale
        return x.to(dtype).to(device)
    return draw


# ------------------------------------------------------------------ plain-torch references

def ref_softmax_topk(logits, k, renormalize):
    p = torch.softmax(logits.float(), dim=-1)
    # A stable descending sort puts equal values in index order: the tie rule libmoe
    # documents (bf16 logits do produce exact ties). topk promises no order among ties.
    w, ids = torch.sort(p, dim=-1, descending=True, stable=True)
    w, ids = w[:, :k], ids[:, :k]
    if renormalize:
        w = w / w.sum(-1, keepdim=True)
    return ids.int(), w, p


def ref_grouped_topk(logits, bias, num_groups, topk_group, topk, renormalize, r,
                     scale_output, num_shared):
    """DeepSeek-V3's routing as SGLang's torch reference writes it (biased_grouped_topk),
    plus libmoe's round-robin shared column. Returns ids, weights and the biased scores."""
    s = torch.sigmoid(logits.float())
    c = s + bias.float() if bias is not None else s
    t, e = c.shape
    per_group = e // num_groups
    grouped = c.view(t, num_groups, per_group)
    group_score = grouped.topk(min(2, per_group), dim=-1).values.sum(-1)
    kept = torch.sort(group_score, dim=-1, descending=True, stable=True).indices[:, :topk_group]
    group_mask = torch.zeros_like(group_score, dtype=torch.bool).scatter_(1, kept, True)
    expert_mask = group_mask.repeat_interleave(per_group, dim=1)
    candidates = c.masked_fill(~expert_mask, float("-inf"))
    ids = torch.sort(candidates, dim=-1, descending=True, stable=True).indices[:, :topk]
    w = s.gather(1, ids)
    routed_sum = w.sum(-1, keepdim=True)
    if num_shared > 0:
        shared = e + torch.arange(t, device=ids.device) % num_shared
        ids = torch.cat([ids, shared[:, None]], dim=1)
        w = torch.cat([w, routed_sum / r], dim=1)
    if renormalize:
        w = w / routed_sum
    if scale_output:
        w = w * r
    return ids.int(), w, c


def ref_fp8_group_quant(x, group=128, eps=1e-10, ue8m0=False):
    """SPEC 3's per-token-group FP8: (q e4m3 [M, K], scales f32 [M, K/group])."""
    m, k = x.shape
    xf = x.float().view(m, k // group, group)
    # the quotients in float64, then rounded once: a correctly rounded f32 division (torch
    # on CUDA divides by a scalar through its reciprocal, one ulp off at times)
    scale = (xf.abs().amax(-1).clamp_min(eps).double() / E4M3_MAX).float()
    if ue8m0:
        # log2 in float64: in f32 a scale a few ulp above a power of two can round to an
        # exact integer and miss the step up that libmoe (working from the bits) takes
        scale = torch.exp2(torch.ceil(torch.log2(scale.double()))).float()
    q = (xf.double() / scale.double()[..., None]).float().to(torch.float8_e4m3fn)
    return q.view(m, k), scale


def ref_fp8_group_dequant(q, scale, group=128):
    return q.float() * scale.repeat_interleave(group, dim=-1)


def ref_block_quant_weights(w, block=128):
    """DeepSeek-V3 weight format: e4m3 with one f32 scale per 128x128 block of each expert's
    [N, K] matrix (amax / 448, so nothing saturates). Returns (q, scales [E, N/128, K/128])."""
    e, n, k = w.shape
    blocks = w.float().view(e, n // block, block, k // block, block)
    scale = blocks.abs().amax(dim=(2, 4)).clamp_min(1e-10) / E4M3_MAX
    q = (blocks / scale[:, :, None, :, None]).to(torch.float8_e4m3fn)
    return q.view(e, n, k), scale


def ref_block_dequant_weights(q, scale, block=128):
    return q.float() * scale.repeat_interleave(block, 1).repeat_interleave(block, 2)


def ref_silu_and_mul(x):
    i = x.shape[1] // 2
    xf = x.float()
    return F.silu(xf[:, :i]) * xf[:, i:]


@pytest.fixture(scope="session")
def ref():
    """The plain-torch references, for tests to call as ref.softmax_topk(...) etc."""
    return types.SimpleNamespace(
        softmax_topk=ref_softmax_topk, grouped_topk=ref_grouped_topk,
        fp8_group_quant=ref_fp8_group_quant, fp8_group_dequant=ref_fp8_group_dequant,
        block_quant_weights=ref_block_quant_weights,
        block_dequant_weights=ref_block_dequant_weights, silu_and_mul=ref_silu_and_mul)
