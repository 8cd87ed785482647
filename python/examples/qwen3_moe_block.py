"""A Qwen3-30B-A3B MoE block two ways: plain torch and libmoe.MoELayer.

Qwen3-30B-A3B's sparse block: 128 experts, 8 per token, hidden 2048, expert width 768,
softmax routing with the top-8 weights renormalised (norm_topk_prob), SwiGLU experts.
The torch version is the usual per-expert loop over the tokens routed to each expert (as
Hugging Face's Qwen3MoeSparseMoeBlock runs it); the libmoe version is one MoELayer call
(route -> permute -> GEMM -> silu*mul -> GEMM -> combine). Both use the same random bf16
weights; with --fp8 libmoe also runs them quantised to e4m3 with 128x128 block scales,
DeepSeek-V3's format, so the difference printed for it includes the quantisation error.

Runs on the GPU when torch sees one, else on the CPU (libmoe's reference backend):
    python python/examples/qwen3_moe_block.py [--tokens 16] [--fp8] [--iters 5]
"""
import argparse
import os
import statistics
import sys
import time

# libmoe's CPU backend and torch bring separate OpenMP runtimes whose idle threads spin by
# default and slow each other down on few cores; passive waiting keeps CPU timings honest.
# Set before torch or libmoe loads either runtime.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

try:
    import libmoe
except ImportError:   # run from a checkout: the package sits one directory up
    sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
    import libmoe

EXPERTS, TOPK, HIDDEN, INTER = 128, 8, 2048, 768   # Qwen3-30B-A3B
BLOCK = 128                                         # FP8 weight-scale block


def torch_moe_block(x, router_logits, w1, w2):
    """Plain torch: softmax top-k, renormalise, then each expert's routed tokens through
    gate/up, SwiGLU and down, weighted and summed back in place."""
    probs = torch.softmax(router_logits.float(), dim=-1)
    weights, ids = probs.topk(TOPK, dim=-1)
    weights = (weights / weights.sum(-1, keepdim=True)).to(x.dtype)
    out = torch.zeros_like(x)
    for e in ids.unique().tolist():
        tokens, slot = (ids == e).nonzero(as_tuple=True)
        gate, up = w1[e, :INTER], w1[e, INTER:]
        h = F.silu(x[tokens] @ gate.t()) * (x[tokens] @ up.t())
        y = (h @ w2[e].t()) * weights[tokens, slot, None]
        out.index_add_(0, tokens, y)
    return out


def quantise_blockwise(w):
    """bf16 [E, N, K] -> e4m3 [E, N, K] with f32 scales [E, N/128, K/128] (amax / 448 per
    128x128 block). One expert at a time to keep the f32 temporaries small."""
    e, n, k = w.shape
    q = torch.empty(w.shape, dtype=torch.float8_e4m3fn, device=w.device)
    scales = torch.empty(e, n // BLOCK, k // BLOCK, device=w.device)
    for i in range(e):
        blocks = w[i].float().view(n // BLOCK, BLOCK, k // BLOCK, BLOCK)
        s = blocks.abs().amax(dim=(1, 3)).clamp_min(1e-10) / 448.0
        q[i] = (blocks / s[:, None, :, None]).to(torch.float8_e4m3fn).view(n, k)
        scales[i] = s
    return q, scales


def median_seconds(fn, iters, device):
    """Median wall time of fn() over iters runs, after one warm-up."""
    fn()
    times = []
    for _ in range(iters):
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        start = time.perf_counter()
        fn()
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def compare(name, out, ref):
    diff = (out.float() - ref.float()).abs()
    rel = diff.norm() / ref.float().norm()
    print(f"  {name:<26} max abs diff {diff.max().item():.3e}   "
          f"relative (Frobenius) diff {rel.item():.3e}")


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--tokens", type=int, default=16, help="tokens in the batch (T)")
    parser.add_argument("--fp8", action="store_true",
                        help="also run libmoe with FP8 blockwise-quantised weights")
    parser.add_argument("--iters", type=int, default=5, help="timed runs per version")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    gen = torch.Generator(device=device).manual_seed(args.seed)
    print(f"Qwen3-30B-A3B MoE block: E={EXPERTS} k={TOPK} H={HIDDEN} I={INTER}, "
          f"T={args.tokens}, on {device} (libmoe {libmoe.__version__})")

    def randn(*shape, std):
        return (torch.randn(*shape, generator=gen, device=device, dtype=torch.bfloat16)
                .mul_(std))

    # std 0.02: the initialiser Qwen3's config names, so activations stay O(1)
    w1 = randn(EXPERTS, 2 * INTER, HIDDEN, std=0.02)   # gate rows, then up rows
    w2 = randn(EXPERTS, HIDDEN, INTER, std=0.02)
    router = randn(EXPERTS, HIDDEN, std=0.02)
    x = randn(args.tokens, HIDDEN, std=1.0)
    logits = (x @ router.t()).float()   # the router is a plain linear layer, outside the block

    layer = libmoe.MoELayer(w1, w2, TOPK, routing="softmax", renormalize=True)
    versions = {"libmoe (bf16 weights)": lambda: layer(x, logits)}
    if args.fp8:
        w1_q, w1_s = quantise_blockwise(w1)
        w2_q, w2_s = quantise_blockwise(w2)
        fp8_layer = libmoe.MoELayer(w1_q, w2_q, TOPK, w1_scales=w1_s, w2_scales=w2_s,
                                    routing="softmax", renormalize=True)
        versions["libmoe (fp8 weights)"] = lambda: fp8_layer(x, logits)

    reference = torch_moe_block(x, logits, w1, w2)
    print("difference from the plain torch block:")
    for name, run in versions.items():
        compare(name, run(), reference)

    print(f"median time over {args.iters} runs:")
    timings = {"plain torch (bf16)": lambda: torch_moe_block(x, logits, w1, w2), **versions}
    for name, run in timings.items():
        print(f"  {name:<26} {median_seconds(run, args.iters, device) * 1e3:9.3f} ms")


if __name__ == "__main__":
    main()
