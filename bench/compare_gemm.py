"""Joins moe-bench-gemm's JSON (argv[1]) with torch_gemm.py's (argv[2]): per case libmoe's
time, TFLOP/s, GB/s and share of the floor, torch's time and torch/libmoe (> 1: libmoe is
faster). Writes the joined JSON (argv[3]) with GPU, date and commit (env MOE_COMMIT, else
git), and prints the table last."""
import datetime
import json
import os
import subprocess
import sys


def load(path):
    try:
        return json.load(open(path))
    except Exception as e:
        print(f"cannot read {path}: {e}")
        return {"cases": []}


def fmt(v, spec):
    """v in spec, or a dash as wide as spec asks."""
    return format("-", ">" + spec.split(".")[0]) if v is None else format(v, spec)


def commit():
    if os.environ.get("MOE_COMMIT"):
        return os.environ["MOE_COMMIT"]
    try:
        r = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True)
        return r.stdout.strip() or "unknown"
    except Exception:
        return "unknown"


def main():
    lib, tor, out_path = load(sys.argv[1]), load(sys.argv[2]), sys.argv[3]
    t_us = {(c["name"], c["dtype"]): c.get("us") for c in tor["cases"]}
    rows = []
    for c in lib["cases"]:
        tu = t_us.get((c["name"], c["dtype"]))
        ratio = round(tu / c["us"], 3) if tu and c.get("us") else None
        rows.append(dict(c, torch_us=tu, torch_over_libmoe=ratio))
    json.dump({"gpu": lib.get("gpu"), "date": datetime.date.today().isoformat(),
               "commit": commit(), "torch": tor.get("torch"), "read_GBps": lib.get("read_GBps"),
               "read_source": lib.get("read_source"), "copy_GBps": lib.get("copy_GBps"),
               "fp8_dense_TFLOPs": lib.get("fp8_dense_TFLOPs"),
               "bf16_dense_TFLOPs": lib.get("bf16_dense_TFLOPs"), "cases": rows},
              open(out_path, "w"), indent=1)

    print(f"{lib.get('gpu', '?')}: read {fmt(lib.get('read_GBps'), '.0f')} GB/s, copy "
          f"{fmt(lib.get('copy_GBps'), '.0f')} GB/s; floor = max(bytes / read, flops / dense "
          f"{lib.get('fp8_dense_TFLOPs', '?')} fp8, {lib.get('bf16_dense_TFLOPs', '?')} bf16 "
          f"TFLOP/s); torch {tor.get('torch', '-')} (fp8: _scaled_grouped_mm rowwise, "
          f"bf16: _grouped_mm); torch/lib > 1: libmoe faster")
    print(f"{'case':34s} {'type':4s} {'M':>6s} {'act':>4s} {'us':>9s} {'TFLOP/s':>8s} "
          f"{'GB/s':>6s} {'%floor':>6s} {'torch us':>9s} {'torch/lib':>9s}")
    for r in rows:
        print(f"{r['name']:34s} {r['dtype']:4s} {r['M']:6d} {r['active_experts']:4d} "
              f"{fmt(r.get('us'), '9.1f')} {fmt(r.get('TFLOPs'), '8.1f')} "
              f"{fmt(r.get('GBps'), '6.0f')} {fmt(r.get('pct_floor'), '6.1f')} "
              f"{fmt(r['torch_us'], '9.1f')} {fmt(r['torch_over_libmoe'], '9.2f')}"
              + (f"  libmoe: {r['error']}" if r.get("error") else ""))


if __name__ == "__main__":
    main()
