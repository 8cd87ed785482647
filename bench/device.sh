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
gpu_suites="cuda_route cuda_permute cuda_quant cuda_quant_block cuda_activation cuda_combine cuda_gemm"
summary=()

if has test; then
    ./build-dev/moe_tests > "$OUT/tests.log" 2>&1
    summary+=("tests: $(tail -1 "$OUT/tests.log") (rc $?)")
    grep -E "FAIL|SKIP" "$OUT/tests.log" | head -40
    grep -E "^== |ok \(|FAILED" "$OUT/tests.log" | grep -E "cuda|FAILED" | head -80
fi
if has sanitize; then
    for tool in memcheck racecheck; do
        MOE_TEST_QUICK=1 compute-sanitizer --tool $tool --error-exitcode 9 \
            ./build-dev/moe_tests $gpu_suites > "$OUT/sanitize_$tool.log" 2>&1
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
    [ -x build-dev/moe-bench-gemm ] && ./build-dev/moe-bench-gemm "$OUT/gemm.json" 2>&1 | tee "$OUT/gemm.log" | tail -40
    cuobjdump --dump-sass build-dev/libmoe.so | grep -oE "[QH]GMMA\.[A-Z0-9.]*" | sort | uniq -c > "$OUT/sass_gmma.txt"
    cat "$OUT/sass_gmma.txt"
fi
printf '%s\n' "${summary[@]}"
