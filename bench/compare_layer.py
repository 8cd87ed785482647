"""Joins moe-bench --layer's JSON with bench/torch_layer.py's (or the anchor's,
shared/anchors/torch_layer.py: the same keys) and checks docs/ANCHORS.md's whole-layer goals
for DeepSeek-V3:
  - T in {1, 32, 512}: libmoe's graph time <= 1.15 x memory floor + 10 us;
  - T = 4096: torch graph / libmoe graph >= 3;
  - glue (everything but the two GEMMs) <= 15% of layer time.

usage: compare_layer.py LIBMOE_JSON TORCH_JSON OUT_JSON [PNG_PREFIX] [--also LIBMOE_JSON ...]

The goal's torch is the routed-experts-only composition ("dsv3 layer ..."); libmoe's preset
also runs the shared expert (9 experts a token, not 8), so "dsv3+shared layer ..." (same work
as libmoe) is shown beside it when present. Glue is given two ways: of the eager total
(eager - gemm1 - gemm2, moe-bench's figure) and of the graph time (graph - gemm1 - gemm2,
the GEMM steps timed in the eager forwards); the goal is checked on the graph figure, the
layer time compared everywhere else. Writes OUT_JSON (both inputs, the joined rows, the
checks, GPU, date, commit) and, with PNG_PREFIX, PREFIX_steps.png (time per step at each T),
PREFIX_vs_T.png (time against T, log-log) and PREFIX_presets.png (graph / floor for every
preset); plots need matplotlib and are skipped without it."""
import argparse
import datetime
import json
import os
import re
import subprocess

STEPS = ("route", "permute", "quantize", "gemm1", "activate", "gemm2", "combine")
MEMORY_BOUND_T = (1, 32, 512)
FLOOR_FACTOR, FLOOR_SLACK_US = 1.15, 10.0
SPEEDUP_T, SPEEDUP_GOAL = 4096, 3.0
GLUE_GOAL_PCT = 15.0
TORCH_KEY = re.compile(r"^dsv3(\+shared)? layer (fp8rowwise|bf16) T=(\d+) \(eager us, graph us\)$")
TORCH_MEMSET_KEY = re.compile(r"^dsv3(\+shared)? layer (fp8rowwise|bf16) T=(\d+) graph us, memset flush$")
TORCH_DTYPE = {"fp8": "fp8rowwise", "bf16": "bf16"}


def load(path, what):
    try:
        with open(path) as f:
            return json.load(f)
    except Exception as e:
        print(f"cannot read {what} {path}: {e}")
        return None


def commit():
    if os.environ.get("MOE_COMMIT"):
        return os.environ["MOE_COMMIT"]
    try:
        r = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True,
                           text=True, cwd=os.path.dirname(os.path.abspath(__file__)))
        return r.stdout.strip() or None
    except Exception:
        return None


TOUCHED_KEY = re.compile(r"^dsv3 touched experts T=(\d+)$")


def torch_times(doc):
    """{(shared, dtype, T): (eager_us, graph_us)} from the torch JSON; errors and skips
    (strings) are left out. ("touched", T): the routed experts torch's routing picked."""
    times = {}
    for key, v in (doc or {}).items():
        m = TOUCHED_KEY.match(key)
        if m and isinstance(v, int):
            times[("touched", int(m.group(1)))] = v
    for key, v in (doc or {}).items():
        m = TORCH_KEY.match(key)
        if m and isinstance(v, (list, tuple)) and len(v) == 2:
            times[(bool(m.group(1)), m.group(2), int(m.group(3)))] = (float(v[0]), float(v[1]))
        m = TORCH_MEMSET_KEY.match(key)
        if m and isinstance(v, (int, float)):
            times[("memset", bool(m.group(1)), m.group(2), int(m.group(3)))] = float(v)
    return times


def ratio(a, b):
    return a / b if a is not None and b and a > 0 and b > 0 else None


def fmt(v, spec, width):
    return f"{'-':>{width}}" if v is None else f"{v:{width}{spec}}"


def join(cases, ttimes, weights):
    """Rows for deepseek-v3 with the given libmoe weights, by T."""
    rows = []
    for c in sorted((c for c in cases if c.get("preset") == "deepseek-v3"
                     and c.get("weights") == weights), key=lambda c: c["T"]):
        t, graph, eager, floor = c["T"], c.get("graph_us"), c.get("eager_us"), c.get("floor_us")
        steps = c.get("steps_us") or {}
        gemm = (steps.get("gemm1") or 0) + (steps.get("gemm2") or 0) if steps.get("gemm1") is not None else None
        tor = ttimes.get((False, TORCH_DTYPE[weights], t))
        tor_s = ttimes.get((True, TORCH_DTYPE[weights], t))
        row = {
            "T": t, "weights": weights, "libmoe_eager_us": eager, "libmoe_graph_us": graph,
            "torch_eager_us": tor[0] if tor else None, "torch_graph_us": tor[1] if tor else None,
            "torch_shared_eager_us": tor_s[0] if tor_s else None,
            "torch_shared_graph_us": tor_s[1] if tor_s else None,
            "speedup": ratio(tor[1] if tor else None, graph),
            "speedup_vs_shared": ratio(tor_s[1] if tor_s else None, graph),
            "floor_us": floor, "touched_experts": c.get("touched_experts"),
            "torch_touched_experts": ttimes.get(("touched", t)),
            "libmoe_over_floor": ratio(graph, floor),
            "torch_over_floor": ratio(tor[1] if tor else None, floor),
            "steps_us": steps, "gemm_us": gemm,
            "glue_pct_eager": c.get("glue_pct"),
            "glue_pct_graph": (100.0 * (graph - gemm) / graph) if graph and gemm is not None else None,
            "libmoe_graph_memset_us": c.get("graph_memset_flush_us"),
            "torch_graph_memset_us": ttimes.get(("memset", False, TORCH_DTYPE[weights], t)),
            "error": c.get("error"), "graph_mismatch": c.get("graph_mismatch"),
            "out_nonfinite": c.get("out_nonfinite"),
        }
        row["checks"] = checks(row) if weights == "fp8" else {}
        rows.append(row)
    return rows


def checks(r):
    """The ANCHORS.md goals that apply at this T: name -> {"ok", "value", "limit"}."""
    out = {}
    t, graph, floor = r["T"], r["libmoe_graph_us"], r["floor_us"]
    if t in MEMORY_BOUND_T:
        limit = FLOOR_FACTOR * floor + FLOOR_SLACK_US if floor is not None else None
        out["floor"] = {"ok": graph is not None and limit is not None and graph <= limit,
                        "value": graph, "limit": limit}
    if t == SPEEDUP_T:
        out["speedup"] = {"ok": r["speedup"] is not None and r["speedup"] >= SPEEDUP_GOAL,
                          "value": r["speedup"], "limit": SPEEDUP_GOAL}
    glue = r["glue_pct_graph"]
    out["glue"] = {"ok": glue is not None and glue <= GLUE_GOAL_PCT, "value": glue,
                   "limit": GLUE_GOAL_PCT}
    return out


def check_text(chk):
    parts = []
    for name, c in chk.items():
        if c["value"] is None:
            parts.append(f"{name} ?")
        elif name == "floor":
            parts.append(f"floor {'ok' if c['ok'] else 'MISS'} (<= {c['limit']:.0f})")
        elif name == "speedup":
            parts.append(f"3x {'ok' if c['ok'] else 'MISS'}")
        else:
            parts.append(f"glue {'ok' if c['ok'] else 'MISS'}")
    return ", ".join(parts)


def touched_text(r):
    """libmoe's distinct experts (shared included) / torch's (routed only)."""
    a, b = r["touched_experts"], r["torch_touched_experts"]
    return "-" if a is None else f"{a}" + (f"/{b}" if b is not None else "")


def print_table(rows, weights, tor_label):
    kind = "fp8, 128x128 / 1x128 block scales" if weights == "fp8" else weights
    print(f"\nDeepSeek-V3 layer, libmoe ({kind}) vs torch {tor_label}: us, CUDA-graph "
          f"replay medians, L2 flushed by a read ('mset': by a memset, do_bench's way); "
          f"speedup = torch / libmoe; floor = touched experts' weights / read bw; touched: libmoe "
          f"(shared expert included) / torch (routed only)")
    print(f"{'T':>5} {'libmoe':>9} {'torch':>9} {'speedup':>7} {'torch+S':>9} {'spdup+S':>7} "
          f"{'floor':>8} {'lib/floor':>9} {'glue%gr':>7} {'glue%eg':>7} {'touched':>7} "
          f"{'lib mset':>9} {'tor mset':>9}  goals")
    for r in rows:
        print(f"{r['T']:5d} {fmt(r['libmoe_graph_us'], '.1f', 9)} {fmt(r['torch_graph_us'], '.1f', 9)} "
              f"{fmt(r['speedup'], '.2f', 7)} {fmt(r['torch_shared_graph_us'], '.1f', 9)} "
              f"{fmt(r['speedup_vs_shared'], '.2f', 7)} {fmt(r['floor_us'], '.1f', 8)} "
              f"{fmt(r['libmoe_over_floor'], '.2f', 9)} {fmt(r['glue_pct_graph'], '.1f', 7)} "
              f"{fmt(r['glue_pct_eager'], '.1f', 7)} {touched_text(r):>7} "
              f"{fmt(r['libmoe_graph_memset_us'], '.1f', 9)} {fmt(r['torch_graph_memset_us'], '.1f', 9)}"
              f"  {check_text(r['checks'])}"
              + (f"  libmoe error: {r['error']}" if r.get("error") else "")
              + (f"  WARNING: graph output != eager in {r['graph_mismatch']} values"
                 if r.get("graph_mismatch") else "")
              + (f"  WARNING: {r['out_nonfinite']} non-finite outputs" if r.get("out_nonfinite") else ""))


def print_presets(cases):
    """graph us and graph / floor for every preset and T (libmoe only)."""
    keyed = {}
    for c in cases:
        keyed.setdefault((c["preset"], c["weights"]), {})[c["T"]] = c
    if not keyed:
        return
    ts = sorted({c["T"] for c in cases})
    print("\nlibmoe, every preset: graph us (graph / floor); '!': graph output != eager or "
          "non-finite output (see the JSON)")
    print(f"{'preset':16s} {'w':4s} " + " ".join(f"{'T=' + str(t):>17s}" for t in ts))
    for (p, w), by_t in keyed.items():
        cells = []
        for t in ts:
            c = by_t.get(t)
            g = c.get("graph_us") if c else None
            q = ratio(g, c.get("floor_us")) if c else None
            bad = c is not None and bool(c.get("graph_mismatch") or c.get("out_nonfinite"))
            cells.append(f"{'-':>17s}" if g is None else
                         f"{g:9.1f} ({fmt(q, '.2f', 5)}){'!' if bad else ''}")
        print(f"{p:16s} {w:4s} " + " ".join(cells))


# ---------------------------------------------------------------- plots

def plot(prefix, rows_fp8, rows_bf16, cases):
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except Exception as e:
        print(f"no plots: matplotlib unavailable ({type(e).__name__}: {e})")
        return []
    written = []
    colors = plt.get_cmap("tab10").colors

    # (a) time per step at each T: one panel per T (times differ by 100x across T), a
    # stacked bar per weight format; "gaps" = eager total - the steps' sum
    by_w = [(w, rows) for w, rows in (("fp8", rows_fp8), ("bf16", rows_bf16)) if rows]
    ts = sorted({r["T"] for _, rows in by_w for r in rows})
    if ts:
        fig, axes = plt.subplots(1, len(ts), figsize=(3.2 * len(ts), 4.6), squeeze=False)
        for ax, t in zip(axes[0], ts):
            for i, (w, rows) in enumerate(by_w):
                r = next((r for r in rows if r["T"] == t), None)
                if not r or not r["steps_us"]:
                    continue
                bottom = 0.0
                for j, s in enumerate(STEPS):
                    v = r["steps_us"].get(s) or 0.0
                    ax.bar(i, v, bottom=bottom, color=colors[j], width=0.6,
                           label=s if (t == ts[0] and i == 0) else None)
                    bottom += v
                gaps = (r["libmoe_eager_us"] or 0.0) - bottom
                if gaps > 0:
                    ax.bar(i, gaps, bottom=bottom, color="0.85", width=0.6, hatch="//",
                           label="gaps" if (t == ts[0] and i == 0) else None)
                if r["libmoe_graph_us"]:
                    ax.hlines(r["libmoe_graph_us"], i - 0.4, i + 0.4, colors="k",
                              label="graph replay" if (t == ts[0] and i == 0) else None)
                if r["floor_us"]:
                    ax.hlines(r["floor_us"], i - 0.4, i + 0.4, colors="r", linestyles="dashed",
                              label="memory floor" if (t == ts[0] and i == 0) else None)
            ax.set_xticks(range(len(by_w)))
            ax.set_xticklabels([w for w, _ in by_w])
            ax.set_title(f"T={t}")
            ax.set_ylabel("us" if t == ts[0] else "")
        fig.suptitle("libmoe DeepSeek-V3 layer: eager time per step (CUDA events)")
        fig.legend(loc="lower center", ncol=6, fontsize=8)
        fig.tight_layout(rect=(0, 0.1, 1, 0.95))
        path = f"{prefix}_steps.png"
        fig.savefig(path, dpi=120)
        plt.close(fig)
        written.append(path)

    # (b) time against T, log-log
    fig, ax = plt.subplots(figsize=(6.4, 4.8))
    drawn = False
    for rows, style, w in ((rows_fp8, "-", "fp8"), (rows_bf16, "--", "bf16")):
        for key, label, color in (("libmoe_graph_us", "libmoe graph", colors[0]),
                                  ("torch_graph_us", "torch graph", colors[1]),
                                  ("torch_shared_graph_us", "torch+shared graph", colors[2]),
                                  ("floor_us", "memory floor", colors[3])):
            pts = [(r["T"], r[key]) for r in rows if r.get(key)]
            if pts:
                ax.plot(*zip(*pts), style, marker="o", color=color, label=f"{label} ({w})")
                drawn = True
    if drawn:
        ax.set_xscale("log", base=2)
        ax.set_yscale("log")
        ax.set_xlabel("tokens T")
        ax.set_ylabel("us")
        ax.set_title("DeepSeek-V3 MoE layer: CUDA-graph replay")
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=8)
        fig.tight_layout()
        path = f"{prefix}_vs_T.png"
        fig.savefig(path, dpi=120)
        written.append(path)
    plt.close(fig)

    # (c) graph / floor for every preset (libmoe, fp8)
    series = {}
    for c in cases:
        if c.get("weights") == "fp8" and c.get("graph_us") and c.get("floor_us"):
            series.setdefault(c["preset"], []).append((c["T"], c["graph_us"] / c["floor_us"]))
    if series:
        fig, ax = plt.subplots(figsize=(6.4, 4.8))
        for i, (p, pts) in enumerate(sorted(series.items())):
            ax.plot(*zip(*sorted(pts)), marker="o", color=colors[i % 10], label=p)
        ax.axhline(FLOOR_FACTOR, color="k", linestyle="dashed", linewidth=0.8,
                   label=f"{FLOOR_FACTOR}x floor")
        ax.set_xscale("log", base=2)
        ax.set_yscale("log")
        ax.set_xlabel("tokens T")
        ax.set_ylabel("graph time / memory floor")
        ax.set_title("libmoe layer, fp8: graph replay over the memory floor")
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=8)
        fig.tight_layout()
        path = f"{prefix}_presets.png"
        fig.savefig(path, dpi=120)
        plt.close(fig)
        written.append(path)
    return written


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("libmoe_json")
    ap.add_argument("torch_json")
    ap.add_argument("out_json")
    ap.add_argument("png_prefix", nargs="?")
    ap.add_argument("--also", action="append", default=[],
                    help="more moe-bench --layer JSON (e.g. a bf16 run); later cases replace "
                         "earlier ones of the same preset, weights and T")
    a = ap.parse_args()

    lib = load(a.libmoe_json, "libmoe JSON") or {}
    merged = {}
    extra_docs = []
    for doc in [lib] + [load(p, "libmoe JSON") or {} for p in a.also]:
        extra_docs.append(doc)
        for c in doc.get("cases", []):
            merged[(c.get("preset"), c.get("weights"), c.get("T"))] = c
    cases = list(merged.values())
    tor_doc = load(a.torch_json, "torch JSON") or {}
    ttimes = torch_times(tor_doc)

    rows_fp8 = join(cases, ttimes, "fp8")
    rows_bf16 = join(cases, ttimes, "bf16")
    head = next((d for d in extra_docs if d.get("gpu")), {})
    print(f"libmoe {head.get('libmoe', '?')} on {head.get('gpu', '?')}, read "
          f"{fmt(head.get('read_bw_GBps'), '.0f', 0)} GB/s ({head.get('read_bw_source', '?')}); "
          f"torch {tor_doc.get('torch', '?')} on {tor_doc.get('gpu', '?')}")
    if tor_doc.get("gpu") and head.get("gpu") and tor_doc["gpu"] != head["gpu"]:
        print("WARNING: libmoe and torch ran on different GPUs: compare ratios with care")
    print_table(rows_fp8, "fp8", "FP8 rowwise (_scaled_grouped_mm)")
    if rows_bf16:
        print_table(rows_bf16, "bf16", "bf16 (_grouped_mm)")
    print_presets(cases)
    missing = [r["T"] for r in rows_fp8 if r["torch_graph_us"] is None]
    if missing:
        print(f"\nno torch time for T={missing}")
    goals = {f"T={r['T']} {k}": v for r in rows_fp8 for k, v in r["checks"].items()}
    met = sum(v["ok"] for v in goals.values())
    print(f"\ngoals (docs/ANCHORS.md): {met} of {len(goals)} met"
          + "".join(f"\n  {k}: {'ok' if v['ok'] else 'MISS'} (value "
                    f"{fmt(v['value'], '.2f', 0)}, limit {fmt(v['limit'], '.2f', 0)})"
                    for k, v in goals.items()))

    pngs = plot(a.png_prefix, rows_fp8, rows_bf16, cases) if a.png_prefix else []
    for p in pngs:
        print(f"wrote {p}")
    doc = {
        "date": datetime.date.today().isoformat(), "commit": commit(),
        "gpu": head.get("gpu"), "torch_gpu": tor_doc.get("gpu"), "torch": tor_doc.get("torch"),
        "read_bw_GBps": head.get("read_bw_GBps"),
        "goals": {"floor": f"graph <= {FLOOR_FACTOR} x floor + {FLOOR_SLACK_US} us at T in "
                           f"{list(MEMORY_BOUND_T)}",
                  "speedup": f"torch graph / libmoe graph >= {SPEEDUP_GOAL} at T={SPEEDUP_T}",
                  "glue": f"(graph - gemm1 - gemm2) / graph <= {GLUE_GOAL_PCT}%",
                  "checks": goals, "met": met, "of": len(goals)},
        "deepseek_v3": {"fp8": rows_fp8, "bf16": rows_bf16},
        "libmoe": dict((k, v) for k, v in lib.items() if k != "cases"),
        "libmoe_cases": cases, "torch_raw": tor_doc, "plots": pngs,
    }
    with open(a.out_json, "w") as f:
        json.dump(doc, f, indent=1)


if __name__ == "__main__":
    main()
