#!/usr/bin/env bash
# Builds libmoe and runs every test: the C suites (CPU reference, and the CUDA backend
# where a GPU is present), the exported-symbol check, a moe-bench smoke run and the Python
# binding's tests in .venv (created here on first use; MOE_SKIP_PYTHON=1 skips that).
set -euo pipefail
cd "$(dirname "$0")"
py_args=()
if [ "${MOE_SKIP_PYTHON:-0}" != 1 ]; then
    [ -x .venv/bin/python ] || python3 -m venv .venv
    .venv/bin/python -c "import torch, pytest, numpy" 2>/dev/null ||
        .venv/bin/python -m pip install -q -r python/requirements-test.txt
    py_args=(-DPython3_EXECUTABLE="$PWD/.venv/bin/python")
fi
cmake -S . -B build "${py_args[@]}"
cmake --build build -j
ctest --test-dir build --output-on-failure
