#!/bin/sh
# The shared library exports exactly the functions moe.h declares with MOE_API, all moe_*.
set -eu
lib=$1
header=$2
exported=$(nm -D --defined-only "$lib" | awk '$2 ~ /^[TDBRVW]$/ {print $3}' | sort -u)
declared=$(grep -v '^#' "$header" | tr '\n' ' ' | grep -o 'MOE_API [^(]*(' | sed 's/($//; s/.*[ *]//' | sort -u)
bad=$(printf '%s\n' "$exported" | grep -v '^moe_' || true)
if [ -n "$bad" ]; then echo "exported symbols without the moe_ prefix:"; echo "$bad"; exit 1; fi
extra=$(printf '%s\n' "$exported" | grep -vxF "$declared" || true)
if [ -n "$extra" ]; then echo "exported but not declared in moe.h:"; echo "$extra"; exit 1; fi
missing=$(printf '%s\n' "$declared" | grep -vxF "$exported" || true)
if [ -n "$missing" ]; then echo "declared in moe.h but not exported:"; echo "$missing"; exit 1; fi
echo "exported symbols: $(printf '%s\n' "$exported" | wc -l), all moe_* and declared in moe.h"
