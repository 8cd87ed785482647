"""The DeepSeek-V3 MoE layer as a PyTorch user would compose it today, timed for
bench/compare_layer.py against moe-bench --layer: grouped sigmoid routing with a correction
bias, a stable argsort permutation, rowwise FP8 quantisation and torch._scaled_grouped_mm
(or torch._grouped_mm for BF16) for both projections, silu * mul, and a weighted
index_add_ combine in f32. Eager and CUDA-graph replay times (median of CUDA-event pairs,
L2 flushed before each call by reading 256 MB, as moe-bench --layer does; the replays also
after a 256 MB memset, the flush of triton's do_bench that leaves dirty lines for the timed
call to write back), T in {1, 32, 512, 4096}.

Two compositions:
- "dsv3 layer ...": the 256 routed experts only: the composition docs/ANCHORS.md's goals
  refer to (the same keys as its anchor JSON);
- "dsv3+shared layer ...": plus the shared expert as a 257th group that every token visits
  with weight 1, i.e. the work of libmoe's deepseek-v3 preset (k' = 9 experts a token).

torch's FP8 path scales per row (activations) and per output column (weights): less work
than the 1x128 / 128x128 blockwise scaling libmoe computes.

Inputs as in moe-bench --layer: logits ~ N(0, 1) f32, router bias ~ N(0, 0.1), x ~ N(0, 1)
bf16. Writes JSON to argv[1] (default $OUT/layer_torch.json), rewritten after every case;
cases past a time budget (TORCH_LAYER_BUDGET_S, 100 s) are skipped so the run stays
under two minutes."""
import json
import os
import sys
import time

import torch
import torch.nn.functional as F

from torch_timing import time_us

E, TOPK, H, I, GROUPS, TOPK_GROUPS, SCALE = 256, 8, 7168, 2048, 8, 4, 2.5
SHARED = 1
TOKENS = (1, 32, 512, 4096)
FP8 = torch.float8_e4m3fn
FP8_MAX = 448.0


def route(logits, bias, groups=GROUPS, topk_groups=TOPK_GROUPS, topk=TOPK, scale=SCALE):
    """Grouped top-k: sigmoid scores, bias-corrected choice, groups ranked by the sum of
    their two best corrected scores; weights are the plain scores, renormalised, times r."""
    n, e = logits.shape
    score = torch.sigmoid(logits.float())
    choice = score + bias
    per_group = choice.view(n, groups, e // groups)
    group_score = per_group.topk(min(2, e // groups), dim=-1).values.sum(-1)
    keep = torch.zeros(n, groups, dtype=torch.bool, device=logits.device)
    keep.scatter_(1, group_score.topk(topk_groups, dim=-1).indices, True)
    choice = choice.masked_fill(~keep.repeat_interleave(e // groups, dim=1), float("-inf"))
    ids = choice.topk(topk, dim=-1).indices
    w = score.gather(1, ids)
    return ids, w * (scale / w.sum(-1, keepdim=True))


def quant_rowwise(a):
    """e4m3 codes and one f32 scale per row (amax / 448)."""
    s = a.abs().amax(-1).float().clamp(min=1e-12) / FP8_MAX
    return (a.float() / s.unsqueeze(-1)).to(FP8), s


class Experts:
    """w1 [G, 2I, H] and w2 [G, H, I] in bf16, or e4m3 with one scale per output row;
    made 16 experts at a time so no full-size temporary ever exists."""

    def __init__(self, groups, fp8, dev, hidden=H, inter=I, seed=0):
        gen = torch.Generator(device=dev).manual_seed(seed)
        dt = FP8 if fp8 else torch.bfloat16
        self.fp8 = fp8
        self.w1 = torch.empty(groups, 2 * inter, hidden, device=dev, dtype=dt)
        self.w2 = torch.empty(groups, hidden, inter, device=dev, dtype=dt)
        self.s1 = torch.empty(groups, 2 * inter, device=dev) if fp8 else None
        self.s2 = torch.empty(groups, hidden, device=dev) if fp8 else None
        for g0 in range(0, groups, 16):
            g1 = min(groups, g0 + 16)
            for w, s in ((self.w1, self.s1), (self.w2, self.s2)):
                chunk = torch.randn(g1 - g0, *w.shape[1:], device=dev, generator=gen,
                                    dtype=torch.bfloat16) * 0.02
                if fp8:
                    q, sc = quant_rowwise(chunk)
                    w[g0:g1], s[g0:g1] = q, sc
                else:
                    w[g0:g1] = chunk

    def view(self, groups):
        """The first `groups` experts, transposed to [G, K, N] (column-major per group: what
        both grouped GEMMs want), with their scales."""
        w1, w2 = self.w1[:groups].transpose(1, 2), self.w2[:groups].transpose(1, 2)
        if not self.fp8:
            return w1, None, w2, None
        return w1, self.s1[:groups], w2, self.s2[:groups]


def grouped_mm(a, w, s, offs):
    if s is None:
        return torch._grouped_mm(a, w, offs=offs, out_dtype=torch.bfloat16)
    aq, sa = quant_rowwise(a)
    return torch._scaled_grouped_mm(aq, w, sa, s, offs=offs, out_dtype=torch.bfloat16)


def moe_layer(x, logits, bias, weights, shared, num_experts=E, inter=I, **routing):
    """One layer: route, permute, GEMM 1, silu * mul, GEMM 2, combine. `shared` appends
    expert num_experts to every token with weight 1 (libmoe's fused shared expert: its
    routing gives it 1 / r, and combine multiplies by r)."""
    n = x.shape[0]
    ids, w = route(logits, bias, **routing)
    if shared:
        ids = torch.cat([ids, torch.full((n, 1), num_experts, dtype=ids.dtype, device=x.device)], 1)
        w = torch.cat([w, torch.ones(n, 1, dtype=w.dtype, device=x.device)], 1)
    k, groups = ids.shape[1], num_experts + (1 if shared else 0)
    flat = ids.reshape(-1)
    order = flat.argsort(stable=True)
    counts = torch.zeros(groups, dtype=torch.int32, device=x.device)
    counts.scatter_add_(0, flat, torch.ones_like(flat, dtype=torch.int32))
    offs = counts.cumsum(0, dtype=torch.int32)
    token = order // k
    w1, s1, w2, s2 = weights.view(groups)
    h = grouped_mm(x.index_select(0, token), w1, s1, offs)
    a = F.silu(h[:, :inter]) * h[:, inter:]
    y = grouped_mm(a, w2, s2, offs)
    y = y.float() * w.reshape(-1)[order].unsqueeze(1)
    out = torch.zeros(n, x.shape[1], dtype=torch.float32, device=x.device)
    return out.index_add_(0, token, y).to(torch.bfloat16)


def main():
    dev = "cuda"
    out_path = sys.argv[1] if len(sys.argv) > 1 else os.path.join(
        os.environ.get("OUT", "/tmp"), "layer_torch.json")
    budget = float(os.environ.get("TORCH_LAYER_BUDGET_S", "100"))
    start = time.time()
    out = {"gpu": torch.cuda.get_device_name(), "torch": torch.__version__,
           "method": "median of CUDA-event pairs, L2 flushed before each call by reading "
                     "256 MB ('graph us, memset flush': by a memset, as triton's do_bench); "
                     "graph: torch.cuda.CUDAGraph of one layer, replayed"}

    def record(key, value):
        out[key] = value
        print(f"{key:56s} {value}", flush=True)
        json.dump(out, open(out_path, "w"), indent=1)

    torch.manual_seed(0)
    bias = torch.randn(E, device=dev) * 0.1
    inputs = {}
    for t in TOKENS:
        x = torch.randn(t, H, device=dev, dtype=torch.bfloat16)
        logits = torch.randn(t, E, device=dev, dtype=torch.float32)
        inputs[t] = (x, logits)
        ids, _ = route(logits, bias)
        record(f"dsv3 touched experts T={t}", int(ids.unique().numel()))

    for fp8 in (True, False):
        name = "fp8rowwise" if fp8 else "bf16"
        t0 = time.time()
        weights = Experts(E + SHARED, fp8, dev)
        torch.cuda.synchronize()
        print(f"{name} weights made in {time.time() - t0:.1f} s", flush=True)
        for shared in (False, True):
            for t in TOKENS:
                key = f"dsv3{'+shared' if shared else ''} layer {name} T={t} (eager us, graph us)"
                if time.time() - start > budget:
                    record(key, f"skipped: past the {budget:.0f} s budget")
                    continue
                x, logits = inputs[t]

                def fn():
                    return moe_layer(x, logits, bias, weights, shared)

                try:
                    fn()
                    torch.cuda.synchronize()
                    eager = time_us(fn)
                    side = torch.cuda.Stream()
                    side.wait_stream(torch.cuda.current_stream())
                    with torch.cuda.stream(side):
                        for _ in range(3):
                            fn()
                    torch.cuda.current_stream().wait_stream(side)
                    g = torch.cuda.CUDAGraph()
                    with torch.cuda.graph(g):
                        fn()
                    graph = time_us(g.replay)
                    record(key, [round(eager, 1), round(graph, 1)])
                    record(key.replace("(eager us, graph us)", "graph us, memset flush"),
                           round(time_us(g.replay, memset=True), 1))
                    del g
                except Exception as e:  # keep the other cases
                    record(key, f"{type(e).__name__}: {str(e)[:300]}")
                torch.cuda.empty_cache()
        weights = None  # free this format's experts before making the next
        torch.cuda.empty_cache()
    print(f"device: {out['gpu']}, torch {out['torch']}, {time.time() - start:.0f} s", flush=True)


if __name__ == "__main__":
    main()
