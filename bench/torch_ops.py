"""The torch expressions a PyTorch user would write for libmoe's bandwidth ops, timed on the
same shapes as moe-bench-ops (DeepSeek-V3 and Kimi K2, T in {1, 32, 512, 4096, 16384}).
Timed as libmoe's side is (bench/torch_timing.py: L2 flushed by a read, median). Writes JSON to argv[1]."""
import json, sys
import torch
import torch.nn.functional as F

from torch_timing import time_us

dev = "cuda"
MODELS = {"deepseek-v3": (256, 8, 8, 4, 7168, 2048, 2.5), "kimi-k2": (384, 8, 1, 1, 7168, 2048, 2.827)}
TOKENS = (1, 32, 512, 4096, 16384)


def route(logits, bias, G, TG, K, r):
    T, E = logits.shape
    scores = logits.sigmoid()
    s = scores + bias
    gs = s.view(T, G, E // G).topk(min(2, E // G), -1).values.sum(-1)
    gi = gs.topk(TG, -1).indices
    gm = torch.zeros(T, G, device=dev, dtype=torch.bool).scatter_(1, gi, True)
    s = s.masked_fill(~gm.repeat_interleave(E // G, 1), float("-inf"))
    ids = s.topk(K, -1).indices
    w = scores.gather(1, ids)
    return ids, w / w.sum(-1, keepdim=True) * r


def plan(ids, E):
    flat = ids.flatten()
    order = flat.argsort(stable=True)
    counts = torch.bincount(flat, minlength=E)
    offs = torch.cumsum(counts, 0)
    inv = torch.empty_like(order)
    inv[order] = torch.arange(order.numel(), device=dev)
    return order, offs, inv


def quant_group(v, g):
    R, K = v.shape
    v = v.float().view(R, K // g, g)
    s = v.abs().amax(-1).clamp(min=1e-10) / 448.0
    return (v / s[..., None]).to(torch.float8_e4m3fn), s


def quant_mx(v):
    R, K = v.shape
    v = v.float().view(R, K // 32, 32)
    e = torch.ceil(torch.log2(v.abs().amax(-1).clamp(min=1e-30) / 448.0))
    return (v / torch.exp2(e)[..., None]).to(torch.float8_e4m3fn), e


def main():
    out = {"gpu": torch.cuda.get_device_name(), "torch": torch.__version__, "cases": []}
    torch.manual_seed(0)
    for name, (E, K, G, TG, H, I, r) in MODELS.items():
        bias = torch.randn(E, device=dev) * 0.1
        for T in TOKENS:
            logits = torch.rand(T, E, device=dev) * 6 - 3
            x = torch.randn(T, H, device=dev, dtype=torch.bfloat16)
            ids, w = route(logits, bias, G, TG, K, r)
            order, offs, inv = plan(ids, E)
            tok = order // K
            R = T * K
            c1 = torch.randn(R, 2 * I, device=dev, dtype=torch.bfloat16)
            y = torch.randn(R, H, device=dev, dtype=torch.bfloat16)
            xs = x[tok]
            ops = {
                "route_grouped": lambda: route(logits, bias, G, TG, K, r),
                "permute_plan": lambda: plan(ids, E),
                "gather_rows": lambda: x.index_select(0, tok),
                "quant_fp8_gather": lambda: quant_group(x.index_select(0, tok), 128),
                "quant_mxfp8": lambda: quant_mx(xs),
                "silu_and_mul": lambda: F.silu(c1[:, :I]) * c1[:, I:],
                "silu_mul_quant_fp8": lambda: quant_group(F.silu(c1[:, :I].float()) * c1[:, I:].float(), 128),
                "combine": lambda: (y[inv].view(T, K, H).float() * w[..., None]).sum(1).to(torch.bfloat16),
            }
            for op, fn in ops.items():
                fn()
                us = time_us(fn)
                out["cases"].append({"model": name, "T": T, "op": op, "us": round(us, 3)})
                print(f"torch {name:12s} {T:6d} {op:20s} {us:10.2f} us", flush=True)
            del c1, y, xs
            torch.cuda.empty_cache()
    json.dump(out, open(sys.argv[1], "w"), indent=1)


if __name__ == "__main__":
    main()
