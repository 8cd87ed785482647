#!/usr/bin/env bash
# On the lent GPU, inside a directory made by bench/ab_prepare.sh: builds the tree ("cur")
# and every ab/NAME variant side by side, then runs the same benchmarks round-robin, so
# all builds meet the same clocks and the same neighbours. Full JSON and logs go to
# $OUT/ab.tgz (the device tool returns only a few files), the summary to $OUT/ab.json; a
# short table is printed.
#   ROUNDS (2)    rounds of every benchmark per build
#   GEMM_CASES    moe-bench-gemm case filter (MOE_BENCH_GEMM_CASES); empty: no GEMM runs
#   LAYER_T       moe-bench --layer --tokens-list for DeepSeek-V3 fp8; empty: no layer runs
#   OPS=1         moe-bench-ops once per round
#   TEST_SUITES   moe_tests suites to run first on "cur" (e.g. "cuda_gemm cuda_layer")
set -uo pipefail
OUT=${OUT:-/tmp/moe-out}
R=/tmp/ab-results/ab
rm -rf "$R"
mkdir -p "$R" "$OUT"
root=$PWD
vars="cur $(ls ab 2>/dev/null || true)"
jobs=$((16 / $(echo $vars | wc -w)))
bdir() { if [ "$1" = cur ]; then echo "$root/build-dev"; else echo "/tmp/ab/$1/build-dev"; fi; }
for v in $vars; do
    src=$root
    if [ "$v" != cur ]; then
        src=/tmp/ab/$v
        rm -rf "$src" && mkdir -p "$src"
        tar -cf - --exclude=./build-dev --exclude=./ab . | tar -xf - -C "$src"
        (cd "ab/$v" && find . -type f ! -name .remove | while read -r f; do cp "$f" "$src/$f"; done)
        while read -r f; do [ -n "$f" ] && rm -f "$src/$f"; done < "ab/$v/.remove"
    fi
    (cd "$src" && cmake -S . -B build-dev -DMOE_CUDA=ON -DCMAKE_BUILD_TYPE=Release \
        > "$R/configure_$v.log" 2>&1 && cmake --build build-dev -j "$jobs" > "$R/build_$v.log" 2>&1
     echo "build $v: rc $?") &
done
wait
if [ -n "${TEST_SUITES:-}" ]; then
    "$(bdir cur)/moe_tests" $TEST_SUITES > "$R/tests.log" 2>&1
    echo "tests (cur): rc $?, $(tail -1 "$R/tests.log")"
fi
for round in $(seq 1 "${ROUNDS:-2}"); do
    for v in $vars; do
        b=$(bdir "$v")
        if [ -n "${GEMM_CASES:-}" ]; then
            MOE_BENCH_GEMM_CASES="$GEMM_CASES" timeout 150 "$b/moe-bench-gemm" \
                "$R/gemm_${v}_$round.json" > "$R/gemm_${v}_$round.log" 2>&1
        fi
        if [ -n "${LAYER_T:-}" ]; then
            timeout 120 "$b/moe-bench" --layer --preset deepseek-v3 --weights fp8 \
                --tokens-list "$LAYER_T" --json "$R/layer_${v}_$round.json" \
                > "$R/layer_${v}_$round.log" 2>&1
        fi
        if [ "${OPS:-0}" = 1 ]; then
            timeout 150 "$b/moe-bench-ops" "$R/ops_${v}_$round.json" > "$R/ops_${v}_$round.log" 2>&1
        fi
    done
done
python3 - "$R" $vars <<'PY'
import glob, json, os, re, sys
R, names = sys.argv[1], sys.argv[2:]
rows = {}
for kind, key in (("gemm", "name"), ("layer", "T"), ("ops", None)):
    for f in sorted(glob.glob(os.path.join(R, kind + "_*_*.json"))):
        m = re.match(r".*/%s_(.+)_(\d+)\.json$" % kind, f)
        try:
            cases = json.load(open(f))["cases"]
        except Exception:
            continue
        for c in cases:
            if kind == "ops":
                label = "ops %s T=%s %s" % (c["model"], c["T"], c["op"])
                us = c["us"]
            elif kind == "layer":
                label, us = "layer T=%s graph" % c["T"], c["graph_us"]
            else:
                label, us = "gemm %s %s" % (c["dtype"], c["name"]), c["us"]
            rows.setdefault(label, {}).setdefault(m.group(1), []).append(us)
json.dump(rows, open(os.path.join(R, "ab.json"), "w"), indent=1)
print("%-48s " % "us (each round)" + " ".join("%-22s" % n for n in names))
for label, by in rows.items():
    print("%-48s " % label[:48] + " ".join(
        "%-22s" % " / ".join("%.1f" % u for u in by.get(n, []) if u is not None) for n in names))
PY
cp "$R/ab.json" "$OUT/ab.json"
tar czf "$OUT/ab.tgz" -C "$(dirname "$R")" ab
