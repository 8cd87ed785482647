#!/usr/bin/env bash
# Prepares a same-lease A/B run of the working tree against git revisions (lease-to-lease
# noise on the lent GPU is 7-10% at large T, so compare builds inside one lease only).
#   bench/ab_prepare.sh DIR NAME=REV [NAME=REV ...]
# copies the working tree (tracked and untracked, not ignored) into DIR and, for each
# NAME, writes DIR/ab/NAME/ holding REV's version of every file that differs from the
# tree (and DIR/ab/NAME/.remove listing files REV does not have). Then, on the GPU:
#   device run, carry [DIR]:  cd DIR && bench/ab.sh
set -euo pipefail
[ $# -ge 2 ] || { sed -n 2,8p "$0"; exit 2; }
cd "$(git rev-parse --show-toplevel)"
dir=$1
shift
rm -rf "$dir"
mkdir -p "$dir"
git ls-files -co --exclude-standard | grep -v "^$dir/" | tar -cf - -T - | tar -xf - -C "$dir"
for spec in "$@"; do
    name=${spec%%=*} rev=${spec#*=}
    out="$dir/ab/$name"
    mkdir -p "$out"
    : > "$out/.remove"
    git diff --name-only "$rev" -- | while read -r f; do
        if git cat-file -e "$rev:$f" 2>/dev/null; then
            mkdir -p "$out/$(dirname "$f")"
            git show "$rev:$f" > "$out/$f"
        fi
    done
    # files of the tree that REV lacks (added since, tracked or not)
    # (grep finding nothing is no error here)
    { git diff --name-only --diff-filter=A "$rev" --; git ls-files -o --exclude-standard; } |
        { grep -v "^$dir/" || true; } | while read -r f; do
            git cat-file -e "$rev:$f" 2>/dev/null || echo "$f" >> "$out/.remove"
        done
    echo "$name = $rev: $(find "$out" -type f ! -name .remove | wc -l) files differ, $(wc -l < "$out/.remove") to remove"
done
