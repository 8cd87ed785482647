"""The torch side's timer, the same method as libmoe's benchmarks (bench/bench_gpu.cu):
median of CUDA-event pairs around single calls, L2 flushed before each call by reading a
256 MB buffer. A memset flush (triton's do_bench) leaves ~50 MB of dirty lines in L2 that
the timed call then writes back; memset=True measures that way for comparison."""
import time

import torch

FLUSH_BYTES = 256 << 20
BUDGET_MS = 400.0  # per timing: iterations shrink to fit

_flush = None


def time_us(fn, memset=False, max_iters=100, min_iters=5):
    """Median microseconds of one fn() call between CUDA events, L2 flushed before each."""
    global _flush
    if _flush is None:
        _flush = torch.ones(FLUSH_BYTES // 8, dtype=torch.int64, device="cuda")
    for _ in range(3):
        fn()
    torch.cuda.synchronize()
    t0 = time.time()
    fn()
    torch.cuda.synchronize()
    est_ms = max((time.time() - t0) * 1e3, 1e-3)
    n = max(min_iters, min(max_iters, int(BUDGET_MS / est_ms)))
    ev = [(torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True))
          for _ in range(n)]
    for a, b in ev:
        if memset:
            _flush.zero_()
        else:
            _flush.sum()  # reads every word; L2 is left holding clean lines
        a.record()
        fn()
        b.record()
    torch.cuda.synchronize()
    ts = sorted(a.elapsed_time(b) * 1e3 for a, b in ev)
    return ts[len(ts) // 2]
