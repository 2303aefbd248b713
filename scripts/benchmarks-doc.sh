#!/usr/bin/env bash
# Rebuilds docs/benchmarks.md: the summary in docs/bench/README.md followed by every section
# in docs/bench/*.md (each written by whoever ran its benchmark, with its command).
set -euo pipefail
cd "$(dirname "$0")/.."
{
  cat docs/bench/README.md
  for f in docs/bench/*.md; do
    [ "$(basename "$f")" = README.md ] && continue
    printf '\n---\n\n'
    # Demote each section's top heading so the document has one title.
    sed -e '1s/^# /## /' "$f"
  done
} > docs/benchmarks.md
