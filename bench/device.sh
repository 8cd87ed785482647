#!/usr/bin/env bash
# On the lent GPU: build for sm_90a, run the tests, compute-sanitizer over the GPU suites,
# and the benchmarks, in one call. Stages: test, sanitize, bench, gemm, layer (default:
# test sanitize bench). Full logs and JSON go to $OUT; a short table is printed last.
#   bench/device.sh test sanitize bench
#   bench/device.sh layer     # whole layer: every preset x T, vs torch; ~2-3 min after the build
# racecheck over all eight GPU suites needs more than 150 s (session 9): SANITIZE_TIMEOUT
# (default 400 s) bounds each sanitizer run.
# To compare builds (this tree against git revisions) in one lease: bench/ab_prepare.sh, then
# bench/ab.sh on the GPU.
set -uo pipefail
OUT=${OUT:-/tmp/moe-out}
mkdir -p "$OUT"
stages=${*:-test sanitize bench}
has() { [[ " $stages " == *" $1 "* ]]; }
export PYTHONUNBUFFERED=1
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader | tee "$OUT/gpu.txt"

cmake -S . -B build-dev -DMOE_CUDA=ON -DCMAKE_BUILD_TYPE=Release > "$OUT/configure.log" 2>&1 &&
    cmake --build build-dev -j 16 > "$OUT/build.log" 2>&1 || { tail -40 "$OUT/build.log"; exit 1; }
gpu_suites=${GPU_SUITES:-"cuda_route cuda_permute cuda_quant cuda_quant_block cuda_activation cuda_combine cuda_gemm cuda_layer"}
summary=()

if has test; then
    ./build-dev/moe_tests > "$OUT/tests.log" 2>&1
    rc=$?
    summary+=("tests: $(tail -1 "$OUT/tests.log") (rc $rc)")
    grep -E "FAIL|SKIP" "$OUT/tests.log" | head -40
    grep -E "^== |ok \(|FAILED" "$OUT/tests.log" | grep -E "cuda|FAILED" | head -80
fi
if has sanitize; then
    for tool in memcheck racecheck; do
        MOE_TEST_QUICK=1 timeout ${SANITIZE_TIMEOUT:-400} compute-sanitizer --tool $tool \
            --error-exitcode 9 ./build-dev/moe_tests $gpu_suites > "$OUT/sanitize_$tool.log" 2>&1
        rc=$?
        summary+=("compute-sanitizer $tool: rc $rc, $(grep -c '========= ' "$OUT/sanitize_$tool.log") report lines, $(tail -1 "$OUT/sanitize_$tool.log")")
    done
fi
if has bench; then
    ./build-dev/moe-bench-ops "$OUT/ops_libmoe.json" > "$OUT/ops_libmoe.log" 2>&1 || tail -20 "$OUT/ops_libmoe.log"
    python3 bench/torch_ops.py "$OUT/ops_torch.json" > "$OUT/ops_torch.log" 2>&1 || tail -20 "$OUT/ops_torch.log"
    python3 bench/compare_ops.py "$OUT/ops_libmoe.json" "$OUT/ops_torch.json" "$OUT/ops.json" | tee "$OUT/ops_table.txt"
fi
if has gemm; then
    cuobjdump --dump-sass build-dev/libmoe.so | grep -oE "[QH]GMMA\.[A-Z0-9.]*" | sort | uniq -c > "$OUT/sass_gmma.txt"
    cat "$OUT/sass_gmma.txt"
    # libmoe first: it writes the row counts it used, which torch then reuses; each side
    # rewrites its JSON after every case, so a timeout still leaves the cases done so far
    timeout 180 ./build-dev/moe-bench-gemm "$OUT/gemm_libmoe.json" > "$OUT/gemm_libmoe.log" 2>&1 ||
        { echo "moe-bench-gemm: rc $?"; tail -20 "$OUT/gemm_libmoe.log"; }
    timeout 180 python3 bench/torch_gemm.py "$OUT/gemm_libmoe.json" "$OUT/gemm_torch.json" > "$OUT/gemm_torch.log" 2>&1 ||
        { echo "torch_gemm.py: rc $?"; tail -20 "$OUT/gemm_torch.log"; }
    python3 bench/compare_gemm.py "$OUT/gemm_libmoe.json" "$OUT/gemm_torch.json" "$OUT/gemm.json" | tee "$OUT/gemm_table.txt"
fi
if has layer; then
    # libmoe: every preset at T = 1, 32, 512, 4096 with fp8 weights, then DeepSeek-V3 with
    # bf16 weights (a separate process: a fault there cannot cost the fp8 sweep); each run
    # rewrites its JSON after every case, so a timeout keeps the cases done so far
    timeout ${LAYER_TIMEOUT:-240} ./build-dev/moe-bench --layer --json "$OUT/layer_libmoe.json" \
        > "$OUT/layer_libmoe.log" 2>&1
    rc=$?
    cat "$OUT/layer_libmoe.log"
    summary+=("moe-bench --layer: rc $rc")
    timeout ${LAYER_TIMEOUT:-240} ./build-dev/moe-bench --layer --preset deepseek-v3 --weights bf16 \
        --json "$OUT/layer_libmoe_bf16.json" > "$OUT/layer_libmoe_bf16.log" 2>&1
    rc=$?
    summary+=("moe-bench --layer deepseek-v3 bf16: rc $rc")
    ((rc)) && tail -20 "$OUT/layer_libmoe_bf16.log"
    # the same layer composed from torch ops (routed-only, as the anchor, and with the shared
    # expert), eager and CUDA-graph; stops starting cases after TORCH_LAYER_BUDGET_S (100 s)
    timeout 180 python3 bench/torch_layer.py "$OUT/layer_torch.json" > "$OUT/layer_torch.log" 2>&1
    rc=$?
    summary+=("torch_layer.py: rc $rc")
    ((rc)) && tail -20 "$OUT/layer_torch.log"
    python3 bench/compare_layer.py "$OUT/layer_libmoe.json" "$OUT/layer_torch.json" "$OUT/layer.json" \
        "$OUT/layer" --also "$OUT/layer_libmoe_bf16.json" | tee "$OUT/layer_table.txt"
fi
printf '%s\n' "${summary[@]}"
