"""Joins moe-bench-ops' JSON with torch_ops.py's: one row per (model, T, op) with libmoe's
time, GB/s, % of copy bandwidth, torch's time and the speed-up. Writes the joined JSON."""
import json, sys, subprocess, datetime

lib = json.load(open(sys.argv[1]))
tor = json.load(open(sys.argv[2])) if len(sys.argv) > 3 else {"cases": []}
out_path = sys.argv[-1]
t_us = {(c["model"], c["T"], c["op"]): c["us"] for c in tor["cases"]}
rows = []
print(f"{lib['gpu']}: copy {lib['copy_GBps']:.0f} GB/s; torch {tor.get('torch', '-')}")
print(f"{'model':12s} {'T':>6s} {'op':20s} {'us':>9s} {'GB/s':>7s} {'%copy':>6s} {'torch us':>9s} {'speedup':>8s}")
for c in lib["cases"]:
    tu = t_us.get((c["model"], c["T"], c["op"]))
    c = dict(c, torch_us=tu, speedup=round(tu / c["us"], 2) if tu else None)
    rows.append(c)
    print(f"{c['model']:12s} {c['T']:6d} {c['op']:20s} {c['us']:9.2f} {c['GBps']:7.0f} {c['pct_copy']:6.1f} "
          f"{tu if tu else '-':>9} {c['speedup'] if c['speedup'] else '-':>8}")
try:
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True).stdout.strip()
except Exception:
    commit = "unknown"
json.dump({"gpu": lib["gpu"], "date": datetime.date.today().isoformat(), "commit": commit,
           "copy_GBps": lib["copy_GBps"], "torch": tor.get("torch"), "cases": rows},
          open(out_path, "w"), indent=1)
