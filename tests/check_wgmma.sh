#!/bin/sh
# ptxas serialises every wgmma of a kernel (waits after each one) when it cannot prove the
# accumulators untouched while they are in flight, and says so only as an info line
# ("Potential Performance Loss: wgmma.mma_async instructions are serialized ..."). The
# build still succeeds; the GEMM just loses its overlap (session 10 met it: a K-block
# branch around a wgmma issue). This check compiles the GEMM for sm_90a and fails on it.
#   check_wgmma.sh NVCC SOURCE INCLUDE_DIR...
set -eu
nvcc=$1
src=$2
shift 2
incs=""
for d in "$@"; do incs="$incs -I$d"; done
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
# shellcheck disable=SC2086
if ! "$nvcc" -std=c++17 -O3 -gencode=arch=compute_90a,code=sm_90a $incs -cubin \
    -o "$tmp/gemm.cubin" -Xptxas -v "$src" > "$tmp/ptxas.log" 2>&1; then
    cat "$tmp/ptxas.log"
    exit 1
fi
if grep -q "Potential Performance Loss" "$tmp/ptxas.log"; then
    echo "ptxas serialises wgmma in $src:"
    grep "Potential Performance Loss" "$tmp/ptxas.log"
    exit 1
fi
echo "ptxas: no wgmma serialisation in $(grep -c 'Compiling entry function' "$tmp/ptxas.log") kernels of $src"
