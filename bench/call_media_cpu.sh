#!/usr/bin/env bash
# CPU per call of app::call_media: a real-time call pair (WAV in, WAV out, both ways) on
# loopback channels, per thread, beside the media core alone in the same run.
# Usage: bench/call_media_cpu.sh [--debug]
set -euo pipefail
cd "$(dirname "$0")/.."
PROFILE=(--release)
if [[ "${1:-}" == "--debug" ]]; then PROFILE=(); fi
cargo test --quiet "${PROFILE[@]}" -p app --test call_media_cpu_per_call -- --ignored --nocapture --test-threads 1 \
  | grep '^|'
