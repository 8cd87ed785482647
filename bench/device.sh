#!/usr/bin/env bash
# On the lent GPU: build for sm_90a, run the tests, compute-sanitizer over the GPU suites,
# and the benchmarks, in one call. Stages: test, sanitize, bench, gemm (default: all but
# gemm). Full logs and JSON go to $OUT; a short table is printed last.
#   bench/device.sh test sanitize bench
set -uo pipefail
OUT=${OUT:-/tmp/moe-out}
mkdir -p "$OUT"
stages=${*:-test sanitize bench}
has() { [[ " $stages " == *" $1 "* ]]; }
export PYTHONUNBUFFERED=1
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader | tee "$OUT/gpu.txt"

cmake -S . -B build-dev -DMOE_CUDA=ON -DCMAKE_BUILD_TYPE=Release > "$OUT/configure.log" 2>&1 &&
    cmake --build build-dev -j 16 > "$OUT/build.log" 2>&1 || { tail -40 "$OUT/build.log"; exit 1; }
gpu_suites=${GPU_SUITES:-"cuda_route cuda_permute cuda_quant cuda_quant_block cuda_activation cuda_combine cuda_gemm"}
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
        MOE_TEST_QUICK=1 timeout ${SANITIZE_TIMEOUT:-150} compute-sanitizer --tool $tool \
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
printf '%s\n' "${summary[@]}"
