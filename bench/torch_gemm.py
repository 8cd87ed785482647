"""torch's grouped GEMMs on moe-bench-gemm's cases, with the very row counts libmoe used
(read from its JSON, argv[1]): torch._scaled_grouped_mm (FP8 rowwise: per-row scales on A,
per-column scales on B) for the fp8 cases, torch._grouped_mm for the bf16 cases. Masked
cases run as contiguous groups of their counts (the same rows, the same FLOPs).
Timed as libmoe's side is (bench/torch_timing.py: L2 flushed by a read, median). Writes JSON to argv[2], rewritten after each case.

torch's FP8 path scales per row and per output column only: less work than the 1x128 /
128x128 blockwise scaling libmoe computes (docs/ANCHORS.md)."""
import json
import sys

import torch

from torch_timing import time_us

dev = "cuda"
FP8 = torch.float8_e4m3fn


def weights(dtype, E, N, K):
    """B [E, N, K] (and per-column scales [E, N] for fp8), made 16 experts at a time so the
    fp8 weights never need a full bf16 copy beside them."""
    W = torch.empty(E, N, K, device=dev, dtype=torch.bfloat16 if dtype == "bf16" else FP8)
    for e0 in range(0, E, 16):
        W[e0:e0 + 16] = torch.randn(min(16, E - e0), N, K, device=dev,
                                     dtype=torch.bfloat16).to(W.dtype)
    sb = (torch.rand(E, N, device=dev) + 0.5) / 256 if dtype == "fp8" else None
    return W, sb


def time_case(c, W, sb):
    counts = c["counts"]
    if c.get("capacity"):
        counts = [min(x, c["capacity"]) for x in counts]
    G, K = len(counts), c["K"]
    M = sum(counts)
    offs = torch.cumsum(torch.tensor(counts, dtype=torch.int32), 0).to(torch.int32).to(dev)
    Wt = W[:G].transpose(1, 2)  # [G, K, N], column-major per group: what both ops want
    A = torch.randn(M, K, device=dev, dtype=torch.bfloat16)
    if c["dtype"] == "bf16":
        def fn():
            return torch._grouped_mm(A, Wt, offs=offs, out_dtype=torch.bfloat16)
    else:
        A = A.to(FP8)
        sa = (torch.rand(M, device=dev) + 0.5) / 256
        sbg = sb[:G]

        def fn():
            return torch._scaled_grouped_mm(A, Wt, sa, sbg, offs=offs, out_dtype=torch.bfloat16)
    fn()
    torch.cuda.synchronize()
    return time_us(fn)


def main():
    lib_path, out_path = sys.argv[1], sys.argv[2]
    out = {"gpu": torch.cuda.get_device_name(), "torch": torch.__version__, "cases": []}
    try:
        cases = json.load(open(lib_path))["cases"]
    except Exception as e:
        print(f"cannot read {lib_path}: {e}", flush=True)
        cases = []
    # weights once per (dtype, N, K), in the order libmoe ran them, freed before the next
    groups = {}
    for c in cases:
        groups.setdefault((c["dtype"], c["N"], c["K"]), []).append(c)
    torch.manual_seed(0)
    for (dtype, N, K), cs in groups.items():
        W = sb = None
        try:
            W, sb = weights(dtype, max(len(c["counts"]) for c in cs), N, K)
            werr = None
        except Exception as e:
            werr = f"weights: {type(e).__name__}: {str(e)[:200]}"
        for c in cs:
            rec = {"name": c["name"], "dtype": dtype, "us": None}
            try:
                if werr:
                    raise RuntimeError(werr)
                us = time_case(c, W, sb)
                rec.update(us=round(us, 3), TFLOPs=round(c["flops"] / (us * 1e6), 2))
            except Exception as e:
                rec["error"] = f"{type(e).__name__}: {str(e)[:200]}"
            out["cases"].append(rec)
            print(f"torch {c['name']:34s} {dtype:4s} "
                  f"{rec['us'] if rec['us'] is not None else rec['error']}", flush=True)
            json.dump(out, open(out_path, "w"), indent=1)
        del W, sb
        torch.cuda.empty_cache()
    json.dump(out, open(out_path, "w"), indent=1)


if __name__ == "__main__":
    main()
